"""The training loop: a config, a run folder, and a resumable, budgeted optimisation.

The jobs around the loop live in units of their own: the run folder (:mod:`glowflow.train.rundir`),
the weight average (:mod:`glowflow.train.ema`), the budget and learning rate
(:mod:`glowflow.train.schedule`), batch assembly (:mod:`glowflow.data.batches`), the progress bar
(:mod:`glowflow.progress`) and the processes of a torchrun job (:mod:`glowflow.distributed`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from glowflow import distributed, seeding
from glowflow.config import ConfigError, GlowConfig, TrainConfig
from glowflow.data.batches import BatchOrder, make_batch, prefetched_batches, to_device
from glowflow.data.datasets import ImageData, load_dataset, split_validation
from glowflow.data.evaluate import evaluate_bpd
from glowflow.data.store import StoreImages
from glowflow.errors import first_line
from glowflow.hub.checkpoint import CheckpointError, load_checkpoint
from glowflow.hub.model import Glow
from glowflow.latent.latents import sample_images
from glowflow.nn.objective import bits_per_dim
from glowflow.progress import TrainingProgress, progress_bar
from glowflow.train.allocator import reuse_freed_memory
from glowflow.train.autotune import choose_precision
from glowflow.train.ema import EMA
from glowflow.train.interrupt import CtrlC
from glowflow.train.optim import load_optimizer_state, make_optimizer, step_unless
from glowflow.train.rundir import RunDir
from glowflow.train.schedule import learning_rate, total_steps
from glowflow.train.steplog import LogWindow, MetricsLog, PendingSteps, StepResult, TrainError
from glowflow.viz import plot_learning_curve, save_grid

__all__ = ["Interrupted", "StepResult", "TrainError", "Trainer", "load_train_val"]


class Interrupted(Exception):
    """Training was stopped by Ctrl-C after a checkpoint was saved."""

    def __init__(self, step: int, checkpoint: Path | None) -> None:
        super().__init__(step, checkpoint)
        self.step = step
        self.checkpoint = checkpoint


class Trainer:
    """Trains a Glow per a :class:`TrainConfig`, writing everything to ``run_dir``.

    Args:
        config: the run's settings.
        run_dir: its folder. A folder that already holds a run is refused unless ``resume``
            (continue it exactly: data order, optimiser state, step count) or ``overwrite``.
        log: receives one-line human messages (the CLI prints them).
        progress: show a progress bar.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        resume: bool = False,
        overwrite: bool = False,
        log: Callable[[str], None] | None = None,
        progress: bool = False,
    ) -> None:
        c = self.cfg = config
        self.folder = RunDir(run_dir)
        self.log = log or (lambda message: None)
        self.progress = progress
        if c.steps is None and c.epochs is None and c.max_time is None:
            raise ConfigError("no training budget: give --steps, --epochs or --max-time")
        self.dist, self.device = distributed.setup(distributed.resolve_device(c.device))
        self.global_batch = c.batch_size * self.dist.world_size  # batch_size is per process
        self.folder.check(resume, overwrite)
        self.train_data, self.val_data, num_classes = load_train_val(c, self.global_batch)
        self.order = BatchOrder(len(self.train_data), self.global_batch, c.seed)
        self.total_steps = total_steps(c, self.order.steps_per_epoch)
        state = load_checkpoint(self.folder.checkpoint) if resume else None
        torch.manual_seed(c.seed)
        shape = self.train_data.image_shape
        model_config = (
            c.model_config(shape, num_classes) if state is None else saved_model(state, shape)
        )
        self.model = Glow.from_config(model_config).to(self.device)
        if c.memory_saving and self.device.type == "cpu":
            reuse_freed_memory()  # see glowflow.train.allocator: a run's decision, not the model's
        if c.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.objective: nn.Module = _Objective(self.model)
        self.compiled = False
        self._prefetch: Iterator | None = None  # a store's batches, made ahead (run() starts it)
        self.precision = c.precision if c.precision != "auto" else "fp32"  # run() decides
        self.precision_reason = "chosen by --precision"
        # fused Adam can skip a step on the device (found_inf), so the loop never waits for it
        self.optimizer, self.fused = make_optimizer(c.optimizer, self.model, c.lr)
        self.ema = EMA(self.model, c.ema_decay) if c.ema_decay > 0 else None
        self.step, self.elapsed = 0, 0.0
        self.pending = PendingSteps(c.max_nan_steps)
        self.ctrl_c = CtrlC()
        if state is not None:
            self._restore(state)
        for part in (self.train_data, self.val_data):  # once here, so no step has to
            if part is not None and self.model.config.num_classes is not None:
                part.check_labels(self.model.config.num_classes)
        distributed.barrier(self.dist)  # every process has checked the folder before it changes
        if self.dist.is_main:
            self.folder.start(self._record(), overwrite=overwrite and not resume)

    # ------------------------------------------------------------------ setup
    @property
    def dtype(self) -> torch.dtype:
        """The model's dtype, which its input batches take (float32 unless the default dtype
        was another when the trainer was made)."""
        return next(self.model.parameters()).dtype

    def _restore(self, state: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(state["model"])
            load_optimizer_state(self.optimizer, state["optimizer"], self.fused)
            if self.ema is not None and state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            self.step = int(state["step"])
            self.elapsed = float(state["elapsed"])
            self.pending.nan_skipped = int(state["nan_skipped"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(
                f"{self.folder.checkpoint} does not match its run's config ({first_line(e)}); "
                f"start a new run"
            ) from None

    def _record(self) -> dict[str, Any]:
        """What config.json and every checkpoint say about the run and its data."""
        return {
            "train": self.cfg.to_dict(),
            "model": self.model.config.to_dict(),
            "data": {
                "train_images": len(self.train_data),
                "val_images": len(self.val_data) if self.val_data is not None else 0,
                "class_names": self.train_data.class_names,
                "attr_names": self.train_data.attr_names,
            },
            # lets an elastic restart tell its own run from one that was already here
            "torchelastic_run_id": distributed.job_id(),
        }

    # ------------------------------------------------------------------ one step
    def _batch_options(self, shard: bool) -> dict[str, Any]:
        """:func:`glowflow.data.batches.cpu_batch`'s options for this run; with ``shard`` (under
        torchrun) this process's slice of a global batch."""
        c, rank = self.cfg, self.dist.rank
        part = slice(rank * c.batch_size, (rank + 1) * c.batch_size)
        return dict(
            n_bits=self.model.config.n_bits, hflip=c.hflip,
            with_labels=self.model.config.num_classes is not None,
            part=part if shard and self.dist.enabled else None,
        )  # fmt: skip

    def batch(self, idx: torch.Tensor, g: torch.Generator, shard: bool = False):
        """Model inputs (and labels) for training images ``idx``; with ``shard`` this
        process's slice of a global batch."""
        options = self._batch_options(shard)
        return make_batch(
            self.train_data,
            idx,
            g,
            device=self.device,
            channels_last=self.cfg.channels_last,
            dtype=self.dtype,
            **options,
        )

    def initialize(self) -> None:
        """Actnorm's data-dependent init on a dedicated batch, the same on every process."""
        g = seeding.generator(self.cfg.seed, 0, seeding.INIT)
        n = min(self.cfg.init_batch_size, len(self.train_data))
        self.model.initialize(*self.batch(torch.randperm(len(self.train_data), generator=g)[:n], g))
        if self.ema is not None:
            self.ema.reset(self.model)

    def _choose_precision(self) -> str:
        """The precision of the coupling networks: as configured, or for ``auto`` the faster
        on this machine (timed on the first batch, without changing the model), agreed by all
        processes."""
        if self.cfg.precision != "auto":
            return self.cfg.precision  # its reason, set in __init__, stands
        g = seeding.generator(self.cfg.seed, self.step, seeding.INIT)
        x, y = self.batch(self.order.indices(self.step), g, shard=True)

        def one_pass(bf16: bool) -> None:
            with torch.autocast(self.device.type, torch.bfloat16, enabled=bf16):
                logp, _ = self.objective(x, y)
            at_least_float32(logp).mean().backward()
            self.model.zero_grad(set_to_none=True)

        choice, why = choose_precision(one_pass, self.device)
        votes = torch.tensor([float(choice == "bf16")], device=self.device)
        if distributed.all_reduce_sum(votes, self.dist).item() < self.dist.world_size:
            if choice == "bf16":
                why += "; not every process found bf16 faster"
            choice = "fp32"
        self.precision_reason = why
        self.log(f"precision auto: {choice} ({why})")
        return choice

    def _start_prefetch(self) -> None:
        """For a store, DataLoader workers make the batches from this step on, ahead of the
        step; an in-memory set is fast enough to index in the training process."""
        if self.cfg.data_workers and isinstance(self.train_data.images, StoreImages):
            c = self.cfg
            self._prefetch = prefetched_batches(
                self.train_data,
                self.order,
                self.step,
                c.seed,
                c.data_workers,
                **self._batch_options(shard=True),
            )

    def _step_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._prefetch is None:
            g = seeding.generator(self.cfg.seed, step, seeding.TRAIN)
            return self.batch(self.order.indices(step), g, shard=True)
        made, x, y = next(self._prefetch)
        if isinstance(x, BaseException):
            raise x
        assert made == step, f"the prefetched batch is step {made}, not {step}"
        return to_device(x, y, self.device, self.cfg.channels_last, self.dtype)

    def train_step(self, step: int) -> StepResult:
        """One optimisation step, skipped when the loss or a gradient is NaN or infinite.

        Nothing here waits for the device: the skip is decided on the device (the fused Adam
        step reads it as ``found_inf``, as under a gradient scaler) and the figures come back as
        tensors, read only when they are logged. Adamax has no fused step, so it reads the flag.
        """
        c = self.cfg
        x, y = self._step_batch(step)
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
            logp, logits = self.objective(x, y)
        logp = at_least_float32(logp)
        bpd = bits_per_dim(logp, self.model.num_dims, self.model.config.n_bits).mean()
        loss = bpd
        if logits is not None and c.y_weight > 0:
            loss = loss + c.y_weight * F.cross_entropy(at_least_float32(logits), y) / math.log(2)
        self.optimizer.zero_grad(set_to_none=True)
        # the mean over all processes, for the log (a NaN anywhere makes the all-reduced
        # gradients NaN everywhere, so every process skips the same steps)
        totals = distributed.all_reduce_sum(torch.stack([loss, bpd]).detach(), self.dist)
        totals = totals / self.dist.world_size
        loss.backward()
        max_norm = c.grad_clip if c.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        skipped = ~(torch.isfinite(grad_norm) & torch.isfinite(totals).all())
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(c, step, self.elapsed, self.total_steps)
        step_unless(self.optimizer, self.fused, skipped)
        if self.ema is not None:
            self.ema.update(self.model, self.step, skipped)
        return StepResult(totals[0], totals[1], grad_norm.detach(), skipped)

    # ------------------------------------------------------------------ the loop
    @property
    def nan_skipped(self) -> int:
        """Steps skipped so far for a NaN or inf loss or gradient."""
        return self.pending.nan_skipped

    def run(self) -> dict[str, Any]:
        """Train until the budget is spent; returns the summary also written to summary.json."""
        c = self.cfg
        if self.step == 0 and not self.model.is_initialized:
            self.initialize()
        self._wrap_for_processes()
        self.precision = self._choose_precision()
        if c.compile and not self.compiled:
            self.objective, self.compiled = torch.compile(self.objective), True
        metrics = MetricsLog(self.folder, c.tensorboard and self.dist.is_main, self.log)
        if self.dist.is_main:
            self.folder.trim_metrics(self.step)
        budget_s = 60 * c.max_time if c.max_time is not None else None
        main = self.dist.is_main
        bar = TrainingProgress(
            self.progress and main, self.total_steps, budget_s, self.step, self.elapsed
        )
        window = LogWindow(self.global_batch)
        start = time.perf_counter() - self.elapsed
        self.ctrl_c.requested = False
        self.model.train()
        self._start_prefetch()
        with self.ctrl_c:
            while (self.total_steps is None or self.step < self.total_steps) and not self._stop():
                self.pending.add(self.train_step(self.step))
                self.step += 1
                window.steps += 1
                self.elapsed = time.perf_counter() - start
                bar.update(self.step, self.elapsed)
                log_due = self.step % c.log_every == 0
                checkpoint_due = c.checkpoint_every and self.step % c.checkpoint_every == 0
                # read at the latest after max_nan_steps, so a run gone bad stops in time
                if log_due or checkpoint_due or len(self.pending) >= c.max_nan_steps:
                    window.figures += self.pending.read(self.step)
                if log_due and window.figures:  # else the window goes on to the next line
                    line = window.line()
                    bar.show(line["loss"], line["bpd"])
                    record = {"step": self.step, "time": round(self.elapsed, 2), **line}
                    record.update(lr=self.optimizer.param_groups[0]["lr"],
                                  nan_skipped=self.nan_skipped)  # fmt: skip
                    self._write_metrics(metrics, record)
                if c.eval_every and self.step % c.eval_every == 0:
                    self._evaluate(metrics)
                if c.sample_every and self.step % c.sample_every == 0 and main:
                    self.save_samples()
                if checkpoint_due:
                    self.save()
        self.pending.read(self.step)
        self._prefetch = None  # the workers stop with their loader
        bar.close()
        if self.ctrl_c.requested:
            saved = self.save()
            raise Interrupted(self.step, self.folder.checkpoint if saved else None)
        self.save()
        summary = {
            "step": self.step,
            "elapsed_s": round(self.elapsed, 1),
            "val_bpd": self._evaluate(metrics, final=True),
            "nan_skipped": self.nan_skipped,
            "precision": self.precision,
            "precision_reason": self.precision_reason,
            "run_dir": str(self.folder.path),
        }
        if main:
            self.save_samples()
            curve = self.folder.path / "learning_curve.png"
            records = self.folder.read_metrics()
            self.folder.guard(curve, lambda: plot_learning_curve(records, curve))
            self.folder.write_summary(summary)
        metrics.close()
        distributed.barrier(self.dist)  # no process leaves while rank 0 still writes
        return summary

    def _wrap_for_processes(self) -> None:
        """Under torchrun: DistributedDataParallel, which also broadcasts rank 0's weights."""
        if not self.dist.enabled or not isinstance(self.objective, _Objective):
            return
        idle_classifier = self.model.config.num_classes is not None and self.cfg.y_weight == 0
        self.objective = distributed.wrap(self.objective, self.device, idle_classifier)
        if self.ema is not None and self.step == 0:  # a resumed EMA is kept
            self.ema.reset(self.model)

    def _stop(self) -> bool:
        """Ctrl-C or the time budget; under torchrun every process takes the same decision at
        the same step and shares one clock (the slowest), which the schedule then uses."""
        self.elapsed, stop = distributed.all_max(
            [self.elapsed, float(self.ctrl_c.requested)], self.dist, self.device
        )
        self.ctrl_c.requested = bool(stop)
        late = self.cfg.max_time is not None and self.elapsed >= 60 * self.cfg.max_time
        return self.ctrl_c.requested or late

    # ------------------------------------------------------------------ outputs
    def eval_model(self) -> Glow:
        """The weights used for evaluation and samples: the EMA ones when kept."""
        return self.ema.module if self.ema is not None else self.model

    def _evaluate(self, metrics: MetricsLog, final: bool = False) -> float | None:
        if self.val_data is None:
            return None
        show = final and self.progress and self.dist.is_main
        bar = progress_bar("validation") if show else None
        bpd = evaluate_bpd(
            self.eval_model(), self.val_data.images, self.val_data.labels,
            batch_size=self.cfg.eval_batch_size, seed=self.cfg.seed, progress=bar,
            dist_info=self.dist,
        )  # fmt: skip
        record = {"step": self.step, "time": round(self.elapsed, 2), "val_bpd": bpd}
        self._write_metrics(metrics, record)
        self.log(f"step {self.step}: validation {bpd:.4f} bits/dim")
        return bpd

    def save_samples(self) -> Path:
        """A grid of ``n_samples`` samples, image k drawn from seed k (the same images as
        ``glowflow sample --seeds 0-(n-1)``); class-conditional models cycle the labels."""
        c = self.cfg
        model = self.eval_model()
        labels = None
        if model.config.num_classes is not None:
            labels = torch.arange(c.n_samples, device=self.device) % model.config.num_classes
        images = sample_images(model, range(c.n_samples), c.sample_temperature, labels)
        nrow = max(1, int(math.sqrt(c.n_samples)))
        path = self.folder.sample_path(self.step)
        return self.folder.guard(path, lambda: save_grid(images, path, nrow))

    def save(self) -> bool:
        """Write checkpoint.pt atomically (rank 0 only); refuses (returns False) if any weight
        is not finite, keeping the last good checkpoint."""
        if not self.dist.is_main:
            return True
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            self.log("weights are not finite: checkpoint not written, the last one is kept")
            return False
        record = self._record()
        self.folder.write_checkpoint({
            "model_config": record["model"],
            "train_config": record["train"],
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "nan_skipped": self.nan_skipped,
            "data": record["data"],
        })  # fmt: skip
        return True

    def _write_metrics(self, metrics: MetricsLog, record: dict[str, Any]) -> None:
        if self.dist.is_main:
            metrics.write(record)


def saved_model(state: dict[str, Any], image_shape: tuple[int, int, int]) -> GlowConfig:
    """The model config of a checkpoint being resumed, checked against the data."""
    saved = GlowConfig.from_dict(state["model_config"])
    if saved.image_shape != image_shape:
        raise ConfigError(
            f"the checkpoint's model takes images {saved.image_shape}, the data set gives "
            f"{image_shape}; use the run's own data options"
        )
    return saved


def load_train_val(
    cfg: TrainConfig, global_batch: int
) -> tuple[ImageData, ImageData | None, int | None]:
    """The training set, the validation set (``val_dataset``, a ``val_fraction`` split, or
    None) and the number of classes."""
    kw = dict(image_size=cfg.image_size, pad=cfg.pad, on_bad_image=cfg.on_bad_image)
    data = load_dataset(cfg.dataset, **kw)
    num_classes = data.num_classes  # counted before a split can hide a class
    if cfg.val_dataset:
        train, val = data, load_dataset(cfg.val_dataset, **kw)
        if val.image_shape != data.image_shape:
            raise ConfigError(
                f"validation images are {val.image_shape}, training images "
                f"{data.image_shape}; pass --image-size to bring both to one size"
            )
        if val.num_classes is not None:
            num_classes = max(num_classes or 0, val.num_classes)
    elif cfg.val_fraction > 0:
        train, val = split_validation(data, cfg.val_fraction, cfg.seed)
    else:
        train, val = data, None
    if len(train) < global_batch:
        raise ConfigError(
            f"the training set has {len(train)} images, fewer than one batch of "
            f"{global_batch}; lower --batch-size"
        )
    if cfg.y_condition and train.labels is None:
        raise ConfigError(f"--y-condition needs labels, and {cfg.dataset} has none")
    return train, val, num_classes


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32, or as it is if wider: a loss is summed in float32 at least (bf16 parts
    come up), and a float64 model's stays float64."""
    return t if t.dtype == torch.float64 else t.float()


class _Objective(nn.Module):
    """``(x, y) -> (log p(x | y), class logits)`` as a module's forward, for DDP to wrap.

    The labels were checked once when the data was loaded, so the model is told not to check
    their range again (that would read them back from the device on every step).
    """

    def __init__(self, model: Glow) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        return self.model.log_prob_and_logits(x, y, check_labels=False)
