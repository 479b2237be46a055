"""The box's processes and glibc's heap.

:func:`trim_heap` hands freed heap memory back to the OS: glibc's ``malloc_trim(0)`` (every arena,
threads' included); a no-op where the C library has none. Called after work that frees a lot at once (a
released ONNX session, a written recording), so the box's resident size falls back instead of staying at
its peak.

:func:`reuse_freed` keeps what a bar frees for the next bar: every bar allocates and frees arrays of a few
hundred KiB to a few MiB (its PCM, the leveler's spectra, the recorder's copy), which glibc maps and
unmaps, or trims off the top of the heap, so that the next bar faults the same pages in again: 35,000
page faults a minute in the worker, 12,000 in the main process (measured, ``/proc/PID/stat`` minflt),
about 0.05 CPU-s a minute. With fixed thresholds the freed memory stays in the heap (a few MiB more
resident) and the faults fall to a few hundred a minute."""

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

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (<malloc.h>)
MMAP_BELOW = 8 << 20  # bytes: smaller allocations come from the heap (a bar's arrays are ~1-3 MiB)
TRIM_ABOVE = 32 << 20  # bytes: free memory at the heap's top kept before glibc trims it by itself


def trim_heap() -> None:
    """Return freed heap memory to the OS (glibc ``malloc_trim``); a no-op elsewhere."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def reuse_freed() -> None:
    """Keep freed memory in the heap for the next bar (module docstring): glibc's ``mallopt`` with
    :data:`MMAP_BELOW` and :data:`TRIM_ABOVE` (fixed thresholds replace glibc's adaptive ones); a no-op
    elsewhere. :func:`trim_heap` still hands it all back when called."""
    if _LIBC is not None and hasattr(_LIBC, "mallopt"):
        _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_BELOW)
        _LIBC.mallopt(_M_TRIM_THRESHOLD, TRIM_ABOVE)
