"""Memory freed by one chunk kept for the next, where the C library allows it (glibc's `mallopt`).

A chunk's columns and the statistics' working arrays are megabytes each, freed when the chunk is
done and allocated again for the next. By default glibc hands large freed blocks back to the kernel
(its mapping threshold and heap trimming adapt to the sizes seen, per thread), and memory fresh from
the kernel is faulted in and zeroed page by page: a large share of an analysis's system time. With
the mapping threshold above a column's size and trimming off, the blocks are reused instead; the
peak is what one chunk's work needs either way.
"""

from __future__ import annotations

import ctypes

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 << 20  # glibc's largest: a 1 M-row float64 column (8 MiB) comes from the heap
_TRIM_THRESHOLD = 1 << 30  # free memory at a heap's top is kept up to this much


def reuse_freed_memory() -> bool:
    """Keep freed memory in the process for reuse (process-wide); False where the C library has no
    `mallopt` (not glibc) or refuses."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
