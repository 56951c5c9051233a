"""Logged requests waiting for their responses (and responses for their requests), bounded by count, bytes and age."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable

from agent.receivers.kserve.events import LoggedEvent


class Pairs:
    """Half pairs by event key, oldest first; `done` remembers completed keys so a duplicate is known.

    `add` returns the (request, response) pair an event completes, or None while it waits. Whatever
    leaves unpaired (too old, or pushed out by a newer one) is counted in `dropped` by reason; what
    waited its whole time also goes to `expired`.
    """

    def __init__(self, max_pending: int, max_bytes: int, ttl: float,
                 dropped: Callable[[str, int], None], clock: Callable[[], float] = time.monotonic,
                 expired: Callable[[LoggedEvent], None] | None = None) -> None:
        self._max_pending, self._max_bytes, self._ttl = max_pending, max_bytes, ttl
        self._dropped, self._clock, self._expired = dropped, clock, expired
        self._waiting: OrderedDict[tuple, tuple[float, LoggedEvent]] = OrderedDict()
        self._done: OrderedDict[tuple, float] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, event: LoggedEvent) -> tuple[LoggedEvent, LoggedEvent] | None | str:
        """The pair `event` completes, None while it waits, or "duplicate" for an event seen before."""
        now = self._clock()
        self.expire(now)
        if event.key in self._done:
            return "duplicate"
        held = self._waiting.get(event.key)
        if held is not None:
            other = held[1]
            if other.is_request == event.is_request:
                return "duplicate"
            self._remove(event.key)
            self._done[event.key] = now
            while len(self._done) > self._max_pending:
                self._done.popitem(last=False)
            return (other, event) if other.is_request else (event, other)
        if len(event.data) > self._max_bytes:
            self._dropped("too_large", 1)
            return None
        self._waiting[event.key] = (now, event)
        self.bytes += len(event.data)
        while len(self._waiting) > self._max_pending or self.bytes > self._max_bytes:
            self._remove(next(iter(self._waiting)))
            self._dropped("evicted", 1)
        return None

    def put_back(self, request: LoggedEvent, response: LoggedEvent, keep: LoggedEvent) -> None:
        """Undo a pairing whose delivery was refused: `keep` waits again, so a resent partner pairs."""
        self._done.pop(request.key, None)
        self._waiting[keep.key] = (self._clock(), keep)
        self.bytes += len(keep.data)

    def expire(self, now: float | None = None) -> int:
        """Drop what waited longer than the timeout; how many went."""
        now = self._clock() if now is None else now
        gone = 0
        while self._waiting:
            key, (since, _) = next(iter(self._waiting.items()))
            if now - since <= self._ttl:
                break
            event = self._remove(key)
            gone += 1
            if self._expired is not None:
                self._expired(event)
        while self._done and now - next(iter(self._done.values())) > self._ttl:
            self._done.popitem(last=False)
        if gone:
            self._dropped("expired", gone)
        return gone

    def _remove(self, key: tuple) -> LoggedEvent:
        _, event = self._waiting.pop(key)
        self.bytes -= len(event.data)
        return event
