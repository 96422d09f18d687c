"""Readers of image files: a folder of images (one sub-folder per class, if any), CelebA, and
a user's own image files for the latent tools."""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from glowflow.data.formats import Arrays, DataError

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp")
CELEBA_SIZE = 64
_CELEBA_FULL = (178, 218)  # (W, H) of the aligned images
_CELEBA_BOX = (15, 40, 163, 188)  # (left, top, right, bottom): the centre 148x148 square
_GRAY_MODES = ("1", "L", "LA")
# What Pillow raises for a file it cannot decode (SyntaxError: some plugins on broken chunks).
_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


# --- image files: folder, celeba -------------------------------------------------------------


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _images_in(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` in sorted order, skipping hidden files and folders."""
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file() and _is_image(p))
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath, f) for f in filenames if _is_image(Path(f))]
    return sorted(found)


def _no_images(folder: Path) -> DataError:
    return DataError(
        f"no images found in {folder} (accepted extensions: {', '.join(IMAGE_EXTENSIONS)}); "
        f"check the path"
    )


def decode_file(path: Path, prepare: Callable[[Image.Image], Image.Image]) -> np.ndarray | str:
    """The image file decoded through ``prepare`` as a uint8 array, or why it cannot be."""
    try:
        with Image.open(path) as im:
            return np.asarray(prepare(im))
    except _IMAGE_ERRORS as e:
        return str(e) or type(e).__name__


_FIX_BAD_IMAGE = "fix or delete it, or skip such files (--on-bad-image skip)"


def accept_decoded(
    path: Path, result: np.ndarray | str, on_bad_image: str, fix: str = _FIX_BAD_IMAGE
) -> np.ndarray | None:
    """A ``decode_file`` result: the array, or for a file that could not be decoded None
    with a warning (``on_bad_image="skip"``) or a ``DataError`` (``"error"``)."""
    if not isinstance(result, str):
        return result
    if on_bad_image == "error":
        raise DataError(f"cannot read image {path}: {result}; {fix}")
    warnings.warn(f"skipping unreadable image {path}: {result}", stacklevel=3)
    return None


def stack_images(arrays: Sequence[np.ndarray], paths: Sequence[Path]) -> np.ndarray:
    """One NHWC uint8 array of decoded ``"L"``/``"RGB"`` images (``paths``: their files): all
    must have one size, and if any is RGB the grayscale ones are repeated to three channels."""
    for a, path in zip(arrays, paths):
        if a.shape[:2] != arrays[0].shape[:2]:
            (h0, w0), (h1, w1) = arrays[0].shape[:2], a.shape[:2]
            raise DataError(
                f"images differ in size: {paths[0]} is {w0}x{h0} but {path} is {w1}x{h1}; "
                f"pass --image-size N to resize them all to NxN"
            )
    if all(a.ndim == 2 for a in arrays):
        return np.stack(arrays)[..., None]  # (N, H, W, 1)
    return np.stack([np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in arrays])


def _read_images(
    paths: Sequence[Path],
    prepare: Callable[[Image.Image], Image.Image],
    on_bad_image: str,
    limit: int | None,
    fix: str = _FIX_BAD_IMAGE,
) -> tuple[np.ndarray, list[int]]:
    """Decode ``paths`` through ``prepare`` into one NHWC uint8 array (``stack_images``).
    Returns the array and the indices of the paths it holds."""
    arrays: list[np.ndarray] = []
    kept: list[int] = []
    for i, path in enumerate(paths):
        if limit is not None and len(arrays) >= limit:
            break
        array = accept_decoded(path, decode_file(path, prepare), on_bad_image, fix)
        if array is not None:
            arrays.append(array)
            kept.append(i)
    if not arrays:
        folder = paths[0].parent if paths else Path()
        raise DataError(f"none of the {len(paths)} image files in {folder} could be read")
    return stack_images(arrays, [paths[i] for i in kept]), kept


@dataclass
class FilePlan:
    """What an image-file set will decode to, before any image is decoded: the files in order,
    the per-file labels or attributes, and the function that turns one opened image into the
    stored one (picklable, so that worker processes can decode in parallel)."""

    paths: list[Path]
    prepare: Callable[[Image.Image], Image.Image]
    labels: np.ndarray | None = None  # int64, one per path
    class_names: list[str] | None = None
    attrs: np.ndarray | None = None  # bool (len(paths), A)
    attr_names: list[str] | None = None

    def arrays(self, x: np.ndarray, kept: list[int]) -> Arrays:
        """The decoded images ``x`` of the paths ``kept``, with their annotations."""
        labels = None if self.labels is None else self.labels[kept]
        attrs = None if self.attrs is None else self.attrs[kept]
        return Arrays(x, labels, attrs, self.attr_names,
                      self.class_names if labels is not None else None, sized=True)  # fmt: skip


def eight_bit(im: Image.Image) -> Image.Image:
    """A 16-bit grayscale image as 8-bit grayscale by the high byte of each sample (a 16-bit
    level ``v`` becomes ``v >> 8``, where Pillow's own conversion would clip at 255); any
    other image as it is."""
    if im.mode.startswith("I;16"):
        return Image.fromarray((np.asarray(im) >> 8).astype(np.uint8))
    return im


def _prepare_file(im: Image.Image, image_size: int | None) -> Image.Image:
    im = eight_bit(im)
    im = im.convert("L" if im.mode in _GRAY_MODES else "RGB")
    if image_size is not None and im.size != (image_size, image_size):
        im = im.resize((image_size, image_size), Image.LANCZOS)
    return im


def plan_folder(root: Path, image_size: int | None) -> FilePlan:
    loose = _images_in(root)
    classes: list[tuple[str, list[Path]]] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = _images_in(sub, recursive=True)
        if files:  # a sub-folder without images is not a class
            classes.append((sub.name, files))
    if classes and loose:
        raise DataError(
            f"{root} holds both image files and class sub-folders ({classes[0][0]}/, ...); "
            f"move the loose images into a class sub-folder or point folder: at one sub-folder"
        )
    prepare = functools.partial(_prepare_file, image_size=image_size)
    if classes:
        paths = [p for _, files in classes for p in files]
        labels = np.concatenate(
            [np.full(len(f), k, dtype=np.int64) for k, (_, f) in enumerate(classes)]
        )
        return FilePlan(paths, prepare, labels, class_names=[name for name, _ in classes])
    if loose:
        return FilePlan(loose, prepare)
    raise _no_images(root)


def load_folder(root: Path, image_size: int | None, on_bad_image: str, limit: int | None) -> Arrays:
    plan = plan_folder(root, image_size)
    return plan.arrays(*_read_images(plan.paths, plan.prepare, on_bad_image, limit))


def _find_celeba(root: Path) -> tuple[Path, Path | None]:
    """``(image folder, attribute file or None)`` of a CelebA download rooted at ``root``."""
    candidates = (
        root / "img_align_celeba" / "img_align_celeba",  # the Kaggle archive nests it
        root / "img_align_celeba",
        root / "Img" / "img_align_celeba",  # the official Google Drive layout
        root,
    )
    for folder in candidates:
        if folder.is_dir() and any(p.is_file() and _is_image(p) for p in folder.iterdir()):
            break
    else:
        raise DataError(
            f"no CelebA images in {root}: expected img_align_celeba/ holding 000001.jpg, ..., "
            f"or {root} to be that folder"
        )
    places = (root, root / "Anno", folder, folder.parent, folder.parent / "Anno")
    attr_file = next(
        (d / "list_attr_celeba.txt" for d in places if (d / "list_attr_celeba.txt").is_file()),
        None,
    )
    return folder, attr_file


def _read_celeba_attrs(path: Path) -> tuple[list[str], dict[str, str]]:
    """Attribute names and, for each image file name, its row of values (still text)."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}; download it again") from e
    start = 1 if lines and lines[0].strip().isdigit() else 0  # the image count line
    if len(lines) <= start:
        raise DataError(f"{path} has no attribute names line; use the CelebA list_attr_celeba.txt")
    names = lines[start].split()
    rows = {}
    for line in lines[start + 1 :]:
        file_name, _, values = line.strip().partition(" ")
        if file_name:
            rows[file_name] = values
    return names, rows


def _prepare_celeba(im: Image.Image, size: int) -> Image.Image:
    # The crop box scales with the image, so re-encoded smaller copies crop alike. Crop to the
    # whole pixels around it first so that LANCZOS never reads pixels outside it.
    w, h = im.size
    sx, sy = w / _CELEBA_FULL[0], h / _CELEBA_FULL[1]
    left, top, right, bottom = (v * s for v, s in zip(_CELEBA_BOX, (sx, sy, sx, sy)))
    outer = (math.floor(left), math.floor(top), math.ceil(right), math.ceil(bottom))
    box = (left - outer[0], top - outer[1], right - outer[0], bottom - outer[1])
    return im.convert("RGB").crop(outer).resize((size, size), Image.LANCZOS, box=box)


def plan_celeba(root: Path, size: int) -> FilePlan:
    folder, attr_file = _find_celeba(root)
    paths = _images_in(folder)
    plan = FilePlan(paths, functools.partial(_prepare_celeba, size=size))
    if attr_file is None:
        return plan
    names, rows = _read_celeba_attrs(attr_file)
    missing = [p.name for p in paths if p.name not in rows]
    if missing:
        raise DataError(
            f"{len(missing)} images in {folder} have no row in {attr_file} (e.g. "
            f"{missing[0]}); use the attribute file that belongs to these images"
        )
    values = []
    for path in paths:
        row = rows[path.name].split()
        if len(row) != len(names):
            raise DataError(
                f"{attr_file}: the row of {path.name} has {len(row)} values for "
                f"{len(names)} attributes; use an unmodified list_attr_celeba.txt"
            )
        values.append(row)
    try:
        plan.attrs = np.array(values, dtype=np.int64).reshape(len(paths), len(names)) == 1
    except ValueError as e:
        raise DataError(f"{attr_file} has a non-numeric attribute value ({e}); fix it") from e
    plan.attr_names = names
    return plan


def load_celeba(root: Path, size: int, on_bad_image: str, limit: int | None) -> Arrays:
    plan = plan_celeba(root, size)
    return plan.arrays(*_read_images(plan.paths, plan.prepare, on_bad_image, limit))


def read_image_files(paths: Sequence[str | Path], shape: tuple[int, int, int]) -> torch.Tensor:
    """A user's own image files as uint8 ``(N, C, H, W)`` of the model's ``shape``: each is
    converted to grayscale or RGB and resized (LANCZOS) to ``H x W``.

    Raises:
        DataError: for a file that is missing or cannot be decoded, naming it.
    """
    c, h, w = shape
    paths = [Path(p).expanduser() for p in paths]
    for path in paths:
        if not path.is_file():
            raise DataError(f"image file {path} does not exist; check the path")

    def prepare(im: Image.Image) -> Image.Image:
        return im.convert("L" if c == 1 else "RGB").resize((w, h), Image.LANCZOS)

    x, _ = _read_images(paths, prepare, "error", None, fix="give a PNG or JPEG image")
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # (N, C, H, W)
