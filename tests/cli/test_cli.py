"""The command line: a smoke run of train and eval, and one-line errors for user mistakes."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import assert_one_line_error as one_line_error
from conftest import main_in_process
from conftest import run_cli as glowflow

from glowflow import cli

SMALL = ["--levels", 2, "--depth", 1, "--hidden-channels", 8, "--batch-size", 16,
         "--init-batch-size", 32, "--log-every", 1, "--n-samples", 4]  # fmt: skip


def test_train_then_eval_smoke(digits_npz, tmp_path):
    run = tmp_path / "run"
    r = glowflow("train", "--dataset", f"npz:{digits_npz}", "--steps", 4, "--out", run, *SMALL)
    assert r.returncode == 0, r.stderr
    assert "bpd=" in r.stderr  # the progress bar shows the loss
    assert (run / "checkpoint.pt").is_file() and (run / "learning_curve.png").is_file()
    # the last line gives the speed, by which a user finds the README's row for the machine
    summary = json.loads((run / "summary.json").read_text())
    done = re.search(r"done: 4 steps in ([\d.]+) min \(([\d.]+) steps/s\)", r.stderr)
    assert done and float(done[1]) == round(summary["elapsed_s"] / 60, 1)
    assert abs(4 / float(done[2]) - summary["elapsed_s"]) <= 0.05 + 4 / float(done[2]) * 0.05
    r = glowflow("eval", "--checkpoint", run, "--dataset", f"npz:{digits_npz}", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["n"] == 96 and 0 < result["bpd"] < 20
    assert result["dims"] == 256 and result["samples"] == 1 and "bpd_original" not in result
    assert abs(result["bits_per_image"] - 256 * result["bpd"]) < 1e-6
    # the same digits cropped to 12x12 and padded back: bits/dim over the 144 pixels they had
    cropped = tmp_path / "cropped.npz"
    with np.load(digits_npz) as d:
        np.savez(cropped, x=d["x"][:, 2:14, 2:14], y=d["y"])
    evaluated = {}
    for k in (1, 3):
        r = glowflow("eval", "--checkpoint", run, "--dataset", f"npz:{cropped}", "--pad", 2,
                     "--samples", k, "--json")  # fmt: skip
        assert r.returncode == 0, r.stderr
        evaluated[k] = json.loads(r.stdout.strip().splitlines()[-1])
        assert evaluated[k]["samples"] == k and evaluated[k]["original_dims"] == 144
        assert abs(evaluated[k]["bpd_original"] - evaluated[k]["bits_per_image"] / 144) < 1e-9
    # the first of the 3 draws is the single draw, so the two are close; the bound itself is
    # checked against every draw in tests/data/test_evaluate.py
    assert abs(evaluated[3]["bpd"] - evaluated[1]["bpd"]) < 0.05
    # a run folder that holds a run is refused, and left as it was
    before = (run / "checkpoint.pt").read_bytes()
    r = glowflow("train", "--dataset", f"npz:{digits_npz}", "--steps", 4, "--out", run, *SMALL)
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
    one_line_error(r, "(1, 16, 16)", "(1, 28, 28)")


def test_dry_run_prints_resolved_config(tmp_path):
    r = main_in_process("train", "--dry-run", "--preset", "cifar10", "--lr", "0.002", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    assert cfg["depth"] == 32 and cfg["hidden_channels"] == 512 and cfg["lr"] == 0.002
    assert cfg["optimizer"] == "adamax"
    assert not (tmp_path / "runs").exists()
    r = main_in_process("train", "--dry-run", cwd=tmp_path)
    cfg = json.loads(r.stdout)
    assert cfg["dataset"] == "mnist-mini" and cfg["max_time"] == 4.0  # the default run's budget


def test_help_states_the_default_run_budget():
    r = main_in_process("train", "--help")
    assert r.returncode == 0
    assert "(default: 4 on mnist-mini without another budget, else none)" in " ".join(
        r.stdout.split()
    )


def test_a_bug_is_not_shown_as_a_user_mistake(monkeypatch, tmp_path):
    def broken(args):
        raise ValueError("an internal bug")

    monkeypatch.setitem(cli.COMMANDS, "train", broken)
    with pytest.raises(ValueError, match="an internal bug"):
        main_in_process("train", "--dry-run", cwd=tmp_path)


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["train", "--dataset", "imagenet:/nowhere", "--steps", "1"], ["imagenet"]),
        (["train", "--dataset", "npz:/no/such/file.npz", "--steps", "1"], ["/no/such/file.npz"]),
        (["train", "--levels", "6", "--steps", "1"], ["not divisible", "2**levels = 64"]),
        (["eval", "--checkpoint", "/no/such/ckpt.pt", "--dataset", "mnist-mini"],
         ["/no/such/ckpt.pt"]),
        (["train", "--resume", "/no/such/run"], ["cannot resume"]),
        (["train", "--dataset", "npz:/no/such.npz", "--preset", "tiny"], ["budget"]),
        (["train", "--log-every", "0", "--steps", "1"], ["log_every"]),
        (["sample", "--checkpoint", "/no/such/run", "--n", "0"], ["positive"]),
    ],
)  # fmt: skip
def test_user_mistakes_get_one_line_errors(args, fragments, tmp_path):
    r = main_in_process(*args, cwd=tmp_path)
    one_line_error(r, *fragments)
    assert not any((tmp_path / "runs").glob("*/checkpoint.pt"))
