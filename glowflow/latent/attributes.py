"""Attribute directions over a labelled data set: which images count, and a cache of the result.

An attribute is one of the data set's binary attributes (CelebA's 40, an npz's ``attrs``) or a
class spec: ``class:A-vs-B`` (class A against class B) or ``class:A`` (A against the rest). The
direction itself is :func:`glowflow.latent.latents.attribute_direction`; computing it encodes
the whole data set, so it is kept in ``attributes.pt`` beside the checkpoint, keyed by everything it
depends on.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from glowflow.data.datasets import DataError, ImageData
from glowflow.files import atomic_save
from glowflow.latent.latents import attribute_direction, encode_images
from glowflow.nn.model import GlowFlow


def attribute_masks(data: ImageData, name: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``(positive, negative, name)``: bool ``(N,)`` masks of the images with and without the
    attribute or class spec ``name``.

    Raises:
        DataError: for a name the data set does not have (listing the choices), or an
            attribute with no images on one side.
    """
    if name.startswith("class:"):
        if data.labels is None:
            raise DataError(f"{data.name} has no class labels; use one of its attributes")
        a, sep, b = name[len("class:") :].partition("-vs-")
        positive = data.labels == data.label_index(a)
        negative = data.labels == data.label_index(b) if sep else ~positive
    elif data.attrs is not None and name in data.attr_names:
        positive = data.attrs[:, data.attr_names.index(name)]
        negative = ~positive
    elif data.attrs is None and data.labels is None:
        raise DataError(f"{data.name} has no attributes or labels to manipulate")
    else:
        choices = [*(data.attr_names or []), "class:A-vs-B", "class:A"]
        close = [n for n in data.attr_names or [] if n.lower() == name.lower()]
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise DataError(f"unknown attribute {name!r}{hint}; choose one of {', '.join(choices)}")
    n_pos, n_neg = int(positive.sum()), int(negative.sum())
    if n_pos == 0 or n_neg == 0:
        raise DataError(
            f"{name} has {n_pos} images with it and {n_neg} without in {data.name}; both must "
            f"be non-zero: pick another attribute (see --list-attributes)"
        )
    return positive, negative, name


def list_attributes(data: ImageData) -> str:
    """One line per attribute and class: its name and how many images have it."""
    lines = []
    for i, n in enumerate(data.attr_names or []):
        lines.append(f"{n}\t{int(data.attrs[:, i].sum())} of {len(data)}")
    if data.labels is not None:
        names = data.label_names
        counts = torch.bincount(data.labels, minlength=len(names)).tolist()
        lines += [f"class:{n}\t{c} of {len(data)}" for n, c in zip(names, counts)]
        lines.append("class:A-vs-B\tany two classes")
    return "\n".join(lines) or f"{data.name} has no attributes or labels"


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

    The key is the :func:`content_digest` of the model's weights and of ``data`` (the images
    the direction is computed over, as loaded with ``options``) and every option the direction
    depends on, so a retrained model or a changed data set never reuses an entry. A
    run's cache sits beside its checkpoint (``beside``); a pretrained model's in the user's
    cache folder (``$XDG_CACHE_HOME/glowflow``), never inside an installed package.
    """
    weights = weights.expanduser().resolve()
    key = "|".join([content_digest(model, data),
                    *(f"{k}={v}" for k, v in sorted(options.items()))])  # fmt: skip
    if beside:
        return weights.parent / "attributes.pt", key
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "glowflow"
    digest = hashlib.sha256(str(weights).encode()).hexdigest()[:16]
    return root / f"attributes-{digest}.pt", key


def cached_direction(
    model: GlowFlow,
    cache: Path,
    key: str,
    data: ImageData,
    name: str,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> tuple[torch.Tensor, dict[str, Any], bool]:
    """The direction of attribute ``name`` over ``data``, read from the cache file ``cache``
    under ``key`` if there, else computed and added to it.

    ``key`` must name everything the direction depends on (the exact weights and ``data``, as
    :func:`cache_entry` makes it); a
    damaged cache is recomputed, never trusted. Returns ``(direction, info, was_cached)``.
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


@torch.no_grad()
def all_directions(
    model: GlowFlow,
    data: ImageData,
    batch_size: int = 64,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> dict[str, Any]:
    """The direction of every binary attribute of ``data``, from one pass over its images:
    ``{"names", "directions" (A, D), "info"}``, as a pretrained folder ships them.

    Each is what :func:`glowflow.latent.latents.attribute_direction` gives for that attribute.
    """
    if data.attrs is None:
        raise DataError(f"{data.name} has no attributes to compute directions for")
    labels = data.labels if model.config.num_classes is not None else None
    attrs = data.attrs.double()  # (N, A)
    pos_sum = torch.zeros(attrs.shape[1], model.num_dims, dtype=torch.float64)
    all_sum = torch.zeros(model.num_dims, dtype=torch.float64)
    starts = range(0, len(data), batch_size)
    for s in progress(starts, len(starts)) if progress else starts:
        y = labels[s : s + batch_size] if labels is not None else None
        eps = encode_images(model, data.images[s : s + batch_size], y, batch_size)
        eps = eps.double().cpu()  # (B, D)
        pos_sum += attrs[s : s + batch_size].T @ eps
        all_sum += eps.sum(0)
    n_pos = attrs.sum(0)  # (A,)
    n_neg = len(data) - n_pos
    keep = (n_pos > 0) & (n_neg > 0)
    directions = pos_sum / n_pos[:, None] - (all_sum - pos_sum) / n_neg[:, None]
    if not keep.any():
        raise DataError(f"no attribute of {data.name} has images both with and without it")
    names, rows, info = [], [], []
    for k in torch.nonzero(keep).flatten().tolist():
        norm = directions[k].norm().item()
        names.append(data.attr_names[k])
        rows.append(directions[k].float())
        info.append({
            "positives": int(n_pos[k]), "negatives": int(n_neg[k]), "norm": norm,
            "norm_per_sqrt_dim": norm / math.sqrt(model.num_dims),
        })  # fmt: skip
    return {"names": names, "directions": torch.stack(rows), "info": info}


def dataset_directions(
    model: GlowFlow,
    data: ImageData,
    batch_size: int = 64,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> dict[str, Any]:
    """The direction of every binary attribute and every class of ``data`` (each class against
    the rest, named ``class:NAME``), in the form of :func:`all_directions`.

    Raises:
        DataError: when ``data`` has neither attributes nor labels.
    """
    parts = []
    if data.attrs is not None:
        parts.append(data)
    if data.labels is not None:
        names = data.label_names
        one_hot = torch.nn.functional.one_hot(data.labels, len(names)).bool()
        classes = [f"class:{n}" for n in names]
        parts.append(
            ImageData(data.images, data.labels, one_hot, classes, data.class_names, data.name)
        )
    if not parts:
        raise DataError(f"{data.name} has no attributes or labels to compute directions from")
    found = [all_directions(model, part, batch_size, progress) for part in parts]
    return {
        "names": [n for f in found for n in f["names"]],
        "directions": torch.cat([f["directions"] for f in found]),
        "info": [i for f in found for i in f["info"]],
    }
