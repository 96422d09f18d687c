"""An exponential moving average of a model's weights, used for evaluation and samples."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def _lerp_all_(targets: list[torch.Tensor], sources: list[torch.Tensor], weight: torch.Tensor):
    """``t += weight * (s - t)`` for every pair, ``weight`` a 0-d tensor on the device.

    ``torch._foreach_lerp_`` does this for all the tensors in one call, and it is private: no
    public function updates a list of tensors at once. Where this torch's version does not take
    a tensor weight, the public per-tensor ``lerp_`` does the same, one call per tensor.
    """
    try:
        torch._foreach_lerp_(targets, sources, weight)
    except (TypeError, RuntimeError):
        for t, s in zip(targets, sources):
            t.lerp_(s, weight)


class EMA:
    """A copy of ``model`` whose weights follow the model's: ``w_ema += (1 - d) (w - w_ema)``.

    The decay ``d`` ramps up as ``min(decay, (1 + step) / (10 + step))`` so that the early,
    fast-moving weights are not averaged in for long. Buffers (actnorm's init flag, the fixed
    permutations) are copied as they are. A skipped step (a NaN or inf somewhere) leaves the
    average alone; the decision is a tensor on the device, so no step waits for it.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()

    def reset(self, model: nn.Module) -> None:
        """Start the average again at ``model``'s weights."""
        self.module.load_state_dict(model.state_dict())

    @torch.no_grad()
    def update(self, model: nn.Module, step: int, skipped: torch.Tensor) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        params = list(self.module.parameters())
        weight = (1 - decay) * (~skipped).to(params[0].dtype)
        _lerp_all_(params, list(model.parameters()), weight)
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, Any]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state)
