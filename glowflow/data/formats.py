"""Readers of the array formats: the built-in set, MNIST IDX, CIFAR-10 batches and npz.

Each returns an ``Arrays`` of NHWC uint8 images plus whatever annotations the format
carries; ``glowflow.data.datasets.load_dataset`` turns that into an ``ImageData``. Nothing here
unpickles code: the CIFAR-10 pickles go through an unpickler that builds arrays and nothing else.
"""

from __future__ import annotations

import gzip
import importlib
import lzma
import math
import pickle
import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from glowflow.errors import GlowflowError

_ARCHIVE_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, lzma.LZMAError, zlib.error)


class DataError(GlowflowError, ValueError):
    """A data set that cannot be loaded as asked; the message names the problem and the fix."""


@dataclass
class Arrays:
    """What a loader returns: NHWC images plus whatever annotations the format carries."""

    x: np.ndarray  # uint8 (N, H, W, C)
    y: np.ndarray | None = None  # int64 (N,)
    attrs: np.ndarray | None = None  # bool (N, A)
    attr_names: list[str] | None = None
    class_names: list[str] | None = None
    sized: bool = False  # already resized to image_size while decoding


# --- array formats: mnist-mini, MNIST IDX, CIFAR-10 batches, npz -----------------------------


def load_builtin(limit: int | None) -> Arrays:
    ref = resources.files("glowflow").joinpath("assets/mnist_mini.npz")
    with resources.as_file(ref) as path:
        data = load_npz(path, limit)
    data.class_names = data.class_names or [str(d) for d in range(10)]
    return data


def _idx_names(split: str, what: str) -> list[str]:
    """File names tried for one IDX file, canonical spelling first."""
    dims = 3 if what == "images" else 1
    bases = (f"{split}-{what}-idx{dims}-ubyte", f"{split}-{what}.idx{dims}-ubyte")
    return [base + ext for ext in (".gz", "") for base in bases]


def load_mnist(root: Path, limit: int | None) -> Arrays:
    """The train split of the IDX files in folder ``root`` (t10k if only it is there), or the
    split whose images file ``root`` is, with the labels file beside it."""
    splits = ("train", "t10k")
    # Also look where torchvision keeps them, so a torchvision download works as it is.
    folders: tuple[Path, ...] = (root, root / "raw", root / "MNIST" / "raw")
    if root.is_file():
        splits = tuple(s for s in splits if root.name in _idx_names(s, "images"))
        if not splits:
            raise DataError(
                f"{root.name} is not an MNIST images file; name a folder of IDX files or its "
                f"train-images-idx3-ubyte or t10k-images-idx3-ubyte file (.gz or not)"
            )
        folders = (root.parent,)
    for split in splits:
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
        return Arrays(x[..., None], y.astype(np.int64), class_names=[str(d) for d in range(10)])
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


def load_cifar10(root: Path, limit: int | None) -> Arrays:
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
    return Arrays(x, y, class_names=class_names)


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


def load_npz(path: Path, limit: int | None) -> Arrays:
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
        data = Arrays(x)
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


def resize_all(x: np.ndarray, size: int) -> np.ndarray:
    """Resize NHWC uint8 images to ``size x size`` with LANCZOS (a no-op if they already are)."""
    if x.shape[1:3] == (size, size):
        return x
    gray = x.shape[3] == 1
    out = np.empty((len(x), size, size, x.shape[3]), dtype=np.uint8)
    for i, img in enumerate(x):
        im = Image.fromarray(img[..., 0] if gray else img)
        out[i] = np.asarray(im.resize((size, size), Image.LANCZOS)).reshape(size, size, -1)
    return out
