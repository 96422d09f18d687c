"""The training loss: bits/dim, the classification term in bits, the dtype of the sums."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import randomize_

from glowflow.config import GlowConfig
from glowflow.hub.model import Glow
from glowflow.train.loss import Objective, at_least_float32, training_loss


@pytest.fixture
def model() -> Glow:
    config = GlowConfig(image_shape=(1, 8, 8), levels=2, depth=1, hidden_channels=8, num_classes=3)
    g = torch.Generator().manual_seed(0)
    model = Glow.from_config(config)
    model.initialize(torch.rand(16, 1, 8, 8, generator=g) - 0.5, torch.arange(16) % 3)
    return randomize_(model)


def test_the_loss_is_bits_per_dim_plus_the_weighted_cross_entropy_in_bits(model):
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)) - 0.5
    y = torch.tensor([0, 1, 2, 0])
    logp, logits = model.log_prob_and_logits(x, y)
    want_bpd = (-(logp - 64 * math.log(256)) / (64 * math.log(2))).mean()
    loss, bpd = training_loss(Objective(model), model, x, y, y_weight=0.5)
    assert torch.allclose(bpd, want_bpd)
    assert torch.allclose(loss, want_bpd + 0.5 * F.cross_entropy(logits, y) / math.log(2))
    loss, bpd = training_loss(Objective(model), model, x, y, y_weight=0.0)
    assert torch.equal(loss, bpd)


def test_bf16_couplings_still_sum_in_float32_and_float64_stays_float64(model):
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(2)) - 0.5
    y = torch.tensor([0, 1, 2, 0])
    f32 = Glow.from_config(model.config).float()
    f32.load_state_dict(model.state_dict())
    loss, bpd = training_loss(Objective(f32), f32, x.float(), y, 0.5, bf16=True)
    assert loss.dtype == bpd.dtype == torch.float32
    exact, _ = training_loss(Objective(f32), f32, x.float(), y, 0.5)
    assert loss.item() == pytest.approx(exact.item(), rel=1e-2)
    assert at_least_float32(torch.zeros(2, dtype=torch.bfloat16)).dtype == torch.float32
    assert at_least_float32(torch.zeros(2, dtype=torch.float64)).dtype == torch.float64
