"""Affine and additive coupling layers and the network that parameterises them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from glowflow.nn.actnorm import ActNorm


class ZeroConv2d(nn.Module):
    """A zero-initialised convolution whose output is scaled by ``exp(3 * logs)`` per channel.

    Starting at zero makes the layer it feeds the identity (couplings) or a standard normal
    (priors); the ``exp(3 * logs)`` factor lets the output scale be learned quickly.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.logs = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # conv(x) * e == conv with weight * e and bias * e: the scale is folded into the
        # (small) weights instead of costing a pass over the (large) output
        scale = torch.exp(3.0 * self.logs).reshape(-1)  # (C_out,)
        weight = self.conv.weight * scale[:, None, None, None]
        return F.conv2d(x, weight, self.conv.bias * scale, padding=self.conv.padding)


def conv_actnorm(x: torch.Tensor, conv: nn.Conv2d, norm: ActNorm) -> torch.Tensor:
    """``actnorm(conv(x))`` as one convolution: ``(conv(x) + b) * e^s`` is the convolution with
    weight ``W * e^s`` and bias ``b * e^s``, per output channel.

    Folding costs O(weights) instead of two passes over the output, and the convolution's
    output is the only activation kept. Actnorm's data-dependent initialisation still sees the
    plain ``conv(x)``.
    """
    if norm._needs_init():
        norm._initialize(conv(x))
    scale = torch.exp(norm.logs).reshape(-1)  # (C_out,)
    weight = conv.weight * scale.to(conv.weight.dtype)[:, None, None, None]
    return F.conv2d(x, weight, norm.bias.reshape(-1) * scale, padding=conv.padding)


class _ReLU(torch.autograd.Function):
    """ReLU in place, whose backward also works in place, on the incoming gradient.

    Its input is a convolution's fresh output and its gradient a convolution's fresh input
    gradient, each used by nothing else, so neither needs a copy. Writing into them saves two
    activation-sized allocations per layer, which on a CPU cost more than the arithmetic
    (every fresh page is faulted in and zeroed by the kernel).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.relu_()
        ctx.mark_dirty(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        if not grad.is_contiguous(memory_format=_layout(out)):
            return torch.ops.aten.threshold_backward(grad, out, 0)
        return torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=grad)


def _layout(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not (
        x.is_contiguous()) else torch.contiguous_format  # fmt: skip


def relu_(x: torch.Tensor) -> torch.Tensor:
    """``max(x, 0)`` written into ``x`` (a tensor nothing else reads), in place also backward."""
    return _ReLU.apply(x) if torch.is_grad_enabled() and x.requires_grad else x.relu_()


class CouplingNet(nn.Module):
    """``conv3x3 -> actnorm -> ReLU -> conv1x1 -> actnorm -> ReLU -> ZeroConv3x3``.

    Maps ``(B, in_channels, H, W)`` to ``(B, out_channels, H, W)``; the last layer starts at zero.
    Each actnorm (and the last layer's output scale) is folded into its convolution's weights,
    and the ReLUs work in place: three convolutions and their outputs, nothing else of the
    hidden width.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden_channels, 3, padding=1, bias=False)
        self.norm1 = ActNorm(hidden_channels)
        self.conv2 = nn.Conv2d(hidden_channels, hidden_channels, 1, bias=False)
        self.norm2 = ActNorm(hidden_channels)
        self.out = ZeroConv2d(hidden_channels, out_channels)
        for conv in (self.conv1, self.conv2):
            nn.init.normal_(conv.weight, 0.0, 0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = relu_(conv_actnorm(x, self.conv1, self.norm1))  # (B, hidden, H, W)
        h = relu_(conv_actnorm(h, self.conv2, self.norm2))
        return self.out(h)


class AffineCoupling(nn.Module):
    """Affine coupling: ``z_a = x_a``, ``z_b = (x_b + t(x_a)) * sigmoid(r(x_a) + 2)``.

    ``x_a`` holds the first ``C // 2`` channels and ``x_b`` the rest; ``t`` and ``r`` are the two
    channel halves of one ``CouplingNet``. log-det ``= sum log sigmoid(r + 2)`` over
    ``(C_b, H, W)``. The ``+ 2`` starts the scale near 0.88, and the sigmoid keeps it in (0, 1),
    which is what makes deep affine Glow stable. A fresh layer is the identity shifted by 0 and
    scaled by ``sigmoid(2)``: the zero-initialised last convolution gives ``t = r = 0``.
    """

    def __init__(self, channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.split = channels // 2
        self.net = CouplingNet(self.split, 2 * (channels - self.split), hidden_channels)

    def _shift_logscale(self, x_a: torch.Tensor, dtype: torch.dtype):
        h = self.net(x_a).to(dtype)  # the net may run in lower precision under autocast
        shift, raw = h.chunk(2, dim=1)
        return shift, F.logsigmoid(raw + 2.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = x[:, : self.split], x[:, self.split :]
        shift, logscale = self._shift_logscale(x_a, x.dtype)
        z_b = (x_b + shift) * torch.exp(logscale)
        return torch.cat([x_a, z_b], dim=1), logscale.flatten(1).sum(1)

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z_a, z_b = z[:, : self.split], z[:, self.split :]
        shift, logscale = self._shift_logscale(z_a, z.dtype)
        x_b = z_b * torch.exp(-logscale) - shift
        return torch.cat([z_a, x_b], dim=1), -logscale.flatten(1).sum(1)

    def inverse_with_graph(self, z: torch.Tensor):
        """The input ``x`` recomputed from the output ``z``, as two leaves ``(x_a, x_b)`` that
        require grad, and ``(z, logdet)`` recomputed from them with autograd on; the network
        runs once for both (memory-saving backprop, ``glowflow.nn.backprop``)."""
        x_a = z[:, : self.split].detach().requires_grad_(True)  # z_a == x_a
        shift, logscale = self._shift_logscale(x_a, z.dtype)
        with torch.no_grad():
            x_b = z[:, self.split :] * torch.exp(-logscale) - shift
        x_b.requires_grad_(True)
        z_b = (x_b + shift) * torch.exp(logscale)
        return (x_a, x_b), (torch.cat([x_a, z_b], dim=1), logscale.flatten(1).sum(1))


class AdditiveCoupling(nn.Module):
    """Additive coupling (NICE): ``z_a = x_a``, ``z_b = x_b + t(x_a)``; log-det 0.

    A fresh layer is exactly the identity.
    """

    def __init__(self, channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.split = channels // 2
        self.net = CouplingNet(self.split, channels - self.split, hidden_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = x[:, : self.split], x[:, self.split :]
        z_b = x_b + self.net(x_a).to(x.dtype)
        return torch.cat([x_a, z_b], dim=1), x.new_zeros(x.shape[0])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z_a, z_b = z[:, : self.split], z[:, self.split :]
        x_b = z_b - self.net(z_a).to(z.dtype)
        return torch.cat([z_a, x_b], dim=1), z.new_zeros(z.shape[0])

    def inverse_with_graph(self, z: torch.Tensor):
        """As ``AffineCoupling.inverse_with_graph`` (the log-det is 0)."""
        x_a = z[:, : self.split].detach().requires_grad_(True)
        shift = self.net(x_a).to(z.dtype)
        x_b = (z[:, self.split :] - shift).detach().requires_grad_(True)
        z_b = x_b + shift
        return (x_a, x_b), (torch.cat([x_a, z_b], dim=1), z.new_zeros(z.shape[0]))
