"""The command line: a smoke run of train and eval, and one-line errors for user mistakes."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest


def glowflow(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "glowflow", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    with resources.files("glowflow").joinpath("assets/mnist_mini.npz").open("rb") as f:
        d = np.load(f)
        x, y = d["x"][:96, 6:22, 6:22], d["y"][:96].astype(np.int64)
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=x, y=y)
    return path


SMALL = ["--levels", 2, "--depth", 1, "--hidden-channels", 8, "--batch-size", 16,
         "--init-batch-size", 32, "--log-every", 1, "--n-samples", 4]  # fmt: skip


def one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_train_then_eval_smoke(digits, tmp_path):
    run = tmp_path / "run"
    r = glowflow("train", "--dataset", f"npz:{digits}", "--steps", 4, "--out", run, *SMALL)
    assert r.returncode == 0, r.stderr
    assert "bpd=" in r.stderr  # the progress bar shows the loss
    assert (run / "checkpoint.pt").is_file() and (run / "learning_curve.png").is_file()
    r = glowflow("eval", "--checkpoint", run, "--dataset", f"npz:{digits}", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["n"] == 96 and 0 < result["bpd"] < 20
    # a run folder that holds a run is refused, and left as it was
    before = (run / "checkpoint.pt").read_bytes()
    r = glowflow("train", "--dataset", f"npz:{digits}", "--steps", 4, "--out", run, *SMALL)
    one_line_error(r, "already holds a run", "--resume", "--overwrite")
    assert (run / "checkpoint.pt").read_bytes() == before
    # resume with a changed model option is refused; with a larger budget it continues
    r = glowflow("train", "--resume", run, "--depth", 3)
    one_line_error(r, "--depth", "resumed")
    r = glowflow("train", "--resume", run, "--steps", 6, "--no-progress")
    assert r.returncode == 0, r.stderr
    steps = [json.loads(line).get("step") for line in (run / "metrics.jsonl").open()]
    assert max(steps) == 6
    # eval on images of another shape names both shapes
    r = glowflow("eval", "--checkpoint", run, "--dataset", "mnist-mini", "--limit", 8)
    one_line_error(r, "(1, 16, 16)", "(1, 32, 32)")


def test_dry_run_prints_resolved_config(tmp_path):
    r = glowflow("train", "--dry-run", "--preset", "cifar10", "--lr", "0.002", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert cfg["depth"] == 32 and cfg["hidden_channels"] == 512 and cfg["lr"] == 0.002
    assert cfg["optimizer"] == "adamax"
    assert not (tmp_path / "runs").exists()
    r = glowflow("train", "--dry-run", cwd=tmp_path)
    assert json.loads(r.stdout)["dataset"] == "mnist-mini"


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["train", "--dataset", "imagenet:/nowhere"], ["imagenet"]),
        (["train", "--dataset", "npz:/no/such/file.npz"], ["/no/such/file.npz"]),
        (["train", "--levels", "6", "--dry-run"], []),
        (["train", "--levels", "6", "--steps", "1"], ["not divisible", "2**levels = 64"]),
        (["eval", "--checkpoint", "/no/such/ckpt.pt", "--dataset", "mnist-mini"],
         ["/no/such/ckpt.pt"]),
        (["train", "--resume", "/no/such/run"], ["cannot resume"]),
    ],
)  # fmt: skip
def test_user_mistakes_get_one_line_errors(args, fragments, tmp_path):
    r = glowflow(*args, cwd=tmp_path)
    if not fragments:  # dry-run only resolves the config; it does not build the model
        assert r.returncode == 0
        return
    one_line_error(r, *fragments)
    assert not any((tmp_path / "runs").glob("*/checkpoint.pt"))
