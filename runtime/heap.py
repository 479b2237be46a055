"""Hand freed heap memory back to the OS: glibc's ``malloc_trim(0)`` (every arena, threads' included);
a no-op where the C library has none. Called after work that frees a lot at once (a released ONNX
session, a written recording), so the box's resident size falls back instead of staying at its peak."""

from __future__ import annotations

import ctypes
import ctypes.util


def _load_libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _load_libc()


def trim_heap() -> None:
    """Return freed heap memory to the OS (glibc ``malloc_trim``); a no-op elsewhere."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
