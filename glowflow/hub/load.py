"""One loader for every way a model is named: ``load_model`` and what it returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from glowflow.hub.checkpoint import checkpoint_file, is_checkpoint, model_from_checkpoint
from glowflow.hub.hubname import is_hub_name
from glowflow.hub.model import Glow
from glowflow.hub.names import resolve_pretrained
from glowflow.hub.pretrained import (
    CARD_FILE,
    WEIGHTS_FILE,
    PathLike,
    PretrainedError,
    is_pretrained,
    load_attributes,
    load_folder,
)

#: Where a model came from: a run folder, a checkpoint file, a pretrained folder, a model
#: bundled with the package, or a Hugging Face Hub repo.
SOURCES = ("run", "checkpoint", "pretrained", "bundled", "hub")


@dataclass
class LoadedModel:
    """A model and what is known of it, whatever it was loaded from.

    Attributes:
        model: the model, in eval mode, on the device asked for.
        name: the name or path it was asked for by.
        source: one of ``SOURCES``.
        weights_file: the file its weights came from (the key of anything cached about them).
        class_names, attr_names: the names of its data set's classes and attributes, if any.
        step: the training step its weights are from, where recorded.
        pretrained_dir: the pretrained folder it came from (``None`` for a checkpoint).
        card: the model card (``README.md``) of a pretrained folder, ``None`` for a checkpoint.
    """

    model: Glow
    name: str
    source: str
    weights_file: Path
    class_names: list[str] | None = None
    attr_names: list[str] | None = None
    step: int | None = None
    pretrained_dir: Path | None = None
    card: str | None = None

    def shipped_directions(self) -> dict[str, Any] | None:
        """The attribute directions a pretrained model ships with (computed on its training
        data; see ``glowflow.hub.pretrained.load_attributes``), or None: a checkpoint
        ships none."""
        return load_attributes(self.pretrained_dir) if self.pretrained_dir else None


def load_model(
    name_or_path: PathLike,
    map_location: str | torch.device = "cpu",
    ema: bool = True,
    *,
    revision: str | None = None,
    cache_dir: PathLike | None = None,
    download: Callable[[str], Path] | None = None,
) -> LoadedModel:
    """The model a command's ``--checkpoint`` names, in eval mode, and what is known of it.

    ``name_or_path`` is a run folder (its ``checkpoint.pt``) or a checkpoint file, whose EMA
    weights are taken unless ``ema=False``; or a pretrained folder, a bundled model's name or a
    Hugging Face Hub model ``hf:user/repo[@revision]`` (``revision``, ``cache_dir`` and
    ``download`` as in ``Glow.from_pretrained``), whose weights are whatever was exported,
    so ``ema`` does not apply. Names are read as ``glowflow.hub.names.resolve_pretrained``
    reads them: only an ``hf:`` name goes to the Hub, and an existing path always wins over a
    bundled model of that name. Everything is read on the CPU and only the model's weights are
    kept and moved to ``map_location``: an optimiser's state never stays alive with the model.
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    if not is_hub_name(name) and path.exists():
        if is_checkpoint(path):
            model, state = model_from_checkpoint(path, map_location, ema)
            data = state.get("data")
            data = data if isinstance(data, dict) else {}
            return LoadedModel(
                model=model,
                name=name,
                source="run" if path.is_dir() else "checkpoint",
                weights_file=checkpoint_file(path),
                class_names=data.get("class_names"),
                attr_names=data.get("attr_names"),
                step=state.get("step"),
            )
        if not (path.is_dir() and is_pretrained(path)):
            raise PretrainedError(
                f"{path} is neither a run folder (with checkpoint.pt), a checkpoint file nor a "
                f"pretrained folder (with {WEIGHTS_FILE}); pass one of those"
            )
        directory, source = path, "pretrained"
    else:
        directory = resolve_pretrained(name, download, revision=revision, cache_dir=cache_dir)
        source = "hub" if is_hub_name(name) else "bundled"
    model, meta = load_folder(directory, Glow, map_location)
    card = directory / CARD_FILE
    return LoadedModel(
        model=model,
        name=name,
        source=source,
        weights_file=directory / WEIGHTS_FILE,
        class_names=meta.get("class_names"),
        attr_names=meta.get("attr_names"),
        step=meta.get("step"),
        pretrained_dir=directory,
        card=card.read_text(encoding="utf-8") if card.is_file() else None,
    )
