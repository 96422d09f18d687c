"""Bits/dim of a model over a whole data set."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import torch

from glowflow import seeding
from glowflow.distributed import DistInfo, all_reduce_sum
from glowflow.nn.model import GlowFlow
from glowflow.nn.objective import preprocess


def eval_batches(
    model: GlowFlow,
    images: torch.Tensor,
    batch_size: int,
    seed: int,
    device: torch.device,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    dist_info: DistInfo | None = None,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(start, uint8 batch, dequantised model input on device)`` for each batch of
    ``images``, the noise of batch ``k`` drawn from its own generator (``seed``, ``k``), so
    figures are reproducible and do not depend on how the batches are shared out: under
    torchrun (``dist_info``) this process takes every ``world_size``-th batch. ``progress``
    wraps the batch iterator and gets the batch count. Run with the model in eval mode."""
    info = dist_info or DistInfo()
    dtype = next(model.parameters()).dtype
    n_bits = model.config.n_bits
    batches = list(enumerate(range(0, len(images), batch_size)))[info.rank :: info.world_size]
    it = progress(batches, len(batches)) if progress else batches
    for k, s in it:
        batch = images[s : s + batch_size]  # a tensor, also from a store
        g = seeding.generator(seed, k, seeding.EVAL)
        yield s, batch, preprocess(batch, n_bits, generator=g, dtype=dtype).to(device)


@torch.no_grad()
def evaluate_bpd(
    model: GlowFlow,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    dist_info: DistInfo | None = None,
) -> float:
    """Mean bits/dim of uint8 ``images (N, C, H, W)``, averaged over every image.

    The batches and their noise are those of :func:`eval_batches`; under ``torchrun``
    (``dist_info``) the sums are reduced, giving the single-process value. ``labels`` are used
    only by class-conditional models (else the marginal density).
    """
    was_training = model.training
    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    total = torch.zeros((), dtype=torch.float64, device=device)
    for s, batch, x in eval_batches(model, images, batch_size, seed, device, progress, dist_info):
        y = None
        if labels is not None and model.config.num_classes is not None:
            y = labels[s : s + len(batch)].to(device)
        total += model.bits_per_dim(x, y).double().sum()
    model.train(was_training)
    return (all_reduce_sum(total, dist_info or DistInfo()) / len(images)).item()
