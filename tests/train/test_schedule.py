"""The budget and the learning rate: warm-up, then constant or cosine over the budget."""

from __future__ import annotations

import math

import pytest

from glowflow.config import TrainConfig
from glowflow.train.schedule import budget_fraction, learning_rate, total_steps


def test_total_steps_is_the_smaller_of_steps_and_epochs():
    assert total_steps(TrainConfig(steps=100), steps_per_epoch=30) == 100
    assert total_steps(TrainConfig(steps=100, epochs=2), steps_per_epoch=30) == 60
    assert total_steps(TrainConfig(epochs=0.01), steps_per_epoch=30) == 1
    assert total_steps(TrainConfig(max_time=5), steps_per_epoch=30) is None


def test_warm_up_then_cosine_over_the_step_budget():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, lr_schedule="cosine", steps=100)
    assert learning_rate(cfg, 0, 0.0, 100) == pytest.approx(0.1 * math.cos(0) ** 2)
    assert learning_rate(cfg, 50, 0.0, 100) == pytest.approx(0.5)
    assert learning_rate(cfg, 100, 0.0, 100) == pytest.approx(0.0)
    const = TrainConfig(lr=1.0, warmup_steps=10, lr_schedule="constant", steps=100)
    assert learning_rate(const, 4, 0.0, 100) == pytest.approx(0.5)
    assert learning_rate(const, 90, 0.0, 100) == 1.0


def test_the_time_budget_decays_the_rate_too():
    cfg = TrainConfig(lr=1.0, warmup_steps=0, max_time=2.0)  # two minutes
    assert budget_fraction(cfg, 10, 60.0, None) == 0.5
    assert learning_rate(cfg, 10, 60.0, None) == pytest.approx(0.5)
    both = TrainConfig(lr=1.0, warmup_steps=0, max_time=2.0, steps=1000)
    assert budget_fraction(both, 900, 60.0, 1000) == 0.9  # whichever is further along
    assert budget_fraction(both, 10, 500.0, 1000) == 1.0
