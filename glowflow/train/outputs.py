"""What a run shows of its model: validation passes, sample grids, and at the end the summary
and the learning curve."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import torch

from glowflow.config import TrainConfig
from glowflow.data.evaluate import evaluate_bpd
from glowflow.data.imagedata import ImageData
from glowflow.distributed import DistInfo
from glowflow.hub.model import Glow
from glowflow.latent.latents import sample_images
from glowflow.progress import progress_bar
from glowflow.train.rundir import RunDir
from glowflow.train.steplog import MetricsLog
from glowflow.viz import plot_learning_curve, save_grid


class RunOutputs:
    """Validation bits/dim, sample grids and the run's closing files, for the run ``folder``.

    Args:
        cfg: the run's settings (evaluation batch, samples, seed).
        folder: where the grids, the curve and the summary go (written by the main process).
        val_data: the validation set, or None (then no validation).
        dist: this process's place in the job; every process evaluates its share.
        log: receives one-line human messages.
        progress: show a bar for the final validation.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        folder: RunDir,
        val_data: ImageData | None,
        dist: DistInfo,
        log: Callable[[str], None],
        progress: bool = False,
    ) -> None:
        self.cfg, self.folder, self.val_data = cfg, folder, val_data
        self.dist, self.log, self.progress = dist, log, progress

    def evaluate(
        self, model: Glow, metrics: MetricsLog, step: int, elapsed: float, final: bool = False
    ) -> float | None:
        """Validation bits/dim of ``model`` (None without a validation set), logged as a
        metrics record and a message; noise drawn per batch from the run's seed."""
        if self.val_data is None:
            return None
        show = final and self.progress and self.dist.is_main
        bar = progress_bar("validation") if show else None
        bpd = evaluate_bpd(
            model, self.val_data.images, self.val_data.labels,
            batch_size=self.cfg.eval_batch_size, seed=self.cfg.seed, progress=bar,
            dist_info=self.dist,
        )  # fmt: skip
        metrics.write({"step": step, "time": round(elapsed, 2), "val_bpd": bpd})
        self.log(f"step {step}: validation {bpd:.4f} bits/dim")
        return bpd

    def save_samples(self, model: Glow, step: int) -> Path:
        """A grid of ``n_samples`` samples, image k drawn from seed k (the same images as
        ``glowflow sample --seeds 0-(n-1)``); class-conditional models cycle the labels."""
        c = self.cfg
        labels = None
        if model.config.num_classes is not None:
            device = next(model.parameters()).device
            labels = torch.arange(c.n_samples, device=device) % model.config.num_classes
        images = sample_images(model, range(c.n_samples), c.sample_temperature, labels)
        nrow = max(1, int(math.sqrt(c.n_samples)))
        path = self.folder.sample_path(step)
        return self.folder.guard(path, lambda: save_grid(images, path, nrow))

    def finish(self, model: Glow, step: int, summary: dict[str, Any]) -> None:
        """The last sample grid, the learning curve of ``metrics.jsonl`` and ``summary.json``
        (main process only)."""
        self.save_samples(model, step)
        curve = self.folder.learning_curve
        records = self.folder.read_metrics()
        self.folder.guard(curve, lambda: plot_learning_curve(records, curve))
        self.folder.write_summary(summary)
