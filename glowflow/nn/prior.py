"""Learned Gaussian priors: the multi-scale split and the top of the flow.

Both are written as bijections onto the *standardised* latent ``eps = (z - mu) / sigma``, with
log-det ``-sum(log sigma)``. Then ``log p(z) = log N(eps; 0, I) - sum(log sigma)``, so the whole
model's density is a standard normal log-density of ``eps`` plus the sum of every layer's log-det,
and scaling ``eps`` by a temperature scales every level's prior standard deviation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from glowflow.nn.coupling import ZeroConv2d
from glowflow.nn.precision import full_precision


def standard_normal_logp(eps: torch.Tensor) -> torch.Tensor:
    """``log N(eps; 0, I)`` summed over all non-batch dimensions: shape ``[B]``."""
    return -0.5 * (eps.pow(2) + math.log(2 * math.pi)).flatten(1).sum(1)


class SplitPrior(nn.Module):
    """Multi-scale split: the last ``C - C//2`` channels leave the flow as a latent.

    ``x = [x_a, x_b]`` on channels; ``mu, log sigma = ZeroConv(x_a)``; output is
    ``[x_a, (x_b - mu) / sigma]``, same shape as the input, and the caller peels the second part
    off as that level's standardised latent. log-det ``= -sum(log sigma)`` over ``(C_b, H, W)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.keep = channels // 2
        self.net = ZeroConv2d(self.keep, 2 * (channels - self.keep))

    def _stats(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with full_precision(x_a):
            mean, logs = self.net(x_a).chunk(2, dim=1)
        return mean, logs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = x[:, : self.keep], x[:, self.keep :]
        mean, logs = self._stats(x_a)
        eps = (x_b - mean) * torch.exp(-logs)
        return torch.cat([x_a, eps], dim=1), -logs.flatten(1).sum(1)

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z_a, eps = z[:, : self.keep], z[:, self.keep :]
        mean, logs = self._stats(z_a)
        x_b = eps * torch.exp(logs) + mean
        return torch.cat([z_a, x_b], dim=1), logs.flatten(1).sum(1)


class TopPrior(nn.Module):
    """Prior of the top latent ``z`` of shape ``(C, H, W)``: ``N(mu, sigma)`` per channel.

    ``mu, log sigma`` start at zero (a standard normal). With ``learn_top`` they come from a
    zero-initialised convolution of a zero input, as in the paper; with ``num_classes`` a
    zero-initialised linear map of the one-hot label is added, making the model
    class-conditional. forward maps ``z -> eps = (z - mu) / sigma`` with log-det
    ``-sum(log sigma)``.
    """

    def __init__(
        self, shape: tuple[int, int, int], learn_top: bool, num_classes: int | None
    ) -> None:
        super().__init__()
        c = shape[0]
        self.shape = shape
        self.num_classes = num_classes
        self.learn = ZeroConv2d(2 * c, 2 * c) if learn_top else None
        if num_classes is not None:
            self.label_proj = nn.Linear(num_classes, 2 * c)
            nn.init.zeros_(self.label_proj.weight)
            nn.init.zeros_(self.label_proj.bias)
        else:
            self.label_proj = None

    def stats(
        self, batch: int, y: torch.Tensor | None, like: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``mu, log sigma``, each ``(B, C, H, W)`` (broadcast over the batch if unlabelled)."""
        c, h, w = self.shape
        with full_precision(like):
            stats = like.new_zeros(1, 2 * c, h, w)
            if self.learn is not None:
                stats = self.learn(stats)
            if self.label_proj is not None and y is not None:
                onehot = F.one_hot(y, self.num_classes).to(like.dtype)
                stats = stats + self.label_proj(onehot)[:, :, None, None]
        stats = stats.expand(batch, -1, -1, -1)
        mean, logs = stats.chunk(2, dim=1)
        return mean, logs

    def forward(
        self, z: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logs = self.stats(z.shape[0], y, z)
        return (z - mean) * torch.exp(-logs), -logs.flatten(1).sum(1)

    def inverse(
        self, eps: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logs = self.stats(eps.shape[0], y, eps)
        return eps * torch.exp(logs) + mean, logs.flatten(1).sum(1)

    def marginal_logp(self, z: torch.Tensor) -> torch.Tensor:
        """``log sum_y p(y) p(z | y)`` under a uniform label prior: shape ``[B]``.

        Only this prior depends on the label, so a class-conditional Glow's unconditional
        density is exact and costs one pass of the flow plus ``num_classes`` prior evaluations.
        """
        assert self.num_classes is not None
        b = z.shape[0]
        labels = torch.arange(self.num_classes, device=z.device)
        per_class = []
        for k in range(self.num_classes):
            eps, logdet = self.forward(z, labels[k].expand(b))
            per_class.append(standard_normal_logp(eps) + logdet)
        return torch.logsumexp(torch.stack(per_class, 1), 1) - math.log(self.num_classes)
