"""What is due after a step: lines, validations, grids, checkpoints, and reading in time."""

from __future__ import annotations

from glowflow.config import TrainConfig
from glowflow.train.cadence import due_after


def test_each_job_comes_at_its_interval_and_zero_means_none_during_the_run():
    cfg = TrainConfig(log_every=2, eval_every=3, sample_every=0, checkpoint_every=4)
    due = {step: due_after(cfg, step, unread=1) for step in range(1, 13)}
    assert [s for s, d in due.items() if d.log] == [2, 4, 6, 8, 10, 12]
    assert [s for s, d in due.items() if d.evaluate] == [3, 6, 9, 12]
    assert [s for s, d in due.items() if d.checkpoint] == [4, 8, 12]
    assert not any(d.sample for d in due.values())
    cfg = TrainConfig(sample_every=5, eval_every=0, checkpoint_every=0)
    assert due_after(cfg, 10, 1).sample and not due_after(cfg, 10, 1).evaluate
    assert not due_after(cfg, 500, 1).checkpoint


def test_the_figures_are_read_for_a_line_a_checkpoint_or_after_max_nan_steps():
    cfg = TrainConfig(log_every=100, checkpoint_every=30, max_nan_steps=5)
    assert not due_after(cfg, 7, unread=4).read
    assert due_after(cfg, 7, unread=5).read  # a run gone bad must stop in time
    assert due_after(cfg, 30, unread=1).read  # never a checkpoint of unchecked steps
    assert due_after(cfg, 100, unread=1).read
