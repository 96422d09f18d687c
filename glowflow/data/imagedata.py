"""One image data set in memory: uint8 images with their labels, attributes and class names.

``ImageData`` is what every loader returns (``glowflow.data.datasets.load_dataset``)
and what a prepared store opens as (``glowflow.data.store.open_store``, whose images stay
on disk and are read as they are indexed). ``find_label`` and ``label_names`` turn a
class name or number given by a user into a label.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from glowflow.data.formats import DataError

__all__ = ["ImageData", "find_label", "label_names"]


@dataclass
class ImageData:
    """A data set: its images in memory, or a store's read from disk as they are indexed.

    Attributes:
        images: uint8 ``(N, C, H, W)``, values 0..255, ``C`` 1 (grayscale) or 3 (RGB).
        labels: int64 ``(N,)`` class labels, or None.
        attrs: bool ``(N, A)`` binary attributes (True = the image has it), or None.
        attr_names: the ``A`` attribute names, or None.
        class_names: the name of each label value, or None.
        name: the spec the data came from.
        pad: the zero pixels the loader added on each side (``--pad``): the images were
            ``H - 2 * pad`` by ``W - 2 * pad`` before, the dimensions published figures count.
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    attrs: torch.Tensor | None = None
    attr_names: list[str] | None = None
    class_names: list[str] | None = None
    name: str = ""
    pad: int = 0

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(
                f"images must be a uint8 (N, C, H, W) tensor, got {self.images.dtype} "
                f"of shape {tuple(self.images.shape)}"
            )
        n = len(self.images)
        if self.labels is not None and tuple(self.labels.shape) != (n,):
            raise DataError(f"labels must have shape ({n},), got {tuple(self.labels.shape)}")
        if self.attrs is not None and (self.attrs.dim() != 2 or len(self.attrs) != n):
            raise DataError(f"attrs must have shape ({n}, A), got {tuple(self.attrs.shape)}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    @property
    def original_dims(self) -> int:
        """The dimensions of an image before its padding: ``C * (H - 2 pad) * (W - 2 pad)``."""
        c, h, w = self.image_shape
        return c * (h - 2 * self.pad) * (w - 2 * self.pad)

    @property
    def num_classes(self) -> int | None:
        """The number of classes: ``len(class_names)`` if known, else ``max(labels) + 1``."""
        if self.labels is None:
            return None
        if self.class_names is not None:
            return len(self.class_names)
        return int(self.labels.max()) + 1 if len(self.labels) else None

    @property
    def label_names(self) -> list[str]:
        """The name of each class: ``class_names``, else the label values as text."""
        return label_names(self.class_names, self.num_classes or 0)

    def label_index(self, text: str) -> int:
        """The label a class name or number stands for.

        Raises:
            DataError: for a name or number that is no class of this set, listing the classes.
        """
        return find_label(self.label_names, text)

    def check_labels(self, num_classes: int | None) -> None:
        """Raise a ``DataError`` unless every label lies in ``[0, num_classes)``."""
        if num_classes is None:
            return
        if self.labels is None:
            raise DataError(f"{self.name} has no labels; a class-conditional model needs them")
        if not len(self.labels):
            return
        lo, hi = int(self.labels.min()), int(self.labels.max())
        if lo < 0 or hi >= num_classes:
            raise DataError(
                f"{self.name} has labels from {lo} to {hi}, outside 0..{num_classes - 1}; "
                f"fix its labels or its class_names"
            )

    def padded(self, pad: int) -> ImageData:
        """These images with ``pad`` more zero pixels on each side (in memory; a store's
        images were padded when it was prepared).

        Raises:
            DataError: for a store, whose images stay on disk.
        """
        if not isinstance(self.images, torch.Tensor):
            raise DataError(f"{self.name} is a store, padded when prepared; prepare it with --pad")
        images = torch.nn.functional.pad(self.images, (pad, pad, pad, pad))
        return dataclasses.replace(self, images=images, pad=self.pad + pad)

    def subset(self, index: torch.Tensor | slice) -> ImageData:
        """The images (and their labels and attributes) picked by ``index``; a store's images
        stay on disk (a view, not a copy)."""
        images = self.images
        return ImageData(
            images=images.subset(index) if hasattr(images, "subset") else images[index],
            labels=None if self.labels is None else self.labels[index],
            attrs=None if self.attrs is None else self.attrs[index],
            attr_names=self.attr_names,
            class_names=self.class_names,
            name=self.name,
            pad=self.pad,
        )


def label_names(class_names: list[str] | None, num_classes: int) -> list[str]:
    """The name of each of ``num_classes`` classes: ``class_names``, else the numbers as text."""
    return list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]


def find_label(names: list[str], text: str) -> int:
    """The label that a class name, or a label number as text, stands for among ``names``.

    Raises:
        DataError: for a name or number that is no class, listing the classes.
    """
    if text in names:
        return names.index(text)
    if text.isdigit() and int(text) < len(names):
        return int(text)
    raise DataError(f"unknown class {text!r}; choose one of {', '.join(names)}")
