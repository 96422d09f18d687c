"""The skippable step: a flagged step leaves weights and moments alone, without a read-back."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from glowflow.train.optim import load_optimizer_state, make_optimizer, step_unless


@pytest.mark.usefixtures("float32")
@pytest.mark.parametrize("name", ["adam", "adamax"])
def test_a_flagged_step_changes_nothing_and_a_clear_one_steps(name):
    model = nn.Linear(3, 2)
    optimizer, fused = make_optimizer(name, model, lr=0.1)
    assert fused == (name == "adam")  # fused Adam exists for CPU tensors in this torch

    def one_step(skip: bool) -> list[torch.Tensor]:
        model(torch.ones(4, 3)).sum().backward()
        step_unless(optimizer, fused, torch.tensor(skip))
        optimizer.zero_grad()
        return [p.detach().clone() for p in model.parameters()]

    start = [p.detach().clone() for p in model.parameters()]
    after_skip = one_step(True)
    assert all(torch.equal(a, b) for a, b in zip(start, after_skip))
    assert not hasattr(optimizer, "found_inf")
    after_step = one_step(False)
    assert not any(torch.equal(a, b) for a, b in zip(start, after_step))
    steps = [int(s["step"]) for s in optimizer.state.values()]
    assert steps == [1, 1]  # the skipped step was not counted


@pytest.mark.usefixtures("float32")
def test_saved_state_loads_into_an_optimiser_of_the_other_kind():
    model = nn.Linear(2, 2)
    fused_opt, _ = make_optimizer("adam", model, lr=0.1)
    model(torch.ones(1, 2)).sum().backward()
    fused_opt.step()
    plain = torch.optim.Adam(model.parameters(), lr=0.1)
    load_optimizer_state(plain, fused_opt.state_dict(), fused=False)
    assert plain.param_groups[0]["fused"] is None
    assert int(next(iter(plain.state.values()))["step"]) == 1
