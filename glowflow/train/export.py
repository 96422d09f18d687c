"""A training run folder -> a pretrained folder, its model card filled from the run."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from glowflow.config import LIBRARY_ONLY, TrainConfig
from glowflow.data.evaluate import evaluate_bits
from glowflow.data.fitting import load_fitting
from glowflow.hub.checkpoint import model_from_checkpoint
from glowflow.hub.pretrained import (
    PathLike,
    PretrainedError,
    check_folder,
    read_json,
    save_pretrained,
    storage_dtype,
)
from glowflow.latent.attributes import all_directions
from glowflow.train.rundir import RunDir


def train_command(train: dict[str, Any]) -> str:
    """The ``glowflow train`` command of a run's training options, showing only the options
    that differ from their defaults."""
    defaults = {**TrainConfig().to_dict(), "init_from": None}  # the record leaves it out if unset
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
        card, attributes: see ``save_pretrained``.
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


def export_with_figures(
    run_dir: PathLike,
    out_dir: PathLike,
    *,
    dtype: str = "float32",
    card: dict[str, Any] | None = None,
    heldout: str | None = None,
    heldout_description: str | None = None,
    test: str | None = None,
    test_description: str | None = None,
    test_samples: int = 1,
    attributes_from: str | None = None,
    progress: Callable[[str], Callable[[Iterable, int], Iterable]] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """``export_run``, with the figures ``glowflow export`` adds to the card and folder.

    The out folder is checked before any long work. ``heldout`` (a data set spec, loaded with
    the run's ``--image-size`` and ``--pad``) is scored with the weights as they are shipped
    (a float16 export is measured after its round trip through float16), and its bits/dim go
    on the card, with the dimensions they are over (and over the pixels before padding, for
    padded images). ``test`` is scored the same way, for the record only, one draw an image
    and, with ``test_samples`` K > 1, importance-weighted over K draws too.
    ``attributes_from`` (a spec with binary attributes) gives the attribute directions the
    folder ships. ``progress(name)`` makes the progress wrapper of each pass.

    Returns:
        The folder written, and what was measured: the card's ``heldout_*`` and ``test_*``
        figures where ``heldout`` and ``test`` were given, ``attributes`` (the directions'
        names) where ``attributes_from`` was.
    """
    check_folder(Path(out_dir).expanduser())  # before the long work, not after it
    model, _ = model_from_checkpoint(run_dir, "cpu", ema=True)
    if dtype == "float16":  # measure what is shipped: the weights as float16 stores them
        model = model.half().float()
    train = RunDir(Path(run_dir).expanduser()).read_config()["train"]
    data_kw = dict(image_size=train.get("image_size"), pad=train.get("pad"))
    card = dict(card or {})
    measured: dict[str, Any] = {}
    for key, spec, description in (("heldout", heldout, heldout_description),
                                   ("test", test, test_description)):  # fmt: skip
        if not spec:
            continue
        data = load_fitting(spec, model, **data_kw)
        draws = [1] + ([test_samples] if key == "test" and test_samples > 1 else [])
        for k in draws:
            shown = progress(key if k == 1 else f"{key}, {k} draws") if progress else None
            found = evaluate_bits(model, data.images, data.labels, progress=shown, samples=k)
            name = f"{key}_bpd" + ("_iw" if k > 1 else "")
            measured[name] = round(found.bpd, 4)
            if data.pad:
                measured[name + "_original"] = round(found.over(data.original_dims), 4)
                measured["original_dims"] = data.original_dims
        measured.update({key: description or spec, f"{key}_images": len(data),
                         "dims": model.config.num_dims})  # fmt: skip
        if len(draws) > 1:
            measured["test_samples"] = test_samples
    card.update(measured)
    attributes = None
    if attributes_from:
        data = load_fitting(attributes_from, model, **data_kw)
        shown = progress("directions") if progress else None
        attributes = all_directions(model, data, progress=shown)
        measured["attributes"] = list(attributes["names"])
    out = export_run(run_dir, out_dir, dtype=dtype, card=card, attributes=attributes)
    return out, measured
