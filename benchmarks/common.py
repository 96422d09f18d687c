"""What the benchmarks and the tools share, written once: the machine a figure was measured on,
the commit it was measured at and the command that measured it, a measurement in a fresh Python
process, peak memory, and the README tables that are rewritten between marker comments.

The scripts of ``benchmarks/`` import it as ``common`` (Python puts a script's own folder first
on ``sys.path``); those of ``tools/`` put this folder on ``sys.path`` first. It imports torch
only where a function needs it, so a script that only writes a table does not load torch.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]  # the repository
# the CPU features that decide how fast torch's kernels are, where /proc/cpuinfo lists them
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile",
             "avx_vnni")  # fmt: skip


# ----------------------------------------------------------------------------- the machine
def cpu_facts() -> dict[str, Any]:
    """The CPU's model name and which of :data:`CPU_FLAGS` it has (none known off Linux)."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in CPU_FLAGS if f in have]
    except OSError:
        pass
    return {"cpu": model, "flags": flags}


def machine(threads: int | None = None) -> dict[str, Any]:
    """What a benchmark record says of the machine: ``cpu``, ``flags``, ``cores`` (logical
    CPUs), ``torch``, ``python`` and, when given, the torch ``threads`` the measurement used."""
    import torch

    facts = {**cpu_facts(), "cores": os.cpu_count(), "torch": torch.__version__,
             "python": platform.python_version()}  # fmt: skip
    if threads is not None:
        facts["threads"] = threads
    return facts


def machine_line(facts: Mapping[str, Any]) -> str:
    """The one line a benchmark prints first: ``machine: CPU [flags], N cores, ...``."""
    flags = f" [{' '.join(facts['flags'])}]" if facts.get("flags") else ""
    threads = f", {facts['threads']} threads" if "threads" in facts else ""
    cores = f"{facts['cores']} cores"
    return f"machine: {facts['cpu']}{flags}, {cores}{threads}, torch {facts['torch']}"


def mm_flops_per_s(dtype: Any = None, device: Any = "cpu", n: int = 1024) -> float:
    """This machine's ``torch.mm`` rate, FLOP/s: the median of 10 products of two ``n x n``
    matrices of ``dtype`` (default float32) on ``device``, after 3 warm-up products."""
    import torch

    device = torch.device(device)
    a = torch.randn(n, n, device=device, dtype=dtype or torch.float32)
    b = torch.randn(n, n, device=device, dtype=dtype or torch.float32)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(3):
        a @ b
    sync()
    times = []
    for _ in range(10):
        start = time.perf_counter()
        a @ b
        sync()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


# ----------------------------------------------------------------------------- the source
def commit_of(tree: Path | str = ROOT) -> str:
    """The git commit of a source tree, marked ``+changes`` if its package has edits."""
    out = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)  # fmt: skip
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--", "glowflow"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return (out.stdout.strip() or "unknown") + ("+changes" if dirty else "")


def command_line() -> str:
    """This run's command as a reader reruns it from the repository root (the script by its
    path in the repository), for the record it writes."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = script.relative_to(ROOT).as_posix()
    except ValueError:  # a script from elsewhere: as it was given
        shown = sys.argv[0]
    return shlex.join(["python", shown, *sys.argv[1:]])


# ----------------------------------------------------------------------------- fresh processes
SINGLE = "--single"  # the hidden option by which a script measures one case and replies


class FreshProcessError(RuntimeError):
    """A measurement's process failed; ``stderr`` holds what it said."""

    def __init__(self, stderr: str) -> None:
        super().__init__(stderr)
        self.stderr = stderr


def run_fresh(
    script: Path | str, case: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Measure ``case`` in a new Python process: ``python SCRIPT --single JSON``, whose last
    line of output is its result as JSON (see :func:`reply`). A new process per measurement
    makes its peak memory its own and carries no allocator or thread state over.

    Args:
        script: the benchmark, which answers :data:`SINGLE` by measuring and replying.
        case: what to measure, as JSON-able values.
        env: the process's whole environment (default: this one's).

    Raises:
        FreshProcessError: when the process exits with an error.
    """
    argv = [sys.executable, str(script), SINGLE, json.dumps(dict(case))]
    env = dict(env) if env is not None else None
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise FreshProcessError(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def reply(result: Mapping[str, Any]) -> None:
    """The measuring process's side of :func:`run_fresh`: its result, as the last line."""
    print(json.dumps(dict(result)), flush=True)


# ----------------------------------------------------------------------------- peak memory
# Every peak is VmHWM, the high-water mark of a process's resident set, which the kernel keeps
# for the process's own address space. getrusage's ru_maxrss is not used: it carries the peak of
# the process that started this one across exec, so a small measurement started by a large
# parent would report the parent's peak.
def _status_mb(field: str, pid: int | str) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:  # the process has ended, or this is not Linux
        pass
    return 0.0


def peak_rss_mb(pid: int | str = "self") -> float:
    """The peak resident set of process ``pid`` so far (VmHWM), in MiB; 0 where unknown."""
    return _status_mb("VmHWM", pid)


def rss_mb(pid: int | str = "self") -> float:
    """The resident set of process ``pid`` now (VmRSS), in MiB; 0 where unknown."""
    return _status_mb("VmRSS", pid)


def reset_peak_rss() -> bool:
    """Lower this process's VmHWM to its resident set now (Linux 4.0 and later), so that the
    next :func:`peak_rss_mb` is the peak since this call; whether that was possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakRSS:
    """The peak resident set of this process while a block runs, and its rise above the level
    at the start, in MiB: VmHWM, reset on entry. Where it cannot be reset, ``peak`` is the
    peak of the whole process so far and ``reset`` is False."""

    def __enter__(self) -> PeakRSS:
        self.base = rss_mb()
        self.reset = reset_peak_rss()
        self.peak = self.rise = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = peak_rss_mb()
        self.rise = self.peak - self.base


# ----------------------------------------------------------------------------- README tables
def write_between_markers(readme: Path | str, name: str, text: str) -> None:
    """Replace what stands between ``<!-- name -->`` and ``<!-- /name -->`` in ``readme`` with
    ``text``, so that a table there is the one a committed record gives.

    Raises:
        SystemExit: when the README lacks either marker, naming them.
    """
    readme = Path(readme)
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    old = readme.read_text()
    if begin not in old or end not in old[old.find(begin) :]:
        raise SystemExit(f"{readme} has no {begin} ... {end} markers to write between")
    start = old.index(begin) + len(begin)
    stop = old.index(end, start)
    readme.write_text(old[:start] + "\n" + text + "\n" + old[stop:])


# ----------------------------------------------------------------------------- the explorer
def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(
    port: int, threads: int, tree: Path | None = None, options: Sequence[str] = ()
) -> subprocess.Popen:
    """``glowflow serve`` (the bundled celeba64) on loopback ``port`` with ``threads`` torch
    threads and the further ``options``, once it answers (within 5 minutes: a first
    ``--runtime onnx`` exports the model); glowflow from the source ``tree``, else the
    installed one.

    The server runs in ``tree`` (or this process's folder): ``python -m`` puts its working
    folder first on the import path, before ``PYTHONPATH``, so a server started from a
    checkout would import that checkout's glowflow whatever ``tree`` says."""
    import http.client

    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if tree is not None:
        env["PYTHONPATH"] = str(tree.resolve())
    proc = subprocess.Popen(
        [sys.executable, "-m", "glowflow", "serve", "--port", str(port), *options],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        cwd=None if tree is None else tree.resolve(),
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/attributes")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"glowflow serve failed: {proc.stderr.read()}")
            time.sleep(0.2)
    proc.kill()
    sys.exit("glowflow serve did not start in 300 s")
