"""What the training loop logs: step figures read back in bulk, NaN accounting, metrics lines.

A step's figures stay on the device as tensors (``StepResult``) until a line is due;
``PendingSteps`` then reads them in one go, counts the skipped steps and stops a run gone
bad; ``LogWindow`` averages the figures since the last line; ``MetricsLog`` writes the
line to ``metrics.jsonl`` (and TensorBoard).
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple

import torch

from glowflow.errors import GlowflowError
from glowflow.train.rundir import RunDir


class TrainError(GlowflowError, RuntimeError):
    """Training cannot go on; the message says why and what to do."""


class StepResult(NamedTuple):
    """One step's figures, still on the device: read them only when they are logged."""

    loss: torch.Tensor
    bpd: torch.Tensor
    grad_norm: torch.Tensor
    skipped: torch.Tensor  # bool: NaN or inf somewhere, the weights were left alone


class PendingSteps:
    """The steps not read back yet. ``read`` waits for the device once for all of them,
    counts the skipped ones and raises ``TrainError`` after ``max_nan_steps`` in a row."""

    def __init__(self, max_nan_steps: int) -> None:
        self.max_nan_steps = max_nan_steps
        self.nan_skipped = 0
        self.consecutive_nan = 0
        self.results: list[StepResult] = []

    def add(self, result: StepResult) -> None:
        self.results.append(result)

    def __len__(self) -> int:
        return len(self.results)

    def read(self, step: int) -> list[tuple[float, float, float]]:
        """(loss, bpd, grad norm) of the steps that were taken; ``step`` is the current step."""
        pending, self.results = self.results, []
        if not pending:
            return []
        rows = torch.stack([torch.stack([r.loss, r.bpd, r.grad_norm.float(), r.skipped.float()])
                            for r in pending]).tolist()  # fmt: skip
        taken = []
        first = step - len(rows)
        for i, (loss, bpd, grad_norm, skipped) in enumerate(rows):
            if not skipped:
                self.consecutive_nan = 0
                taken.append((loss, bpd, grad_norm))
                continue
            self.nan_skipped += 1
            self.consecutive_nan += 1
            if self.consecutive_nan >= self.max_nan_steps:
                raise TrainError(
                    f"the loss was NaN or inf for {self.consecutive_nan} steps in a row at "
                    f"step {first + i}; lower --lr or raise --warmup-steps "
                    f"(last good checkpoint kept)"
                )
        return taken


class LogWindow:
    """The figures of the steps since the last metrics line, and the images per second over
    them: every image of every step, skipped or not, over all processes."""

    def __init__(self, global_batch: int) -> None:
        self.global_batch = global_batch
        self.figures: list[tuple[float, float, float]] = []
        self.steps = 0
        self.start = time.perf_counter()

    def line(self) -> dict[str, float]:
        """The window's averages and rate, then a fresh window."""
        now = time.perf_counter()
        out = {}
        if self.figures:
            loss, bpd, grad_norm = (sum(v) / len(self.figures) for v in zip(*self.figures))
            out = {"loss": loss, "bpd": bpd, "grad_norm": grad_norm}
        out["images_per_s"] = self.steps * self.global_batch / max(now - self.start, 1e-9)
        self.figures, self.steps, self.start = [], 0, now
        return out


class MetricsLog:
    """Appends records to the run's ``metrics.jsonl`` and, if asked, to TensorBoard.

    Under torchrun every process keeps one, and only the main process's (``writes``) writes.
    """

    def __init__(
        self, run: RunDir, tensorboard: bool, log: Callable[[str], None], writes: bool = True
    ) -> None:
        self.run = run
        self.writes = writes
        self.writer: Any = None
        if tensorboard and writes:
            try:
                from torch.utils.tensorboard import SummaryWriter  # optional package
            except ImportError:
                log("TensorBoard logging skipped: install the 'tensorboard' package for it")
            else:
                self.writer = SummaryWriter(str(run.tensorboard))

    def write(self, record: dict[str, Any]) -> None:
        if not self.writes:
            return
        self.run.append_metrics(record)
        if self.writer is not None:
            for k, v in record.items():
                if k != "step":
                    self.writer.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
