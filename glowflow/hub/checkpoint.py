"""Checkpoints: written atomically, read without executing anything from the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from glowflow.config import GlowConfig
from glowflow.errors import GlowflowError, first_line
from glowflow.files import atomic_save, check_stamp
from glowflow.hub.model import Glow

FORMAT = "glowflow-checkpoint"
VERSION = 1
#: The checkpoint of a run folder: a folder named where a checkpoint is asked for means this
#: file in it, everywhere (:func:`checkpoint_file`).
CHECKPOINT_FILE = "checkpoint.pt"


class CheckpointError(GlowflowError, ValueError):
    """A checkpoint that cannot be used; the message names the file and the fix."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write a checkpoint (``state`` plus the format stamp) atomically, see :func:`atomic_save`."""
    atomic_save(path, {"format": FORMAT, "version": VERSION, **state})


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint that ``path`` names: the file itself, or a run folder's
    :data:`CHECKPOINT_FILE`."""
    path = Path(path).expanduser()
    return path / CHECKPOINT_FILE if path.is_dir() else path


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a checkpoint file, or a folder holding one (a run folder)."""
    return checkpoint_file(path).is_file()


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``: tensors and plain data, never code."""
    path = checkpoint_file(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; pass a checkpoint.pt or run folder"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # unpickling errors come in many types
        raise CheckpointError(
            f"cannot read checkpoint {path} ({first_line(e)}); is it a glowflow checkpoint?"
        ) from None
    check_stamp(
        state, FORMAT, VERSION, what=str(path), kind="a glowflow checkpoint",
        error=CheckpointError, newer="upgrade glowflow", older="train it again",
    )  # fmt: skip
    return state


def model_from_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", ema: bool = True
) -> tuple[Glow, dict[str, Any]]:
    """Build the model a checkpoint describes and load its weights (EMA weights if present).

    The file is read on the CPU and the model moved to ``map_location`` once built, so the
    optimiser's state never reaches that device.

    Returns the model in eval mode and the checkpoint's contents (on the CPU).
    """
    state = load_checkpoint(path, "cpu")
    try:
        model = Glow.from_config(GlowConfig.from_dict(state["model_config"]))
        weights = state["ema"] if ema and state.get("ema") is not None else state["model"]
        model.load_state_dict(weights)
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(
            f"checkpoint {path} does not match its model config: {first_line(e)}"
        ) from None
    return model.to(map_location).eval(), state
