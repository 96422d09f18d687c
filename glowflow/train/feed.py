"""The model inputs of a run: the actnorm-init batch and each step's batch.

Every random draw (which images, flips, dequantisation noise) comes from a generator of its own
(``glowflow.seeding``), keyed by the run's seed and the step, so reruns, resumes and any
number of processes see the same inputs, and the process's global random state is never used.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Tuple

import torch

from glowflow import seeding
from glowflow.config import GlowConfig, TrainConfig
from glowflow.data.batches import BatchOrder, make_batch, prefetched_batches, to_device
from glowflow.data.imagedata import ImageData
from glowflow.data.store import StoreImages
from glowflow.distributed import DistInfo

Batch = Tuple[torch.Tensor, Optional[torch.Tensor]]  # typing's forms: evaluated on Python 3.9


class RunBatches:
    """Batches of ``data`` for the model of ``model_config`` on ``device`` as ``dtype``.

    A step's batch is its global batch (``order``) or, with ``shard`` under torchrun, this
    process's slice of it: the draws are made for the whole global batch, so N processes see
    exactly the inputs one process would. From a store with ``cfg.data_workers``, DataLoader
    workers make the steps' batches ahead (``start``); an in-memory set is fast enough to
    index in the training process.
    """

    def __init__(
        self,
        data: ImageData,
        order: BatchOrder,
        cfg: TrainConfig,
        model_config: GlowConfig,
        dist: DistInfo,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.data, self.order, self.cfg = data, order, cfg
        self.model_config, self.dist = model_config, dist
        self.device, self.dtype = device, dtype
        self._prefetch: Iterator | None = None

    def options(self, shard: bool) -> dict[str, Any]:
        """``glowflow.data.batches.cpu_batch``'s options for this run; with ``shard``
        (under torchrun) this process's slice of a global batch."""
        c, rank = self.cfg, self.dist.rank
        part = slice(rank * c.batch_size, (rank + 1) * c.batch_size)
        return dict(
            n_bits=self.model_config.n_bits, hflip=c.hflip,
            with_labels=self.model_config.num_classes is not None,
            part=part if shard and self.dist.enabled else None,
        )  # fmt: skip

    def batch(self, idx: torch.Tensor, g: torch.Generator, shard: bool = False) -> Batch:
        """Model inputs (and labels) for training images ``idx``, drawn from ``g``."""
        return make_batch(
            self.data, idx, g, device=self.device, channels_last=self.cfg.channels_last,
            dtype=self.dtype, **self.options(shard),
        )  # fmt: skip

    def init_batch(self) -> Batch:
        """``init_batch_size`` random training images for actnorm's data-dependent init, the
        same on every process."""
        g = seeding.generator(self.cfg.seed, 0, seeding.INIT)
        n = min(self.cfg.init_batch_size, len(self.data))
        return self.batch(torch.randperm(len(self.data), generator=g)[:n], g)

    def timing_batch(self, step: int) -> Batch:
        """``step``'s images (this process's slice) with noise of their own, to time a step
        on without taking the step's draws."""
        g = seeding.generator(self.cfg.seed, step, seeding.INIT)
        return self.batch(self.order.indices(step), g, shard=True)

    def start(self, step: int) -> None:
        """Have DataLoader workers make the batches from ``step`` on, for a store."""
        c = self.cfg
        if c.data_workers and isinstance(self.data.images, StoreImages):
            self._prefetch = prefetched_batches(
                self.data, self.order, step, c.seed, c.data_workers, **self.options(shard=True)
            )

    def stop(self) -> None:
        """Let go of the workers (they stop with their loader)."""
        self._prefetch = None

    def step(self, step: int) -> Batch:
        """``step``'s batch (this process's slice): made ahead after ``start`` on a store,
        else now."""
        if self._prefetch is None:
            g = seeding.generator(self.cfg.seed, step, seeding.TRAIN)
            return self.batch(self.order.indices(step), g, shard=True)
        made, x, y = next(self._prefetch)
        if isinstance(x, BaseException):
            raise x
        assert made == step, f"the prefetched batch is step {made}, not {step}"
        return to_device(x, y, self.device, self.cfg.channels_last, self.dtype)
