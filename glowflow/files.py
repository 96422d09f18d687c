"""Writing files so that a crash never leaves half of one, and reading the format stamps of
the files glowflow writes (checkpoints, stores, pretrained folders).

Every file a command writes goes through ``atomic_write``: a temporary file in the same
folder, flushed to disk, then renamed over the old one and the folder flushed too, so a crash,
Ctrl-C or power loss leaves either the old file or the new one; a writer killed mid-write leaves
a temporary file that the next write of that file removes.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
from pathlib import Path
from typing import IO, Any, Callable

from glowflow.errors import GlowflowError

try:
    import fcntl  # the lock that tells a live writer's temporary file from a dead one's
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


def user_cache() -> Path:
    """glowflow's folder in the user's cache (``$XDG_CACHE_HOME/glowflow``, else
    ``~/.cache/glowflow``): for what is derived from an installed model, never inside the
    package itself."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "glowflow"


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a temporary file in ``path``'s folder, then rename it over ``path``.

    A crash or Ctrl-C while writing leaves the previous file at ``path`` intact: the new bytes
    and then the folder's entry are flushed to disk, so after a power loss ``path`` holds the
    old file or the whole new one. Its writer holds the temporary file ``.NAME.RANDOM.tmp``
    locked, so the next write of ``path`` removes those that a killed writer (``kill -9``) left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, tmp = _create_temporary(path)
    f = os.fdopen(fd, "wb")
    try:
        write(f)
        f.flush()
        os.fsync(f.fileno())
        if fcntl is None:  # Windows renames no open file (and there is no lock to keep)
            f.close()
        os.replace(tmp, path)  # still locked: no cleaner takes it for a dead writer's
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        f.close()
    _fsync_folder(path.parent)


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new, empty ``.NAME.RANDOM.tmp`` beside ``path``, open for writing and locked
    (``flock``) for as long as its writer lives: the lock is how ``_remove_stale_temporaries``
    tells a live writer's file from one a killed writer left, on this machine or another
    (a container that restarts comes back with another host name and the same pids).

    Created with mode 0o666 so that the kernel applies the umask, as for any new file (no
    process-wide ``os.umask`` call, which would race with other threads creating files).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:  # another writer drew the same name: draw again
            continue
        if fcntl is None:
            return fd, tmp
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:  # a cleaner may have taken it for a dead writer's before the lock: start again
            if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                return fd, tmp
        except FileNotFoundError:
            pass
        os.close(fd)


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary files of ``path`` that no writer holds locked: their writer was
    killed while writing. A live writer's file is locked and left alone. (Where there is no
    ``flock``, on Windows, nothing is removed.)"""
    if fcntl is None:
        return
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-zA-Z_.]+\.tmp")
    try:
        names = os.listdir(path.parent)
    except OSError:
        return
    for name in names:
        if not pattern.fullmatch(name):
            continue
        try:
            fd = os.open(path.parent / name, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:  # gone meanwhile, or not ours to read
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # locked: its writer is alive
            os.close(fd)
            continue
        try:
            (path.parent / name).unlink()
        except OSError:
            pass
        finally:
            os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries to disk, so that a rename in it survives a power loss; a
    no-op where the system cannot open or flush a folder (Windows, some file systems)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, see ``atomic_write``."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, see ``atomic_write``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 1) -> None:
    """Write ``obj`` as JSON (with a final newline) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def atomic_save(path: str | Path, obj: Any) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically, see ``atomic_write``."""
    import torch  # only the callers that save tensors pay for it

    atomic_write(path, lambda f: torch.save(obj, f))


def check_stamp(
    record: Any,
    fmt: str,
    version: int,
    *,
    what: str,
    kind: str,
    error: type[GlowflowError],
    newer: str,
    older: str | None = None,
) -> None:
    """Check the ``{"format": fmt, "version": n}`` stamp of a file glowflow wrote.

    ``what`` names the file in the messages and ``kind`` what it should be ("a glowflow
    checkpoint"). A record of another format raises ``error`` saying so; a version above
    ``version`` raises it with the fix ``newer``; one below it, with ``older`` (where ``older``
    is ``None``, every older version is read).
    """
    if not isinstance(record, dict) or record.get("format") != fmt:
        raise error(f"{what} is not {kind}")
    found = record.get("version")
    if not isinstance(found, int) or isinstance(found, bool):
        raise error(f"{what} has no valid format version ({found!r}); {newer}")
    if found > version:
        raise error(
            f"{what} has format version {found}; this glowflow reads up to {version}: {newer}"
        )
    if found < version and older is not None:
        raise error(f"{what} has format version {found}; this glowflow reads {version}: {older}")
