"""Writing files so that a crash never leaves half of one, and reading the format stamps of
the files glowflow writes (checkpoints, stores, pretrained folders).

Every file a command writes goes through :func:`atomic_write`: a temporary file in the same
folder, flushed to disk, then renamed over the old one, so a crash or Ctrl-C leaves either the
old file or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

from glowflow.errors import GlowflowError


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a temporary file in ``path``'s folder, then rename it over ``path``.

    A crash or Ctrl-C while writing leaves the previous file at ``path`` intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, see :func:`atomic_write`."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, see :func:`atomic_write`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 1) -> None:
    """Write ``obj`` as JSON (with a final newline) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def atomic_save(path: str | Path, obj: Any) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically, see :func:`atomic_write`."""
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
