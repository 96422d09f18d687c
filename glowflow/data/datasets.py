"""Image data sets: a spec string in, uint8 images (with labels or attributes) in memory out.

A data set is named by a *spec*: ``BUILTIN`` (``mnist-mini``, 10,000 MNIST digits shipped in
the package) or ``KIND:PATH`` with ``KIND`` one of ``KINDS``:

- ``mnist:DIR``: the IDX files as distributed, gzipped or not. The train files are loaded; a
  folder that holds only the ``t10k`` files gives those. ``mnist:DIR/t10k-images-idx3-ubyte.gz``
  (an images file) loads that split, with its labels file from the same folder.
- ``cifar10:DIR``: the ``cifar-10-batches-py`` folder of pickled batches. The five train
  batches are loaded; a folder that holds only ``test_batch`` gives that.
- ``celeba:DIR``: ``img_align_celeba/`` plus ``list_attr_celeba.txt``. Every image gets the
  usual centre 148x148 crop (of 178x218) and is resized to ``image_size`` (default 64).
- ``folder:DIR``: image files; if sub-folders hold images, each sub-folder is a class.
- ``npz:FILE``: arrays ``x`` (``[N, H, W, C]`` uint8) and optional ``y``, ``attrs``,
  ``attr_names``, ``class_names``.
- ``store:DIR``: a store written by ``glowflow prepare`` (``glowflow.data.store``), whose images
  were resized and padded once and are read from disk as they are needed, never all loaded.

Every set is resized (``image_size``, Pillow LANCZOS) and then zero-padded (``pad``, none by
default) before it becomes one ``(N, C, H, W)`` uint8 tensor. File order
is sorted, so a spec always gives the same images in the same order. Every problem the user can
fix is a ``DataError`` whose one-line message names the problem and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from glowflow.config import BUILTIN_DATASET, ON_BAD_IMAGE
from glowflow.data.formats import (
    DataError,
    load_builtin,
    load_cifar10,
    load_mnist,
    load_npz,
    resize_all,
)
from glowflow.data.imagedata import ImageData
from glowflow.data.imagefiles import CELEBA_SIZE, load_celeba, load_folder
from glowflow.data.store import open_store

__all__ = ["BUILTIN", "KINDS", "DataError", "dataset_name", "describe_specs", "load_dataset",
           "split_validation"]  # fmt: skip

BUILTIN = BUILTIN_DATASET
KINDS = ("mnist", "cifar10", "celeba", "folder", "npz", "store")


def describe_specs() -> str:
    """One paragraph on the accepted data set specs, for ``--help``."""
    return (
        f"A data set SPEC is {BUILTIN} (10,000 MNIST digits shipped with glowflow) or KIND:PATH: "
        "mnist:DIR (the IDX files, .gz or not; train split, or t10k if only it is there; or "
        "mnist:DIR/t10k-images-idx3-ubyte.gz for one split), "
        "cifar10:DIR (the cifar-10-batches-py folder; train batches, or test_batch if only it "
        "is there), celeba:DIR (img_align_celeba/ and list_attr_celeba.txt; centre 148x148 crop "
        "resized to --image-size, default 64), folder:DIR (png/jpg/jpeg/bmp/gif/webp files; one "
        "sub-folder per class if there are sub-folders) or npz:FILE (x as [N, H, W, C] uint8, "
        "optional y, attrs, attr_names, class_names) or store:DIR (made by glowflow prepare; "
        "read from disk, not loaded). Images are zero-padded only where --pad says so: "
        "MNIST's 28x28 trains as it is, at two levels (28 -> 14 -> 7)."
    )


def dataset_name(spec: str) -> str:
    """A short name for the set ``spec`` names: its file or folder name (``npz:a/b/test.npz``
    -> ``test``); an MNIST images file gives its folder and split (``fashion-mnist-t10k``)."""
    if spec.strip().lower() == BUILTIN:
        return BUILTIN
    kind, _, rest = spec.partition(":")
    path = Path(rest.rstrip("/\\")).expanduser()
    if kind.strip().lower() == "mnist" and "-images" in path.name:
        return f"{path.parent.name}-{path.name.split('-images')[0]}"
    return path.stem if kind.strip().lower() == "npz" else path.name


def load_dataset(
    spec: str,
    image_size: int | None = None,
    pad: int | None = None,
    on_bad_image: str = "skip",
    limit: int | None = None,
) -> ImageData:
    """Load the data set named by ``spec`` (see ``describe_specs``) into memory.

    Args:
        spec: ``mnist-mini`` or ``KIND:PATH``.
        image_size: resize every image to ``image_size x image_size`` (Pillow LANCZOS); for
            ``celeba`` the size after the crop (default 64). Without it the images of a folder
            must all have one size.
        pad: zero pixels added on each side after resizing; None means 0.
        on_bad_image: an image file that cannot be decoded is skipped with a warning
            (``"skip"``) or stops the load (``"error"``).
        limit: keep only the first ``limit`` images (only those are decoded where that is cheap).

    Returns:
        The images as uint8 ``(N, C, H, W)`` with whatever labels and attributes the set has.

    Raises:
        DataError: for anything wrong with the spec, the options or the files.
    """
    _check_options(image_size, pad, on_bad_image, limit)
    kind, path = parse_spec(spec)
    if kind == "store":
        return _load_store(spec, path, image_size, pad, limit)
    if kind == BUILTIN:
        data = load_builtin(limit)
    elif kind == "mnist":
        data = load_mnist(path, limit)
    elif kind == "cifar10":
        data = load_cifar10(path, limit)
    elif kind == "celeba":
        data = load_celeba(path, image_size or CELEBA_SIZE, on_bad_image, limit)
    elif kind == "folder":
        data = load_folder(path, image_size, on_bad_image, limit)
    else:
        data = load_npz(path, limit)

    x = data.x
    if image_size is not None and not data.sized:
        x = resize_all(x, image_size)
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    # np.array copies: the result is writable and C-contiguous whatever x was.
    images = torch.from_numpy(np.array(x.transpose(0, 3, 1, 2), order="C"))  # (N, C, H, W)
    return ImageData(
        images=images,
        labels=None if data.y is None else torch.from_numpy(np.array(data.y, dtype=np.int64)),
        attrs=None if data.attrs is None else torch.from_numpy(np.array(data.attrs, dtype=bool)),
        attr_names=data.attr_names,
        class_names=data.class_names,
        name=spec,
        pad=pad or 0,
    )


def _load_store(
    spec: str, path: Path, image_size: int | None, pad: int | None, limit: int | None
) -> ImageData:
    """A prepared store (``glowflow.data.store``): its images stay on disk until indexed."""
    data = open_store(path, name=spec, image_size=image_size, pad=pad)
    return data.subset(slice(0, limit)) if limit is not None and limit < len(data) else data


def split_validation(
    data: ImageData, fraction: float, seed: int = 0
) -> tuple[ImageData, ImageData]:
    """Split ``data`` at random into ``(train, validation)``, the same way for the same seed.

    The last ``round(N * fraction)`` entries of a seeded random permutation form the validation
    set; each part keeps the original order of its images.

    Raises:
        DataError: if ``fraction`` is not in ``(0, 1)`` or leaves one part empty.
    """
    if not 0 < fraction < 1:
        raise DataError(
            f"validation fraction must be between 0 and 1 (exclusive), got {fraction}; use e.g. 0.1"
        )
    n = len(data)
    n_val = round(n * fraction)
    if n_val == 0 or n_val == n:
        raise DataError(
            f"a validation fraction of {fraction} of {n} images leaves an empty split; "
            f"choose a fraction that gives both parts at least one image"
        )
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    train = perm[: n - n_val].sort().values
    val = perm[n - n_val :].sort().values
    return data.subset(train), data.subset(val)


# --- spec and option checks ----------------------------------------------------------------


def _check_options(
    image_size: int | None, pad: int | None, on_bad_image: str, limit: int | None
) -> None:
    if image_size is not None and image_size < 1:
        raise DataError(f"image_size must be a positive number of pixels, got {image_size}")
    if pad is not None and pad < 0:
        raise DataError(f"pad must be 0 or more pixels, got {pad}")
    if on_bad_image not in ON_BAD_IMAGE:
        raise DataError(f"on_bad_image must be one of {ON_BAD_IMAGE}, got {on_bad_image!r}")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be at least 1 image, got {limit}; leave it unset for all")


def parse_spec(spec: str) -> tuple[str, Path]:
    """``spec`` -> ``(kind, path)``; the built-in set gets ``(BUILTIN, Path())``."""
    if spec.strip().lower() == BUILTIN:
        return BUILTIN, Path()
    kind, sep, rest = spec.partition(":")
    kinds = ", ".join(KINDS)
    if not sep:
        guess = "npz" if spec.lower().endswith(".npz") else "folder"
        raise DataError(
            f"data set spec {spec!r} is not {BUILTIN} and has no KIND: prefix; write KIND:PATH "
            f"(e.g. {guess}:{spec}) with KIND one of {kinds}"
        )
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise DataError(
            f"unknown data set kind {kind!r} in {spec!r}; write KIND:PATH with KIND one of "
            f"{kinds}, or use the built-in {BUILTIN}"
        )
    if not rest.strip():
        raise DataError(f"data set spec {spec!r} has no path; write {kind}:PATH")
    path = Path(rest).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist (data set {spec!r}); check the path")
    wants_dir = kind != "npz"
    if kind == "mnist" and path.is_file():  # the images file of one split
        wants_dir = False
    elif wants_dir and not path.is_dir():
        raise DataError(f"{kind}: needs a folder but {path} is a file; give its folder instead")
    if not wants_dir and path.is_dir():
        raise DataError(f"npz: needs a .npz file but {path} is a folder; give the file's path")
    if not os.access(path, os.R_OK | (os.X_OK if wants_dir else 0)):
        raise DataError(f"cannot read {path} (permission denied); make it readable or copy it")
    return kind, path
