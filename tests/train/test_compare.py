"""The ablation command: every combination trained alike, curves and JSON, resumable."""

from __future__ import annotations

import json

import pytest
from conftest import assert_one_line_error, main_in_process, run_cli


@pytest.mark.slow
def test_compare_runs_each_combination_once_and_writes_curves(digits_npz, tmp_path):
    out = tmp_path / "cmp"
    args = ["compare", "--dataset", f"npz:{digits_npz}", "--permutations", "reverse,lu",
            "--couplings", "additive", "--steps", 4, "--eval-every", 2, "--out", out,
            "--levels", 2, "--depth", 1, "--hidden-channels", 8, "--batch-size", 16,
            "--init-batch-size", 32, "--n-samples", 4]  # fmt: skip
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    results = json.loads((out / "results.json").read_text())
    assert set(results["final_val_bpd"]) == {"additive-reverse", "additive-lu"}
    assert sorted(results["ordering"]["additive"]) == ["lu", "reverse"]
    curve = results["runs"]["additive-lu"]["curve"]
    assert [step for step, _, _ in curve] == [2, 4, 4]  # every 2 steps, then the final pass
    assert (out / "curves.png").stat().st_size > 1000
    config = json.loads((out / "additive-lu" / "config.json").read_text())["train"]
    assert config["permutation"] == "lu" and config["depth"] == 1 and config["seed"] == 0
    # a second invocation keeps the finished runs
    before = (out / "additive-lu" / "checkpoint.pt").stat().st_mtime_ns
    r = run_cli(*args)
    assert r.returncode == 0 and "2 of 2 runs already finished" in r.stderr
    assert (out / "additive-lu" / "checkpoint.pt").stat().st_mtime_ns == before


def test_compare_rejects_unknown_choices(tmp_path):
    r = main_in_process("compare", "--dataset", "mnist-mini", "--permutations", "lu,random",
                "--steps", 1, "--out", tmp_path)  # fmt: skip
    assert_one_line_error(r, "unknown permutation 'random'", "reverse")
    r = main_in_process("compare", "--dataset", "mnist-mini", "--out", tmp_path)
    assert_one_line_error(r, "--max-time")
