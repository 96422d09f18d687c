"""The explorer's server under a burst of huge uploads: does it keep answering, and how much
memory does it take?

Starts ``glowflow serve`` (the bundled celeba64 model) in its own process on loopback, uploads a
small photo, then at once sends ``--uploads`` PNGs of ``--megapixels`` each (distinct files, a
smooth picture so that each stays under the 10 MiB upload limit) and runs ``--editors`` threads
that keep editing the uploaded photo. Meanwhile a probe asks for ``GET /`` and
``GET /api/images/ID`` (the photo's facts) every ``--interval`` seconds, and records how long
each answer took. When every upload has been answered it reads the server's peak resident
memory (``VmHWM`` in ``/proc/PID/status``) and checks that an edit still answers.

Prints the machine, a table of the probes' p50/p95/worst, the uploads' and edits' answers and
the peak memory, and a JSON line, which ``--out`` also writes:

    python benchmarks/bench_burst.py --out benchmarks/results/burst.json

``--tree`` serves glowflow from another source tree (``PYTHONPATH``), to measure a change
against the code before it. Bounded: it gives up after ``--timeout`` seconds. It exits 1 where
an answer was not a 200, the time ran out, or the server stopped.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
from common import command_line, commit_of, cpu_facts, free_port, machine_line, start_serve
from PIL import Image


def memory_mb(pid: int) -> dict[str, float]:
    """The process's resident memory now (``VmRSS``) and at its peak (``VmHWM``), in MB."""
    facts = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            facts[key] = round(int(value.split()[0]) / 1024, 1)  # kB
    return facts


def huge_pngs(n: int, megapixels: float) -> list[bytes]:
    """``n`` distinct RGB PNG files of about ``megapixels`` each (4:3), a smooth gradient with
    a block that differs between files."""
    h = int((megapixels * 1e6 * 3 / 4) ** 0.5)
    w = int(megapixels * 1e6 / h)
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, w, dtype=np.float32)[None, :]
    rgb[..., 1] = np.linspace(0, 255, h, dtype=np.float32)[:, None]
    rgb[..., 2] = 128
    files = []
    for k in range(n):
        rgb[:64, :64] = (37 * k) % 256  # each file its own bytes, so none is served from cache
        out = io.BytesIO()
        Image.fromarray(rgb).save(out, format="PNG", compress_level=1)
        files.append(out.getvalue())
    return files


def photo() -> bytes:
    """A small photo to edit: a grey frame with a bright square where a face would be."""
    im = Image.new("RGB", (640, 480), (110, 112, 118))
    im.paste((220, 180, 160), (230, 130, 410, 350))
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=90)
    return out.getvalue()


class Recorder:
    """Each request's path, status, seconds and (for an error) whether its body was one
    line of JSON, kept by kind, safe to add to from several threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_kind: dict[str, list[tuple[int, float]]] = {}
        self.bad: list[str] = []

    def request(self, port: int, kind: str, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None, timeout: float = 120) -> bytes:  # fmt: skip
        start = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data, status = r.read(), r.status
            conn.close()
        except OSError as e:
            data, status = str(e).encode(), 0
        elapsed = time.perf_counter() - start
        with self.lock:
            self.by_kind.setdefault(kind, []).append((status, elapsed))
            if status != 200:
                self.bad.append(f"{kind} {path[:60]}: {status} {data[:200]!r}")
        return data


def figures(times: list[float]) -> dict[str, float]:
    ms = np.array(times) * 1000
    return {"count": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "worst_ms": round(float(ms.max()), 1)}  # fmt: skip


def burst(args: argparse.Namespace) -> dict:
    files = huge_pngs(args.uploads, args.megapixels)
    port = free_port()
    proc = start_serve(port, args.threads, args.tree)
    rec = Recorder()
    try:
        face = json.loads(rec.request(port, "setup", "POST", "/api/images", photo(),
                                      {"Content-Type": "image/jpeg"}))  # fmt: skip
        image_id = face["id"]
        before = memory_mb(proc.pid)
        uploads_done = threading.Event()
        deadline = time.monotonic() + args.timeout

        def upload(data: bytes) -> None:
            rec.request(port, "upload", "POST", "/api/images", data, {"Content-Type": "image/png"})

        def edit(seed: int) -> None:
            rng = np.random.default_rng(seed)
            while not uploads_done.is_set() and time.monotonic() < deadline:
                amount = round(float(rng.uniform(-2, 2)), 2)
                query = urllib.parse.urlencode({"image": image_id, "Smiling": amount})
                rec.request(port, "edit", "GET", f"/api/edit.png?{query}")

        def probe() -> None:
            while not uploads_done.is_set() and time.monotonic() < deadline:
                rec.request(port, "GET /", "GET", "/", timeout=args.timeout)
                rec.request(port, "GET /api/images/ID", "GET", f"/api/images/{image_id}",
                            timeout=args.timeout)  # fmt: skip
                time.sleep(args.interval)

        started = time.perf_counter()
        workers = [threading.Thread(target=upload, args=(f,)) for f in files]
        others = [threading.Thread(target=edit, args=(k,)) for k in range(args.editors)]
        others.append(threading.Thread(target=probe))
        for t in others + workers:
            t.start()
        for t in workers:
            t.join(max(0.0, deadline - time.monotonic()))
        uploads_done.set()
        for t in others:
            t.join(max(0.0, deadline - time.monotonic()) + 5)
        seconds = time.perf_counter() - started
        timed_out = any(t.is_alive() for t in workers + others)
        after = memory_mb(proc.pid)
        rec.request(port, "edit after", "GET", f"/api/edit.png?image={image_id}&Smiling=0.5")
        alive = proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {
        "tree": str(args.tree) if args.tree else None, "uploads": args.uploads,
        "megapixels": args.megapixels,
        "upload_mb": round(sum(map(len, files)) / len(files) / 2**20, 2),
        "editors": args.editors, "seconds": round(seconds, 1), "timed_out": timed_out,
        "server_alive": alive, "memory_before_mb": before, "memory_after_mb": after,
        "peak_memory_mb": after.get("VmHWM"),
        "answers": {kind: {"statuses": sorted({s for s, _ in v}),
                           **figures([t for _, t in v])}
                    for kind, v in rec.by_kind.items()},
        "bad": rec.bad[:20],
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--uploads", type=int, default=8)
    p.add_argument("--megapixels", type=float, default=35.0)
    p.add_argument("--editors", type=int, default=2, help="threads editing the uploaded photo")
    p.add_argument("--interval", type=float, default=0.05, help="seconds between probes")
    p.add_argument("--threads", type=int, default=2, help="the server's torch threads")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument(
        "--tree",
        type=Path,
        help="serve glowflow from this source tree (default: the installed one)",
    )
    p.add_argument("--out", type=Path, help="also write the JSON record here")
    args = p.parse_args()
    facts = {**cpu_facts(), "cores": os.cpu_count(), "threads": args.threads,
             "torch": "(in the server)"}  # fmt: skip
    print(machine_line(facts))
    record = burst(args)
    record = {"benchmark": "burst", "machine": facts, "commit": commit_of(),
              "command": command_line(), **record}  # fmt: skip
    print(f"{args.uploads} uploads of {args.megapixels:g} MP PNGs ({record['upload_mb']} MiB "
          f"each), {args.editors} editors, {record['seconds']} s")  # fmt: skip
    print(f"{'requests':<20} {'count':>6} {'p50 ms':>9} {'p95 ms':>9} {'worst ms':>9}  statuses")
    for kind, f in record["answers"].items():
        print(f"{kind:<20} {f['count']:>6} {f['p50_ms']:>9} {f['p95_ms']:>9} "
              f"{f['worst_ms']:>9}  {f['statuses']}")  # fmt: skip
    print(f"server memory: {record['memory_before_mb']} before, peak (VmHWM) "
          f"{record['peak_memory_mb']} MB")  # fmt: skip
    for line in record["bad"]:
        print("not a 200:", line)
    print(json.dumps(record))
    if args.out:
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    if record["bad"] or record["timed_out"] or not record["server_alive"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
