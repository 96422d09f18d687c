"""The command line: a smoke run of train and eval, and one-line errors for user mistakes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error as one_line_error
from conftest import main_in_process, tiny_model
from conftest import run_cli as glowflow

from glowflow import cli
from glowflow.hub import names
from glowflow.nn import invconv

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


# ------------------------------------------------------------------------ model names and configs
#: Model configs that a file may hold and a command must refuse in one line before it builds
#: anything (the fields changed, and fragments of the error): gigabytes of weights or a deep
#: torch error before; the last is a valid config that disagrees with the weights' shapes.
BAD_CONFIGS = {
    "num_classes 1e10": ({"num_classes": 1e10}, ["num_classes", "got 10000000000.0"]),
    "hidden_channels 1e8": ({"hidden_channels": 1e8}, ["hidden_channels", "got 100000000.0"]),
    "16384-square images": ({"image_shape": [3, 16384, 16384]},
                            ["image_shape's H (height)", "from 1 to 1024, got 16384"]),
    "depth 2.5": ({"depth": 2.5}, ["depth must be a whole number from 1 to 128, got 2.5"]),
    "disagrees with the weights": ({"hidden_channels": 16},
                                   ["levels.0.steps.0.coupling.net.conv1.weight has shape "
                                    "(8, 6, 3, 3)", "needs (16, 6, 3, 3)"]),
}  # fmt: skip


def model_with_config(folder: Path, kind: str, change: dict) -> Path:
    """Real small weights beside a model config changed by ``change``: a pretrained folder or
    a checkpoint; returns what ``--checkpoint`` names."""
    from glowflow.hub.checkpoint import save_checkpoint
    from glowflow.hub.pretrained import save_pretrained

    model, _ = tiny_model()
    config = {**model.config.to_dict(), **change}
    if kind == "checkpoint":
        save_checkpoint(folder / "checkpoint.pt", {"model_config": config,
                                                   "model": model.state_dict()})  # fmt: skip
        return folder / "checkpoint.pt"
    save_pretrained(model, folder)
    stamp = json.loads((folder / "config.json").read_text())["glowflow"]
    (folder / "config.json").write_text(json.dumps({**config, "glowflow": stamp}))
    return folder


@pytest.mark.parametrize("kind", ["pretrained", "checkpoint"])
@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_a_bad_model_config_is_one_line_before_a_model_is_built(case, kind, tmp_path, monkeypatch):
    change, fragments = BAD_CONFIGS[case]
    target = model_with_config(tmp_path / "m", kind, change)
    built = []  # the device of each 1x1 convolution's initial rotation: "meta" for a check
    draw = invconv.random_rotation
    monkeypatch.setattr(invconv, "random_rotation",
                        lambda *a: built.append(draw(*a).device.type) or draw(*a))  # fmt: skip
    for command in (["eval", "--dataset", "mnist-mini", "--limit", 8], ["sample", "--n", 1]):
        r = main_in_process(*command, "--checkpoint", target, "--device", "cpu", cwd=tmp_path)
        one_line_error(r, str(target), *fragments)
    assert set(built) <= {"meta"} and not (tmp_path / "samples.png").exists()


#: Run under a 6 GiB address-space limit: a config that asked for more used to end in a
#: traceback (or a swap storm without the limit).
LIMITED = """
import resource, sys
_, hard = resource.getrlimit(resource.RLIMIT_AS)
limit = 6 * 2**30 if hard == resource.RLIM_INFINITY else min(6 * 2**30, hard)
resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
from glowflow.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("kind, change, fragment", [
    ("pretrained", {"hidden_channels": 100_000_000}, "hidden_channels"),
    # a 98,304-square random rotation for the last level's 1x1 convolutions
    ("checkpoint", {"image_shape": [3, 16384, 16384], "levels": 14}, "image_shape's H"),
    # valid, but 14 billion weights (56 GB): only the weights' shapes say no
    ("pretrained", {"image_shape": [3, 64, 64], "levels": 6, "depth": 64,
                    "hidden_channels": 4096}, "lacks"),
])  # fmt: skip
def test_a_huge_config_is_refused_under_a_6_gib_address_space_limit(
    kind, change, fragment, tmp_path
):
    target = model_with_config(tmp_path / "m", kind, change)
    command = ["eval", "--checkpoint", target, "--dataset", "mnist-mini", "--device", "cpu"]
    r = subprocess.run([sys.executable, "-c", LIMITED, *map(str, command)],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    one_line_error(r, str(target), fragment)


def test_a_repo_shaped_name_is_a_local_path_and_hf_names_the_hub(tmp_path, monkeypatch):
    """``runs/x`` from a folder without ``runs`` (the command line's own run folders have the
    shape of a Hub repo id) is a missing local path; ``hf:user/repo`` goes to the Hub."""
    downloads = []

    def download(repo_id, revision, cache_dir):
        downloads.append((repo_id, revision))
        assert repo_id == "user/repo", f"{repo_id} went to the Hub"
        from glowflow.hub.pretrained import save_pretrained

        return save_pretrained(tiny_model()[0], tmp_path / "snapshot")

    monkeypatch.setattr(names, "_download", download)
    r = main_in_process("sample", "--checkpoint", "runs/x", "--n", 1, cwd=tmp_path)
    one_line_error(r, "no such local path 'runs/x'", f"nothing at {tmp_path / 'runs' / 'x'}",
                   "for a model on the Hugging Face Hub write hf:runs/x")  # fmt: skip
    assert downloads == []
    r = main_in_process("sample", "--checkpoint", "hf:user/repo@v2", "--n", 1, "--device", "cpu",
                        cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert downloads == [("user/repo", "v2")] and (tmp_path / "samples.png").is_file()
    assert "hf:user/repo" in " ".join(main_in_process("eval", "--help").stdout.split())
