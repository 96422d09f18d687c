"""The training bar: steps against a step budget, the time budget's seconds otherwise."""

from __future__ import annotations

from glowflow.progress import TrainingProgress


def test_a_step_budget_counts_steps():
    bar = TrainingProgress(True, total_steps=100, budget_s=None, step=10)
    assert bar.bar.total == 100 and bar.bar.n == 10
    bar.update(step=25, elapsed=3.0)
    bar.show(1.5, 1.4)
    assert bar.bar.n == 25 and "bpd" in str(bar.bar)
    bar.close()


def test_a_time_budget_fills_with_the_time_and_shows_the_step():
    bar = TrainingProgress(True, total_steps=None, budget_s=240.0, step=0, elapsed=30.0)
    assert bar.by_time and bar.bar.total == 240 and bar.bar.n == 30
    bar.update(step=500, elapsed=120.4)
    bar.show(1.5, 1.4)
    text = str(bar.bar)
    assert bar.bar.n == 120 and "of the budget" in text and "step=500" in text and "left" in text
    bar.update(step=900, elapsed=999.0)  # past the budget: full, never beyond
    assert bar.bar.n == 240
    bar.close()


def test_disabled_bar_does_nothing():
    bar = TrainingProgress(False, total_steps=None, budget_s=60.0)
    bar.update(3, 1.0)
    bar.show(1.0, 1.0)
    bar.close()
    assert bar.bar is None
