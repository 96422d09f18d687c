"""The training budget and the learning-rate schedule, as plain functions of the config."""

from __future__ import annotations

import math

from glowflow.config import TrainConfig


def total_steps(cfg: TrainConfig, steps_per_epoch: int) -> int | None:
    """The step count the run stops at (``steps`` or ``epochs``, whichever is fewer), or None
    when only the wall-clock budget (``max_time``) limits it."""
    limits = []
    if cfg.steps is not None:
        limits.append(cfg.steps)
    if cfg.epochs is not None:
        limits.append(max(1, round(cfg.epochs * steps_per_epoch)))
    return min(limits) if limits else None


def budget_fraction(cfg: TrainConfig, step: int, elapsed: float, total: int | None) -> float:
    """How much of the budget is spent, in [0, 1]: the furthest along of the step budget and the
    time budget (``elapsed`` seconds of ``max_time`` minutes)."""
    fractions = []
    if total is not None:
        fractions.append(step / total)
    if cfg.max_time is not None:
        fractions.append(elapsed / (60 * cfg.max_time))
    return min(1.0, max(fractions, default=0.0))


def learning_rate(cfg: TrainConfig, step: int, elapsed: float, total: int | None) -> float:
    """Linear warm-up over ``warmup_steps``, then constant or cosine decay to zero at the end of
    the budget."""
    lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    if cfg.lr_schedule == "cosine":
        lr *= 0.5 * (1 + math.cos(math.pi * budget_fraction(cfg, step, elapsed, total)))
    return lr
