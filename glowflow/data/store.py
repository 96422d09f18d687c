"""A prepared data set on disk (a *store*): its layout, and reading it without loading it.

``glowflow prepare SPEC DIR`` (``glowflow.data.prepare``) writes a store that
``--dataset store:DIR`` reads:

- ``images-00000.npy``, ``images-00001.npy``, ...: the images as uint8 ``(n, C, H, W)`` arrays
  at their final size (resized and padded), in NumPy's own ``.npy`` format, so that
  ``numpy.load(f, mmap_mode="r")`` opens any shard without glowflow;
- ``labels.npy`` (int64 ``(N,)``), ``attrs.npy`` (bool ``(N, A)``) and ``names.txt`` (one
  source file name a line) where the source has them;
- ``manifest.json``: the format and version, the counts, shape, the names of the classes and
  attributes, the SHA-256 of every file, one checksum over them all, and the source spec and
  options, so that a rerun can tell its own store from another.

A store is opened by reading its manifest and checking every file's size against it (a
truncated or missing shard is found at once, without reading the images), after checking the
manifest's form: every file it names must be a plain file name in the store's folder (never a
path that leads out of it), every shape and count a whole number, the image shape and the
number of images positive. The images are read
with positioned reads as batches need them, so start-up time and memory do not grow with the
number of images, and processes reading one store share its pages through the page cache.
``verify_store`` reads everything back against the checksums.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from glowflow.data.formats import DataError
from glowflow.data.imagedata import ImageData
from glowflow.errors import first_line
from glowflow.files import check_stamp

__all__ = ["MANIFEST", "StoreError", "StoreImages", "open_store", "verify_store"]

FORMAT, VERSION = "glowflow-store", 1
MANIFEST = "manifest.json"
PROGRESS = "prepare-progress.json"  # written while a store is prepared, gone once it is whole
AGAIN = "delete the store and prepare it again"  # the fix for a damaged finished store


class StoreError(DataError):
    """A store that is missing, damaged or not the one asked for; the message says what to do."""


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, offset of the data)`` of a ``.npy`` file, from its header alone."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0}.get(
            version, np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read(f)
        if fortran:
            raise ValueError("stored in Fortran order")
        return tuple(shape), dtype, f.tell()


class StoreImages:
    """The images of a store, or of a subset of it, read on demand: behaves like a read-only
    uint8 ``(N, C, H, W)`` tensor for ``len``, ``shape``, ``dtype``, ``dim()`` and indexing
    (``images[5]``, ``images[10:20]``, ``images[index_tensor]`` return tensors).

    Images are read with positioned reads (``preadv``) straight into the batch, consecutive
    images in one read: nothing is mapped into the process, so its memory does not grow with
    what it has read (a memory map would: every page it touches, and the read-around of every
    random access, counts as the process's own), while the operating system's page cache keeps
    the images that are read often, once for all processes. Pickles without its open files, so
    DataLoader workers open their own.
    """

    dtype = torch.uint8

    def __init__(
        self,
        files: Sequence[Path],
        counts: Sequence[int],
        image_shape: tuple[int, int, int],
        index: np.ndarray | None = None,
        offsets: Sequence[int] | None = None,
    ) -> None:
        self.files = [Path(f) for f in files]
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.image_shape = tuple(image_shape)
        self.index = index  # positions in the whole store, or None for all of it
        # where each shard's images begin in its file (after the .npy header)
        self.offsets = list(offsets) if offsets is not None else [_npy_header(f)[2] for f in files]
        self._fds: list[int] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fds": None}

    def __del__(self) -> None:
        for fd in self._fds or ():
            try:
                os.close(fd)
            except OSError:
                pass

    def __len__(self) -> int:
        return int(self.starts[-1]) if self.index is None else len(self.index)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.image_shape))

    def dim(self) -> int:
        return 4

    def _positions(self, key: Any) -> np.ndarray:
        n = len(self)
        if isinstance(key, slice):
            pos = np.arange(n)[key]
        else:
            pos = np.asarray(key.cpu() if torch.is_tensor(key) else key)
            if pos.dtype == bool:
                if pos.shape != (n,):
                    raise IndexError(f"a boolean mask of {n} images must have shape ({n},)")
                pos = np.flatnonzero(pos)
            pos = pos.astype(np.int64).reshape(-1) if pos.ndim == 0 else pos.astype(np.int64)
            if pos.ndim > 1:
                raise IndexError("index a store's images with one axis")
            if pos.size and (pos.min() < -n or pos.max() >= n):
                raise IndexError(f"index out of range for {n} images")
            pos = np.where(pos < 0, pos + n, pos)
        return pos if self.index is None else self.index[pos]

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, (int, np.integer)) or (torch.is_tensor(key) and key.dim() == 0):
            return self[np.array([int(key)])][0]
        pos = self._positions(key)
        if len(pos) == 0:
            return torch.empty((0, *self.image_shape), dtype=torch.uint8)
        if self._fds is None:
            self._fds = [os.open(f, os.O_RDONLY) for f in self.files]
        size = int(np.prod(self.image_shape))
        order = np.argsort(pos, kind="stable")  # read front to back, runs in one read each
        rows = np.empty((len(pos), size), dtype=np.uint8)
        sorted_pos = pos[order]
        # runs of consecutive positions within one shard
        shard = np.searchsorted(self.starts, sorted_pos, side="right") - 1
        breaks = np.flatnonzero((np.diff(sorted_pos) != 1) | (np.diff(shard) != 0)) + 1
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(pos)]):
            s = int(shard[lo])
            offset = self.offsets[s] + int(sorted_pos[lo] - self.starts[s]) * size
            view = memoryview(rows[lo:hi]).cast("B")
            while view.nbytes:  # a read may return less than asked (large runs, network disks)
                got = os.preadv(self._fds[s], [view], offset)
                if got <= 0:
                    raise StoreError(f"{self.files[s]} ended early (truncated); {AGAIN}")
                view, offset = view[got:], offset + got
        out = np.empty_like(rows)
        out[order] = rows
        return torch.from_numpy(out.reshape(len(pos), *self.image_shape))

    def subset(self, key: Any) -> StoreImages:
        """The images picked by ``key`` as another lazy view (no image is read)."""
        counts = np.diff(self.starts)
        return StoreImages(self.files, counts, self.image_shape, self._positions(key), self.offsets)


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest of the store at ``root``, checked for its format, its version and the
    form of every entry (``_check_manifest``); its files are not opened.

    Raises:
        StoreError: for a missing folder or manifest, a damaged one, or another format.
    """
    path = root / MANIFEST
    if not root.is_dir():
        raise StoreError(f"no store at {root}; make one with: glowflow prepare SPEC {root}")
    if not path.is_file():
        hint = " (its preparation did not finish: rerun glowflow prepare)" if (
            root / PROGRESS).is_file() else ""  # fmt: skip
        raise StoreError(f"{root} has no {MANIFEST}{hint}; make the store with glowflow prepare")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise StoreError(f"{path} is damaged ({first_line(e)}); {AGAIN}") from e
    check_stamp(
        manifest, FORMAT, VERSION, what=str(path), kind=f"a glowflow store manifest; {AGAIN}",
        error=StoreError, newer="upgrade glowflow, or delete it and prepare it again",
        older="delete it and prepare it again",
    )  # fmt: skip
    _check_manifest(root, manifest)
    return manifest


def _whole(value: Any, least: int) -> bool:
    """Whether ``value`` is a whole number (an ``int``, not a ``bool`` or ``float``) of at
    least ``least``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _check_manifest(root: Path, m: dict[str, Any]) -> None:
    """Refuse a manifest whose entries have another form than ``glowflow prepare`` writes:
    what a store holds is read from it, so a damaged or hostile one must never send a read
    outside the store, or size one from a float, a string or a negative number.

    Raises:
        StoreError: naming the first wrong entry and its value.
    """
    where = root / MANIFEST

    def refuse(entry: str, value: Any, should: str) -> None:
        raise StoreError(f"{where}: {entry} {_shown(value)} {should}; {AGAIN}")

    shape = m.get("image_shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(_whole(v, 1) for v in shape)):
        refuse("image_shape", shape, "is not 3 positive whole numbers [C, H, W]")
    if not _whole(m.get("count"), 1):  # prepare never writes an empty store
        refuse("count", m.get("count"), "is not a positive whole number of images")
    shards = m.get("shards")
    if not isinstance(shards, list) or not shards:
        refuse("shards", shards, "is not a list of the store's image files")
    for k, shard in enumerate(shards):
        store_path(root, shard, f"shards[{k}]")
        # a shard may hold no image: prepare keeps one whose files were all unreadable
        if not _whole(shard.get("count"), 0):
            refuse(f"shards[{k}].count", shard.get("count"), "is not a whole number of images")
    for key in ("labels", "attrs", "names"):
        if m.get(key) is not None:
            store_path(root, m[key], key)
    for key in ("class_names", "attr_names"):
        names = m.get(key)
        if names is not None and not (
            isinstance(names, list) and all(isinstance(v, str) for v in names)
        ):
            refuse(key, names, "is not a list of names")
    if m.get("attrs") is not None and m.get("attr_names") is None:
        refuse("attr_names", None, "is missing, and the store has attributes")


def _shown(value: Any, limit: int = 60) -> str:
    """``value`` as a message quotes it: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def store_path(root: Path, entry: Any, name: str) -> Path:
    """The path of the store file that the manifest's entry ``name`` (``{"file": NAME,
    "sha256": HEX, ...}``) describes: ``root / NAME``, where NAME is a plain file name.

    Raises:
        StoreError: for an entry without a file name and a checksum, or whose file name is
            a path (``../x.npy``, ``/abs/x.npy``, ``sub/x.npy``), hidden, or resolves (through
            a link) to a file outside the store.
    """
    where = root / MANIFEST
    if not isinstance(entry, dict):
        raise StoreError(f"{where}: {name} {_shown(entry)} is not a file entry; {AGAIN}")
    file = entry.get("file")
    if not isinstance(entry.get("sha256"), str):
        raise StoreError(f"{where}: {name} has no sha256 checksum; {AGAIN}")
    plain = (
        isinstance(file, str)
        and file == PurePosixPath(file).name == PureWindowsPath(file).name
        and not file.startswith(".")
        and "\0" not in file
    )
    if plain and (root / file).resolve().parent == root.resolve():
        return root / file
    raise StoreError(
        f"{where}: {name}.file {_shown(file)} is not a file name inside the store; the "
        f"manifest is damaged or not glowflow's: {AGAIN}"
    )


def _check_file(
    root: Path, entry: dict[str, Any], name: str, shape: tuple[int, ...], dtype: str
) -> Path:
    """The store file of the manifest's entry ``name``, whose header and size agree with
    the manifest."""
    path = store_path(root, entry, name)
    if not path.is_file():
        raise StoreError(f"{path} is missing from the store; {AGAIN}")
    try:
        found, found_dtype, offset = _npy_header(path)
    except (OSError, ValueError) as e:
        raise StoreError(f"{path} is damaged ({first_line(e)}); {AGAIN}") from e
    if found != shape or found_dtype != np.dtype(dtype):
        raise StoreError(
            f"{path} holds {found_dtype} {list(found)} but the manifest says {dtype} "
            f"{list(shape)}; the store's files do not belong together: {AGAIN}"
        )
    size = offset + int(np.prod(shape)) * np.dtype(dtype).itemsize
    if path.stat().st_size != size:
        raise StoreError(f"{path} is truncated ({path.stat().st_size} of {size} bytes); {AGAIN}")
    return path


def open_store(
    root: str | Path,
    name: str | None = None,
    image_size: int | None = None,
    pad: int | None = None,
) -> ImageData:
    """The store at ``root`` as ``ImageData`` whose images are read on demand.

    Labels and attributes (a few bytes an image) are read into memory; images never are.
    ``image_size`` and ``pad``, where given, must be those the store was prepared with (the
    images were resized and padded then; one ``--pad`` may serve several sets).

    Raises:
        StoreError: for a missing store, a damaged manifest, files that disagree with it, or
            other sizes than the store's.
    """
    return _open(Path(root).expanduser(), name, image_size, pad)[1]


def _open(
    root: Path, name: str | None, image_size: int | None = None, pad: int | None = None
) -> tuple[dict[str, Any], ImageData]:
    """The manifest and the data of the store at ``root`` (see ``open_store``)."""
    m = read_manifest(root)
    made = m.get("source") if isinstance(m.get("source"), dict) else {}
    if image_size not in (None, made.get("image_size")) or pad not in (None, made.get("pad")):
        h, w = (m.get("image_shape") or [0, "?", "?"])[1:]
        raise StoreError(
            f"{name or root} holds {w}x{h} images, resized and padded when it was prepared "
            f"(image size {made.get('image_size')}, pad {made.get('pad')}); leave out "
            f"--image-size and --pad, or prepare another store with the sizes you want"
        )
    try:
        shape = tuple(int(v) for v in m["image_shape"])
        counts = [int(s["count"]) for s in m["shards"]]
        files = [_check_file(root, s, f"shards[{k}]", (s["count"], *shape), "uint8")
                 for k, s in enumerate(m["shards"])]  # fmt: skip
        n = int(m["count"])
        if sum(counts) != n:
            raise StoreError(
                f"{root / MANIFEST} counts {n} images but its shards hold {sum(counts)}; {AGAIN}"
            )
        labels = attrs = None
        if m.get("labels"):
            path = _check_file(root, m["labels"], "labels", (n,), "int64")
            labels = torch.from_numpy(np.load(path))
        if m.get("attrs"):
            a = len(m["attr_names"])
            attrs = torch.from_numpy(
                np.load(_check_file(root, m["attrs"], "attrs", (n, a), "bool"))
            )
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, StoreError):
            raise
        raise StoreError(f"{root / MANIFEST} is incomplete ({first_line(e)}); {AGAIN}") from e
    return m, ImageData(
        images=StoreImages(files, counts, shape),  # type: ignore[arg-type]
        labels=labels,
        attrs=attrs,
        attr_names=m.get("attr_names"),
        class_names=m.get("class_names"),
        name=name or f"store:{root}",
        pad=int(made.get("pad") or 0),
    )


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def store_files(m: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's entries (``{"file", "sha256", ...}``) of every file the store holds."""
    return [entry for _, entry in _named_entries(m)]


def _named_entries(m: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(name in the manifest, entry)`` of every file the store holds."""
    shards = [(f"shards[{k}]", s) for k, s in enumerate(m["shards"])]
    return [*shards, *((k, m[k]) for k in ("labels", "attrs", "names") if m.get(k))]


def files_checksum(entries: list[dict[str, Any]]) -> str:
    """One checksum over the files' SHA-256 sums, in the manifest's order."""
    return hashlib.sha256("".join(e["sha256"] for e in entries).encode()).hexdigest()


def verify_store(root: str | Path, progress: Callable[[Iterator, int], Iterator] | None = None):
    """Read every file of the store back against the manifest's SHA-256 sums.

    Raises:
        StoreError: naming the first file whose contents changed.
    """
    root = Path(root).expanduser()
    m, _ = _open(root, None)  # sizes and headers first: a cheap, clear message for truncation
    named = _named_entries(m)
    it = progress(iter(named), len(named)) if progress else named
    for name, entry in it:
        path = store_path(root, entry, name)
        if file_sha256(path) != entry["sha256"]:
            raise StoreError(f"{path} does not match its checksum in {MANIFEST}; {AGAIN}")
    if files_checksum(store_files(m)) != m.get("checksum"):
        raise StoreError(f"{root / MANIFEST}'s checksum does not match its files' sums")
