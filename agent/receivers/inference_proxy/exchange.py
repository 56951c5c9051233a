"""One observed call as the forwarding path copied it: bounded bodies, chunk arrival times, status."""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

# A stream longer than the limit keeps its last chunks: the usage and finish reason come last.
TAIL_CHUNKS = 16


@dataclass(frozen=True, slots=True)
class Route:
    """What a request is, found from its method and path alone: `chat`, `text_completion` or `infer`."""

    operation: str
    model: str | None = None  # from the path (V2)
    version: str | None = None


class Exchange:
    """A call, filled in by the forwarding path and read by the observer (never both at once)."""

    __slots__ = ("route", "traceparent", "request_body", "start_ns", "started", "ended", "status",
                 "content_type", "content_encoding", "response_body", "chunks", "tail", "skipped", "error")

    def __init__(self, route: Route) -> None:
        self.route = route
        self.traceparent: str | None = None
        self.request_body: bytes | None = None
        self.start_ns = 0  # wall clock when the request went upstream
        self.started = 0.0  # time.perf_counter() then
        self.ended = 0.0  # time.perf_counter() when the last byte of the response arrived
        self.status = 0
        self.content_type = ""
        self.content_encoding = ""
        self.response_body: bytes | None = None
        self.chunks: list[tuple[float, bytes]] = []  # (arrival time, bytes) of a streamed response
        self.tail: deque[tuple[float, bytes]] | None = None  # the last chunks, once `chunks` is full
        self.skipped: str | None = None  # why this call cannot be observed
        self.error: str | None = None  # the call's error.type when the upstream gave no answer

    def begin(self) -> None:
        self.start_ns = time.time_ns()
        self.started = time.perf_counter()

    def response(self, status: int, headers, body: bytes | None) -> None:
        self.status = status
        self.content_type = headers.get("Content-Type", "")
        self.content_encoding = headers.get("Content-Encoding", "")
        if body is not None:
            self.response_body = body
            self.ended = time.perf_counter()

    def add_chunk(self, arrived: float, chunk: bytes, kept: int, limit: int) -> int:
        """Keeps `chunk` while the kept bytes stay within `limit`, then only the last chunks; the new total."""
        self.ended = arrived
        if self.tail is None:
            if kept + len(chunk) <= limit:
                self.chunks.append((arrived, chunk))
                return kept + len(chunk)
            self.tail = deque(maxlen=TAIL_CHUNKS)
        self.tail.append((arrived, chunk))
        return kept

    def end(self) -> None:
        self.ended = time.perf_counter()

    def fail(self, status: int, error: str) -> None:
        """The upstream gave no answer (`error`: upstream_unreachable, ...); the client got `status`."""
        self.status, self.error = status, error
        self.ended = time.perf_counter()

    def skip(self, reason: str) -> None:
        if self.skipped is None:
            self.skipped = reason

    @property
    def error_type(self) -> str | None:
        """The call's `error.type`: why the upstream gave no answer, or its status code from 400."""
        return self.error or (str(self.status) if self.status >= 400 else None)

    @property
    def streamed(self) -> bool:
        return self.response_body is None and (bool(self.chunks) or self.tail is not None)

    @property
    def cut(self) -> bool:
        return self.tail is not None

    @property
    def size(self) -> int:
        """The bytes this exchange holds."""
        held = len(self.request_body or b"") + len(self.response_body or b"")
        held += sum(len(c) for _, c in self.chunks)
        if self.tail is not None:
            held += sum(len(c) for _, c in self.tail)
        return held


def json_body(body: bytes | None) -> Any:
    """The JSON value of `body`; None when there is none or it is not JSON."""
    if body is None:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
