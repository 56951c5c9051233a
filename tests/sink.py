"""An in-memory consumer for tests: keeps every batch it accepts, in order.

Like the OpenTelemetry SDK's InMemorySpanExporter, it is a real peer for the
component under test: put it where a pipeline or an exporter would be, then
read what arrived. It can also refuse (`error`, `fail_next`) or be slow
(`delay`), as a full queue or a busy exporter would.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Iterator

from agent.signals import Batch


class InMemorySink:
    def __init__(self, delay: float = 0.0, fail_next: list[Exception] | None = None) -> None:
        self.batches: list[Batch] = []
        self.received_at: list[float] = []  # time.monotonic() when each batch was accepted
        self.calls = 0  # consume calls, refused ones included
        self.delay = delay  # seconds each consume takes before it accepts
        self.error: Exception | None = None  # raised by every call while set; nothing is kept
        self.fail_next = list(fail_next or ())  # raised one per call, first, before `error`
        self.items = 0  # spans, data points and log records accepted, counted as each batch arrives
        self._arrived = asyncio.Event()

    async def consume(self, batch: Batch) -> None:
        self.calls += 1
        if self.fail_next:
            raise self.fail_next.pop(0)
        if self.error is not None:
            raise self.error.with_traceback(None)  # the same error each time, not a traceback growing
        if self.delay:
            await asyncio.sleep(self.delay)
        self.items += batch.items
        self.batches.append(batch)
        self.received_at.append(time.monotonic())
        self._arrived.set()

    def sizes(self) -> list[int]:
        """The items in each batch, in order."""
        return [b.items for b in self.batches]

    def spans(self) -> list[Any]:
        return [span for b in self.batches for rs in b.message.resource_spans for ss in rs.scope_spans
                for span in ss.spans]

    def log_records(self) -> Iterator[tuple[Any, Any, Any]]:
        """(resource logs, scope logs, record) for each log record, in order."""
        for b in self.batches:
            for rl in b.message.resource_logs:
                for sl in rl.scope_logs:
                    for record in sl.log_records:
                        yield rl, sl, record

    def clear(self) -> None:
        self.batches.clear()
        self.received_at.clear()
        self.items = 0

    async def wait_for_items(self, count: int, timeout: float = 5.0) -> None:
        """Until at least `count` items have arrived; TimeoutError (saying how many did) after `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.items < count:
            self._arrived.clear()
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                raise TimeoutError(f"{self.items} of {count} items arrived in {timeout}s") from None
