"""Step figures read back in bulk, NaN accounting and the log window."""

from __future__ import annotations

import pytest
import torch

from glowflow.train.rundir import RunDir
from glowflow.train.steplog import LogWindow, MetricsLog, PendingSteps, StepResult, TrainError


def result(loss: float) -> StepResult:
    t = torch.tensor(loss)
    return StepResult(t, t, torch.tensor(1.0), ~torch.isfinite(t))


def test_skipped_steps_are_counted_and_a_run_of_them_stops_training():
    pending = PendingSteps(max_nan_steps=3)
    for loss in (2.0, float("nan"), 1.0, float("nan"), float("nan")):
        pending.add(result(loss))
    assert pending.read(step=5) == [(2.0, 2.0, 1.0), (1.0, 1.0, 1.0)]
    assert pending.nan_skipped == 3 and len(pending) == 0
    pending.add(result(float("inf")))
    with pytest.raises(TrainError, match="3 steps in a row at step 5"):
        pending.read(step=6)


def test_log_window_counts_every_image_of_every_step(monkeypatch):
    clock = iter([10.0, 12.0, 13.0])
    monkeypatch.setattr("glowflow.train.steplog.time.perf_counter", lambda: next(clock))
    window = LogWindow(global_batch=8)
    window.figures = [(2.0, 1.0, 3.0), (4.0, 3.0, 5.0)]
    window.steps = 3  # one of the three steps was skipped
    line = window.line()
    assert line["loss"] == 3.0 and line["bpd"] == 2.0 and line["grad_norm"] == 4.0
    assert line["images_per_s"] == 3 * 8 / 2.0  # skipped steps' images count too
    assert window.steps == 0 and window.figures == []
    assert "bpd" not in window.line()  # a window of skipped steps has no figures to average


def test_only_the_writing_process_writes_metrics(tmp_path):
    run = RunDir(tmp_path)
    MetricsLog(run, tensorboard=False, log=print, writes=False).write({"step": 1, "bpd": 2.0})
    assert not run.metrics.exists()
    MetricsLog(run, tensorboard=False, log=print).write({"step": 1, "bpd": 2.0})
    assert run.read_metrics() == [{"step": 1, "bpd": 2.0}]
