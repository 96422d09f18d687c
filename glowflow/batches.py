"""Batch assembly: which images make up each step's batch, and turning them into model inputs."""

from __future__ import annotations

import torch

from glowflow.datasets import ImageData
from glowflow.objective import preprocess


class BatchOrder:
    """The images of every step's global batch: a fresh permutation per epoch, drawn from the
    seed alone, so every process, every rerun and every resume sees the same order.

    Args:
        n: images in the training set.
        global_batch: images per step over all processes.
        seed: the run's seed.
    """

    def __init__(self, n: int, global_batch: int, seed: int) -> None:
        self.n = n
        self.global_batch = global_batch
        self.seed = seed
        self.steps_per_epoch = n // global_batch
        self._epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def indices(self, step: int) -> torch.Tensor:
        """Image indices of ``step``'s global batch."""
        epoch, k = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            self._perm = torch.randperm(self.n, generator=g)
            self._epoch = epoch
        b = self.global_batch
        return self._perm[k * b : (k + 1) * b]


def make_batch(
    data: ImageData,
    idx: torch.Tensor,
    g: torch.Generator,
    *,
    n_bits: int,
    hflip: bool = False,
    with_labels: bool = False,
    part: slice | None = None,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Model inputs (and labels) for the images ``idx``, with flips and noise drawn from ``g``.

    The randomness is drawn for all of ``idx`` before ``part`` (this process's slice of the
    global batch) is kept, so N processes see exactly the inputs one process would.
    """
    images = data.images[idx]
    if hflip:
        flip = torch.rand(len(idx), generator=g) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(3), images)
    x = preprocess(images, n_bits, generator=g)  # (B, C, H, W) in [-0.5, 0.5)
    y = data.labels[idx] if with_labels else None
    if part is not None:
        x, y = x[part], None if y is None else y[part]
    device = torch.device(device)
    if device.type == "cuda":  # from pinned memory the copy does not block
        x, y = x.pin_memory(), None if y is None else y.pin_memory()
    x = x.to(device, non_blocking=device.type == "cuda")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if y is not None:
        y = y.to(device, non_blocking=device.type == "cuda")
    return x, y
