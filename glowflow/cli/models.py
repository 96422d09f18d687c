"""Finding the model a command names, and the images it is asked to work on."""

from __future__ import annotations

import argparse

import torch

from glowflow.cli.common import UsageError, check_indices, int_list
from glowflow.data.imagedata import ImageData
from glowflow.data.imagefiles import read_image_files
from glowflow.nn.model import GlowFlow

CHECKPOINT_HELP = (
    "a run folder, a checkpoint.pt, a pretrained folder, the name of a bundled model "
    "(e.g. mnist, celeba64) or a model on the Hugging Face Hub, hf:user/repo or "
    "hf:user/repo@revision (a bare user/repo is a local path)"
)


def split_image_args(tokens: list[str]) -> tuple[list[int], list[str]]:
    """``--images`` entries -> (data set indices, image files), in order of appearance: an
    entry like ``3``, ``0,4,8`` or ``0-3`` is indices, anything else a file. Mixing the two is
    refused, so that the rows of a grid come from one place."""
    indices: list[int] = []
    files: list[str] = []
    for token in tokens:
        try:
            indices.extend(int_list(token))
        except argparse.ArgumentTypeError:
            files.append(token)
    if indices and files:
        raise UsageError("--images takes data set indices or image files, not both at once")
    return indices, files


def gather_images(
    model: GlowFlow, tokens: list[str], data: ImageData | None
) -> tuple[torch.Tensor, torch.Tensor | None, list]:
    """uint8 images ``(N, C, H, W)``, their labels (class-conditional models only) and how each
    was named, from ``--images`` entries: indices into ``data`` (``--dataset``), or files."""
    indices, files = split_image_args(tokens)
    conditional = model.config.num_classes is not None
    if files:
        if conditional:
            raise UsageError("a class-conditional model needs labels: use --dataset and indices")
        return read_image_files(files, model.config.image_shape), None, files
    if data is None:
        raise UsageError("indices in --images need --dataset SPEC to index into")
    check_indices(indices, len(data), "--images")
    idx = torch.tensor(indices, dtype=torch.long)
    labels = None
    if conditional:
        if data.labels is None:
            raise UsageError(f"the model is class-conditional and {data.name} has no labels")
        labels = data.labels[idx]
    return data.images[idx], labels, indices
