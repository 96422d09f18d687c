"""The training loss: bits per dimension, plus the weighted classification loss of a
class-conditional model, with the model's forward pass as a module for DDP and compile."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from glowflow.hub.model import Glow
from glowflow.nn.objective import bits_per_dim


class Objective(nn.Module):
    """``(x, y) -> (log p(x | y), class logits)`` as a module's forward, for DDP to wrap.

    The labels were checked once when the data was loaded, so the model is told not to check
    their range again (that would read them back from the device on every step).
    """

    def __init__(self, model: Glow) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        return self.model.log_prob_and_logits(x, y, check_labels=False)


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32, or as it is if wider: a loss is summed in float32 at least (bf16 parts
    come up), and a float64 model's stays float64."""
    return t if t.dtype == torch.float64 else t.float()


def training_loss(
    objective: nn.Module,
    model: Glow,
    x: torch.Tensor,
    y: torch.Tensor | None,
    y_weight: float,
    bf16: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, bpd)`` of a batch, both scalars in bits.

    ``bpd`` is the mean bits per dimension of ``x`` under ``model``; the loss adds
    ``y_weight * CE(logits, y) / ln 2`` for a class-conditional model (cross-entropy in bits).
    ``objective`` computes the forward pass (``Objective``, or its DDP or compiled form);
    ``bf16`` runs it under bfloat16 autocast (the coupling networks), the sums in float32.
    """
    with torch.autocast(x.device.type, torch.bfloat16, enabled=bf16):
        logp, logits = objective(x, y)
    logp = at_least_float32(logp)
    bpd = bits_per_dim(logp, model.num_dims, model.config.n_bits).mean()
    loss = bpd
    if logits is not None and y_weight > 0:
        loss = loss + y_weight * F.cross_entropy(at_least_float32(logits), y) / math.log(2)
    return loss, bpd
