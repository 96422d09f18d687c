"""Batch assembly: which images make up each step's batch, and turning them into model inputs."""

from __future__ import annotations

from typing import Any, Iterator

import torch

from glowflow import seeding
from glowflow.data.imagedata import ImageData
from glowflow.errors import GlowflowError
from glowflow.nn.objective import preprocess


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
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    dtype: torch.dtype = torch.float32,
    **options: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Model inputs (and labels) for the images ``idx`` on ``device``: ``cpu_batch`` with
    ``options`` (``n_bits``, ``hflip``, ``with_labels``, ``part``), then ``to_device``."""
    return to_device(*cpu_batch(data, idx, g, **options), device, channels_last, dtype)


def cpu_batch(
    data: ImageData,
    idx: torch.Tensor,
    g: torch.Generator,
    *,
    n_bits: int,
    hflip: bool = False,
    with_labels: bool = False,
    part: slice | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Model inputs (and labels) for the images ``idx``, on the CPU, with flips and noise drawn
    from ``g`` (what a DataLoader worker does ahead of the step).

    The randomness is drawn for all of ``idx`` and then ``part`` (this process's slice of the
    global batch) is kept, so N processes see exactly the inputs one process would; only the
    images of ``part`` are read.
    """
    part = part or slice(None)
    images = data.images[idx[part]]
    flip = torch.rand(len(idx), generator=g) < 0.5 if hflip else None
    noise = torch.rand((len(idx), *images.shape[1:]), generator=g, dtype=torch.float32)[part]
    if flip is not None:
        images = torch.where(flip[part, None, None, None], images.flip(3), images)
    x = preprocess(images, n_bits, noise=noise)  # (B, C, H, W) in [-0.5, 0.5)
    y = data.labels[idx[part]] if with_labels else None
    return x, y


def to_device(
    x: torch.Tensor,
    y: torch.Tensor | None,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch moved to ``device`` as ``dtype`` (the model's; the noise was drawn in float32 so
    that every dtype sees the same inputs), from pinned memory on CUDA, without blocking."""
    device = torch.device(device)
    if device.type == "cuda":
        x, y = x.pin_memory(), None if y is None else y.pin_memory()
    x = x.to(device, dtype, non_blocking=device.type == "cuda")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if y is not None:
        y = y.to(device, non_blocking=device.type == "cuda")
    return x, y


class _StepBatches(torch.utils.data.IterableDataset):
    """Every step's CPU batch from ``start`` on: worker ``w`` of ``W`` makes steps
    ``start + w``, ``start + w + W``, ..., and the DataLoader takes them from the workers in
    turn, so the steps arrive in order."""

    def __init__(self, data: ImageData, order: BatchOrder, start: int, seed: int, **kw) -> None:
        self.data, self.order, self.start, self.seed, self.kw = data, order, start, seed, kw

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        step, stride = self.start, 1
        if info is not None:
            step, stride = self.start + info.id, info.num_workers
        while True:
            g = seeding.generator(self.seed, step, seeding.TRAIN)
            try:
                batch = cpu_batch(self.data, self.order.indices(step), g, **self.kw)
            except GlowflowError as e:  # handed over whole: the DataLoader would wrap it
                yield step, e, None
                return
            yield step, *batch
            step += stride


def prefetched_batches(
    data: ImageData, order: BatchOrder, start: int, seed: int, workers: int, **kw
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None]]:
    """``(step, x, y)`` for every step from ``start`` on, made ahead by ``workers`` DataLoader
    processes: the same tensors ``cpu_batch`` gives for generator ``(seed, step, TRAIN)``.
    A user mistake met in a worker (a damaged store) comes as ``(step, error, None)``.

    ``kw`` are ``cpu_batch``'s options (``n_bits``, ``hflip``, ``with_labels``, ``part``).
    """
    loader = torch.utils.data.DataLoader(
        _StepBatches(data, order, start, seed, **kw),
        batch_size=None,
        num_workers=workers,
        prefetch_factor=2 if workers else None,
        persistent_workers=False,
    )
    return iter(loader)
