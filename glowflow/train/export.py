"""A training run folder -> a pretrained folder, its model card filled from the run."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import torch

from glowflow.config import LIBRARY_ONLY, TrainConfig
from glowflow.hub.checkpoint import model_from_checkpoint
from glowflow.hub.pretrained import (
    PathLike,
    PretrainedError,
    read_json,
    save_pretrained,
    storage_dtype,
)
from glowflow.train.rundir import RunDir


def train_command(train: dict[str, Any]) -> str:
    """The ``glowflow train`` command of a run's training options, showing only the options
    that differ from their defaults."""
    defaults = TrainConfig().to_dict()
    words = ["glowflow", "train"]
    for key, default in defaults.items():
        if key not in train or train[key] == default or train[key] is None:
            continue
        if key in LIBRARY_ONLY:  # no flag for it
            continue
        value = train[key]
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + key.replace("_", "-"))
        else:
            words += [flag, shlex.quote(str(value))]
    return " ".join(words)


def _run_card(run_dir: Path, state: dict[str, Any]) -> dict[str, Any]:
    """Model card facts a run folder records: data set, command, steps, time, validation."""
    facts: dict[str, Any] = {}
    fix = "fix or delete it"
    run = RunDir(run_dir)
    config = read_json(run.config, fix) if run.config.exists() else {}
    summary = read_json(run.summary, fix) if run.summary.exists() else {}
    train = config.get("train")
    if isinstance(train, dict):
        facts["train_command"] = train_command(train)
        if train.get("dataset"):
            facts["dataset"] = train["dataset"]
    step = summary.get("step", state.get("step"))
    if step is not None:
        facts["steps"] = step
    elapsed = summary.get("elapsed_s", state.get("elapsed"))
    if isinstance(elapsed, (int, float)):
        facts["wall_time_min"] = round(elapsed / 60, 1)
    if isinstance(summary.get("val_bpd"), (int, float)):
        facts["heldout"] = "the run's validation split (never trained on)"
        facts["heldout_bpd"] = float(summary["val_bpd"])
        val_images = (config.get("data") or {}).get("val_images")
        if val_images:
            facts["heldout_images"] = val_images
    return facts


def export_run(
    run_dir: PathLike,
    out_dir: PathLike,
    *,
    dtype: torch.dtype | str = "float32",
    card: dict[str, Any] | None = None,
    attributes: dict[str, Any] | None = None,
) -> Path:
    """Turn a training run's EMA weights into a pretrained folder ready for the Hub.

    The model card is filled from the run (``summary.json``, ``config.json`` and the
    checkpoint: steps, wall time, the ``glowflow train`` command, the data set, validation
    bits/dim), then ``card`` overrides any of those facts. ``class_names``, ``attr_names`` and
    the step go into ``config.json``'s metadata.

    Args:
        run_dir: a folder written by ``glowflow train``.
        out_dir: a new or empty folder, or a pretrained folder to replace.
        dtype: ``"float32"`` or ``"float16"`` (half the size).
        card, attributes: see :func:`save_pretrained`.
    """
    run_dir = Path(run_dir).expanduser()
    out_dir = Path(out_dir).expanduser()
    stored = storage_dtype(dtype)
    if not RunDir(run_dir).has_checkpoint():
        raise PretrainedError(
            f"{RunDir(run_dir).checkpoint} does not exist; pass a run folder of glowflow train"
        )
    if out_dir.exists() and out_dir.resolve() == run_dir.resolve():
        raise PretrainedError(f"cannot export {run_dir} into itself; choose another out_dir")
    model, state = model_from_checkpoint(run_dir, "cpu", ema=True)
    facts = {**_run_card(run_dir, state), **(card or {})}
    data = state.get("data") or {}
    metadata = {
        "class_names": data.get("class_names"),
        "attr_names": data.get("attr_names"),
        "step": state.get("step"),
    }
    return save_pretrained(
        model, out_dir, card=facts, dtype=stored, attributes=attributes, metadata=metadata
    )
