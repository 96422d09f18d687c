"""A prepared data set on disk: images decoded once, read by every run without loading them.

``glowflow prepare SPEC DIR`` writes a *store* that ``--dataset store:DIR`` reads:

- ``images-00000.npy``, ``images-00001.npy``, ...: the images as uint8 ``(n, C, H, W)`` arrays
  at their final size (resized and padded), in NumPy's own ``.npy`` format, so that
  ``numpy.load(f, mmap_mode="r")`` opens any shard without glowflow;
- ``labels.npy`` (int64 ``(N,)``), ``attrs.npy`` (bool ``(N, A)``) and ``names.txt`` (one
  source file name a line) where the source has them;
- ``manifest.json``: the format and version, the counts, shape, the names of the classes and
  attributes, the SHA-256 of every file, one checksum over them all, and the source spec and
  options, so that a rerun can tell its own store from another.

A store is opened by reading its manifest and checking every file's size against it (a
truncated or missing shard is found at once, without reading the images); the images are read
with positioned reads as batches need them, so start-up time and memory do not grow with the
number of images, and processes reading one store share its pages through the page cache.
:func:`verify_store` reads everything back against the checksums. ``prepare`` decodes image
files in parallel worker processes, writes each shard through a temporary file, records
finished shards in ``prepare-progress.json`` (so an interrupted run resumes where it stopped)
and refuses a folder that holds something else.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from glowflow.data.datasets import BUILTIN, ImageData, default_pad, load_dataset, parse_spec
from glowflow.data.formats import DataError
from glowflow.data.imagefiles import (
    CELEBA_SIZE,
    FilePlan,
    accept_decoded,
    decode_file,
    plan_celeba,
    plan_folder,
    stack_images,
)  # fmt: skip
from glowflow.errors import first_line
from glowflow.files import atomic_write, atomic_write_json, check_stamp

__all__ = ["MANIFEST", "StoreError", "StoreImages", "open_store", "prepare_store",
           "verify_store"]  # fmt: skip

FORMAT, VERSION = "glowflow-store", 1
MANIFEST = "manifest.json"
PROGRESS = "prepare-progress.json"
SHARD_BYTES = 256 * 2**20  # the default shard holds about this many bytes of images
AGAIN = "delete the store and prepare it again"  # the fix for a damaged finished store


class StoreError(DataError):
    """A store that is missing, damaged or not the one asked for; the message says what to do."""


# --- reading ----------------------------------------------------------------------------------


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


def _read_manifest(root: Path) -> dict[str, Any]:
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
    return manifest


def _check_file(root: Path, entry: dict[str, Any], shape: tuple[int, ...], dtype: str) -> Path:
    """A store file whose header and size agree with the manifest."""
    path = root / entry["file"]
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
    """The store at ``root`` as :class:`ImageData` whose images are read on demand.

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
    """The manifest and the data of the store at ``root`` (see :func:`open_store`)."""
    m = _read_manifest(root)
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
        files = [_check_file(root, s, (s["count"], *shape), "uint8") for s in m["shards"]]
        n = int(m["count"])
        if sum(counts) != n:
            raise StoreError(
                f"{root / MANIFEST} counts {n} images but its shards hold {sum(counts)}; {AGAIN}"
            )
        labels = attrs = None
        if m.get("labels"):
            path = _check_file(root, m["labels"], (n,), "int64")
            labels = torch.from_numpy(np.load(path))
        if m.get("attrs"):
            a = len(m["attr_names"])
            attrs = torch.from_numpy(np.load(_check_file(root, m["attrs"], (n, a), "bool")))
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
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _entries(m: dict[str, Any]) -> list[dict[str, Any]]:
    return [*m["shards"], *(m[k] for k in ("labels", "attrs", "names") if m.get(k))]


def _checksum(entries: list[dict[str, Any]]) -> str:
    return hashlib.sha256("".join(e["sha256"] for e in entries).encode()).hexdigest()


def verify_store(root: str | Path, progress: Callable[[Iterator, int], Iterator] | None = None):
    """Read every file of the store back against the manifest's SHA-256 sums.

    Raises:
        StoreError: naming the first file whose contents changed.
    """
    root = Path(root).expanduser()
    m, _ = _open(root, None)  # sizes and headers first: a cheap, clear message for truncation
    entries = _entries(m)
    it = progress(iter(entries), len(entries)) if progress else entries
    for entry in it:
        if _sha256(root / entry["file"]) != entry["sha256"]:
            raise StoreError(
                f"{root / entry['file']} does not match its checksum in {MANIFEST}; {AGAIN}"
            )
    if _checksum(entries) != m.get("checksum"):
        raise StoreError(f"{root / MANIFEST}'s checksum does not match its files' sums")


# --- writing ----------------------------------------------------------------------------------


@dataclass
class _Source:
    """What ``prepare`` reads: images already in memory (array formats), or files to decode."""

    data: ImageData | None = None
    plan: FilePlan | None = None
    pad: int = 0

    def __len__(self) -> int:
        return len(self.data) if self.data is not None else len(self.plan.paths)

    @property
    def class_names(self) -> list[str] | None:
        return self.data.class_names if self.data is not None else self.plan.class_names

    @property
    def attr_names(self) -> list[str] | None:
        return self.data.attr_names if self.data is not None else self.plan.attr_names


def _open_source(spec: str, image_size: int | None, pad: int | None, on_bad_image: str):
    kind, path = parse_spec(spec)
    if kind == "folder":
        return _Source(plan=plan_folder(path, image_size), pad=pad or 0)
    if kind == "celeba":
        return _Source(plan=plan_celeba(path, image_size or CELEBA_SIZE), pad=pad or 0)
    if kind == "store":
        raise StoreError(f"{spec} is already a store; give the data set it was made from")
    return _Source(data=load_dataset(spec, image_size, pad, on_bad_image))


def _write_npy(path: Path, array: np.ndarray) -> str:
    """Save atomically (a crash leaves no half-written file under the real name) and return
    the file's SHA-256."""
    atomic_write(path, lambda f: np.save(f, np.ascontiguousarray(array)))
    return _sha256(path)


_worker_plan: FilePlan | None = None  # set once in each decoding process


def _set_worker_plan(plan: FilePlan) -> None:
    global _worker_plan
    _worker_plan = plan


def _decode_chunk(indices: list[int], plan: FilePlan | None = None) -> list[tuple[int, Any]]:
    """``(index, uint8 HxW(xC) array or the error text)`` for each file of the plan (in a
    worker, the plan it was started with: sent once, not with every chunk)."""
    plan = plan or _worker_plan
    return [(i, decode_file(plan.paths[i], plan.prepare)) for i in indices]


def _decode_shard(
    source: _Source, lo: int, hi: int, on_bad_image: str, pool: ProcessPoolExecutor | None
) -> tuple[np.ndarray, list[int]]:
    """Images ``lo..hi-1`` of the source as NCHW uint8 (grayscale repeated to RGB if any image
    of the shard is RGB), and the source positions kept."""
    if source.data is not None:
        return source.data.images[lo:hi].numpy(), list(range(lo, hi))
    plan = source.plan
    chunks = [list(range(s, min(s + 64, hi))) for s in range(lo, hi, 64)]
    if pool is None:
        results = [r for c in chunks for r in _decode_chunk(c, plan)]
    else:
        results = [r for part in pool.map(_decode_chunk, chunks) for r in part]
    arrays, kept = [], []
    for i, result in results:
        array = accept_decoded(plan.paths[i], result, on_bad_image)
        if array is not None:
            arrays.append(array)
            kept.append(i)
    if not arrays:
        return np.zeros((0, 1, 1, 1), np.uint8), kept
    x = stack_images(arrays, [plan.paths[i] for i in kept])  # (n, H, W, C)
    if source.pad:
        p = source.pad
        x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    return x.transpose(0, 3, 1, 2), kept


def prepare_store(
    spec: str,
    out: str | Path,
    image_size: int | None = None,
    pad: int | None = None,
    on_bad_image: str = "skip",
    shard_size: int | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Convert the data set ``spec`` (with the loaders' options) into a store at ``out``.

    Args:
        shard_size: images per shard; None gives about 256 MiB a shard.
        workers: processes decoding image files (None: one per CPU); array formats are
            already decoded and are only copied.
        progress: called as ``progress(done, total)`` in images after every shard.

    Returns:
        The manifest. If ``out`` already holds this store, complete, it is verified and
        returned; if it holds the unfinished preparation of this store, that resumes.

    Raises:
        StoreError: if ``out`` holds another store or other files.
    """
    out = Path(out).expanduser()
    kind, path = parse_spec(spec)
    if pad is None:
        pad = default_pad(kind)
    source_key = {
        "spec": spec if kind == BUILTIN else f"{kind}:{path.resolve()}",
        "image_size": image_size, "pad": pad, "on_bad_image": on_bad_image,
        "shard_size": shard_size,
    }  # fmt: skip
    state = _check_out(out, source_key)
    if state.get("complete"):
        verify_store(out)
        return _read_manifest(out)
    source = _open_source(spec, image_size, pad, on_bad_image)
    fingerprint = _fingerprint(source, path)
    if state.setdefault("fingerprint", fingerprint) != fingerprint:
        raise StoreError(
            f"{spec} has changed since the preparation in {out} began (other files or sizes); "
            f"delete {out} and prepare again"
        )
    if shard_size is None:
        shape = source.data.image_shape if source.data is not None else None
        per_image = int(np.prod(shape)) if shape else 3 * (image_size or CELEBA_SIZE) ** 2
        shard_size = max(1, SHARD_BYTES // per_image)
    if state.get("shard_size", shard_size) != shard_size:
        raise StoreError(f"{out} was being prepared with another shard size; use that one")
    state.setdefault("shard_size", shard_size)
    state.setdefault("shards", [])
    try:
        return _write_shards(out, source, state, on_bad_image, workers, progress)
    except OSError as e:
        raise StoreError(
            f"cannot write the store in {out}: {first_line(e)}; free some space or choose "
            f"another folder (a rerun resumes)"
        ) from e


def _fingerprint(source: _Source, path: Path) -> str:
    """What the source's images are, cheaply: every file's name, size and modification time
    (the image files of a plan, or the data set's own files), and the image count."""
    files = source.plan.paths if source.plan is not None else (
        sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])  # fmt: skip
    h = hashlib.sha256(str(len(source)).encode())
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _write_shards(
    out: Path,
    source: _Source,
    state: dict[str, Any],
    on_bad_image: str,
    workers: int | None,
    progress: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    """Decode and write the shards not written yet, then the annotations and the manifest."""
    n, shard_size = len(source), state["shard_size"]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / PROGRESS, state)
    done = sum(s["source_count"] for s in state["shards"])
    if progress:
        progress(done, n)
    pool = None
    if source.plan is not None and (workers or os.cpu_count() or 1) > 1:
        pool = ProcessPoolExecutor(
            workers or os.cpu_count(), initializer=_set_worker_plan, initargs=(source.plan,)
        )
    try:
        for k in range(len(state["shards"]), -(-n // shard_size)):
            lo, hi = k * shard_size, min(n, (k + 1) * shard_size)
            x, kept = _decode_shard(source, lo, hi, on_bad_image, pool)
            entry = {"file": f"images-{k:05d}.npy", "count": len(kept), "source_count": hi - lo,
                     "channels": int(x.shape[1]), "hw": list(x.shape[2:])}  # fmt: skip
            entry["sha256"] = _write_npy(out / entry["file"], x)
            _write_npy(out / _kept_file(entry), np.asarray(kept, dtype=np.int64))
            state["shards"].append(entry)
            atomic_write_json(out / PROGRESS, state)
            if progress:
                progress(hi, n)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return _finish(out, source, state)


def _kept_file(entry: dict[str, Any]) -> str:
    """The file that records which source images a shard being prepared holds."""
    return entry["file"].replace("images", "kept")


def _check_out(out: Path, source_key: dict[str, Any]) -> dict[str, Any]:
    """The preparation state to continue from ``out`` (empty for a fresh start)."""
    if out.exists() and not out.is_dir():
        raise StoreError(f"{out} is a file; give a folder for the store")
    if (out / MANIFEST).is_file():
        m = _read_manifest(out)
        if not isinstance(m.get("source"), dict) or m.get("source") != source_key:
            raise StoreError(
                f"{out} holds another store (made from {(m.get('source') or {}).get('spec')} with "
                f"other options); choose another folder, or delete it to replace it"
            )
        return {"complete": True}
    if (out / PROGRESS).is_file():
        try:
            state = json.loads((out / PROGRESS).read_text())
        except (OSError, ValueError) as e:
            raise StoreError(f"{out / PROGRESS} is damaged ({first_line(e)}); delete the "
                             f"folder and prepare again") from e  # fmt: skip
        if not isinstance(state, dict) or not isinstance(state.get("source"), dict):
            raise StoreError(f"{out / PROGRESS} is damaged; delete {out} and prepare again")
        if state.get("source") != source_key:
            raise StoreError(
                f"{out} holds the unfinished preparation of another store (from "
                f"{state['source'].get('spec')}); choose another folder or delete it"
            )
        # a shard whose file is not whole (a crash while writing) is made again
        good = []
        for entry in state.get("shards", []):
            f = out / entry["file"]
            if not f.is_file() or not (out / _kept_file(entry)).is_file():
                break
            if _sha256(f) != entry["sha256"]:
                break
            good.append(entry)
        state["shards"] = good
        return state
    if out.is_dir() and any(out.iterdir()):
        raise StoreError(f"{out} is not empty and holds no store; give an empty or new folder")
    return {"source": source_key}


def _finish(out: Path, source: _Source, state: dict[str, Any]) -> dict[str, Any]:
    """Concatenate the annotations, fix mixed grayscale/RGB shards, write the manifest."""
    shards = state["shards"]
    kept = np.concatenate([np.load(out / _kept_file(s)) for s in shards]).astype(np.int64)
    if len(kept) == 0:
        raise StoreError("no image of the data set could be read; the store would be empty")
    hw = {tuple(s["hw"]) for s in shards if s["count"]}
    if len(hw) > 1:
        raise DataError(f"images differ in size between shards ({sorted(hw)}); pass --image-size N")
    channels = max(s["channels"] for s in shards if s["count"])
    (h, w), n = hw.pop(), len(kept)
    for s in shards:
        if not s["count"]:  # every image of the shard was unreadable
            s["sha256"] = _write_npy(out / s["file"], np.zeros((0, channels, h, w), np.uint8))
        elif s["channels"] != channels:  # grayscale in a set with RGB images
            x = np.load(out / s["file"])
            s["sha256"] = _write_npy(out / s["file"], np.repeat(x, channels, axis=1))
        s["channels"] = channels
    manifest: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "count": n, "image_shape": [channels, h, w],
        "shards": [{"file": s["file"], "count": s["count"], "sha256": s["sha256"]}
                   for s in shards],
        "labels": None, "attrs": None, "names": None,
        "class_names": None, "attr_names": None,
        "skipped": int(len(source) - n), "source": state["source"],
    }  # fmt: skip
    labels, attrs, names = _annotations(source, kept)
    if labels is not None:
        digest = _write_npy(out / "labels.npy", labels)
        manifest["labels"] = {"file": "labels.npy", "sha256": digest}
        manifest["class_names"] = source.class_names
    if attrs is not None:
        digest = _write_npy(out / "attrs.npy", attrs)
        manifest["attrs"] = {"file": "attrs.npy", "sha256": digest}
        manifest["attr_names"] = source.attr_names
    if names is not None:
        (out / "names.txt").write_text("".join(f"{name}\n" for name in names))
        manifest["names"] = {"file": "names.txt", "sha256": _sha256(out / "names.txt")}
    manifest["checksum"] = _checksum(_entries(manifest))
    atomic_write_json(out / MANIFEST, manifest)
    for s in shards:
        (out / _kept_file(s)).unlink(missing_ok=True)
    (out / PROGRESS).unlink(missing_ok=True)
    return manifest


def _annotations(source: _Source, kept: np.ndarray):
    """Labels, attributes and file names of the kept images (None where the source has none)."""
    if source.data is not None:
        d = source.data
        labels = None if d.labels is None else d.labels.numpy()[kept]
        attrs = None if d.attrs is None else d.attrs.numpy()[kept]
        return labels, attrs, None
    plan = source.plan
    labels = None if plan.labels is None else plan.labels[kept]
    attrs = None if plan.attrs is None else plan.attrs[kept]
    root = os.path.commonpath([str(p.parent) for p in plan.paths]) if plan.paths else ""
    names = [os.path.relpath(plan.paths[i], root) for i in kept]
    return labels, attrs, names
