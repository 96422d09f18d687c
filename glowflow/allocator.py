"""Keep freed CPU memory in the process for reuse, where the C library is glibc.

Memory-saving backprop (:mod:`glowflow.backprop`) frees one flow step's activations and
allocates the next step's right after, dozens of times per training step. glibc's default
malloc hands large freed blocks back to the system (blocks it ``mmap``-ed, and the top of the
heap past a threshold), so every one of those allocations is faulted in and zeroed again by the
kernel, page by page: on a 2-core CPU that was about a fifth of a memory-saving training step
(190,000 page faults per step of the K=8, width-256 CIFAR-10 model).

:func:`reuse_freed_memory` tells glibc to serve every block from its heap and to keep up to
2 GiB of free heap top (``mallopt(M_MMAP_MAX, 0)`` and ``mallopt(M_TRIM_THRESHOLD, 2**31 - 1)``).
The freed blocks are then reused by the next step, and the process's peak memory is unchanged,
since memory-saving backprop's live memory is the same at every step. The setting is for the
whole process and stays; it is made once, the first time a memory-saving model trains, and
only then. Elsewhere (musl, macOS, Windows) nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEEP_BYTES = 2**31 - 1  # mallopt takes an int


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # only glibc has it  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


@functools.cache
def reuse_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (see the module docstring); once per process.

    Returns whether the setting is in effect: ``False`` where the C library is not glibc.
    """
    libc = _glibc()
    if libc is None:
        return False
    return libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES) == 1
