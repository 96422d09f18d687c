"""Preparing a store (``glowflow prepare``): a data set decoded once and written to disk.

``prepare_store`` writes the layout that ``glowflow.data.store`` describes and reads. It
decodes image files in parallel worker processes (array formats are already decoded and are only
copied), writes each shard through a temporary file, records finished shards in
``prepare-progress.json`` (so an interrupted run resumes where it stopped) and refuses a folder
that holds something else. The manifest is written last: a folder without one is no store. A
preparation holds the lock file ``.prepare.lock`` in the folder from start to end, so a second
``glowflow prepare`` into the same folder is refused at once instead of racing with it (one
would delete the other's progress).
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from glowflow.data.datasets import BUILTIN, load_dataset, parse_spec
from glowflow.data.formats import DataError
from glowflow.data.imagedata import ImageData
from glowflow.data.imagefiles import (
    CELEBA_SIZE,
    FilePlan,
    accept_decoded,
    decode_file,
    plan_celeba,
    plan_folder,
    stack_images,
)  # fmt: skip
from glowflow.data.store import (
    FORMAT,
    MANIFEST,
    PROGRESS,
    VERSION,
    StoreError,
    file_sha256,
    files_checksum,
    read_manifest,
    store_files,
    verify_store,
)
from glowflow.errors import first_line
from glowflow.files import atomic_write, atomic_write_json, atomic_write_text

__all__ = ["prepare_store"]

SHARD_BYTES = 256 * 2**20  # the default shard holds about this many bytes of images
LOCK = ".prepare.lock"  # held by the one preparation writing a folder; stays after it


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
    return file_sha256(path)


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
        StoreError: if ``out`` holds another store or other files, or another preparation is
            writing it.
    """
    out = Path(out).expanduser()
    kind, path = parse_spec(spec)
    pad = pad or 0
    source_key = {
        "spec": spec if kind == BUILTIN else f"{kind}:{path.resolve()}",
        "image_size": image_size, "pad": pad, "on_bad_image": on_bad_image,
        "shard_size": shard_size,
    }  # fmt: skip
    with _only_writer(out):
        state = _check_out(out, source_key)
        if state.get("complete"):
            verify_store(out)
            return read_manifest(out)
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


@contextmanager
def _only_writer(out: Path) -> Iterator[None]:
    """Hold ``out``'s ``LOCK`` while the block runs; refuse at once if another
    preparation holds it. A folder made here that is left empty is removed again."""
    from filelock import FileLock, Timeout  # only a preparation pays for the import

    if out.exists() and not out.is_dir():
        raise StoreError(f"{out} is a file; give a folder for the store")
    made = not out.exists()
    lock = FileLock(out / LOCK, timeout=0)
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:  # before OSError: it is a TimeoutError
        raise StoreError(
            f"another glowflow prepare is writing {out} (lock {out / LOCK}); wait for it to "
            f"finish, or give another folder"
        ) from None
    except OSError as e:
        raise StoreError(
            f"cannot write the store in {out}: {first_line(e)}; choose another folder"
        ) from e
    try:
        yield
    finally:
        try:
            if made and [p.name for p in out.iterdir()] == [LOCK]:  # nothing was written
                # removed while still held, so no other preparation can hold this lock file
                (out / LOCK).unlink()
                out.rmdir()
        except OSError:  # another preparation has just begun in it, or it is gone
            pass
        lock.release()


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
    if (out / MANIFEST).is_file():
        m = read_manifest(out)
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
        if not _progress_ok(state):
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
            if file_sha256(f) != entry["sha256"]:
                break
            good.append(entry)
        state["shards"] = good
        return state
    if out.is_dir() and any(p.name != LOCK for p in out.iterdir()):
        raise StoreError(f"{out} is not empty and holds no store; give an empty or new folder")
    return {"source": source_key}


def _progress_ok(state: Any) -> bool:
    """Whether a progress record has the form ``_write_shards`` writes: shard ``k`` is
    ``images-0000k.npy`` (no name read from it can lead out of the folder), its figures whole
    numbers."""

    def whole(v: Any, least: int = 0) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= least

    if not isinstance(state, dict) or not isinstance(state.get("source"), dict):
        return False
    if "shard_size" in state and not whole(state["shard_size"], 1):
        return False
    shards = state.get("shards", [])
    return isinstance(shards, list) and all(
        isinstance(s, dict)
        and s.get("file") == f"images-{k:05d}.npy"
        and isinstance(s.get("sha256"), str)
        and all(whole(s.get(key)) for key in ("count", "source_count", "channels"))
        and isinstance(s.get("hw"), list)
        and len(s["hw"]) == 2
        and all(whole(v, 1) for v in s["hw"])
        for k, s in enumerate(shards)
    )


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
        atomic_write_text(out / "names.txt", "".join(f"{name}\n" for name in names))
        manifest["names"] = {"file": "names.txt", "sha256": file_sha256(out / "names.txt")}
    manifest["checksum"] = files_checksum(store_files(manifest))
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
