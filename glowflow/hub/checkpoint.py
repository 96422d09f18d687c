"""Checkpoints: written atomically, read without executing anything from the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from glowflow.config import GlowConfig
from glowflow.errors import ConfigError, GlowflowError, first_line
from glowflow.files import atomic_save, check_stamp
from glowflow.hub.model import Glow
from glowflow.hub.shapes import check_tensors, expected_tensors, tensor_specs

FORMAT = "glowflow-checkpoint"
VERSION = 1
#: The checkpoint of a run folder: a folder named where a checkpoint is asked for means this
#: file in it, everywhere (``checkpoint_file``).
CHECKPOINT_FILE = "checkpoint.pt"


class CheckpointError(GlowflowError, ValueError):
    """A checkpoint that cannot be used; the message names the file and the fix."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write a checkpoint (``state`` plus the format stamp) atomically, see ``atomic_save``."""
    atomic_save(path, {"format": FORMAT, "version": VERSION, **state})


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint that ``path`` names: the file itself, or a run folder's
    ``CHECKPOINT_FILE``."""
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

    The model config is checked (``GlowConfig``) and compared with the weights' shapes,
    tensor by tensor (``glowflow.hub.shapes.check_tensors``), before the model is built,
    so a config that disagrees with its weights is refused in one line without allocating it.
    The file is read on the CPU and the model moved to ``map_location`` once built, so the
    optimiser's state never reaches that device.

    Returns the model in eval mode and the checkpoint's contents (on the CPU).
    """
    state = load_checkpoint(path, "cpu")
    path = checkpoint_file(path)  # the file, also where a run folder was named
    fix = "was the file edited or damaged? use another checkpoint"
    try:
        config = GlowConfig.from_dict(state.get("model_config"))
    except ConfigError as e:
        raise CheckpointError(
            f"checkpoint {path} holds an invalid model config: {first_line(e)}; {fix}"
        ) from None
    key = "ema" if ema and state.get("ema") is not None else "model"
    weights = state.get(key)
    if not isinstance(weights, dict) or not all(
        isinstance(name, str) and torch.is_tensor(t) for name, t in weights.items()
    ):
        raise CheckpointError(f"checkpoint {path} holds no state dict under {key!r}; {fix}")
    check_tensors(
        tensor_specs(weights), expected_tensors(config, Glow), f"checkpoint {path}",
        "the model of its model_config", fix, CheckpointError,
    )  # fmt: skip
    model = Glow.from_config(config)
    model.load_state_dict(weights)
    return model.to(map_location).eval(), state
