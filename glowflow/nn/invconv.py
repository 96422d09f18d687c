"""Channel permutations: the invertible 1x1 convolution (plain and LU) and fixed baselines."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from glowflow.nn.precision import full_precision


def random_rotation(channels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random orthogonal matrix with det +1 (float64), the paper's initial ``W``."""
    a = torch.randn(channels, channels, dtype=torch.float64, generator=generator)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # make the factorisation unique
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def mix_channels(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``z[:, i] = sum_j weight[i, j] x[:, j]`` at every pixel: a 1x1 convolution.

    On an NCHW tensor this is one batched matrix product over the ``H*W`` pixels: oneDNN's 1x1
    convolution of so few channels is far slower there (forward and backward, 2.8 ms against
    0.26 ms for the 12 channels of a CIFAR-10 model's first level, batch 64, 2-core CPU). The
    product is the same whether or not autograd records it, so the memory-saving pass gets the
    very same numbers. Any other layout (channels-last) and other devices go to the
    convolution.
    """
    if x.device.type == "cpu" and x.is_contiguous():
        flat = x.flatten(2)  # (B, C, H*W)
        return torch.bmm(weight.expand(x.shape[0], -1, -1), flat).view_as(x)
    return F.conv2d(x, weight[:, :, None, None])


def inverse_weight(weight: torch.Tensor) -> torch.Tensor:
    """``weight^-1``, computed in float64 and cast back to ``weight``'s dtype.

    Computed at every use, never cached: a cache of it would have to know of every write to the
    weights, and some writers tell nobody (the fused Adam kernel writes parameters without
    bumping their version counters). On a 2-core CPU one inverse of up to 96 channels takes
    tens to about a hundred microseconds: 1-2% of a 64-image sample or a memory-saving training
    step, about 10% of a single image's decode (``benchmarks/bench_inverse.py``).
    ``inv_ex`` does not check for a singular matrix, so on a GPU it does not wait for the device;
    a singular ``W`` gives infinities, which a training step's NaN/inf check skips.
    """
    return torch.linalg.inv_ex(weight.double()).inverse.to(weight.dtype)


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution with a full weight ``W`` of shape ``(C, C)``.

    ``z[:, i] = sum_j W[i, j] x[:, j]`` at every pixel; log-det ``= H * W * log|det W|``.
    ``log|det W|`` and ``W^-1`` are computed in float64 and cast back, since float32 LU of a
    learned matrix loses digits that the likelihood then inherits.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(random_rotation(channels).to(torch.get_default_dtype()))

    def _logabsdet(self) -> torch.Tensor:
        return torch.linalg.slogdet(self.weight.double())[1].to(self.weight.dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with full_precision(x):
            z = mix_channels(x, self.weight)
            logdet = x.shape[2] * x.shape[3] * self._logabsdet()
        return z, logdet.expand(x.shape[0])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with full_precision(z):
            w_inv = inverse_weight(self.weight)
            x = mix_channels(z, w_inv)
            logdet = -z.shape[2] * z.shape[3] * self._logabsdet()
        return x, logdet.expand(z.shape[0])


class InvConv1x1LU(nn.Module):
    """Invertible 1x1 convolution parameterised as ``W = P L (U + diag(sign(s) * exp(log|s|)))``.

    ``P`` (a permutation) and ``sign(s)`` are fixed buffers; ``L`` is unit lower-triangular,
    ``U`` strictly upper-triangular and ``log|s|`` is learned, so
    log-det ``= H * W * sum(log|s|)`` costs O(C) instead of O(C^3).
    Initialised from the LU factors of a random rotation, like ``InvConv1x1``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        w = random_rotation(channels)
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        dtype = torch.get_default_dtype()
        self.register_buffer("perm", p.to(dtype))
        self.register_buffer("sign_s", torch.sign(s).to(dtype))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(lower.to(dtype))
        self.upper = nn.Parameter(torch.triu(upper, 1).to(dtype))
        self.log_s = nn.Parameter(torch.log(torch.abs(s)).to(dtype))

    def weight(self) -> torch.Tensor:
        """The assembled ``(C, C)`` weight."""
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with full_precision(x):
            z = mix_channels(x, self.weight())  # W assembled once per call
            logdet = x.shape[2] * x.shape[3] * self.log_s.sum()
        return z, logdet.expand(x.shape[0])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with full_precision(z):
            w_inv = inverse_weight(self.weight())
            x = mix_channels(z, w_inv)
            logdet = -z.shape[2] * z.shape[3] * self.log_s.sum()
        return x, logdet.expand(z.shape[0])


class ChannelPermutation(nn.Module):
    """A fixed channel permutation (log-det 0): the paper's reversal and shuffle baselines.

    Args:
        channels: number of channels ``C``.
        mode: ``"reverse"`` (``z[:, i] = x[:, C-1-i]``) or ``"shuffle"`` (a random permutation
            drawn once at construction and stored as a buffer).
    """

    def __init__(self, channels: int, mode: str = "reverse") -> None:
        super().__init__()
        if mode == "reverse":
            perm = torch.arange(channels - 1, -1, -1)
        elif mode == "shuffle":
            perm = torch.randperm(channels)
        else:
            raise ValueError(f"permutation mode must be 'reverse' or 'shuffle', got {mode!r}")
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return z[:, self.inv_perm], z.new_zeros(z.shape[0])
