"""Bits/dim of a model over a whole data set."""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from glowflow import seeding
from glowflow.distributed import DistInfo, all_reduce_sum
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
    dist_info: DistInfo | None = None,
) -> float:
    """Mean bits/dim of uint8 ``images (N, C, H, W)``, averaged over every image.

    Batch ``k`` draws its dequantisation noise from its own generator (``seed``, ``k``), so
    the figure is reproducible and does not depend on how the batches are shared out: under
    ``torchrun`` (``dist_info``) each process takes every ``world_size``-th batch and the sums
    are reduced, giving the single-process value. ``labels`` are used only by
    class-conditional models (else the marginal density). ``progress`` wraps the batch
    iterator (e.g. a progress bar) and gets the batch count.
    """
    info = dist_info or DistInfo()
    was_training = model.training
    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    n_bits = model.config.n_bits
    batches = list(enumerate(range(0, len(images), batch_size)))[info.rank :: info.world_size]
    it = progress(batches, len(batches)) if progress else batches
    total = torch.zeros((), dtype=torch.float64, device=device)
    for k, s in it:
        g = seeding.generator(seed, k, seeding.EVAL)
        x = preprocess(images[s : s + batch_size], n_bits, generator=g, dtype=dtype).to(device)
        y = None
        if labels is not None and model.config.num_classes is not None:
            y = labels[s : s + batch_size].to(device)
        total += model.bits_per_dim(x, y).double().sum()
    model.train(was_training)
    return (all_reduce_sum(total, info) / len(images)).item()
