"""The `batch` processor: fewer, larger requests, with the Collector's semantics.

Items (spans, metric data points, log records) collect until there are
`send_batch_size` of them, or `timeout` has passed since the first one came,
and then go on as one request. `send_batch_max_size` caps a request's size:
larger input is split. `timeout: 0` sends at once (only splitting applies).

Data given to the batch processor is acknowledged to the sender before it
reaches the exporters' queues, so a refused send never drops it: what the
queues refuse stays pending and is offered again on the timer, and while that
backlog is full, new data is refused (retryable) before it is taken. Only a
permanent refusal, or data still refused at shutdown, is dropped; both are
counted in `vigil_processor_dropped_<items>` and logged. A crash loses what is
pending (at most `timeout` worth of data, or one backlog).
"""

from __future__ import annotations

import asyncio

from pydantic import Field, model_validator

from agent.component import Consumer, Factory, Kind, Settings
from agent.config import Duration, StrictModel
from agent.errors import ConsumerError, RefusedError
from agent.signals import Batch, Signal, merge, split


class BatchProcessorConfig(StrictModel):
    send_batch_size: int = Field(8192, ge=0)
    send_batch_max_size: int = Field(0, ge=0)  # 0: no upper bound
    timeout: Duration = 0.2

    @model_validator(mode="after")
    def _check(self) -> BatchProcessorConfig:
        if self.send_batch_max_size and self.send_batch_max_size < self.send_batch_size:
            raise ValueError("send_batch_max_size must be 0 or at least send_batch_size")
        return self


class BatchProcessor:
    mutates_data = False

    def __init__(self, config: BatchProcessorConfig, settings: Settings, signal: Signal,
                 next: Consumer) -> None:
        self._size = config.send_batch_size
        self._max = config.send_batch_max_size
        self._timeout = config.timeout
        # While the next consumer refuses, hold at most this much before refusing senders.
        self._backlog_limit = max(self._size, self._max, 1)
        self._next = next
        self._log = settings.logger
        self._attrs = {"processor": str(settings.id)}
        self._dropped = settings.telemetry.counter(
            f"vigil_processor_dropped_{signal.item_name}", "items dropped by a processor")
        self._pending: list[Batch] = []
        self._pending_items = 0
        self._backlogged = False
        self._timer: asyncio.TimerHandle | None = None
        self._sends: set[asyncio.Task] = set()

    async def start(self) -> None:
        pass

    async def consume(self, batch: Batch) -> None:
        if self._timeout == 0 and not self._pending:
            for part in self._split(batch):
                await self._next.consume(part)
            return
        if self._backlogged and self._pending_items >= self._backlog_limit:
            # Refused before it is taken: the sender keeps the data and retries later.
            raise RefusedError("batch processor is backlogged: the exporters' queues are full",
                               retry_after=max(self._timeout, 1.0))
        self._pending.append(batch)
        self._pending_items += batch.items
        if self._size and self._pending_items >= self._size and not self._backlogged:
            await self._send(keep_remainder=True)
        self._arm_timer()

    async def shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sends:
            await asyncio.gather(*self._sends, return_exceptions=True)
        await self._send(keep_remainder=False)
        if self._pending_items:
            self._dropped.add(self._pending_items, self._attrs)
            self._log.warning("dropped %d %s at shutdown: the exporters refused them",
                              self._pending_items, self._pending[0].signal.item_name)
            self._pending, self._pending_items = [], 0

    async def _send(self, keep_remainder: bool) -> None:
        """Send what is pending. Data the next consumer refuses stays pending for the timer.

        With `keep_remainder`, a last part smaller than send_batch_size waits for more data.
        """
        if not self._pending:
            return
        parts = self._split(self._take())
        if keep_remainder and self._size and parts[-1].items < self._size:
            self._keep(parts.pop())
        for i, part in enumerate(parts):
            try:
                await self._next.consume(part)
            except RefusedError as exc:
                for rest in reversed(parts[i:]):
                    self._keep(rest, front=True)
                if not self._backlogged:
                    self._log.warning("exporters refused a batch (%s); holding it and retrying", exc)
                self._backlogged = True
                return
            except ConsumerError as exc:
                self._dropped.add(part.items, self._attrs)
                self._log.error("dropped %d %s: %s", part.items, part.signal.item_name, exc)
        self._backlogged = False

    def _arm_timer(self) -> None:
        if self._pending and self._timer is None:
            # While backlogged, retry no faster than 10 times a second, even with timeout 0.
            delay = max(self._timeout, 0.1) if self._backlogged else self._timeout
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().create_task(self._send_on_timer())
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send_on_timer(self) -> None:
        await self._send(keep_remainder=False)
        self._arm_timer()

    def _split(self, batch: Batch) -> list[Batch]:
        return split(batch, self._max) if self._max else [batch]

    def _take(self) -> Batch:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending, self._pending_items = self._pending, [], 0
        return merge(pending)

    def _keep(self, batch: Batch, front: bool = False) -> None:
        self._pending.insert(0 if front else len(self._pending), batch)
        self._pending_items += batch.items


def _create(config: BatchProcessorConfig, settings: Settings, signal: Signal, next: Consumer):
    return BatchProcessor(config, settings, signal, next)


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type="batch",
    config_model=BatchProcessorConfig,
    create=_create,
    signals=frozenset(Signal),
    description="groups data into larger requests by size and time",
)
