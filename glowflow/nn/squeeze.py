"""Squeeze (2x2 space-to-depth) and its inverse.

Channel order: input pixel ``(c, 2i + di, 2j + dj)`` lands at output channel
``c * 4 + di * 2 + dj`` and position ``(i, j)``, i.e. the four sub-pixels of one input channel are
consecutive output channels (the order of the original Glow code).
"""

from __future__ import annotations

import torch
from torch import nn


def squeeze2d(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W) -> (B, 4C, H/2, W/2)``, in the channel order of the module docstring."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 2, 2, w // 2, 2)
    x = x.permute(0, 1, 3, 5, 2, 4)  # (B, C, 2, 2, H/2, W/2)
    return x.reshape(b, c * 4, h // 2, w // 2)


def unsqueeze2d(x: torch.Tensor) -> torch.Tensor:
    """``(B, 4C, H, W) -> (B, C, 2H, 2W)``: the exact inverse of ``squeeze2d``."""
    b, c, h, w = x.shape
    x = x.reshape(b, c // 4, 2, 2, h, w)
    x = x.permute(0, 1, 4, 2, 5, 3)  # (B, C, H, 2, W, 2)
    return x.reshape(b, c // 4, h * 2, w * 2)


class Squeeze(nn.Module):
    """``squeeze2d`` as a layer with the flow contract (log-det 0)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return squeeze2d(x), x.new_zeros(x.shape[0])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return unsqueeze2d(z), z.new_zeros(z.shape[0])
