"""How the offline commands take memory: freed blocks kept for the next chunk, small pages.

A chunk's columns and the statistics' working arrays are megabytes each, freed when the chunk is
done and allocated again for the next. By default glibc hands large freed blocks back to the kernel
(its mapping threshold and heap trimming adapt to the sizes seen, per thread), and memory fresh from
the kernel is faulted in and zeroed page by page: a large share of an analysis's system time. With
the mapping threshold above a column's size and trimming off (`mallopt`, where the C library has
it), the blocks are reused instead; the peak is what one chunk's work needs either way.

numpy asks for transparent huge pages on large arrays; where the kernel compacts memory to find one
(its `defrag` setting), each fresh 2 MiB page costs more than the small pages it replaces save the
sorts. The commands' memory is mostly reused, so small pages are asked for (`NUMPY_MADVISE_HUGEPAGE=0`,
unless it is set already).
"""

from __future__ import annotations

import ctypes
import os
import sys

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


def prefer_small_pages() -> bool:
    """Have numpy not ask for huge pages; call before numpy is imported. False when it is imported
    already or `NUMPY_MADVISE_HUGEPAGE` is set (then left as it is)."""
    if "numpy" in sys.modules or "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return False
    os.environ["NUMPY_MADVISE_HUGEPAGE"] = "0"
    return True
