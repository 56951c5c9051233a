"""Per-column work on large tables spread over threads.

The sort-based statistics spend their time in numpy (sort, argsort, cumsum, searchsorted), which
releases the GIL, so the columns of a large chunk can be worked on at once, one per core. Below
`MIN_ROWS` rows (the ml processor's windows) threads cost more than they save, and the columns are
done in order in the calling thread. Results are the same either way: every column's work depends
on that column only.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MIN_ROWS = 100_000  # a table's rows from which its columns are spread over threads
MAX_THREADS = 8

_lock = threading.Lock()
_threads = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
               MAX_THREADS)
_pool: ThreadPoolExecutor | None = None


def set_threads(n: int) -> None:
    """Use `n` threads (1: none) from now on (`vigil analyze --threads N`)."""
    global _threads, _pool
    if n < 1:
        raise ValueError(f"threads must be >= 1, not {n}")
    with _lock:
        if _pool is not None and n != _threads:
            _pool.shutdown(wait=True)
            _pool = None
        _threads = n


def threads() -> int:
    return _threads


def map_columns(work: Callable[[T], R], items: Iterable[T], rows: int) -> list[R]:
    """`[work(item) for item in items]`, over threads when the table has at least MIN_ROWS rows."""
    global _pool
    if _threads == 1 or rows < MIN_ROWS:
        return [work(item) for item in items]
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_threads, thread_name_prefix="vigil-columns")
        pool = _pool
    return list(pool.map(work, items))
