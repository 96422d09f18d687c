"""The training loop: a config, a run folder, and a resumable, budgeted optimisation."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from glowflow import distributed, seeding
from glowflow.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from glowflow.config import PRESETS, GlowConfig, known_fields
from glowflow.datasets import ImageData, load_dataset, split_validation
from glowflow.evaluate import evaluate_bpd
from glowflow.model import Glow
from glowflow.objective import bits_per_dim, postprocess, preprocess
from glowflow.viz import plot_learning_curve, save_grid

RUN_FILES = ("config.json", "checkpoint.pt", "metrics.jsonl", "summary.json")


class StepResult(NamedTuple):
    """One step's figures, still on the device: read them only when they are logged."""

    loss: torch.Tensor
    bpd: torch.Tensor
    grad_norm: torch.Tensor
    skipped: torch.Tensor  # bool: NaN or inf somewhere, the weights were left alone


class TrainError(RuntimeError):
    """Training cannot go on; the message says why and what to do."""


class Interrupted(Exception):
    """Training was stopped by Ctrl-C after a checkpoint was saved."""

    def __init__(self, step: int, checkpoint: Path | None) -> None:
        super().__init__(step, checkpoint)
        self.step = step
        self.checkpoint = checkpoint


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved as ``config.json`` in the run folder."""

    # data
    dataset: str = "mnist-mini"
    val_dataset: str | None = None
    val_fraction: float = 0.05
    image_size: int | None = None
    pad: int | None = None
    hflip: bool = False
    on_bad_image: str = "skip"
    # model (image shape and the number of classes come from the data)
    # The defaults are the tuned 5-minute CPU run on mnist-mini: a small, fast flow takes many
    # more steps in a fixed time, which beats a wider one (see the README's figures).
    levels: int = 3
    depth: int = 6
    hidden_channels: int = 64
    coupling: str = "affine"
    permutation: str = "lu"
    learn_top: bool = True
    y_condition: bool = False
    y_weight: float = 0.01
    n_bits: int = 8
    memory_saving: bool = False
    # optimisation
    optimizer: str = "adam"
    lr: float = 3e-3
    lr_schedule: str = "cosine"
    warmup_steps: int = 300
    grad_clip: float = 50.0
    ema_decay: float = 0.999
    batch_size: int = 32
    init_batch_size: int = 512
    # budget: training stops at whichever limit comes first
    steps: int | None = None
    epochs: float | None = None
    max_time: float | None = None  # minutes of wall time
    # run
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    compile: bool = False  # torch.compile the forward pass and loss
    channels_last: bool = False  # NHWC activations and weights (faster convolutions on CPU)
    log_every: int = 50
    eval_every: int = 0  # steps; 0 = only at the end
    sample_every: int = 0  # steps; 0 = only at the end
    checkpoint_every: int = 500
    eval_batch_size: int = 256
    n_samples: int = 64
    sample_temperature: float = 0.7
    max_nan_steps: int = 20
    tensorboard: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.optimizer in ("adam", "adamax"), "optimizer must be 'adam' or 'adamax'"),
            (self.lr_schedule in ("constant", "cosine"), "lr_schedule: 'constant' or 'cosine'"),
            (self.precision in ("fp32", "bf16"), "precision must be 'fp32' or 'bf16'"),
            (self.on_bad_image in ("skip", "error"), "on_bad_image must be 'skip' or 'error'"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.init_batch_size >= 1, "init_batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (0 <= self.ema_decay < 1, "ema_decay must be in [0, 1)"),
            (0 <= self.val_fraction < 1, "val_fraction must be in [0, 1)"),
            (self.steps is None or self.steps >= 1, "steps must be >= 1"),
            (self.epochs is None or self.epochs > 0, "epochs must be > 0"),
            (self.max_time is None or self.max_time > 0, "max_time must be > 0 minutes"),
            (self.log_every >= 1, "log_every must be >= 1"),
            (self.eval_batch_size >= 1, "eval_batch_size must be >= 1"),
            (self.n_samples >= 1, "n_samples must be >= 1"),
            (self.max_nan_steps >= 1, "max_nan_steps must be >= 1"),
            (
                min(self.eval_every, self.sample_every, self.checkpoint_every) >= 0,
                "eval_every, sample_every and checkpoint_every must be >= 0 (0: off)",
            ),
            (self.grad_clip >= 0, "grad_clip must be >= 0 (0: off)"),
            (self.warmup_steps >= 0, "warmup_steps must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return cls(**known_fields(cls, d, "training options"))


#: Named training setups. ``cifar10`` etc. follow the paper and its code (Adamax, lr 1e-3,
#: batch 64, warm-up over about 10 epochs); the model part matches :data:`glowflow.PRESETS`.
def _model_part(name: str) -> dict[str, Any]:
    """The training options that :data:`glowflow.PRESETS` ``name`` fixes."""
    m = PRESETS[name]
    return dict(
        levels=m.levels, depth=m.depth, hidden_channels=m.hidden_channels, coupling=m.coupling,
        permutation=m.permutation, learn_top=m.learn_top, n_bits=m.n_bits,
    )  # fmt: skip


_PAPER = dict(optimizer="adamax", lr=1e-3, batch_size=64, ema_decay=0.999)
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "cifar10": {**_model_part("cifar10"), **_PAPER, "warmup_steps": 7800},
    "imagenet32": {**_model_part("imagenet32"), **_PAPER, "warmup_steps": 20000},
    "imagenet64": {**_model_part("imagenet64"), **_PAPER, "warmup_steps": 20000},
    "celeba-hq-256": {**_model_part("celeba-hq-256"), **_PAPER, "warmup_steps": 5000,
                      "image_size": 256},
    "mnist": {**_model_part("mnist"), **_PAPER, "warmup_steps": 9000},
    "tiny": _model_part("tiny"),
}  # fmt: skip


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but PyTorch sees no CUDA device")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(
            f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return device


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
        self.cfg = config
        self.run_dir = Path(run_dir)
        self.log = log or (lambda message: None)
        self.progress = progress
        self.dist, self.device = distributed.setup(resolve_device(config.device))
        self.resume = resume
        if config.steps is None and config.epochs is None and config.max_time is None:
            raise ValueError("no training budget: give --steps, --epochs or --max-time")
        self._check_run_dir(resume, overwrite)
        self._load_data()
        self._build()
        distributed.barrier(self.dist)  # every process has checked the folder before it changes
        if self.dist.is_main:
            self._start_run_dir(overwrite and not resume)

    # ------------------------------------------------------------------ setup
    def _check_run_dir(self, resume: bool, overwrite: bool) -> None:
        d = self.run_dir
        if d.exists() and not d.is_dir():
            raise ValueError(f"run folder {d} is a file; choose another --out")
        if resume:
            if not (d / "checkpoint.pt").is_file():
                raise ValueError(f"cannot resume: {d} has no checkpoint.pt; start a new run")
        elif self._holds_run() and not overwrite:
            raise ValueError(
                f"run folder {d} already holds a run; pass --resume {d} to continue it "
                f"or --overwrite to replace it"
            )

    def _holds_run(self) -> bool:
        return self.run_dir.is_dir() and any((self.run_dir / f).exists() for f in RUN_FILES)

    def _start_run_dir(self, overwrite: bool) -> None:
        """Create the run folder and write config.json (clearing an old run only with
        ``overwrite``, and only now that the new run has been set up without error)."""
        d = self.run_dir
        if overwrite and self._holds_run():
            for f in RUN_FILES + ("learning_curve.png", "attributes.pt"):
                (d / f).unlink(missing_ok=True)
            shutil.rmtree(d / "samples", ignore_errors=True)
            shutil.rmtree(d / "tensorboard", ignore_errors=True)
        d.mkdir(parents=True, exist_ok=True)
        record = {
            "train": self.cfg.to_dict(),
            "model": self.model.config.to_dict(),
            **self._data_info(),
            # lets an elastic restart tell its own run from one that was already here
            "torchelastic_run_id": os.environ.get("TORCHELASTIC_RUN_ID"),
        }
        tmp = d / "config.json.tmp"
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(d / "config.json")

    def _load_data(self) -> None:
        c = self.cfg
        kw = dict(image_size=c.image_size, pad=c.pad, on_bad_image=c.on_bad_image)
        data = load_dataset(c.dataset, **kw)
        self.num_classes = data.num_classes  # counted before a split can hide a class
        if c.val_dataset:
            self.train_data, self.val_data = data, load_dataset(c.val_dataset, **kw)
            if self.val_data.image_shape != data.image_shape:
                raise ValueError(
                    f"validation images are {self.val_data.image_shape}, training images "
                    f"{data.image_shape}; pass --image-size to bring both to one size"
                )
        elif c.val_fraction > 0:
            self.train_data, self.val_data = split_validation(data, c.val_fraction, c.seed)
        else:
            self.train_data, self.val_data = data, None
        if len(self.train_data) < self.global_batch:
            raise ValueError(
                f"the training set has {len(self.train_data)} images, fewer than one batch of "
                f"{self.global_batch}; lower --batch-size"
            )
        if c.y_condition and self.train_data.labels is None:
            raise ValueError(f"--y-condition needs labels, and {c.dataset} has none")
        if self.val_data is not None and self.val_data.num_classes is not None and c.val_dataset:
            self.num_classes = max(self.num_classes or 0, self.val_data.num_classes)

    def model_config(self) -> GlowConfig:
        c = self.cfg
        return GlowConfig(
            image_shape=self.train_data.image_shape,
            levels=c.levels,
            depth=c.depth,
            hidden_channels=c.hidden_channels,
            coupling=c.coupling,
            permutation=c.permutation,
            learn_top=c.learn_top,
            num_classes=self.num_classes if c.y_condition else None,
            n_bits=c.n_bits,
            memory_saving=c.memory_saving,
        )

    def _build(self) -> None:
        c = self.cfg
        torch.manual_seed(c.seed)
        state = None
        if self.resume:
            state = load_checkpoint(self.run_dir / "checkpoint.pt")
            model_config = GlowConfig.from_dict(state["model_config"])
            if model_config.image_shape != self.train_data.image_shape:
                raise ValueError(
                    f"the checkpoint's model takes images {model_config.image_shape}, the data "
                    f"set gives {self.train_data.image_shape}; use the run's own data options"
                )
        else:
            model_config = self.model_config()
        self.model = Glow.from_config(model_config).to(self.device)
        if c.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.objective: nn.Module = _Objective(self.model)
        # fused Adam can skip a step on the device (found_inf), so the loop never waits for it
        self.optimizer, self._fused = _make_optimizer(c.optimizer, self.model, c.lr)
        self.ema = copy.deepcopy(self.model).eval() if c.ema_decay > 0 else None
        self.step = 0
        self.elapsed = 0.0
        self.nan_skipped = 0
        if state is not None:
            try:
                self.model.load_state_dict(state["model"])
                saved = state["optimizer"]
                for group in saved.get("param_groups", []):  # this run's choice, set before
                    if "fused" in group:  # loading so torch places the state to suit it
                        group["fused"] = self._fused or None
                self.optimizer.load_state_dict(saved)
                if self.ema is not None and state.get("ema") is not None:
                    self.ema.load_state_dict(state["ema"])
                self.step = int(state["step"])
                self.elapsed = float(state["elapsed"])
                self.nan_skipped = int(state["nan_skipped"])
            except (KeyError, RuntimeError, ValueError) as e:
                first = str(e).strip().splitlines()[0][:200] if str(e).strip() else repr(e)
                raise CheckpointError(
                    f"{self.run_dir / 'checkpoint.pt'} does not match its run's config "
                    f"({first}); start a new run"
                ) from None

    def _data_info(self) -> dict[str, Any]:
        d = self.train_data
        return {
            "data": {
                "train_images": len(d),
                "val_images": len(self.val_data) if self.val_data is not None else 0,
                "class_names": d.class_names,
                "attr_names": d.attr_names,
            }
        }

    # ------------------------------------------------------------------ schedule and data
    @property
    def global_batch(self) -> int:
        """Images per step over all processes: ``batch_size`` is per process."""
        return self.cfg.batch_size * self.dist.world_size

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_data) // self.global_batch

    def total_steps(self) -> int | None:
        limits = []
        if self.cfg.steps is not None:
            limits.append(self.cfg.steps)
        if self.cfg.epochs is not None:
            limits.append(max(1, round(self.cfg.epochs * self.steps_per_epoch)))
        return min(limits) if limits else None

    def learning_rate(self, step: int, elapsed: float) -> float:
        c = self.cfg
        lr = c.lr * min(1.0, (step + 1) / max(1, c.warmup_steps))
        if c.lr_schedule == "cosine":
            fractions = []
            if self.total_steps() is not None:
                fractions.append(step / self.total_steps())
            if c.max_time is not None:
                fractions.append(elapsed / (60 * c.max_time))
            progress = min(1.0, max(fractions, default=0.0))
            lr *= 0.5 * (1 + math.cos(math.pi * progress))
        return lr

    def batch_indices(self, step: int) -> torch.Tensor:
        """Image indices of ``step``'s global batch: a fresh permutation per epoch, from the
        seed (the same on every process)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        if getattr(self, "_perm_epoch", None) != epoch:
            g = torch.Generator().manual_seed(self.cfg.seed * 7919 + epoch)
            self._perm = torch.randperm(len(self.train_data), generator=g)
            self._perm_epoch = epoch
        b = self.global_batch
        return self._perm[k * b : (k + 1) * b]

    def make_batch(
        self, data: ImageData, idx: torch.Tensor, g: torch.Generator, shard: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Model inputs (and labels) for the images ``idx``, with noise and flips from ``g``.

        With ``shard``, the randomness is drawn for the whole global batch and this process
        keeps its own slice, so N processes see exactly the inputs one process would.
        """
        images = data.images[idx]
        if self.cfg.hflip:
            flip = torch.rand(len(idx), generator=g) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(3), images)
        x = preprocess(images, self.model.config.n_bits, generator=g)
        y = data.labels[idx] if self.model.config.num_classes is not None else None
        if shard and self.dist.enabled:
            part = slice(
                self.dist.rank * self.cfg.batch_size, (self.dist.rank + 1) * self.cfg.batch_size
            )
            x, y = x[part], None if y is None else y[part]
        if self.device.type == "cuda":  # from pinned memory the copy does not block
            x, y = x.pin_memory(), None if y is None else y.pin_memory()
        x = _to(x, self.device)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, None if y is None else _to(y, self.device)

    # ------------------------------------------------------------------ the loop
    def initialize(self) -> None:
        """Actnorm's data-dependent init on a dedicated batch, the same on every process."""
        c = self.cfg
        g = seeding.generator(c.seed, 0, seeding.INIT)
        n = min(c.init_batch_size, len(self.train_data))
        idx = torch.randperm(len(self.train_data), generator=g)[:n]
        x, y = self.make_batch(self.train_data, idx, g)
        self.model.initialize(x, y)
        if self.ema is not None:
            self.ema.load_state_dict(self.model.state_dict())

    def _wrap_for_processes(self) -> None:
        """Under torchrun: DistributedDataParallel, which also broadcasts rank 0's weights."""
        if not self.dist.enabled:
            return
        from torch.nn.parallel import DistributedDataParallel

        cfg = self.model.config
        unused = cfg.num_classes is not None and self.cfg.y_weight == 0  # classifier idle
        self.objective = DistributedDataParallel(
            _Objective(self.model),
            device_ids=[self.device] if self.device.type == "cuda" else None,
            find_unused_parameters=unused,
        )
        if self.ema is not None and self.step == 0:  # a resumed EMA is kept
            self.ema.load_state_dict(self.model.state_dict())

    def _update_ema(self, skipped: torch.Tensor) -> None:
        """Moves the EMA weights towards the model's; not at all on a skipped step (decided on
        the device, so no sync)."""
        if self.ema is None:
            return
        decay = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
        weight = (1 - decay) * (~skipped).to(torch.float32)
        with torch.no_grad():
            ema_p = list(self.ema.parameters())
            torch._foreach_lerp_(ema_p, list(self.model.parameters()), weight.to(ema_p[0].dtype))
            for b_ema, b in zip(self.ema.buffers(), self.model.buffers()):
                b_ema.copy_(b)

    def train_step(self, step: int) -> StepResult:
        """One optimisation step, skipped when the loss or a gradient is NaN or infinite.

        Nothing here waits for the device: the skip is decided on the device (the fused Adam
        step reads it as ``found_inf``, as under a gradient scaler) and the figures come back as
        tensors, read only when they are logged. Adamax has no fused step, so it reads the flag.
        """
        c = self.cfg
        g = seeding.generator(c.seed, step, seeding.TRAIN)
        x, y = self.make_batch(self.train_data, self.batch_indices(step), g, shard=True)
        with torch.autocast(self.device.type, torch.bfloat16, enabled=c.precision == "bf16"):
            logp, logits = self.objective(x, y)
        bpd = bits_per_dim(logp.float(), self.model.num_dims, self.model.config.n_bits).mean()
        loss = bpd
        if logits is not None and c.y_weight > 0:
            loss = loss + c.y_weight * F.cross_entropy(logits.float(), y) / math.log(2)
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
            group["lr"] = self.learning_rate(step, self.elapsed)
        if self._fused:
            self.optimizer.found_inf = skipped.to(torch.float32)
            try:
                self.optimizer.step()
            finally:
                del self.optimizer.found_inf
        elif not skipped.item():
            self.optimizer.step()
        self._update_ema(skipped)
        return StepResult(totals[0], totals[1], grad_norm.detach(), skipped)

    def run(self) -> dict[str, Any]:
        """Train until the budget is spent; returns the summary also written to summary.json."""
        c = self.cfg
        if self.step == 0 and not self.model.is_initialized:
            self.initialize()
        self._wrap_for_processes()
        if c.compile and not isinstance(self.objective, _Compiled):
            self.objective = torch.compile(self.objective)
        metrics_path = self.run_dir / "metrics.jsonl"
        self._trim_metrics(metrics_path)
        writer = self._tensorboard()
        total = self.total_steps()
        bar = self._progress_bar(total)
        start = time.perf_counter() - self.elapsed
        window: list[tuple[float, float, float]] = []  # the logged steps' figures
        window_t = time.perf_counter()
        self._pending, self._consecutive_nan = [], 0
        self.model.train()
        self._stop_requested = False
        previous_handler = self._catch_sigint()
        try:
            while (total is None or self.step < total) and not self._should_stop():
                self._pending.append(self.train_step(self.step))
                self.step += 1
                self.elapsed = time.perf_counter() - start
                if bar is not None:
                    bar.update(1)
                log_due = self.step % c.log_every == 0
                checkpoint_due = c.checkpoint_every and self.step % c.checkpoint_every == 0
                # read at the latest after max_nan_steps, so a run gone bad stops in time
                if log_due or checkpoint_due or len(self._pending) >= c.max_nan_steps:
                    window += self._read_pending()
                if log_due and window:
                    now = time.perf_counter()
                    record = {
                        "step": self.step,
                        "time": round(self.elapsed, 2),
                        "loss": sum(w[0] for w in window) / len(window),
                        "bpd": sum(w[1] for w in window) / len(window),
                        "lr": self.optimizer.param_groups[0]["lr"],
                        "grad_norm": sum(w[2] for w in window) / len(window),
                        "images_per_s": len(window) * c.batch_size / max(now - window_t, 1e-9),
                        "nan_skipped": self.nan_skipped,
                    }
                    self._write_metrics(metrics_path, record, writer)
                    if bar is not None:
                        bar.set_postfix(loss=f"{record['loss']:.3f}", bpd=f"{record['bpd']:.3f}")
                    window, window_t = [], now
                if c.eval_every and self.step % c.eval_every == 0:
                    self._evaluate(metrics_path, writer)
                if c.sample_every and self.step % c.sample_every == 0 and self.dist.is_main:
                    self.save_samples()
                if c.checkpoint_every and self.step % c.checkpoint_every == 0:
                    self.save()
        except KeyboardInterrupt:  # where no handler could be installed: between ops
            self._stop_requested = True
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
        self._read_pending()
        if bar is not None:
            bar.close()
        if self._stop_requested:
            saved = self.save()
            raise Interrupted(self.step, self.run_dir / "checkpoint.pt" if saved else None)
        self.save()
        val_bpd = self._evaluate(metrics_path, writer, final=True)
        summary = {
            "step": self.step,
            "elapsed_s": round(self.elapsed, 1),
            "val_bpd": val_bpd,
            "nan_skipped": self.nan_skipped,
            "run_dir": str(self.run_dir),
        }
        if self.dist.is_main:
            self.save_samples()
            plot_learning_curve(metrics_path, self.run_dir / "learning_curve.png")
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        if writer is not None:
            writer.close()
        distributed.barrier(self.dist)  # no process leaves while rank 0 still writes
        return summary

    def _read_pending(self) -> list[tuple[float, float, float]]:
        """Reads the steps taken since the last read (one wait for the device), counts the
        skipped ones and returns the others' (loss, bpd, grad norm). Too many skipped steps in a
        row end the run."""
        pending, self._pending = self._pending, []
        if not pending:
            return []
        rows = torch.stack([torch.stack([r.loss, r.bpd, r.grad_norm.float(), r.skipped.float()])
                            for r in pending]).tolist()  # fmt: skip
        taken = []
        first = self.step - len(rows)
        for i, (loss, bpd, grad_norm, skipped) in enumerate(rows):
            if not skipped:
                self._consecutive_nan = 0
                taken.append((loss, bpd, grad_norm))
                continue
            self.nan_skipped += 1
            self._consecutive_nan += 1
            if self._consecutive_nan >= self.cfg.max_nan_steps:
                raise TrainError(
                    f"the loss was NaN or inf for {self._consecutive_nan} steps in a row at "
                    f"step {first + i}; lower --lr or raise --warmup-steps "
                    f"(last good checkpoint kept)"
                )
        return taken

    def _catch_sigint(self):
        """Ctrl-C sets a flag that the loop reads between steps, so a checkpoint never holds
        half an optimiser step. Returns the handler to restore (None if not installed)."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def request_stop(signum, frame):
            self._stop_requested = True

        return signal.signal(signal.SIGINT, request_stop)

    def _should_stop(self) -> bool:
        """Ctrl-C or the time budget; under torchrun every process takes the same decision at
        the same step and shares one clock (the slowest), which the schedule then uses."""
        self.elapsed, stop = distributed.all_max(
            [self.elapsed, float(self._stop_requested)], self.dist, self.device
        )
        self._stop_requested = bool(stop)
        late = self.cfg.max_time is not None and self.elapsed >= 60 * self.cfg.max_time
        return self._stop_requested or late

    # ------------------------------------------------------------------ outputs
    def eval_model(self) -> Glow:
        """The weights used for evaluation and samples: the EMA ones when kept."""
        return self.ema if self.ema is not None else self.model

    def _evaluate(self, metrics_path: Path, writer, final: bool = False) -> float | None:
        if self.val_data is None:
            return None
        bar = None
        if final and self.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            def bar(it, n):
                return tqdm(it, total=n, desc="validation", leave=False)

        bpd = evaluate_bpd(
            self.eval_model(), self.val_data.images, self.val_data.labels,
            batch_size=self.cfg.eval_batch_size, seed=self.cfg.seed, progress=bar,
            dist_info=self.dist,
        )  # fmt: skip
        record = {"step": self.step, "time": round(self.elapsed, 2), "val_bpd": bpd}
        self._write_metrics(metrics_path, record, writer)
        self.log(f"step {self.step}: validation {bpd:.4f} bits/dim")
        return bpd

    @torch.no_grad()
    def save_samples(self) -> Path:
        c = self.cfg
        model = self.eval_model()
        g = torch.Generator(device=self.device).manual_seed(c.seed)
        y = None
        if model.config.num_classes is not None:
            y = torch.arange(c.n_samples, device=self.device) % model.config.num_classes
        x = model.sample(c.n_samples, y=y, temperature=c.sample_temperature, generator=g)
        images = postprocess(x, model.config.n_bits)
        nrow = max(1, int(math.sqrt(c.n_samples)))
        return save_grid(images, self.run_dir / "samples" / f"step_{self.step:07d}.png", nrow)

    def save(self) -> bool:
        """Write checkpoint.pt atomically (rank 0 only); refuses (returns False) if any weight
        is not finite, keeping the last good checkpoint."""
        if not self.dist.is_main:
            return True
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            self.log("weights are not finite: checkpoint not written, the last one is kept")
            return False
        state = {
            "model_config": self.model.config.to_dict(),
            "train_config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "nan_skipped": self.nan_skipped,
            **self._data_info(),
        }
        save_checkpoint(self.run_dir / "checkpoint.pt", state)
        return True

    def _write_metrics(self, path: Path, record: dict, writer) -> None:
        if not self.dist.is_main:
            return
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if writer is not None:
            for k, v in record.items():
                if k != "step":
                    writer.add_scalar(k, v, record["step"])

    def _trim_metrics(self, path: Path) -> None:
        """On resume, drop records written after the checkpoint (they will be redone)."""
        if not self.dist.is_main or not path.exists():
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= self.step:
                    keep.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(k + "\n" for k in keep))
        tmp.replace(path)

    def _tensorboard(self):
        if not self.cfg.tensorboard or not self.dist.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.log("TensorBoard logging skipped: install the 'tensorboard' package for it")
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"))

    def _progress_bar(self, total: int | None):
        if not self.progress or not self.dist.is_main:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=self.step, desc="train", unit="step", dynamic_ncols=True)


_Compiled = torch._dynamo.eval_frame.OptimizedModule


def _to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    return t.to(device, non_blocking=device.type == "cuda")


def _make_optimizer(name: str, model: nn.Module, lr: float) -> tuple[torch.optim.Optimizer, bool]:
    """The optimiser, and whether it is fused Adam, which can skip a step on the device
    (``found_inf``) so the loop never waits for it; other devices and older torch fall back."""
    if name == "adamax":
        return torch.optim.Adamax(model.parameters(), lr=lr), False
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True), True
    except (RuntimeError, ValueError):  # no fused Adam for these parameters' device in this torch
        return torch.optim.Adam(model.parameters(), lr=lr), False


class _Objective(nn.Module):
    """``(x, y) -> (log p(x | y), class logits)`` as a module's forward, for DDP to wrap."""

    def __init__(self, model: Glow) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        return self.model.log_prob_and_logits(x, y)
