"""Checkpoints: written atomically, read without executing anything from the file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

import torch

from glowflow.config import GlowConfig
from glowflow.errors import GlowflowError, first_line
from glowflow.model import Glow

FORMAT = "glowflow-checkpoint"
VERSION = 1


class CheckpointError(GlowflowError, ValueError):
    """A checkpoint that cannot be used; the message names the file and the fix."""


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a temporary file in ``path``'s folder, then rename it over ``path``.

    A crash or Ctrl-C while writing leaves the previous file at ``path`` intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, see :func:`atomic_write`."""
    atomic_write(path, lambda f: f.write(data))


def atomic_save(path: str | Path, obj: Any) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically, see :func:`atomic_write`."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write a checkpoint (``state`` plus the format stamp) atomically, see :func:`atomic_save`."""
    atomic_save(path, {"format": FORMAT, "version": VERSION, **state})


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``: tensors and plain data, never code."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
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
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a glowflow checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {state.get('version')}; this glowflow reads {VERSION}"
        )
    return state


def model_from_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", ema: bool = True
) -> tuple[Glow, dict[str, Any]]:
    """Build the model a checkpoint describes and load its weights (EMA weights if present).

    Returns the model in eval mode and the checkpoint's other contents.
    """
    state = load_checkpoint(path, map_location)
    try:
        model = Glow.from_config(GlowConfig.from_dict(state["model_config"]))
        weights = state["ema"] if ema and state.get("ema") is not None else state["model"]
        model.load_state_dict(weights)
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(
            f"checkpoint {path} does not match its model config: {first_line(e)}"
        ) from None
    return model.to(map_location).eval(), state
