"""A data set loaded to fit a model: its images the shape the model takes, its labels in range."""

from __future__ import annotations

import torch

from glowflow.data.datasets import load_dataset
from glowflow.data.formats import DataError
from glowflow.data.imagedata import ImageData
from glowflow.nn.model import GlowFlow


def load_fitting(
    spec: str,
    model: GlowFlow,
    image_size: int | None = None,
    pad: int | None = None,
    limit: int | None = None,
    check_labels: bool = True,
) -> ImageData:
    """The data set ``spec``, checked to fit the model: image shape, and (with
    ``check_labels``) labels in range for a class-conditional model. Without ``pad``, images
    smaller than the model's by an even number of pixels are zero-padded to its size (a model
    trained with ``--pad``)."""
    data = load_dataset(spec, image_size=image_size, pad=pad, limit=limit)
    want = model.config.image_shape
    border = _border(data.image_shape, want)
    if pad is None and border and isinstance(data.images, torch.Tensor):
        data = data.padded(border)
    got = data.image_shape
    if got[0] != want[0]:
        raise DataError(
            f"the model takes {want[0]}-channel images, {spec} has {got[0]} channels; "
            f"convert the set to {'grayscale' if want[0] == 1 else 'RGB'} first"
        )
    if got != want:
        raise DataError(
            f"the model takes images {want}, {spec} gives {got}; match them with "
            f"--image-size or --pad"
        )
    if data.labels is not None and check_labels:
        data.check_labels(model.config.num_classes)
    return data


def _border(got: tuple[int, int, int], want: tuple[int, int, int]) -> int:
    """The zero border that turns images of ``got`` into ``want``'s size, or 0 if none does."""
    dh, dw = want[1] - got[1], want[2] - got[2]
    return dh // 2 if dh == dw and dh > 0 and dh % 2 == 0 else 0
