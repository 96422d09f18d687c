"""Attribute directions over a labelled data set: which images count, and the one formula.

An attribute is one of the data set's binary attributes (CelebA's 40, an npz's ``attrs``) or a
class spec: ``class:A-vs-B`` (class A against class B) or ``class:A`` (A against the rest). Its
direction in the flat latent is the mean latent of the images with it minus the mean of those
without: ``mean_differences``, which every direction here comes from, one attribute
(``attribute_direction``) or all of a data set's in one pass (``all_directions``).
Computing one encodes the whole data set; ``glowflow.latent.directions`` caches it.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch

from glowflow.data.formats import DataError
from glowflow.data.imagedata import ImageData
from glowflow.latent.latents import encode_images
from glowflow.nn.model import GlowFlow

Progress = Callable[[Iterable, int], Iterable]


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


@torch.no_grad()
def mean_differences(
    model: GlowFlow,
    images: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    labels: torch.Tensor | None = None,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each attribute ``k``, ``mean(eps[positive[:, k]]) - mean(eps[negative[:, k]])``.

    Latents are encoded a batch at a time (only the images some mask holds) and summed in
    float64 on the CPU: ``P^T eps / n_pos - N^T eps / n_neg`` with the masks as 0/1 matrices.

    Args:
        images: uint8 ``(N, C, H, W)``.
        positive, negative: bool ``(N, A)``, the images with and without each attribute.
        labels: class labels ``(N,)``, needed by class-conditional models.

    Returns:
        float64 ``(A, D)`` differences (inf or NaN for an attribute with an empty side), and
        the counts ``n_pos``, ``n_neg``, int64 ``(A,)``.
    """
    positive, negative = positive.bool().cpu(), negative.bool().cpu()
    n_pos, n_neg = positive.sum(0), negative.sum(0)  # (A,)
    keep = (positive | negative).any(1)
    index = None if keep.all() else torch.nonzero(keep).flatten()  # slices read a store faster
    n = len(images) if index is None else len(index)
    pos_sum = torch.zeros(positive.shape[1], model.num_dims, dtype=torch.float64)  # (A, D)
    neg_sum = pos_sum.clone()
    starts = range(0, n, batch_size)
    for s in progress(starts, len(starts)) if progress else starts:
        rows = slice(s, s + batch_size) if index is None else index[s : s + batch_size]
        y = labels[rows] if labels is not None else None
        eps = encode_images(model, images[rows], y, batch_size).double().cpu()  # (B, D)
        pos_sum += positive[rows].double().T @ eps
        neg_sum += negative[rows].double().T @ eps
    return pos_sum / n_pos[:, None] - neg_sum / n_neg[:, None], n_pos, n_neg


def _summary(direction: torch.Tensor, n_pos: int, n_neg: int) -> dict[str, float]:
    norm = direction.norm().item()
    return {"positives": n_pos, "negatives": n_neg, "norm": norm,
            "norm_per_sqrt_dim": norm / math.sqrt(direction.numel())}  # fmt: skip


def attribute_direction(
    model: GlowFlow,
    images: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean latent of the images with an attribute minus the mean of those without.

    Args:
        images: uint8 ``(N, C, H, W)``.
        positive: bool ``(N,)``, the images that have the attribute.
        negative: bool ``(N,)``, those that count as not having it (default: ``~positive``).
        labels: class labels, needed by class-conditional models.

    Returns:
        The direction ``(D,)`` (the model's device and dtype) and a summary (counts and the
        direction's norm).
    """
    negative = ~positive if negative is None else negative
    n_pos, n_neg = int(positive.sum()), int(negative.sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"need images with and without the attribute, got {n_pos} and {n_neg}")
    differences, _, _ = mean_differences(
        model, images, positive[:, None], negative[:, None], labels, batch_size, progress
    )
    p = next(model.parameters())
    direction = differences[0].to(p.device, p.dtype)
    return direction, _summary(direction, n_pos, n_neg)


def all_directions(
    model: GlowFlow,
    data: ImageData,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The direction of every binary attribute of ``data`` that some images have and some do
    not, from one pass over its images: ``{"names", "directions" (A, D) float32, "info"}``, as a
    pretrained folder ships them.

    Raises:
        DataError: when ``data`` has no attributes, or none with images on both sides.
    """
    if data.attrs is None:
        raise DataError(f"{data.name} has no attributes to compute directions for")
    positive = data.attrs.bool()  # (N, A)
    usable = positive.any(0) & (~positive).any(0)
    if not usable.any():
        raise DataError(f"no attribute of {data.name} has images both with and without it")
    positive = positive[:, usable]
    labels = data.labels if model.config.num_classes is not None else None
    differences, n_pos, n_neg = mean_differences(
        model, data.images, positive, ~positive, labels, batch_size, progress
    )
    names = [n for n, k in zip(data.attr_names, usable.tolist()) if k]
    info = [_summary(d, int(p), int(q)) for d, p, q in zip(differences, n_pos, n_neg)]
    return {"names": names, "directions": differences.float(), "info": info}


def dataset_directions(
    model: GlowFlow,
    data: ImageData,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The direction of every binary attribute and every class of ``data`` (each class against
    the rest, named ``class:NAME``), in the form of ``all_directions``.

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
