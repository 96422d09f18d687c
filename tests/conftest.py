"""Shared helpers for the tests: float64 by default (``float32`` fixture for training),
parameter randomisation, small real data, and running the command line in-process."""

from __future__ import annotations

import contextlib
import gzip
import json
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from glowflow import Glow, preprocess
from glowflow.config import TrainConfig
from glowflow.data.imagedata import ImageData
from glowflow.errors import GlowflowError
from glowflow.hub import names
from glowflow.hub.checkpoint import save_checkpoint

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def randomize_(module: torch.nn.Module, scale: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Move every parameter away from its (often identity-like) initialisation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def brute_logdet(f, x: torch.Tensor) -> torch.Tensor:
    """``log|det df/dx|`` of a per-sample map ``f`` on a batch of one, via the full Jacobian."""

    def flat(v: torch.Tensor) -> torch.Tensor:
        return f(v.reshape(x.shape)).reshape(-1)

    jac = torch.autograd.functional.jacobian(flat, x.reshape(-1))
    return torch.linalg.slogdet(jac)[1]


@pytest.fixture(autouse=True)
def _float64_and_seed():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def float32():
    """Float32 default dtype, for tests that train or run the command line as users do."""
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(torch.float64)


def shared_npz(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not present (team data set)")
    return path


def digits(n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """``n`` real MNIST digits from the built-in set, centre-cropped to 16x16 (NHWC), labels."""
    with resources.files("glowflow").joinpath("assets/mnist_mini.npz").open("rb") as f:
        d = np.load(f)
        return d["x"][:n, 6:22, 6:22], d["y"][:n].astype(np.int64)


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory) -> Path:
    """96 real digits at 16x16 with labels, as an npz data set."""
    x, y = digits()
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=x, y=y)
    return path


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    """``glowflow ARGS...`` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "glowflow", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=300,
    )  # fmt: skip


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2, no traceback, one error line that holds every fragment."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def main_in_process(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``glowflow ARGS...`` through ``glowflow.cli.main`` in this process (float32, as the
    command runs), its exit code and stderr captured like :func:`run_cli`'s."""
    import contextlib
    import io
    import os

    from glowflow.cli import main

    old_dtype, old_cwd = torch.get_default_dtype(), os.getcwd()
    torch.set_default_dtype(torch.float32)
    out, err = io.StringIO(), io.StringIO()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:  # argparse's own errors
                code = e.code
    finally:
        os.chdir(old_cwd)
        torch.set_default_dtype(old_dtype)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_server():
    """``glowflow serve`` with no model options (the bundled celeba64) in its own process on a
    free loopback port: yields its base URL."""
    import time
    import urllib.request

    pytest.importorskip("starlette", reason="glowflow serve needs the glowflow[serve] extra")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "glowflow", "serve", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/attributes", timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"serve did not start: {proc.stdout.read()}") from None
                time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def small_config(digits_npz, **kw) -> TrainConfig:
    base = dict(
        dataset=f"npz:{digits_npz}", levels=2, depth=1, hidden_channels=8, batch_size=16,
        init_batch_size=32, val_fraction=0.25, steps=6, log_every=1, checkpoint_every=3,
        n_samples=4, warmup_steps=2, device="cpu", precision="fp32",
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def losses(run_dir):
    import json

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


def face_photo() -> bytes:
    """A real held-out face, enlarged and set on a larger grey photo, as JPEG."""
    from PIL import Image

    from glowflow.hub.gallery import load_gallery
    from glowflow.hub.names import bundled_root

    face = load_gallery(bundled_root() / "celeba64").images[40 % 36].permute(1, 2, 0).numpy()
    photo = Image.new("RGB", (400, 300), (120, 120, 124))
    photo.paste(Image.fromarray(face).resize((200, 200), Image.LANCZOS), (110, 40))
    import io

    out = io.BytesIO()
    photo.save(out, format="JPEG", quality=92)
    return out.getvalue()


@pytest.fixture
def labelled_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "set.npz"
    np.savez(path, x=rng.integers(0, 256, (50, 6, 6, 3), dtype=np.uint8),
             y=np.arange(50) % 3, class_names=np.array(["a", "b", "c"]),
             attrs=rng.integers(0, 2, (50, 4)), attr_names=np.array(list("pqrs")))  # fmt: skip
    return path


def rng_images(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def make_data(n: int = 20) -> ImageData:
    images = torch.arange(n, dtype=torch.uint8).reshape(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    return ImageData(images, labels=torch.arange(n) % 4, attrs=torch.zeros(n, 2, dtype=torch.bool))


def tiny_model(seed: int = 0, **kw) -> tuple[Glow, torch.Tensor]:
    """A tiny model moved away from its identity-like init, actnorm initialised, and a batch."""
    torch.manual_seed(seed)
    options = {"image_shape": (3, 8, 8), "levels": 2, "depth": 2, "hidden_channels": 8, **kw}
    model = randomize_(Glow(**options), scale=0.05, seed=seed)
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    x = preprocess(images, n_bits=8, dtype=next(model.parameters()).dtype)
    model.initialize(x)
    return model.eval(), x


def assert_one_line(error: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message, message
    assert isinstance(error.value, GlowflowError) and isinstance(error.value, ValueError)
    for fragment in fragments:
        assert fragment in message, message


@pytest.fixture
def bundled(tmp_path, monkeypatch) -> Path:
    """An empty folder standing in for the package's bundled models."""
    root = tmp_path / "bundled"
    monkeypatch.setattr(names, "bundled_root", lambda: root)
    return root


def make_run(folder: Path, seed: int = 0) -> tuple[Glow, Glow]:
    """A minimal run folder: raw and EMA weights (different), config.json and summary.json."""
    model, _ = tiny_model(seed)
    ema, _ = tiny_model(seed + 10)
    data = {"class_names": None, "attr_names": ["Smiling"], "train_images": 90, "val_images": 6}
    state = {
        "model_config": model.config.to_dict(),
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "step": 3,
        "elapsed": 90.0,
        "data": data,
    }
    save_checkpoint(folder / "checkpoint.pt", state)
    train = TrainConfig(
        dataset="npz:data/faces.npz", levels=2, depth=2, hidden_channels=8, steps=3, hflip=True
    ).to_dict()
    config = {"train": train, "model": model.config.to_dict(), "data": data}
    (folder / "config.json").write_text(json.dumps(config))
    summary = {"step": 3, "elapsed_s": 90.0, "val_bpd": 5.4321, "nan_skipped": 0}
    (folder / "summary.json").write_text(json.dumps(summary))
    return model, ema


def labelled(n: int = 12) -> ImageData:
    """A tiny labelled set: classes a, b, c in turn; attributes One (class b) and Early (< 5)."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % 3
    attrs = torch.stack([labels == 1, torch.arange(n) < 5], 1)
    return ImageData(images, labels, attrs, ["One", "Early"], ["a", "b", "c"], "toy")


def tiny_explorer(**kw):
    """An explorer of a tiny one-channel 16x16 model (float32, parameters randomised) with two
    directions, ``Odd`` and ``Big``, and a gallery of six digits ``g0``..``g5``."""
    from glowflow.explorer.explorer import Explorer
    from glowflow.hub.gallery import Gallery

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        torch.manual_seed(0)
        model = Glow((1, 16, 16), levels=2, depth=2, hidden_channels=8)
        x, _ = digits(6)
        images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        model.initialize(images.float() / 256 - 0.5)
        randomize_(model, 0.05)
        directions = {"names": ["Odd", "Big"], "directions": 0.2 * torch.randn(2, model.num_dims)}
        gallery = Gallery(images, [f"digit {i}" for i in range(6)], None, "npz:digits.npz")
        return Explorer(model.eval(), directions, gallery, checkpoint="tiny", **kw)
    finally:
        torch.set_default_dtype(old)


# Debian's chromium and chromium-driver, for the tests that drive a real browser
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
NO_BROWSER = "no headless browser: apt-get install chromium chromium-driver"


@contextlib.contextmanager
def headless_chromium():
    """A Selenium driver of headless Chromium in a throwaway profile, quit on leaving."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    profile = tempfile.mkdtemp(prefix="glowflow-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,900",
                 f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# --- data sets in their standard on-disk formats, small -------------------------------------
def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def make_mnist(
    folder: Path, n: int = 6, split: str = "train", style: str = "gz", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    x = rng_images((n, 28, 28), seed)
    y = np.arange(n, dtype=np.uint8) % 10
    sep = "." if style == "dot" else "-"
    ext = ".gz" if style == "gz" else ""
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{split}-images{sep}idx3-ubyte{ext}", x, 2051)
    write_idx(folder / f"{split}-labels{sep}idx1-ubyte{ext}", y, 2049)
    return x, y


CIFAR_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def write_pickle(path: Path, obj: object, protocol: int = 2) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def make_cifar(folder: Path, sizes: dict[str, int], protocol: int = 2) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for seed, (name, n) in enumerate(sizes.items()):
        data = rng_images((n, 3072), seed)
        batch = {
            b"batch_label": f"{name} of 5".encode(),
            b"labels": [(seed + i) % 10 for i in range(n)],
            b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(n)],
        }
        write_pickle(folder / name, batch, protocol)
        out[name] = data
    meta = {b"label_names": [c.encode() for c in CIFAR_NAMES], b"num_vis": 3072}
    write_pickle(folder / "batches.meta", meta, protocol)
    return out
