"""Bits/dim of a model over a whole data set."""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from glowflow.model import Glow
from glowflow.objective import preprocess


@torch.no_grad()
def evaluate_bpd(
    model: Glow,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> float:
    """Mean bits/dim of uint8 ``images (N, C, H, W)``, averaged over every image.

    The dequantisation noise is drawn from a generator seeded with ``seed``, so the figure is
    reproducible. ``labels`` are used only by class-conditional models (else the marginal).
    ``progress`` wraps the batch iterator (e.g. a progress bar) and gets the batch count.
    """
    was_training = model.training
    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    n_bits = model.config.n_bits
    g = torch.Generator().manual_seed(seed)
    starts = range(0, len(images), batch_size)
    it = progress(starts, len(starts)) if progress else starts
    total = torch.zeros((), dtype=torch.float64, device=device)
    for s in it:
        x = preprocess(images[s : s + batch_size], n_bits, generator=g, dtype=dtype).to(device)
        y = None
        if labels is not None and model.config.num_classes is not None:
            y = labels[s : s + batch_size].to(device)
        total += model.bits_per_dim(x, y).double().sum()
    model.train(was_training)
    return (total / len(images)).item()
