"""Starting a run as ``glowflow train`` asks: the folder options, torchrun's restarts, and the
config's layers (defaults < preset < options, or a resumed run's own)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from glowflow.config import TRAIN_PRESETS
from glowflow.train.launch import (
    DEFAULT_MAX_TIME,
    Launch,
    LaunchError,
    default_run_dir,
    plan_launch,
    train_config,
)
from glowflow.train.rundir import RunDir


def a_run(folder: Path, job: str | None = None, checkpoint: bool = True, **train) -> Path:
    """A run folder with its config (written by torchrun job ``job``) and maybe a checkpoint."""
    run = RunDir(folder)
    record = {"train": {"dataset": "npz:d.npz", "depth": 3, "steps": 10, **train},
              "torchelastic_run_id": job}  # fmt: skip
    run.start(record, overwrite=False)
    if checkpoint:
        run.checkpoint.write_bytes(b"")
    return folder


def test_options_override_the_preset_which_overrides_the_defaults():
    cfg = train_config({"lr": 0.002, "steps": 5}, preset="cifar10")
    assert cfg.lr == 0.002 and cfg.steps == 5
    assert cfg.depth == TRAIN_PRESETS["cifar10"]["depth"] and cfg.optimizer == "adamax"
    assert train_config({"depth": 2, "steps": 1}).depth == 2


def test_only_the_default_run_gets_the_default_budget():
    assert train_config({}).max_time == DEFAULT_MAX_TIME  # mnist-mini, no budget, no preset
    assert train_config({"steps": 3}).max_time is None
    assert train_config({"dataset": "npz:d.npz"}).max_time is None  # Trainer asks for one
    assert train_config({}, preset="tiny").max_time is None


def test_a_resumed_run_keeps_its_config_but_for_the_resumable_options(tmp_path):
    run = a_run(tmp_path / "run")
    cfg = train_config({"steps": 20, "device": "cpu"}, resume=run)
    assert (cfg.dataset, cfg.depth, cfg.steps, cfg.device) == ("npz:d.npz", 3, 20, "cpu")
    assert train_config({"depth": 3}, resume=run).depth == 3  # the same value is no change
    with pytest.raises(LaunchError, match="^--depth, --lr differ from the run being resumed"):
        train_config({"depth": 4, "lr": 0.1, "steps": 20}, resume=run)
    with pytest.raises(LaunchError, match="^--preset differ"):
        train_config({}, preset="tiny", resume=run)


def test_the_folder_options_that_cannot_go_together(tmp_path):
    with pytest.raises(LaunchError, match="cannot resume: .*nowhere holds no run"):
        plan_launch(resume=tmp_path / "nowhere")
    run = a_run(tmp_path / "run")
    with pytest.raises(LaunchError, match="its own folder; drop --out"):
        plan_launch(out=tmp_path / "other", resume=run)
    assert plan_launch(out=run, resume=run) == Launch(run, run)
    assert plan_launch(out="x", overwrite=True, preset="tiny") == Launch(
        Path("x"), None, True, "tiny"
    )


def test_under_torchrun_the_processes_must_be_told_their_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(LaunchError, match="under torchrun give --out RUN_DIR"):
        plan_launch()
    assert plan_launch(out=tmp_path / "run").out == tmp_path / "run"


@pytest.mark.parametrize(
    "restarts,writer,checkpoint,want",
    [
        (1, "job", True, "resume"),  # the job's own run, with a checkpoint: resumed
        (1, "job", False, "overwrite"),  # it died before the first checkpoint: started again
        (1, "an earlier job", True, None),  # a run that was there before: the usual refusal
        (0, "job", True, None),  # no restart
    ],
)
def test_a_restarted_torchrun_job_resumes_its_own_run(
    monkeypatch, tmp_path, restarts, writer, checkpoint, want
):
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", str(restarts))
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")
    run = a_run(tmp_path / "run", writer, checkpoint)
    launch = plan_launch(out=run, preset="tiny")
    if want == "resume":
        assert launch == Launch(None, run, False, None, restart=1)
    else:
        assert launch == Launch(run, None, want == "overwrite", "tiny")
    assert launch.run_dir(train_config({"steps": 1})) == run


def test_a_new_folder_is_named_for_the_time_and_the_data_set():
    folder = default_run_dir("folder:/data/My Photos")
    assert folder.parent == Path("runs")
    assert re.fullmatch(r"\d{8}-\d{6}-My-Photos", folder.name), folder.name
    cfg = train_config({"dataset": "npz:/a/b.npz", "steps": 1})
    assert Launch().run_dir(cfg).name.endswith("-b-npz")
