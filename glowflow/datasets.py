"""Image data sets: a spec string in, uint8 images (with labels or attributes) in memory out.

A data set is named by a *spec*: :data:`BUILTIN` (``mnist-mini``, 10,000 MNIST digits shipped in
the package) or ``KIND:PATH`` with ``KIND`` one of :data:`KINDS`:

- ``mnist:DIR``: the IDX files as distributed, gzipped or not. The train files are loaded; a
  folder that holds only the ``t10k`` files gives those.
- ``cifar10:DIR``: the ``cifar-10-batches-py`` folder of pickled batches. The five train
  batches are loaded; a folder that holds only ``test_batch`` gives that.
- ``celeba:DIR``: ``img_align_celeba/`` plus ``list_attr_celeba.txt``. Every image gets the
  usual centre 148x148 crop (of 178x218) and is resized to ``image_size`` (default 64).
- ``folder:DIR``: image files; if sub-folders hold images, each sub-folder is a class.
- ``npz:FILE``: arrays ``x`` (``[N, H, W, C]`` uint8) and optional ``y``, ``attrs``,
  ``attr_names``, ``class_names``.

Every set is resized (``image_size``, Pillow LANCZOS) and then zero-padded (``pad``; the MNIST
kinds default to 2, giving 32x32) before it becomes one ``(N, C, H, W)`` uint8 tensor. File order
is sorted, so a spec always gives the same images in the same order. Every problem the user can
fix is a :class:`DataError` whose one-line message names the problem and the fix.
"""

from __future__ import annotations

import gzip
import importlib
import lzma
import math
import os
import pickle
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from PIL import Image

BUILTIN = "mnist-mini"
KINDS = ("mnist", "cifar10", "celeba", "folder", "npz")
ON_BAD_IMAGE = ("skip", "error")
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp")

_MNIST_PAD = 2  # 28x28 -> 32x32, divisible by 2**levels for the usual 3 levels
_CELEBA_SIZE = 64
_CELEBA_FULL = (178, 218)  # (W, H) of the aligned images
_CELEBA_BOX = (15, 40, 163, 188)  # (left, top, right, bottom): the centre 148x148 square
_GRAY_MODES = ("1", "L", "LA")
# What Pillow raises for a file it cannot decode (SyntaxError: some plugins on broken chunks).
_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
_ARCHIVE_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, lzma.LZMAError, zlib.error)


class DataError(ValueError):
    """A data set that cannot be loaded as asked; the message names the problem and the fix."""


@dataclass
class ImageData:
    """A data set held in memory.

    Attributes:
        images: uint8 ``(N, C, H, W)``, values 0..255, ``C`` 1 (grayscale) or 3 (RGB).
        labels: int64 ``(N,)`` class labels, or None.
        attrs: bool ``(N, A)`` binary attributes (True = the image has it), or None.
        attr_names: the ``A`` attribute names, or None.
        class_names: the name of each label value, or None.
        name: the spec the data came from.
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    attrs: torch.Tensor | None = None
    attr_names: list[str] | None = None
    class_names: list[str] | None = None
    name: str = ""

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
    def num_classes(self) -> int | None:
        """The number of classes: ``len(class_names)`` if known, else ``max(labels) + 1``."""
        if self.labels is None:
            return None
        if self.class_names is not None:
            return len(self.class_names)
        return int(self.labels.max()) + 1 if len(self.labels) else None

    def subset(self, index: torch.Tensor | slice) -> ImageData:
        """The images (and their labels and attributes) picked by ``index``."""
        return ImageData(
            images=self.images[index],
            labels=None if self.labels is None else self.labels[index],
            attrs=None if self.attrs is None else self.attrs[index],
            attr_names=self.attr_names,
            class_names=self.class_names,
            name=self.name,
        )


@dataclass
class _Arrays:
    """What a loader returns: NHWC images plus whatever annotations the format carries."""

    x: np.ndarray  # uint8 (N, H, W, C)
    y: np.ndarray | None = None  # int64 (N,)
    attrs: np.ndarray | None = None  # bool (N, A)
    attr_names: list[str] | None = None
    class_names: list[str] | None = None
    sized: bool = False  # already resized to image_size while decoding


def describe_specs() -> str:
    """One paragraph on the accepted data set specs, for ``--help``."""
    return (
        f"A data set SPEC is {BUILTIN} (10,000 MNIST digits shipped with glowflow) or KIND:PATH: "
        "mnist:DIR (the IDX files, .gz or not; train split, or t10k if only it is there), "
        "cifar10:DIR (the cifar-10-batches-py folder; train batches, or test_batch if only it "
        "is there), celeba:DIR (img_align_celeba/ and list_attr_celeba.txt; centre 148x148 crop "
        "resized to --image-size, default 64), folder:DIR (png/jpg/jpeg/bmp/gif/webp files; one "
        "sub-folder per class if there are sub-folders) or npz:FILE (x as [N, H, W, C] uint8, "
        "optional y, attrs, attr_names, class_names). The MNIST kinds are zero-padded to 32x32 "
        "unless --pad says otherwise."
    )


def load_dataset(
    spec: str,
    image_size: int | None = None,
    pad: int | None = None,
    on_bad_image: str = "skip",
    limit: int | None = None,
) -> ImageData:
    """Load the data set named by ``spec`` (see :func:`describe_specs`) into memory.

    Args:
        spec: ``mnist-mini`` or ``KIND:PATH``.
        image_size: resize every image to ``image_size x image_size`` (Pillow LANCZOS); for
            ``celeba`` the size after the crop (default 64). Without it the images of a folder
            must all have one size.
        pad: zero pixels added on each side after resizing; None means 2 for the MNIST kinds
            and 0 otherwise.
        on_bad_image: an image file that cannot be decoded is skipped with a warning
            (``"skip"``) or stops the load (``"error"``).
        limit: keep only the first ``limit`` images (only those are decoded where that is cheap).

    Returns:
        The images as uint8 ``(N, C, H, W)`` with whatever labels and attributes the set has.

    Raises:
        DataError: for anything wrong with the spec, the options or the files.
    """
    _check_options(image_size, pad, on_bad_image, limit)
    kind, path = _parse_spec(spec)
    if kind == BUILTIN:
        data = _load_builtin(limit)
    elif kind == "mnist":
        data = _load_mnist(path, limit)
    elif kind == "cifar10":
        data = _load_cifar10(path, limit)
    elif kind == "celeba":
        data = _load_celeba(path, image_size or _CELEBA_SIZE, on_bad_image, limit)
    elif kind == "folder":
        data = _load_folder(path, image_size, on_bad_image, limit)
    else:
        data = _load_npz(path, limit)

    x = data.x
    if image_size is not None and not data.sized:
        x = _resize_all(x, image_size)
    if pad is None:
        pad = _MNIST_PAD if kind in (BUILTIN, "mnist") else 0
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
    )


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


def _parse_spec(spec: str) -> tuple[str, Path]:
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
    if wants_dir and not path.is_dir():
        raise DataError(f"{kind}: needs a folder but {path} is a file; give its folder instead")
    if not wants_dir and path.is_dir():
        raise DataError(f"npz: needs a .npz file but {path} is a folder; give the file's path")
    if not os.access(path, os.R_OK | (os.X_OK if wants_dir else 0)):
        raise DataError(f"cannot read {path} (permission denied); make it readable or copy it")
    return kind, path


# --- array formats: mnist-mini, MNIST IDX, CIFAR-10 batches, npz -----------------------------


def _load_builtin(limit: int | None) -> _Arrays:
    ref = resources.files("glowflow").joinpath("assets/mnist_mini.npz")
    with resources.as_file(ref) as path:
        data = _load_npz(path, limit)
    data.class_names = data.class_names or [str(d) for d in range(10)]
    return data


def _idx_names(split: str, what: str) -> list[str]:
    """File names tried for one IDX file, canonical spelling first."""
    dims = 3 if what == "images" else 1
    bases = (f"{split}-{what}-idx{dims}-ubyte", f"{split}-{what}.idx{dims}-ubyte")
    return [base + ext for ext in (".gz", "") for base in bases]


def _load_mnist(root: Path, limit: int | None) -> _Arrays:
    # Also look where torchvision keeps them, so a torchvision download works as it is.
    folders = (root, root / "raw", root / "MNIST" / "raw")
    for split in ("train", "t10k"):
        found = {
            what: next(
                (d / n for d in folders for n in _idx_names(split, what) if (d / n).is_file()),
                None,
            )
            for what in ("images", "labels")
        }
        if not any(found.values()):
            continue
        for what, path in found.items():
            if path is None:
                names = ", ".join(_idx_names(split, what))
                raise DataError(
                    f"{root} has MNIST {split} files but no {what} file (looked for {names}); "
                    f"add it from the MNIST distribution"
                )
        x, n_x = _read_idx(found["images"], 2051, limit)
        y, n_y = _read_idx(found["labels"], 2049, limit)
        if n_x != n_y:
            raise DataError(
                f"{found['images']} has {n_x} images but {found['labels']} has {n_y} labels; "
                f"use the images and labels of one split"
            )
        return _Arrays(x[..., None], y.astype(np.int64), class_names=[str(d) for d in range(10)])
    raise DataError(
        f"no MNIST IDX files in {root}: looked for train-images-idx3-ubyte and "
        f"train-labels-idx1-ubyte (or t10k-*; each also as .gz or spelt *.idx3-ubyte); "
        f"put the files of the MNIST distribution there"
    )


def _read_idx(path: Path, magic: int, limit: int | None) -> tuple[np.ndarray, int]:
    """The first ``limit`` items of an unsigned-byte IDX file, and the item count it declares.

    The header is big-endian: a magic number ``0x0000 08 D`` (type ubyte, ``D`` dimensions),
    then ``D`` sizes, the first being the item count; the bytes follow.
    """
    what = "images" if magic == 2051 else "labels"
    opener: Callable[..., IO[bytes]] = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            found = int.from_bytes(head, "big")
            if len(head) < 4 or found != magic:
                raise DataError(
                    f"{path} is not an MNIST {what} file (magic number {found}, expected "
                    f"{magic}); use the {what} file of the MNIST distribution"
                )
            ndim = magic & 0xFF
            sizes = f.read(4 * ndim)
            if len(sizes) < 4 * ndim:
                raise DataError(f"{path} is truncated (incomplete header); download it again")
            n, *item_shape = (int(s) for s in np.frombuffer(sizes, dtype=">u4"))
            k = n if limit is None else min(n, limit)
            need = k * math.prod(item_shape)
            body = f.read(need)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path}: {e}; download it again") from e
    if len(body) < need:
        raise DataError(f"{path} is truncated ({len(body)} of {need} bytes); download it again")
    return np.frombuffer(body, dtype=np.uint8).reshape(k, *item_shape), n


def _latin1_encode(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2, and nothing more."""
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _pickle_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR-10 batch may name: what rebuilds numpy arrays and bytes."""
    try:  # numpy >= 2 moved numpy.core to numpy._core; pickles may name either
        multiarray = importlib.import_module("numpy._core.multiarray")
        numeric = importlib.import_module("numpy._core.numeric")
    except ImportError:
        multiarray = importlib.import_module("numpy.core.multiarray")
        numeric = importlib.import_module("numpy.core.numeric")
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays; refuses every other global.

    Unpickling can call any function a pickle names, so a downloaded file could run code; the
    CIFAR-10 batches only ever need numpy's array reconstruction.
    """

    def __init__(self, file: IO[bytes], path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.path = path
        self.allowed = _pickle_globals()

    def find_class(self, module: str, name: str) -> Any:
        obj = self.allowed.get((module, name))
        if obj is None:
            raise DataError(
                f"{self.path} refers to {module}.{name}, which a CIFAR-10 batch never does; "
                f"refusing to unpickle it (only numpy arrays are allowed): use the original files"
            )
        return obj


def _unpickle(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, path).load()
    except DataError:
        raise
    except Exception as e:  # a corrupt pickle can fail in many ways; all mean "bad file"
        raise DataError(f"cannot unpickle {path}: {e}; download the batches again") from e


def _batch_number(path: Path) -> int:
    return int(path.name.rsplit("_", 1)[1])


def _load_cifar10(root: Path, limit: int | None) -> _Arrays:
    for folder in (root, root / "cifar-10-batches-py"):
        batches = sorted(
            (p for p in folder.glob("data_batch_*") if re.fullmatch(r"data_batch_\d+", p.name)),
            key=_batch_number,
        )
        if not batches and (folder / "test_batch").is_file():
            batches = [folder / "test_batch"]
        if batches:
            break
    else:
        raise DataError(
            f"no CIFAR-10 batches in {root} (looked for data_batch_1..5 and test_batch); "
            f"point cifar10: at the extracted cifar-10-batches-py folder"
        )
    xs, ys, count = [], [], 0
    for path in batches:
        if limit is not None and count >= limit:
            break
        batch = _unpickle(path)
        data = batch.get(b"data") if isinstance(batch, dict) else None
        labels = batch.get(b"labels") if isinstance(batch, dict) else None
        if not isinstance(data, np.ndarray) or labels is None:
            raise DataError(f"{path} is not a CIFAR-10 batch (no b'data' and b'labels'); remove it")
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(
                f"{path}: data is {data.dtype} {list(data.shape)}, expected uint8 [N, 3072]; "
                f"use the python version of CIFAR-10 (cifar-10-python.tar.gz)"
            )
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (len(data),):
            raise DataError(f"{path} has {len(data)} images but {labels.size} labels; remove it")
        # Rows are channel-major: 1024 red, then green, then blue values, each row-major 32x32.
        xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # (n, 32, 32, 3)
        ys.append(labels)
        count += len(data)
    x, y = np.concatenate(xs)[:limit], np.concatenate(ys)[:limit]
    class_names = None
    meta_path = folder / "batches.meta"
    if meta_path.is_file():
        meta = _unpickle(meta_path)
        names = meta.get(b"label_names") if isinstance(meta, dict) else None
        if names is not None:
            class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return _Arrays(x, y, class_names=class_names)


def _npz_array(zf: zipfile.ZipFile, key: str, limit: int | None, path: Path) -> np.ndarray:
    """Array ``key`` of an open npz archive, only its first ``limit`` rows when cheap.

    The archive member is a .npy stream: reading its header and then just ``limit`` rows skips
    decompressing the rest, which is most of the time for a small ``limit`` on a large file.
    Never unpickles: object arrays are refused as ``np.load(allow_pickle=False)`` does.
    """
    fmt = np.lib.format
    try:
        if limit is not None:
            with zf.open(f"{key}.npy") as f:
                version = fmt.read_magic(f)
                if version in ((1, 0), (2, 0)):
                    read_header = (
                        fmt.read_array_header_1_0
                        if version == (1, 0)
                        else fmt.read_array_header_2_0
                    )
                    shape, fortran_order, dtype = read_header(f)
                    if shape and not fortran_order and not dtype.hasobject:
                        k = min(shape[0], limit)
                        need = k * math.prod(shape[1:]) * dtype.itemsize
                        body = f.read(need)
                        if len(body) < need:
                            raise DataError(f"{path}: array {key} is truncated; rewrite the file")
                        return np.frombuffer(body, dtype=dtype).reshape(k, *shape[1:])
        with zf.open(f"{key}.npy") as f:
            array = fmt.read_array(f, allow_pickle=False)
    except DataError:
        raise
    except _ARCHIVE_ERRORS as e:
        raise DataError(
            f"cannot read array {key} from {path}: {e}; save it with numpy.savez (no object arrays)"
        ) from e
    return array[:limit] if limit is not None and array.ndim else array


def _names(array: np.ndarray, key: str, count: int, path: Path) -> list[str]:
    if array.ndim != 1 or array.dtype.kind not in "US" or len(array) != count:
        raise DataError(
            f"{path}: {key} is {array.dtype} {list(array.shape)}, expected {count} strings"
        )
    return [v.decode() if isinstance(v, bytes) else str(v) for v in array.tolist()]


def _load_npz(path: Path, limit: int | None) -> _Arrays:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(
            f"{path} is not a .npz archive ({e}); save the images with numpy.savez(path, x=x)"
        ) from e
    with zf:
        keys = {n[: -len(".npy")] for n in zf.namelist() if n.endswith(".npy")}
        if "x" not in keys:
            raise DataError(
                f"{path} has no array x (it has {sorted(keys)}); store the images as x, "
                f"[N, H, W, C] uint8"
            )
        x = _npz_array(zf, "x", limit, path)
        if x.ndim == 3:  # (N, H, W): grayscale without its channel axis
            x = x[..., None]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] not in (1, 3):
            raise DataError(
                f"{path}: x is {x.dtype} {list(x.shape)}, expected [N, H, W, C] uint8 with "
                f"C = 1 or 3; convert it (e.g. x.astype(np.uint8), NCHW -> NHWC)"
            )
        n = len(x)
        data = _Arrays(x)
        if "y" in keys:
            y = _npz_array(zf, "y", limit, path)
            if y.shape != (n,) or y.dtype.kind not in "iub" or (n and y.min() < 0):
                raise DataError(
                    f"{path}: y is {y.dtype} {list(y.shape)}, expected {n} integer labels >= 0"
                )
            data.y = y.astype(np.int64)
        if "attrs" in keys:
            a = _npz_array(zf, "attrs", limit, path)
            if a.ndim != 2 or len(a) != n or a.dtype.kind not in "iub":
                raise DataError(f"{path}: attrs is {a.dtype} {list(a.shape)}, expected [{n}, A]")
            if not np.isin(a, (-1, 0, 1)).all():
                raise DataError(f"{path}: attrs must hold -1/+1 or 0/1 values; recode them")
            data.attrs = a == 1
            if "attr_names" in keys:
                names = _npz_array(zf, "attr_names", None, path)
                data.attr_names = _names(names, "attr_names", a.shape[1], path)
        if "class_names" in keys:
            names = _npz_array(zf, "class_names", None, path)
            data.class_names = _names(names, "class_names", len(names), path)
            if data.y is not None and n and int(data.y.max()) >= len(data.class_names):
                raise DataError(
                    f"{path}: label {int(data.y.max())} has no entry in class_names "
                    f"({len(data.class_names)} names); add the missing names"
                )
    return data


def _resize_all(x: np.ndarray, size: int) -> np.ndarray:
    """Resize NHWC uint8 images to ``size x size`` with LANCZOS (a no-op if they already are)."""
    if x.shape[1:3] == (size, size):
        return x
    gray = x.shape[3] == 1
    out = np.empty((len(x), size, size, x.shape[3]), dtype=np.uint8)
    for i, img in enumerate(x):
        im = Image.fromarray(img[..., 0] if gray else img)
        out[i] = np.asarray(im.resize((size, size), Image.LANCZOS)).reshape(size, size, -1)
    return out


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


def _read_images(
    paths: Sequence[Path],
    prepare: Callable[[Image.Image], Image.Image],
    on_bad_image: str,
    limit: int | None,
) -> tuple[np.ndarray, list[int]]:
    """Decode ``paths`` through ``prepare`` into one NHWC uint8 array.

    ``prepare`` returns an ``"L"`` or ``"RGB"`` image; if any image is RGB the grayscale ones
    are repeated to three channels. Returns the array and the indices of the paths it holds.
    """
    arrays: list[np.ndarray] = []
    kept: list[int] = []
    first: tuple[tuple[int, ...], Path] | None = None
    for i, path in enumerate(paths):
        if limit is not None and len(arrays) >= limit:
            break
        try:
            with Image.open(path) as im:
                array = np.asarray(prepare(im))
        except _IMAGE_ERRORS as e:
            reason = str(e) or type(e).__name__
            if on_bad_image == "error":
                raise DataError(
                    f"cannot read image {path}: {reason}; fix or delete it, or skip such files "
                    f"(on_bad_image='skip', --on-bad-image skip)"
                ) from e
            warnings.warn(f"skipping unreadable image {path}: {reason}", stacklevel=4)
            continue
        if first is None:
            first = (array.shape[:2], path)
        elif array.shape[:2] != first[0]:
            (h0, w0), (h1, w1) = first[0], array.shape[:2]
            raise DataError(
                f"images differ in size: {first[1]} is {w0}x{h0} but {path} is {w1}x{h1}; "
                f"pass --image-size N to resize them all to NxN"
            )
        arrays.append(array)
        kept.append(i)
    if not arrays:
        folder = paths[0].parent if paths else Path()
        raise DataError(f"none of the {len(paths)} image files in {folder} could be read")
    if all(a.ndim == 2 for a in arrays):
        return np.stack(arrays)[..., None], kept  # (N, H, W, 1)
    rgb = [np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in arrays]
    return np.stack(rgb), kept  # (N, H, W, 3)


def _load_folder(
    root: Path, image_size: int | None, on_bad_image: str, limit: int | None
) -> _Arrays:
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
    if classes:
        paths = [p for _, files in classes for p in files]
        labels = np.concatenate(
            [np.full(len(f), k, dtype=np.int64) for k, (_, f) in enumerate(classes)]
        )
    elif loose:
        paths, labels = loose, None
    else:
        raise _no_images(root)

    def prepare(im: Image.Image) -> Image.Image:
        if im.mode.startswith("I;16"):  # 16-bit grayscale: keep the high byte, not a clip
            im = Image.fromarray((np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8))
        im = im.convert("L" if im.mode in _GRAY_MODES else "RGB")
        if image_size is not None and im.size != (image_size, image_size):
            im = im.resize((image_size, image_size), Image.LANCZOS)
        return im

    x, kept = _read_images(paths, prepare, on_bad_image, limit)
    if labels is None:
        return _Arrays(x, sized=True)
    return _Arrays(x, labels[kept], class_names=[name for name, _ in classes], sized=True)


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


def _load_celeba(root: Path, size: int, on_bad_image: str, limit: int | None) -> _Arrays:
    folder, attr_file = _find_celeba(root)
    paths = _images_in(folder)
    names: list[str] | None = None
    rows: dict[str, str] = {}
    if attr_file is not None:
        names, rows = _read_celeba_attrs(attr_file)
        missing = [p.name for p in paths if p.name not in rows]
        if missing:
            raise DataError(
                f"{len(missing)} images in {folder} have no row in {attr_file} (e.g. "
                f"{missing[0]}); use the attribute file that belongs to these images"
            )

    def prepare(im: Image.Image) -> Image.Image:
        # The crop box scales with the image, so re-encoded smaller copies crop alike. Crop to
        # the whole pixels around it first so that LANCZOS never reads pixels outside it.
        w, h = im.size
        sx, sy = w / _CELEBA_FULL[0], h / _CELEBA_FULL[1]
        left, top, right, bottom = (v * s for v, s in zip(_CELEBA_BOX, (sx, sy, sx, sy)))
        outer = (math.floor(left), math.floor(top), math.ceil(right), math.ceil(bottom))
        box = (left - outer[0], top - outer[1], right - outer[0], bottom - outer[1])
        return im.convert("RGB").crop(outer).resize((size, size), Image.LANCZOS, box=box)

    x, kept = _read_images(paths, prepare, on_bad_image, limit)
    if names is None:
        return _Arrays(x, sized=True)
    values = []
    for i in kept:
        row = rows[paths[i].name].split()
        if len(row) != len(names):
            raise DataError(
                f"{attr_file}: the row of {paths[i].name} has {len(row)} values for "
                f"{len(names)} attributes; use an unmodified list_attr_celeba.txt"
            )
        values.append(row)
    try:
        attrs = np.array(values, dtype=np.int64) == 1  # -1 = no, 1 = yes
    except ValueError as e:
        raise DataError(f"{attr_file} has a non-numeric attribute value ({e}); fix it") from e
    return _Arrays(x, attrs=attrs, attr_names=names, sized=True)
