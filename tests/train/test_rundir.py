"""The run folder: refusals before anything is written, atomic writes, metrics round trips."""

from __future__ import annotations

import json

import pytest

from glowflow.hub.checkpoint import CHECKPOINT_FILE, checkpoint_file
from glowflow.train.rundir import RunDir, RunDirError


def test_a_folder_that_cannot_take_the_run_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="is a file"):
        RunDir(tmp_path / "file").check(resume=False, overwrite=False)
    with pytest.raises(RunDirError, match="no checkpoint.pt"):
        RunDir(tmp_path / "empty").check(resume=True, overwrite=False)
    run = RunDir(tmp_path / "run")
    run.start({"train": {}}, overwrite=False)
    with pytest.raises(RunDirError, match="already holds a run"):
        run.check(resume=False, overwrite=False)
    run.check(resume=False, overwrite=True)  # allowed, and nothing removed yet
    assert (tmp_path / "run" / "config.json").is_file()


def test_overwrite_clears_the_old_run_only_when_the_new_one_starts(tmp_path):
    run = RunDir(tmp_path / "run")
    run.start({"n": 1}, overwrite=False)
    run.append_metrics({"step": 1, "bpd": 3.0})
    run.sample_path(1).parent.mkdir()
    run.sample_path(1).write_bytes(b"png")
    (tmp_path / "run" / "notes.txt").write_text("the user's own file")
    run.start({"n": 2}, overwrite=True)
    assert run.read_config() == {"n": 2}
    assert run.read_metrics() == [] and not run.sample_path(1).exists()
    assert (tmp_path / "run" / "notes.txt").read_text() == "the user's own file"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.json", "notes.txt"]


def test_metrics_are_read_back_and_trimmed_on_resume(tmp_path):
    run = RunDir(tmp_path)
    for step in (1, 2, 3):
        run.append_metrics({"step": step, "bpd": 4.0 - step})
    with open(run.metrics, "a") as f:
        f.write('{"step": 4, "bp')  # a line torn by a crash
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3]
    run.trim_metrics(2)
    assert [json.loads(line)["step"] for line in run.metrics.open()] == [1, 2]


def test_os_errors_become_one_line_run_folder_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    blocked = RunDir(tmp_path / "file" / "run")  # its parent is a file: nothing can go there
    with pytest.raises(RunDirError, match="cannot write the run folder") as info:
        blocked.start({}, overwrite=False)
    assert "\n" not in str(info.value)
    with pytest.raises(RunDirError, match="cannot write .*summary.json"):
        blocked.write_summary({"step": 1})
    with pytest.raises(RunDirError, match="holds no run"):
        RunDir(tmp_path / "nothing").read_config()


def test_every_file_of_a_run_is_named_by_the_run_folder(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.checkpoint == tmp_path / "run" / CHECKPOINT_FILE  # the hub's rule for folders
    names = {run.config, run.checkpoint, run.metrics, run.summary, run.learning_curve,
             run.tensorboard, run.sample_path(3).parent}  # fmt: skip
    assert len(names) == 7 and all(p.parent == run.path for p in names)
    assert run.sample_path(3).name == "step_0000003.png"
    run.start({"train": {}}, overwrite=False)
    assert not run.has_checkpoint() and not run.is_finished()
    with pytest.raises(RunDirError, match="holds no finished run"):
        run.read_summary()
    run.write_summary({"step": 3, "val_bpd": 2.5})
    assert run.is_finished() and run.read_summary() == {"step": 3, "val_bpd": 2.5}
    run.write_checkpoint({"step": 3})
    assert run.has_checkpoint() and checkpoint_file(run.path) == run.checkpoint
