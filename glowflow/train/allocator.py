"""Keep freed CPU memory in the process for reuse, where the C library is glibc.

Memory-saving backprop (``glowflow.nn.backprop``) frees one flow step's activations and
allocates the next step's right after, dozens of times per training step. glibc's default
malloc hands large freed blocks back to the system (blocks it ``mmap``-ed, and the top of the
heap past a threshold), so every one of those allocations is faulted in and zeroed again by the
kernel, page by page.

``reuse_freed_memory`` tells glibc to take large blocks from its heap too and to keep up to
2 GiB of free heap top (``mallopt(M_MMAP_MAX, 0)`` and ``mallopt(M_TRIM_THRESHOLD, 2**31 - 1)``;
glibc still maps memory where a heap cannot grow). The freed blocks are then reused by the next
step. The live memory of memory-saving backprop is the same at every step, so its peak stays
where it was, but the process keeps what it freed: its resident set does not shrink after a
peak (an evaluation, say) until the process ends.

The setting is for the whole process and stays, so the model never makes it: a run decides.
``glowflow.train.Trainer`` (and so ``glowflow train``) makes it when it trains a
memory-saving model on a CPU; a Python user training one in their own loop calls
``reuse_freed_memory`` once before. It is not made where the user chose for themselves:
when ``MALLOC_*_`` variables or ``GLIBC_TUNABLES`` are set, or ``LD_PRELOAD`` brings another
allocator. Elsewhere (musl, macOS, Windows) nothing changes.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEEP_BYTES = 2**31 - 1  # mallopt takes an int


def _user_chose() -> bool:
    """Whether the environment already tunes or replaces malloc."""
    env = os.environ
    return (
        any(name.startswith("MALLOC_") for name in env)
        or "glibc.malloc" in env.get("GLIBC_TUNABLES", "")
        or any(lib in env.get("LD_PRELOAD", "") for lib in ("jemalloc", "tcmalloc", "mimalloc"))
    )


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)  # the process's own symbols, the C library's among them
    if not hasattr(libc, "gnu_get_libc_version"):  # only glibc has it
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


@functools.cache
def reuse_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (see the module docstring); once per process.

    Returns whether the setting is in effect: ``False`` where the C library is not glibc or
    the environment already tunes or replaces malloc.
    """
    libc = None if _user_chose() else _glibc()
    if libc is None:
        return False
    keep = libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES) == 1
    return libc.mallopt(_M_MMAP_MAX, 0) == 1 and keep
