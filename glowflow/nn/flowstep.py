"""One step of flow: actnorm -> channel permutation -> coupling."""

from __future__ import annotations

import torch
from torch import nn

from glowflow.config import COUPLINGS, PERMUTATIONS
from glowflow.nn.actnorm import ActNorm
from glowflow.nn.coupling import AdditiveCoupling, AffineCoupling
from glowflow.nn.invconv import ChannelPermutation, InvConv1x1, InvConv1x1LU


def make_permutation(kind: str, channels: int) -> nn.Module:
    """The channel mixing layer named by ``kind`` (one of ``PERMUTATIONS``)."""
    if kind == "lu":
        return InvConv1x1LU(channels)
    if kind == "conv":
        return InvConv1x1(channels)
    if kind in ("shuffle", "reverse"):
        return ChannelPermutation(channels, kind)
    raise ValueError(f"permutation must be one of {PERMUTATIONS}, got {kind!r}")


def make_coupling(kind: str, channels: int, hidden_channels: int) -> nn.Module:
    """The coupling layer named by ``kind`` (one of ``COUPLINGS``)."""
    if kind == "affine":
        return AffineCoupling(channels, hidden_channels)
    if kind == "additive":
        return AdditiveCoupling(channels, hidden_channels)
    raise ValueError(f"coupling must be one of {COUPLINGS}, got {kind!r}")


class FlowStep(nn.Module):
    """``actnorm -> permutation -> coupling`` on ``(B, C, H, W)``; log-dets add up.

    Holds no per-call state, so its input can be recomputed from its output with
    ``inverse`` (memory-saving backprop).
    """

    def __init__(
        self, channels: int, hidden_channels: int, coupling: str = "affine", permutation: str = "lu"
    ) -> None:
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.permute = make_permutation(permutation, channels)
        self.coupling = make_coupling(coupling, channels, hidden_channels)

    @property
    def head(self) -> _Head:
        """The step before its coupling (actnorm and permutation), as one invertible layer."""
        return _Head(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, ld_norm = self.actnorm(x)
        x, ld_perm = self.permute(x)
        z, ld_coupling = self.coupling(x)
        return z, ld_norm + ld_perm + ld_coupling

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, ld_coupling = self.coupling.inverse(z)
        z, ld_perm = self.permute.inverse(z)
        x, ld_norm = self.actnorm.inverse(z)
        return x, ld_norm + ld_perm + ld_coupling


class _Head:
    """``actnorm -> permutation`` of a ``FlowStep``, with the layer contract."""

    def __init__(self, step: FlowStep) -> None:
        self.step = step

    def parameters(self):
        yield from self.step.actnorm.parameters()
        yield from self.step.permute.parameters()

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, ld_norm = self.step.actnorm(x)
        x, ld_perm = self.step.permute(x)
        return x, ld_norm + ld_perm

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, ld_perm = self.step.permute.inverse(z)
        x, ld_norm = self.step.actnorm.inverse(z)
        return x, ld_norm + ld_perm
