"""Per-column work on large tables spread over threads, and the next chunk read while one is worked on.

The sort-based statistics spend their time in numpy (sort, argsort, cumsum, searchsorted), which
releases the GIL, so the columns of a large chunk can be worked on at once, one per core. Below
`MIN_ROWS` rows (the ml processor's windows) threads cost more than they save, and the columns are
done in order in the calling thread. Results are the same either way: every column's work depends
on that column only. Reading a file's next chunk (pyarrow decodes without the GIL) overlaps with the
work on the chunk before (`read_ahead`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

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


_END = object()


def read_ahead(items: Iterable[T]) -> Iterator[T]:
    """`items` in order, each next one taken on a thread of its own while the caller works on the one
    before: at most the one in hand and the one being read are held. With one thread (`set_threads(1)`)
    they are taken as asked for. The items' errors reach the caller at the item that raised them."""
    if _threads == 1:
        yield from items
        return
    iterator = iter(items)
    with ThreadPoolExecutor(1, thread_name_prefix="vigil-read") as reader:
        pending = reader.submit(next, iterator, _END)
        try:
            while (item := pending.result()) is not _END:
                pending = reader.submit(next, iterator, _END)
                yield item
                del item  # the caller is done with it: not held while the next is awaited
        finally:
            # Stopped early (an error, or the caller broke off): let the read in flight end, then close
            # the items (a generator's own clean-up runs) in this thread.
            pending.cancel()
            with contextlib.suppress(BaseException):
                pending.result()
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
