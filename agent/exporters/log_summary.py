"""A log line for an event that can repeat thousands of times: the first at once, then a count.

An outage makes every batch fail, retry and perhaps be dropped; one line each
buries the log (980 lines in one shutdown). The Collector samples such hot
log sites (zap's sampler: the first few each second, then every Nth); this
keeps the first line whole and folds the rest into one line per interval that
says how many there were, so nothing is silently left out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter


class LogSummary:
    """Log one kind of event at `level`: the first at once, then at most one summary per `interval`."""

    def __init__(self, log: logging.Logger, level: int, interval: float = 10.0) -> None:
        self._log = log
        self._level = level
        self._interval = interval
        self._quiet_until = 0.0
        self._held = 0
        self._held_items: Counter[str] = Counter()
        self._last: tuple[str, tuple] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self, message: str, *args, items: dict[str, int] | None = None) -> None:
        """Log `message % args`, or hold it back and count it; `items` (e.g. {"spans": 512}) are
        added up in the summary."""
        now = time.monotonic()
        if now >= self._quiet_until:
            if not self._held:
                self._quiet_until = now + self._interval
                self._log.log(self._level, message, *args, stacklevel=2)
                return
            self.flush()  # overdue: no event loop woke us to say it
        self._held += 1
        self._held_items.update(items or {})
        self._last = (message, args)
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop to wake us: the next call or flush() says it
            self._timer = loop.call_at(loop.time() + max(0.0, self._quiet_until - now), self.flush)

    def flush(self) -> None:
        """Log what is held back now (at shutdown, or when the interval is over)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._held:
            return
        message, args = self._last
        held, self._held = self._held, 0
        items = ", ".join(f"{n} {name}" for name, n in self._held_items.items())
        self._held_items.clear()
        self._quiet_until = time.monotonic() + self._interval
        self._log.log(self._level, "%d more like this in the last %.0fs%s; the last: " + message,
                      held, self._interval, f" ({items})" if items else "", *args)
