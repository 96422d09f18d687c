"""What a run records of itself: the facts of ``config.json`` and the contents of a checkpoint,
and putting a checkpoint's state back into a run being resumed, on the data it was trained on."""

from __future__ import annotations

import hashlib
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


#: At most this many training images, spread over the set, make its ``data_fingerprint``.
FINGERPRINT_IMAGES = 256


def data_fingerprint(data: ImageData) -> str:
    """The SHA-256 (hex) of a data set's size, order and contents, cheap for any size: the
    number of images, their shape and the bytes of at most ``FINGERPRINT_IMAGES`` of them
    at evenly spread positions (the first and the last among them), with their labels where
    the set has labels. The same images in the same order give the same fingerprint on every
    machine, whatever the batch size or device; a set of up to that many images is hashed
    whole, a larger one by its sample (a store's images are read, never loaded whole).
    """
    n = len(data)
    k = min(n, FINGERPRINT_IMAGES)
    index = torch.tensor([i * (n - 1) // max(k - 1, 1) for i in range(k)], dtype=torch.long)
    h = hashlib.sha256(f"{n} images {list(data.image_shape)}\n".encode())
    h.update(data.images[index].cpu().contiguous().numpy().tobytes())
    if data.labels is not None:
        h.update(data.labels[index].cpu().to(torch.int64).numpy().astype("<i8").tobytes())
    return h.hexdigest()


def run_record(
    cfg: TrainConfig,
    model: Glow,
    train_data: ImageData,
    val_data: ImageData | None,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """What ``config.json`` and every checkpoint say about the run and its data;
    ``fingerprint`` is the training set's ``data_fingerprint``, where already known."""
    return {
        "train": cfg.to_dict(),
        "model": model.config.to_dict(),
        "data": {
            "train_images": len(train_data),
            "train_fingerprint": fingerprint or data_fingerprint(train_data),
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
    """A checkpoint's contents: the configs and data facts of ``record`` (``run_record``),
    the weights, their average, the optimiser's state and the run's ``Position``."""
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


def check_same_data(
    state: dict[str, Any], train_images: int, fingerprint: str, where: str | Path
) -> None:
    """Refuse to resume the checkpoint ``state`` (of the file ``where``) on other training data
    than it recorded: another number of images (``train_images`` now), or other images or
    another order (the ``data_fingerprint`` now). The batches of a resumed run are drawn
    by position, so a silent change would train on other images than the run's own. A
    checkpoint written before fingerprints were recorded is checked on the count alone.

    Raises:
        CheckpointError: naming what changed, its two values and the fix.
    """
    saved = state.get("data") if isinstance(state.get("data"), dict) else {}
    fix = (
        "train on the data set the run was started with (the same files and options), or "
        "start a new run: --overwrite, or another --out"
    )
    was = saved.get("train_images")
    if was is not None and was != train_images:
        raise CheckpointError(
            f"{where} was trained on {was} training images, and the data set now gives "
            f"{train_images}; {fix}"
        )
    was = saved.get("train_fingerprint")
    if was is not None and was != fingerprint:
        raise CheckpointError(
            f"{where} was trained on other images, or the same in another order (data "
            f"fingerprint {str(was)[:12]}, now {fingerprint[:12]}); {fix}"
        )


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

    Raises ``CheckpointError`` naming ``where`` if the checkpoint does not fit them.
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
