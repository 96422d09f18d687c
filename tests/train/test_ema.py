"""The weight average: its update, its warm-up, and skipped steps that leave it alone."""

from __future__ import annotations

import torch
from torch import nn

from glowflow.train.ema import EMA


def test_update_moves_towards_the_model_unless_the_step_was_skipped():
    model = nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    start = ema.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model, step=1000, skipped=torch.tensor(True))
    assert torch.equal(ema.module.weight, start)  # a skipped step changes nothing
    ema.update(model, step=1000, skipped=torch.tensor(False))
    assert torch.allclose(ema.module.weight, start + 0.1 * (model.weight - start))
    ema.reset(model)
    assert torch.equal(ema.module.weight, model.weight)


def test_decay_ramps_up_from_the_first_steps():
    model = nn.Linear(2, 2)
    ema = EMA(model, decay=0.999)
    start = ema.module.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model, step=0, skipped=torch.tensor(False))  # decay min(0.999, 1/10)
    assert torch.allclose(ema.module.weight, start + 0.9)


def test_buffers_are_copied_and_state_round_trips():
    model = nn.BatchNorm1d(2)
    ema = EMA(model, decay=0.5)
    model.running_mean.fill_(3.0)
    ema.update(model, step=5, skipped=torch.tensor(False))
    assert torch.equal(ema.module.running_mean, model.running_mean)
    other = EMA(nn.BatchNorm1d(2), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.module.running_mean, model.running_mean)
