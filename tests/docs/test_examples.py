"""Every Python and shell example of the documentation (README.md and docs/*.md) runs, so that
no example can rot.

Each page's examples run in order, in one scratch folder per page that holds the files the
examples name (small images, data sets in their on-disk formats; see :func:`scratch`), with
``HOME`` pointing into it, so ``~/data/...`` is found there. Python blocks of a page share one
namespace, as a reader running the page would (the site's home page skips the blocks it
shares with the README, which ran there). A shell block made only of ``glowflow ...``
commands runs them through ``glowflow.cli.main`` in this process (the same code as the
installed command, without its start-up); any other shell block runs in ``bash -e``.

Two things differ from a reader's run, both visible here: budgets are cut to a few steps
(:data:`BUDGETS`: every ``--max-time``, ``--epochs`` and ``--steps`` becomes ``--steps 2``, and a
training command without one gets it), and a block marked
``<!-- example: not run (REASON) -->`` is not run.
Only the reasons in :data:`NOT_RUN` are accepted: blocks that install the package, need several
GPUs or machines, rebuild a figure of the notes pages from the team's data (hours of training,
made by the committed scripts), or are run by another test. A block that is one
``glowflow serve`` command starts the server in the background, for the blocks after it, and
stops it at the end of the page.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, main_in_process, make_cifar, make_mnist
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = {
    "installs the package",
    "needs GPUs",
    "needs several machines",
    "rebuilds a figure from the team's data, for hours",
    "run by tests/hub/test_onnx_export.py, which exports each bundled model once",
    "exports a bundled model, as tests/hub/test_onnx_export.py does for each",
    "run by tests/docs/test_site.py and CI, from the repository's root",
}
# budget options of a training command -> a few steps
BUDGETS = [(re.compile(r"--(max-time|epochs|steps)[ =]\S+"), "--steps 2")]
TRAINING = re.compile(r"\bglowflow (train|compare)\b|-m glowflow train\b")
DIRECTIVE = re.compile(r"<!-- example: not run \((?P<reason>[^)]*)\) -->")
pytestmark = pytest.mark.slow


@dataclass
class Block:
    page: Path
    line: int
    language: str
    code: str
    not_run: str | None

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The ``python`` and ``bash`` blocks of ``page``, with the directive before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = re.fullmatch(r"```(\w*)\s*", lines[i])
        if fence is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        directive = DIRECTIVE.fullmatch(before.strip())
        if fence.group(1) in ("python", "bash"):
            found.append(Block(page, i + 1, fence.group(1), "\n".join(lines[i + 1 : end]) + "\n",
                               directive and directive.group("reason")))  # fmt: skip
        i = end + 1
    return found


def commands(code: str) -> list[str]:
    """The shell commands of a block: continuation lines joined, comments and blanks dropped."""
    joined = code.replace("\\\n", " ")
    return [c for c in (line.split(" #")[0].strip() for line in joined.splitlines())
            if c and not c.startswith("#")]  # fmt: skip


def cut_budget(command: str) -> str:
    """``command`` with its budget cut to a few steps (a training command given one if it has
    none)."""
    for pattern, replacement in BUDGETS:
        command = pattern.sub(replacement, command)
    if not TRAINING.search(command) or "--steps" in command or "--dry-run" in command:
        return command
    return command + " --steps 2"


def letters(n: int = 24, size: int = 28) -> np.ndarray:
    """White capital letters on black, drawn with Pillow's own font: a small OOD set."""
    out = np.zeros((n, size, size, 1), np.uint8)
    for i in range(n):
        img = Image.new("L", (size, size))
        ImageDraw.Draw(img).text((8, 6), chr(ord("A") + i % 26), fill=255, font_size=14)
        out[i, :, :, 0] = np.asarray(img)
    return out


def faces(n: int) -> np.ndarray:
    """``n`` held-out CelebA faces (NHWC uint8), from the bundled model's gallery."""
    from glowflow.hub.gallery import load_gallery
    from glowflow.hub.names import resolve_pretrained

    x = load_gallery(resolve_pretrained("celeba64")).images.permute(0, 2, 3, 1).numpy()
    return np.concatenate([x] * (n // len(x) + 1))[:n]


def scratch(root: Path) -> Path:
    """A working folder with every file the examples name, and ``root/home`` as ``HOME``."""
    work, home = root / "work", root / "home"
    work.mkdir(parents=True)
    x = faces(48)
    np.savez(work / "faces.npz", x=x[:40])
    np.savez(work / "held_out.npz", x=x[40:])
    (work / "data").mkdir()
    names = np.array(["Smiling", "Male"])  # labels for the commands to compute directions from
    attrs = np.where(np.arange(80).reshape(40, 2) % 3 == 0, 1, -1).astype(np.int8)
    np.savez(work / "data" / "celeba64.npz", x=x[:40], attrs=attrs, attr_names=names)
    np.savez(work / "data" / "celeba64_test.npz", x=x[40:])
    for name, i in (("my_face.png", 0), ("me.png", 1), ("face.png", 2), ("a.png", 3),
                    ("b.png", 4)):  # fmt: skip
        Image.fromarray(x[i]).save(work / name)
    Image.fromarray(x[5]).save(work / "me.jpg", quality=95)
    np.savez(work / "letters.npz", x=letters())
    make_mnist(home / "data" / "mnist", n=64)
    make_cifar(home / "data" / "cifar-10-batches-py", {"data_batch_1": 80, "test_batch": 8})
    folder = home / "data" / "imagenet" / "train"  # an image folder, a class a sub-folder
    for k, label in enumerate(("cats", "dogs")):
        (folder / label).mkdir(parents=True)
        for i in range(60):  # a 0.01 validation fraction needs 100 images
            Image.fromarray(x[(i + k) % len(x)]).save(folder / label / f"{i}.png")
    if SHARED_DATA.is_dir():  # the pages that rebuild a figure read the team's data
        (root / "shared").mkdir()
        (root / "shared" / "data").symlink_to(SHARED_DATA)
    return work


def serve(cmd: str, work: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start ``glowflow serve ...`` and wait until it answers."""
    args = shlex.split(cmd)[1:]
    server = subprocess.Popen([sys.executable, "-m", "glowflow", *args], cwd=work, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    port = int(args[args.index("--port") + 1]) if "--port" in args else 8000
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"{cmd} stopped: {server.stderr.read().decode()}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/model", timeout=2)
            return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise AssertionError(f"{cmd} did not answer in 120 s")


def run_shell(block: Block, work: Path, env: dict[str, str]) -> None:
    cmds = [cut_budget(c) for c in commands(block.code)]
    plain = all(c.startswith("glowflow ") and not re.search(r"[$`|;&<>(]", c) for c in cmds)
    if plain:
        for c in cmds:
            args = [os.path.expanduser(a) for a in shlex.split(c)[1:]]
            done = main_in_process(*args, cwd=work)
            assert done.returncode == 0, f"{block}: {c}\n{done.stderr}"
        return
    script = "set -euo pipefail\n" + "\n".join(cmds) + "\n"
    done = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, f"{block}:\n{script}\n{done.stderr}"


def page_ids() -> list[str]:
    """The pages with an example to run."""
    return [str(p.relative_to(ROOT)) for p in PAGES if any(not b.not_run for b in blocks(p))]


@pytest.mark.parametrize("page", page_ids())
def test_the_examples_of_the_page_run(page, tmp_path, monkeypatch):
    work = scratch(tmp_path)
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home), "PATH": f"{Path(sys.executable).parent}:"
           f"{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "2"}  # fmt: skip
    if "../shared/data" in (ROOT / page).read_text() and not SHARED_DATA.is_dir():
        pytest.skip(f"{page} rebuilds a figure from the team's data, absent: {SHARED_DATA}")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    namespace: dict = {"__name__": "__main__"}
    ran, servers = 0, []
    # the site's home page repeats the README's examples: those ran with the README
    seen = {b.code for b in blocks(ROOT / "README.md")} if page == "docs/index.md" else set()
    try:
        for block in blocks(ROOT / page):
            if block.not_run or block.code in seen:
                continue
            cmds = commands(block.code)
            if block.language == "python":
                old = torch.get_default_dtype()
                torch.set_default_dtype(torch.float32)  # as a reader's session has it
                try:
                    exec(compile(block.code, str(block), "exec"), namespace)
                finally:
                    torch.set_default_dtype(old)
            elif len(cmds) == 1 and cmds[0].startswith("glowflow serve"):
                servers.append(serve(cmds[0], work, env))
            else:
                run_shell(block, work, env)
            ran += 1
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)
    assert ran > 0 or seen


def test_every_example_runs_unless_marked_for_an_accepted_reason():
    all_blocks = [b for p in PAGES for b in blocks(p)]
    assert len(all_blocks) >= 25
    for block in all_blocks:
        if block.not_run is not None:
            assert block.not_run in NOT_RUN, f"{block}: {block.not_run!r}"
    # every page a user learns from has examples that run
    for name in ("README.md", "get-started.md", "pretrained.md", "training.md", "explorer.md",
                 "ood.md", "index.md", "architecture.md"):  # fmt: skip
        page = ROOT / name if name == "README.md" else ROOT / "docs" / name
        assert any(not b.not_run for b in blocks(page)), name
