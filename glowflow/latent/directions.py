"""Which direction an edit uses: the one the model ships, else one computed over a data set
and kept in a cache keyed by everything it depends on.

Computing a direction encodes the whole data set, so it is kept in ``attributes.pt`` beside a
run's checkpoint (a pretrained model's in the user's cache folder), keyed by the content of the
weights and the images and by every option, so a stale entry can never be taken for current.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol

import torch

from glowflow.data.imagedata import ImageData
from glowflow.errors import GlowflowError
from glowflow.files import atomic_save, user_cache
from glowflow.latent.attributes import (
    Progress,
    attribute_direction,
    attribute_masks,
    list_attributes,
)
from glowflow.nn.model import GlowFlow

#: Where a chosen direction came from (``ChosenDirection.source``).
DIRECTION_SOURCES = ("shipped", "cached", "computed")

#: The direction cache beside a run's checkpoint.
CACHE_FILE = "attributes.pt"


class DirectionError(GlowflowError, ValueError):
    """No direction can be had as asked (the model ships none by that name, and no data set
    was given to compute it over)."""


class ModelFiles(Protocol):
    """What choosing a direction needs to know of a loaded model: a
    ``glowflow.hub.load.LoadedModel`` has it."""

    @property
    def model(self) -> GlowFlow: ...

    @property
    def weights_file(self) -> Path: ...

    @property
    def pretrained_dir(self) -> Path | None: ...


@dataclass(frozen=True)
class ChosenDirection:
    """An attribute's ``direction`` ``(D,)``, its summary ``info`` (image counts and norm) and
    its ``source``, one of ``DIRECTION_SOURCES``."""

    direction: torch.Tensor
    info: dict[str, Any]
    source: str


def content_digest(model: GlowFlow, data: ImageData) -> str:
    """A sha256 of ``model``'s config and weights and of ``data``'s images, labels and
    attributes: what a direction depends on, read from the tensors themselves, so that no
    writer of a weights file or a data set (a copy that keeps the modification time, a model of
    the same size, a changed file at the same path) can make a stale entry look current.

    Hashing reads the weights and images once (a few seconds for a 1 GB data set on a 2-core
    CPU), against an encoding pass over the whole set for the direction.
    """
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())

    def add(t: torch.Tensor) -> None:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())

    for name, t in model.state_dict().items():
        h.update(name.encode())
        add(t)
    for start in range(0, len(data), 4096):  # a store's images are read a chunk at a time
        add(data.images[start : start + 4096])
    for part in (data.labels, data.attrs):
        if part is not None:
            add(part)
    h.update(repr((data.attr_names, data.class_names)).encode())
    return h.hexdigest()


def cache_entry(
    weights: Path, model: GlowFlow, data: ImageData, options: dict[str, Any], beside: bool = True
) -> tuple[Path, str]:
    """Where the direction cache of the model in ``weights`` lives, and the key of one entry.

    The key is the ``content_digest`` of the model's weights and of ``data`` (the images
    the direction is computed over, as loaded with ``options``) and every option the direction
    depends on, so a retrained model or a changed data set never reuses an entry. A
    run's cache sits beside its checkpoint (``beside``); a pretrained model's in the user's
    cache folder (``$XDG_CACHE_HOME/glowflow``), never inside an installed package.
    """
    weights = weights.expanduser().resolve()
    key = "|".join([content_digest(model, data),
                    *(f"{k}={v}" for k, v in sorted(options.items()))])  # fmt: skip
    if beside:
        return weights.parent / CACHE_FILE, key
    digest = hashlib.sha256(str(weights).encode()).hexdigest()[:16]
    return user_cache() / f"attributes-{digest}.pt", key


def cached_direction(
    model: GlowFlow,
    cache: Path,
    key: str,
    data: ImageData,
    name: str,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, dict[str, Any], bool]:
    """The direction of attribute ``name`` over ``data``, read from the cache file ``cache``
    under ``key`` if there, else computed and added to it.

    ``key`` must name everything the direction depends on (the exact weights and ``data``, as
    ``cache_entry`` makes it); a damaged cache is recomputed, never trusted. Returns
    ``(direction, info, was_cached)``.
    """
    entries: dict[str, Any] = {}
    if cache.is_file():
        try:
            entries = torch.load(cache, weights_only=True).get("entries", {})
        except Exception:  # any unreadable cache is simply rebuilt
            entries = {}
    if key in entries:
        return entries[key]["direction"], entries[key]["info"], True
    positive, negative, _ = attribute_masks(data, name)
    labels = data.labels if model.config.num_classes is not None else None
    direction, info = attribute_direction(
        model, data.images, positive, negative, labels, progress=progress
    )
    entries[key] = {"direction": direction.cpu(), "info": info}
    try:
        atomic_save(cache, {"entries": entries})
    except OSError:  # a folder we may not write to (a shared model): just do not cache
        pass
    return direction, info, False


def choose_direction(
    loaded: ModelFiles,
    attribute: str,
    data: ImageData | None = None,
    shipped: Mapping[str, Any] | None = None,
    max_images: int | None = None,
    data_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> ChosenDirection:
    """The direction of ``attribute`` for the model in ``loaded``.

    The model's own wins where it ships one by that name; else it is computed over the first
    ``max_images`` images of ``data`` (all of them by default) and cached: a run's cache beside
    its checkpoint, a pretrained model's in the user's cache folder (``cache_entry``).

    Args:
        loaded: the model and its files (a ``glowflow.hub.load.LoadedModel``).
        attribute: a binary attribute of ``data`` or a class spec (``attribute_masks``).
        data: labelled images to compute the direction over, or None.
        shipped: the directions the model ships (as
            ``glowflow.hub.pretrained.load_attributes`` reads them), or None.
        max_images: use only the first N images of ``data``.
        data_options: how ``data`` was loaded (``image_size``, ``pad``): part of the cache key.

    Raises:
        DirectionError: for a direction the model does not ship, with no ``data``.
        glowflow.data.datasets.DataError: for an attribute ``data`` does not have, or one
            with no images on one side.
    """
    if shipped is not None and attribute in shipped["names"]:
        k = shipped["names"].index(attribute)
        return ChosenDirection(shipped["directions"][k], shipped["info"][k], "shipped")
    if data is None:
        names = f"; it ships {', '.join(shipped['names'])}" if shipped else ""
        raise DirectionError(f"give --dataset SPEC to compute the {attribute!r} direction{names}")
    options = {**(data_options or {}), "attribute": attribute, "max_images": max_images}
    if max_images:  # only these images are hashed for the key, and encoded
        data = data.subset(slice(0, max_images))
    beside = loaded.pretrained_dir is None  # a run's folder; never an installed package
    cache, key = cache_entry(loaded.weights_file, loaded.model, data, options, beside)
    direction, info, cached = cached_direction(loaded.model, cache, key, data, attribute, progress)
    return ChosenDirection(direction, info, "cached" if cached else "computed")


def attribute_choices(shipped: Mapping[str, Any] | None, data: ImageData | None) -> str:
    """The attributes an edit can use, one a line: those the model ships (``NAME<tab>shipped
    with the model``), then those of ``data`` with their counts (``list_attributes``).

    Raises:
        DirectionError: when the model ships none and there is no ``data``.
    """
    if shipped is None and data is None:
        raise DirectionError("this model ships no attribute directions: give --dataset SPEC")
    parts = []
    if shipped is not None:
        parts.append("\n".join(f"{n}\tshipped with the model" for n in shipped["names"]))
    if data is not None:
        parts.append(list_attributes(data))
    return "\n".join(parts)
