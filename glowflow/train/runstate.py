"""What a run records of itself: the facts of ``config.json`` and the contents of a checkpoint,
and putting a checkpoint's state back into a run being resumed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from glowflow import distributed
from glowflow.config import TrainConfig
from glowflow.data.imagedata import ImageData
from glowflow.errors import first_line
from glowflow.hub.checkpoint import CheckpointError
from glowflow.hub.model import Glow
from glowflow.train.ema import EMA
from glowflow.train.optim import load_optimizer_state


class Position(NamedTuple):
    """How far a run has got: steps taken, seconds of training, steps skipped for NaN/inf."""

    step: int = 0
    elapsed: float = 0.0
    nan_skipped: int = 0


def run_record(
    cfg: TrainConfig, model: Glow, train_data: ImageData, val_data: ImageData | None
) -> dict[str, Any]:
    """What ``config.json`` and every checkpoint say about the run and its data."""
    return {
        "train": cfg.to_dict(),
        "model": model.config.to_dict(),
        "data": {
            "train_images": len(train_data),
            "val_images": len(val_data) if val_data is not None else 0,
            "class_names": train_data.class_names,
            "attr_names": train_data.attr_names,
        },
        # lets an elastic restart tell its own run from one that was already here
        "torchelastic_run_id": distributed.job_id(),
    }


def checkpoint_state(
    record: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: EMA | None,
    position: Position,
) -> dict[str, Any]:
    """A checkpoint's contents: the configs and data facts of ``record`` (:func:`run_record`),
    the weights, their average, the optimiser's state and the run's :class:`Position`."""
    return {
        "model_config": record["model"],
        "train_config": record["train"],
        "model": model.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict(),
        "step": position.step,
        "elapsed": position.elapsed,
        "nan_skipped": position.nan_skipped,
        "data": record["data"],
    }  # fmt: skip


def restore_state(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    fused: bool,
    ema: EMA | None,
    where: str | Path,
) -> Position:
    """Load a checkpoint's weights, optimiser state and average into a resumed run's parts
    (``fused``: the optimiser steps with a fused kernel); returns where the run was.

    Raises :class:`CheckpointError` naming ``where`` if the checkpoint does not fit them.
    """
    try:
        model.load_state_dict(state["model"])
        load_optimizer_state(optimizer, state["optimizer"], fused)
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        return Position(int(state["step"]), float(state["elapsed"]), int(state["nan_skipped"]))
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(
            f"{where} does not match its run's config ({first_line(e)}); start a new run"
        ) from None
