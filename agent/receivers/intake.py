"""Getting a request's bytes in from senders that may stall, trickle or vanish halfway.

- HTTP: `read_body` reads a body from the stream, refusing it once it grows past
  the limit (the caller bounds the time with its `read_timeout`); `decompress`
  undoes its Content-Encoding, stopping a gzip bomb as it inflates.
- gRPC: `CallReader` reads a call's one request message within `read_timeout`.
  gRPC buffers what has arrived of every call's message, whether or not anyone
  reads it, so calls still waiting for theirs are bounded too: past
  `max_receiving_calls`, the one waiting longest is cancelled (as Envoy resets
  the streams holding the most when memory runs short). Cancelled, its buffer
  is freed.
- `IncompleteRequests` counts the requests that never arrived whole (the
  sender went away, was too slow, or sent what is not HTTP) and logs them as
  one line a minute, however many there are; `ServerLog` routes aiohttp's
  complaints about malformed requests there instead of a traceback each.
- `MemoryReleaser` hands what was freed back to the OS after a burst: glibc
  keeps the pages of many small freed buffers (gRPC's 16 KiB frames) for
  reuse, so without it RSS stays at its peak.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import sys
import zlib

import grpc
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from agent.component import Settings


class TooLarge(Exception):
    """The body is larger than allowed (as sent, or once decompressed)."""


def decompress(body: bytes, encoding: str, max_size: int) -> bytes:
    """Undo `Content-Encoding`, refusing to inflate past `max_size` bytes."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity", "none"):
        return body
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = 32 + zlib.MAX_WBITS  # zlib or gzip header, detected
    else:
        raise ValueError(f"unsupported Content-Encoding {encoding!r}: use gzip, deflate or none")
    out = bytearray()
    data = body
    while True:  # a gzip body may hold several members, one after another
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(data, max_size + 1 - len(out))
        except zlib.error as exc:
            raise ValueError(f"body is not valid {encoding}: {exc}") from None
        if len(out) > max_size:
            raise TooLarge(f"request body larger than {max_size} bytes once decompressed")
        if not inflater.eof:
            raise ValueError(f"body is not valid {encoding}: truncated stream")
        data = inflater.unused_data
        if not data:
            return bytes(out)


async def read_body(request: web.Request, max_size: int) -> bytes:
    """The request's body; raises `TooLarge` as soon as more than `max_size` bytes came.

    Read from the stream rather than with `request.read()`, which keeps a copy on the request for
    as long as the request lives: here the body goes once it is decoded.
    """
    chunks, size = [], 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > max_size:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class _Waiting:
    __slots__ = ("deadline", "evicted")

    def __init__(self, deadline: asyncio.Timeout) -> None:
        self.deadline = deadline
        self.evicted = False


class CallReader:
    """Reads each gRPC call's request message, within `read_timeout`, with at most `max_receiving`
    calls waiting for theirs at once."""

    def __init__(self, read_timeout: float, max_receiving: int, incomplete: IncompleteRequests) -> None:
        self._read_timeout = read_timeout
        self._max_receiving = max_receiving
        self._incomplete = incomplete
        self._waiting: dict[_Waiting, None] = {}  # oldest first

    async def read(self, context: grpc.aio.ServicerContext) -> tuple[bytes | None, tuple | None]:
        """(the request message, None), or (None, the status to abort the call with)."""
        try:
            async with asyncio.timeout(self._read_timeout) as deadline:
                waiting = _Waiting(deadline)
                self._waiting[waiting] = None
                if self._max_receiving and len(self._waiting) > self._max_receiving:
                    self._evict_oldest()
                try:
                    message = await context.read()
                finally:
                    self._waiting.pop(waiting, None)
        except TimeoutError:
            if waiting.evicted:
                self._incomplete.add("grpc", "evicted")
                return None, (grpc.StatusCode.UNAVAILABLE,
                              f"more than {self._max_receiving} calls were waiting for their request; "
                              f"this one waited longest (max_receiving_calls)")
            self._incomplete.add("grpc", "read_timeout")
            return None, (grpc.StatusCode.DEADLINE_EXCEEDED,
                          f"request not received within {self._read_timeout:g} s (read_timeout)")
        except asyncio.CancelledError:  # the sender went away (or the server stops)
            self._incomplete.add("grpc", "disconnected")
            raise
        if message is grpc.aio.EOF:
            return None, (grpc.StatusCode.INVALID_ARGUMENT, "the call ended without a request message")
        return message, None

    def _evict_oldest(self) -> None:
        oldest = next(iter(self._waiting))
        del self._waiting[oldest]
        oldest.evicted = True
        oldest.deadline.reschedule(asyncio.get_running_loop().time())


_REASONS = {"disconnected": "the sender went away", "read_timeout": "not received within read_timeout",
            "evicted": "cancelled to make room (max_receiving_calls)", "malformed": "not valid HTTP (answered 400)"}


class IncompleteRequests:
    """Requests that never arrived whole: each counted, and logged as one line at most every
    `every` seconds, summed, however many there are. After a gRPC call ended so, what it held is
    handed back to the OS."""

    def __init__(self, settings: Settings, releaser: MemoryReleaser, every: float = 60.0) -> None:
        self._releaser = releaser
        self._id = str(settings.id)
        self._log = settings.logger
        self._counter = settings.telemetry.counter(
            "vigil_receiver_incomplete_requests",
            "requests that did not arrive whole, by transport and reason "
            "(disconnected, read_timeout, evicted, malformed)")
        self._every = every
        self._pending: dict[tuple[str, str], int] = {}
        self._flush: asyncio.TimerHandle | None = None

    def add(self, transport: str, reason: str) -> None:
        self._counter.add(1, {"receiver": self._id, "transport": transport, "reason": reason})
        self._pending[transport, reason] = self._pending.get((transport, reason), 0) + 1
        loop = asyncio.get_running_loop()
        if self._flush is None:  # the first of a while is logged at once, the rest summed a minute later
            self.flush()
            self._flush = loop.call_later(self._every, self._flush_later)
        if transport == "grpc":  # gRPC had buffered what arrived of its message
            self._releaser.soon()

    def _flush_later(self) -> None:
        self._flush = None
        if self._pending:
            self.flush()
            self._flush = asyncio.get_running_loop().call_later(self._every, self._flush_later)

    def flush(self) -> None:
        if not self._pending:
            return
        self._log.warning("%d request(s) did not arrive whole: %s",
                          sum(self._pending.values()),
                          ", ".join(f"{n} over {transport}, {_REASONS.get(reason, reason)}"
                                    for (transport, reason), n in self._pending.items()))
        self._pending.clear()

    def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self.flush()


class ServerLog:
    """The logger aiohttp's server writes to: a request too malformed to reach a handler (a broken
    header or chunked encoding, already answered 400) is the sender's doing, and counted with the
    incomplete ones; anything else is logged with its traceback."""

    def __init__(self, log: logging.Logger, incomplete: IncompleteRequests) -> None:
        self._log, self._incomplete = log, incomplete

    def debug(self, *args, **kwargs) -> None:
        self._log.debug(*args, **kwargs)

    def exception(self, message, *args, exc_info=True, **kwargs) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(exc, HttpProcessingError):
            self._incomplete.add("http", "malformed")
        else:
            self._log.exception(message, *args, exc_info=exc_info, **kwargs)


class MemoryReleaser:
    """Hands freed memory back to the OS after a burst: soon after `soon()` is called (a call that held
    a message ended early), and whenever RSS has grown by `step` bytes since the last time, looked at
    every `every` seconds (gRPC frees what a connection held when it closes, unseen from here)."""

    def __init__(self, every: float = 5.0, step: int = 32 * 1024 * 1024) -> None:
        self._every, self._step = every, step
        self._baseline: int | None = None
        self._soon: asyncio.TimerHandle | None = None
        self._watch: asyncio.Task | None = None

    def start(self) -> None:
        self._baseline = _rss()
        if _trim is not None and self._baseline is not None:
            self._watch = asyncio.get_running_loop().create_task(self._watching(), name="release-freed-memory")

    def soon(self) -> None:
        if _trim is not None and self._soon is None:
            self._soon = asyncio.get_running_loop().call_later(1.0, self._release_now)

    def _release_now(self) -> None:
        self._soon = None
        asyncio.get_running_loop().create_task(self._release())

    async def _watching(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            rss = _rss()
            if rss is not None and rss > self._baseline + self._step:
                await self._release()

    async def _release(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, release_freed_memory)
        self._baseline = _rss() or 0  # memory still in use stays; the next growth is measured from here

    def stop(self) -> None:
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):  # not Linux
        return None


def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return None


_trim = _malloc_trim()


def release_freed_memory() -> None:
    """Return the free pages malloc holds to the OS (glibc's malloc_trim; ctypes releases the GIL)."""
    if _trim is not None:
        _trim(0)
