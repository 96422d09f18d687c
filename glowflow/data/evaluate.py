"""Bits/dim of a model over a whole data set: one dequantisation draw, or the
importance-weighted estimate over several.

A model's bits/dim of a discrete image is a bound, taken at one uniform dequantisation draw
``u``: ``-log2 p(x + u) / D``. Averaging the *likelihoods* of ``K`` draws instead,
``-log2(mean_k p(x + u_k)) / D``, gives a bound at least as tight (Jensen's inequality), the
figure flow papers report with ``K`` draws; ``K = 1`` is the single draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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
    draw: int = 0,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(start, uint8 batch, dequantised model input on device)`` for each batch of
    ``images``, the noise of batch ``k`` drawn from its own generator (``seed``, ``k``,
    ``draw``; see ``glowflow.seeding.eval_generator``), so figures are reproducible and do
    not depend on how the batches are shared out: under torchrun (``dist_info``) this process
    takes every ``world_size``-th batch. ``progress`` wraps the batch iterator and gets the
    batch count. Run with the model in eval mode."""
    info = dist_info or DistInfo()
    dtype = next(model.parameters()).dtype
    n_bits = model.config.n_bits
    batches = list(enumerate(range(0, len(images), batch_size)))[info.rank :: info.world_size]
    it = progress(batches, len(batches)) if progress else batches
    for k, s in it:
        batch = images[s : s + batch_size]  # a tensor, also from a store
        g = seeding.eval_generator(seed, k, draw)
        yield s, batch, preprocess(batch, n_bits, generator=g, dtype=dtype).to(device)


def importance_weighted_bits(bits: torch.Tensor) -> torch.Tensor:
    """Bits per image ``(N,)`` of the mean likelihood of ``K`` draws, from the bits per image
    of each draw, ``(K, N)``: ``-log2(mean_k 2**(-bits_k))``, never above ``bits.mean(0)``."""
    k = bits.shape[0]
    return -torch.logsumexp(-bits.double() * math.log(2), dim=0) / math.log(2) + math.log2(k)


@dataclass(frozen=True)
class BitsEstimate:
    """Bits of a model over a data set.

    Attributes:
        bpd: mean bits/dim over the model's input (``dims`` dimensions an image).
        bits_per_image: the mean bits of a whole image, ``bpd * dims``.
        dims: the dimensions of the model's input, ``C * H * W``.
        samples: the dequantisation draws per image (1: a single draw; more: the
            importance-weighted estimate).
        n: the number of images.
    """

    bpd: float
    bits_per_image: float
    dims: int
    samples: int
    n: int

    def over(self, dims: int) -> float:
        """Bits/dim over ``dims`` dimensions an image, e.g. an image's pixels before padding."""
        return self.bits_per_image / dims

    def record(self, original_dims: int | None = None) -> dict[str, float | int]:
        """``glowflow eval --json``'s record: ``bpd`` over the model's input (``dims``),
        ``bits_per_image``, ``samples`` and ``n``; with ``original_dims`` (the pixels of an
        image before its padding), ``bpd_original`` over those too."""
        out: dict[str, float | int] = {
            "bpd": self.bpd, "n": self.n, "samples": self.samples, "dims": self.dims,
            "bits_per_image": self.bits_per_image,
        }  # fmt: skip
        if original_dims is not None:
            out.update(bpd_original=self.over(original_dims), original_dims=original_dims)
        return out


@torch.no_grad()
def image_bits(
    model: GlowFlow,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    dist_info: DistInfo | None = None,
    samples: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bits of each image this process evaluates, float64 on the CPU, and their indices.

    The batches and noise are those of ``eval_batches``; with ``samples > 1`` each image
    gets that many draws and the importance-weighted estimate
    (``importance_weighted_bits``). ``labels`` are used only by class-conditional models
    (else the marginal density). Under torchrun this process's share of the images.
    """
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    was_training = model.training
    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dims = model.config.num_dims
    draws, index = [], []
    try:
        for draw in range(samples):
            bits, starts = [], []
            batches = eval_batches(model, images, batch_size, seed, device,
                                   progress if draw == 0 else None, dist_info, draw)  # fmt: skip
            for s, batch, x in batches:
                y = None
                if labels is not None and model.config.num_classes is not None:
                    y = labels[s : s + len(batch)].to(device)
                bits.append((model.bits_per_dim(x, y).double() * dims).cpu())
                starts.append(torch.arange(s, s + len(batch)))
            draws.append(torch.cat(bits) if bits else torch.zeros(0, dtype=torch.float64))
            index = starts
    finally:
        model.train(was_training)
    picked = torch.cat(index) if index else torch.zeros(0, dtype=torch.long)
    return importance_weighted_bits(torch.stack(draws)), picked


def evaluate_bits(
    model: GlowFlow,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    dist_info: DistInfo | None = None,
    samples: int = 1,
) -> BitsEstimate:
    """Mean bits of uint8 ``images (N, C, H, W)``, averaged over every image (see
    ``image_bits``); under ``torchrun`` (``dist_info``) the sums are reduced, giving the
    single-process value."""
    bits, _ = image_bits(model, images, labels, batch_size, seed, device, progress,
                         dist_info, samples)  # fmt: skip
    device = torch.device(device) if device is not None else next(model.parameters()).device
    total = bits.sum().to(device)
    mean = (all_reduce_sum(total, dist_info or DistInfo()) / len(images)).item()
    dims = model.config.num_dims
    return BitsEstimate(mean / dims, mean, dims, samples, len(images))


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
    """Mean bits/dim of uint8 ``images (N, C, H, W)`` over the model's input, one draw an
    image (``evaluate_bits``)."""
    return evaluate_bits(model, images, labels, batch_size, seed, device, progress,
                         dist_info).bpd  # fmt: skip
