"""The training loop: a config, a run folder, and a resumable, budgeted optimisation.

The ``Trainer`` holds the loop and the optimisation step; the jobs around them live in
units of their own: the data (``trainsets``), the model and its seeded
initial weights (``runmodel``), the batches
(``feed``), the loss (``loss``), what is due after a step
(``cadence``), the checkpoint's contents (``runstate``),
validation, samples and the closing files (``outputs``), the run folder
(``rundir``), the weight average (``ema``), the budget and
learning rate (``schedule``), the logs (``steplog``) and
the processes of a torchrun job (``glowflow.distributed``).

Randomness: everything a run draws comes from its seed through generators of its own, so a
``Trainer`` neither reads nor changes torch's global random state.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from glowflow import distributed
from glowflow.config import ConfigError, TrainConfig
from glowflow.data.batches import BatchOrder
from glowflow.hub.checkpoint import load_checkpoint
from glowflow.hub.model import Glow
from glowflow.progress import TrainingProgress
from glowflow.train.allocator import reuse_freed_memory
from glowflow.train.autotune import agree_precision, choose_precision
from glowflow.train.cadence import due_after
from glowflow.train.ema import EMA
from glowflow.train.feed import RunBatches
from glowflow.train.interrupt import CtrlC
from glowflow.train.loss import Objective, training_loss
from glowflow.train.optim import make_optimizer, step_unless
from glowflow.train.outputs import RunOutputs
from glowflow.train.rundir import RunDir
from glowflow.train.runmodel import build_model, run_model_config
from glowflow.train.runstate import (
    Position,
    check_same_data,
    checkpoint_state,
    data_fingerprint,
    restore_state,
    run_record,
)
from glowflow.train.schedule import learning_rate, total_steps
from glowflow.train.steplog import LogWindow, MetricsLog, PendingSteps, StepResult, TrainError
from glowflow.train.trainsets import load_train_val
from glowflow.train.warmstart import warm_start

__all__ = ["Interrupted", "StepResult", "TrainError", "Trainer", "load_train_val"]


class Interrupted(Exception):
    """Training was stopped by Ctrl-C after a checkpoint was saved."""

    def __init__(self, step: int, checkpoint: Path | None) -> None:
        super().__init__(step, checkpoint)
        self.step = step
        self.checkpoint = checkpoint


class Trainer:
    """Trains a Glow per a ``TrainConfig``, writing everything to ``run_dir``.

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
        # the data, its order and the budget in steps
        self.train_data, self.val_data, num_classes = load_train_val(c, self.global_batch)
        self.order = BatchOrder(len(self.train_data), self.global_batch, c.seed)
        self.total_steps = total_steps(c, self.order.steps_per_epoch)
        # the model, its optimiser and average, as new or as the checkpoint left them
        state = load_checkpoint(self.folder.checkpoint) if resume else None
        model_config = run_model_config(c, self.train_data.image_shape, num_classes, state)
        self.fingerprint = data_fingerprint(self.train_data)  # once: the data does not change
        if state is not None:  # resumed on the data it was trained on, in the same order
            check_same_data(state, len(self.train_data), self.fingerprint, self.folder.checkpoint)
        # initial weights from the seed, drawn under a private generator (global state kept)
        self.model = build_model(model_config, c.seed, self.device, c.channels_last)
        if state is None and c.init_from:
            warm_start(self.model, c)  # the source's weights, actnorm's statistics among them
        if c.memory_saving and self.device.type == "cpu":
            reuse_freed_memory()  # see glowflow.train.allocator: a run's decision, not the model's
        self.objective: nn.Module = Objective(self.model)
        self.compiled = False
        self.precision = c.precision if c.precision != "auto" else "fp32"  # run() decides
        self.precision_reason = "chosen by --precision"
        # fused Adam can skip a step on the device (found_inf), so the loop never waits for it
        self.optimizer, self.fused = make_optimizer(c.optimizer, self.model, c.lr)
        self.ema = EMA(self.model, c.ema_decay) if c.ema_decay > 0 else None
        self.pending = PendingSteps(c.max_nan_steps)
        self.step, self.elapsed = 0, 0.0
        if state is not None:
            where = self.folder.checkpoint
            position = restore_state(state, self.model, self.optimizer, self.fused, self.ema, where)
            self.step, self.elapsed, self.pending.nan_skipped = position
        self.ctrl_c = CtrlC()
        self.batches = RunBatches(
            self.train_data, self.order, c, model_config, self.dist, self.device, self.dtype
        )
        self.outputs = RunOutputs(c, self.folder, self.val_data, self.dist, self.log, progress)
        for part in (self.train_data, self.val_data):  # once here, so no step has to
            if part is not None and model_config.num_classes is not None:
                part.check_labels(model_config.num_classes)
        distributed.barrier(self.dist)  # every process has checked the folder before it changes
        if self.dist.is_main:
            self.folder.start(self._record(), overwrite=overwrite and not resume)

    @property
    def dtype(self) -> torch.dtype:
        """The model's dtype, which its input batches take (float32 unless the default dtype
        was another when the trainer was made)."""
        return next(self.model.parameters()).dtype

    @property
    def nan_skipped(self) -> int:
        """Steps skipped so far for a NaN or inf loss or gradient."""
        return self.pending.nan_skipped

    def _record(self) -> dict[str, Any]:
        return run_record(self.cfg, self.model, self.train_data, self.val_data, self.fingerprint)

    # ------------------------------------------------------------------ before the steps
    def initialize(self) -> None:
        """Actnorm's data-dependent init on a dedicated batch, the same on every process."""
        self.model.initialize(*self.batches.init_batch())
        if self.ema is not None:
            self.ema.reset(self.model)

    def _wrap_for_processes(self) -> None:
        """Under torchrun: DistributedDataParallel, which also broadcasts rank 0's weights."""
        if not self.dist.enabled or not isinstance(self.objective, Objective):
            return
        idle_classifier = self.model.config.num_classes is not None and self.cfg.y_weight == 0
        self.objective = distributed.wrap(self.objective, self.device, idle_classifier)
        if self.ema is not None and self.step == 0:  # a resumed EMA is kept
            self.ema.reset(self.model)

    def _choose_precision(self) -> str:
        """The precision of the coupling networks: as configured, or for ``auto`` the faster
        on this machine (timed on the first batch, without changing the model), agreed by all
        processes."""
        if self.cfg.precision != "auto":
            return self.cfg.precision  # its reason, set in __init__, stands
        x, y = self.batches.timing_batch(self.step)

        def one_pass(bf16: bool) -> None:
            loss, _ = training_loss(self.objective, self.model, x, y, self.cfg.y_weight, bf16)
            loss.backward()
            self.model.zero_grad(set_to_none=True)

        choice, why = agree_precision(
            *choose_precision(one_pass, self.device), self.dist, self.device
        )
        self.precision_reason = why
        self.log(f"precision auto: {choice} ({why})")
        return choice

    # ------------------------------------------------------------------ one step
    def train_step(self, step: int) -> StepResult:
        """One optimisation step, skipped when the loss or a gradient is NaN or infinite.

        Nothing here waits for the device: the skip is decided on the device (the fused Adam
        step reads it as ``found_inf``, as under a gradient scaler) and the figures come back as
        tensors, read only when they are logged. Adamax has no fused step, so it reads the flag.
        """
        c = self.cfg
        x, y = self.batches.step(step)
        bf16 = self.precision == "bf16"
        loss, bpd = training_loss(self.objective, self.model, x, y, c.y_weight, bf16)
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
    def run(self) -> dict[str, Any]:
        """Train until the budget is spent; returns the summary also written to summary.json."""
        c, main = self.cfg, self.dist.is_main
        # 1. actnorm's init (a new run), DDP, the precision, compilation
        if self.step == 0 and not self.model.is_initialized:
            self.initialize()
        self._wrap_for_processes()
        self.precision = self._choose_precision()
        if c.compile and not self.compiled:
            self.objective, self.compiled = torch.compile(self.objective), True
        # 2. the logs, continued from the checkpoint's step (later records will be redone)
        metrics = MetricsLog(self.folder, c.tensorboard, self.log, writes=main)
        if main:
            self.folder.trim_metrics(self.step)
        budget_s = 60 * c.max_time if c.max_time is not None else None
        bar = TrainingProgress(
            self.progress and main, self.total_steps, budget_s, self.step, self.elapsed
        )
        window = LogWindow(self.global_batch)
        # 3. the steps, until the budget is spent or Ctrl-C
        start = time.perf_counter() - self.elapsed
        self.ctrl_c.requested = False
        self.model.train()
        self.batches.start(self.step)
        with self.ctrl_c:
            while (self.total_steps is None or self.step < self.total_steps) and not self._stop():
                self.pending.add(self.train_step(self.step))
                self.step += 1
                window.steps += 1
                self.elapsed = time.perf_counter() - start
                bar.update(self.step, self.elapsed)
                self._after_step(metrics, window, bar)
        self.pending.read(self.step)
        self.batches.stop()
        bar.close()
        # 4. a checkpoint; after Ctrl-C, only that
        if self.ctrl_c.requested:
            saved = self.save()
            raise Interrupted(self.step, self.folder.checkpoint if saved else None)
        self.save()
        # 5. the final validation, samples, learning curve and summary
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
            self.outputs.finish(self.eval_model(), self.step, summary)
        metrics.close()
        distributed.barrier(self.dist)  # no process leaves while rank 0 still writes
        return summary

    def _after_step(self, metrics: MetricsLog, window: LogWindow, bar: TrainingProgress) -> None:
        """The work due after a step (``due_after``)."""
        due = due_after(self.cfg, self.step, len(self.pending))
        if due.read:
            window.figures += self.pending.read(self.step)
        if due.log and window.figures:  # else the window goes on to the next line
            line = window.line()
            bar.show(line["loss"], line["bpd"])
            record = {"step": self.step, "time": round(self.elapsed, 2), **line}
            record.update(lr=self.optimizer.param_groups[0]["lr"], nan_skipped=self.nan_skipped)
            metrics.write(record)
        if due.evaluate:
            self._evaluate(metrics)
        if due.sample and self.dist.is_main:
            self.save_samples()
        if due.checkpoint:
            self.save()

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
        return self.outputs.evaluate(self.eval_model(), metrics, self.step, self.elapsed, final)

    def save_samples(self) -> Path:
        """A grid of samples from ``eval_model`` (see ``RunOutputs.save_samples``)."""
        return self.outputs.save_samples(self.eval_model(), self.step)

    def save(self) -> bool:
        """Write checkpoint.pt atomically (rank 0 only); refuses (returns False) if any weight
        is not finite, keeping the last good checkpoint."""
        if not self.dist.is_main:
            return True
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            self.log("weights are not finite: checkpoint not written, the last one is kept")
            return False
        position = Position(self.step, self.elapsed, self.nan_skipped)
        state = checkpoint_state(self._record(), self.model, self.optimizer, self.ema, position)
        self.folder.write_checkpoint(state)
        return True
