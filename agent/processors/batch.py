"""The `batch` processor: fewer, larger requests, with the Collector's semantics.

Items (spans, metric data points, log records) collect until there are
`send_batch_size` of them, or `timeout` has passed since the first one came,
and then go on as one request. `send_batch_max_size` caps a request's size:
larger input is split, and a last part smaller than `send_batch_size` waits
for more data or the timer. `timeout: 0` sends at once (only splitting applies).

Unlike the Collector's batch processor, a sender is answered only once its data
has been handed on (to the exporters' queues): `consume` waits for the flush
that takes its items, and returns that flush's outcome. So the batch processor
never holds acknowledged data: a crash or `kill -9` loses nothing a sender was
told is safe (with a persistent queue downstream, nothing at all), and a refusal
downstream reaches the senders, who retry. The cost is latency: a request is
answered up to `timeout` later. To keep that from capping a sender that sends one
request at a time, what is pending also goes on once input has been quiet for
`idle_timeout` (10ms; 0 for the Collector's timing exactly).
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass

from pydantic import Field, model_validator

from agent.component import Consumer, Factory, Kind, Settings
from agent.configmodel import Duration, StrictModel
from agent.errors import RefusedError
from agent.signals import Batch, Signal, merge, split


class BatchProcessorConfig(StrictModel):
    send_batch_size: int = Field(8192, ge=0)
    send_batch_max_size: int = Field(0, ge=0)  # 0: no upper bound
    timeout: Duration = 0.2
    # Flush early once no data has come for this long. Senders are answered only after a flush,
    # so a sender that sends one request at a time (an SDK's batch exporter) would otherwise wait
    # the whole timeout for every request; when input goes quiet, waiting longer only adds latency.
    # 0 keeps the Collector's timing exactly (size or timeout only).
    idle_timeout: Duration = 0.01

    @model_validator(mode="after")
    def _check(self) -> BatchProcessorConfig:
        if self.send_batch_max_size and self.send_batch_max_size < self.send_batch_size:
            raise ValueError("send_batch_max_size must be 0 or at least send_batch_size")
        return self


@dataclass
class _Waiter:
    """A sender waiting for its items, numbered [start, end) in arrival order, to be handed on."""

    start: int
    end: int
    future: asyncio.Future
    error: BaseException | None = None


class BatchProcessor:
    mutates_data = False

    def __init__(self, config: BatchProcessorConfig, settings: Settings, signal: Signal,
                 next: Consumer) -> None:
        self._size = config.send_batch_size
        self._max = config.send_batch_max_size
        self._timeout = config.timeout
        self._next = next
        self._log = settings.logger
        self._pending: list[Batch] = []
        self._pending_items = 0
        self._received = 0  # items taken so far; the next one is numbered this
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._idle = config.idle_timeout
        self._idle_timer: asyncio.TimerHandle | None = None
        # Flushes run one at a time, in order, in tasks of their own: a sender that hangs up
        # must not cancel a flush that carries other senders' data.
        self._flush_lock = asyncio.Lock()
        self._flushes: set[asyncio.Task] = set()
        self._stopped = False

    async def start(self) -> None:
        pass

    async def consume(self, batch: Batch) -> None:
        if self._stopped:
            raise RefusedError("batch processor is shut down")
        if self._timeout == 0:
            for part in self._split(batch):
                await self._next.consume(part)
            return
        waiter = _Waiter(self._received, self._received + batch.items,
                         asyncio.get_running_loop().create_future())
        self._received = waiter.end
        self._pending.append(batch)
        self._pending_items += batch.items
        if batch.items == 0:
            waiter.future.set_result(None)  # nothing to carry: nothing to wait for
        else:
            self._waiters.append(waiter)
        if self._size and self._pending_items >= self._size:
            self._spawn_flush(keep_remainder=True)
        else:
            self._arm_timer()
            self._arm_idle_timer()
        # If this sender goes away, its data still goes on; it just hears no answer (and retries).
        await waiter.future

    async def shutdown(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._spawn_flush(keep_remainder=False)
        await asyncio.gather(*self._flushes, return_exceptions=True)

    def _spawn_flush(self, keep_remainder: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._flush(keep_remainder))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, keep_remainder: bool) -> None:
        """Hand on what is pending and answer the senders whose items it carried.

        With `keep_remainder`, a last part smaller than send_batch_size waits for more data.
        """
        async with self._flush_lock:
            if not self._pending or (keep_remainder and self._pending_items < self._size):
                return
            first = self._received - self._pending_items  # the number of the first pending item
            parts = self._split(self._take())
            if keep_remainder and self._size and parts[-1].items < self._size:
                kept = parts.pop()
                self._pending, self._pending_items = [kept], kept.items
            for part in parts:
                end = first + part.items
                try:
                    await self._next.consume(part)
                    error = None
                except Exception as exc:  # noqa: BLE001 - each sender gets the outcome of its own items
                    error = exc
                self._answer(first, end, error)
                first = end
            self._arm_timer()

    def _answer(self, start: int, end: int, error: BaseException | None) -> None:
        """Items [start, end) were handed on (or refused with `error`): answer whoever is done."""
        if error is not None:
            for waiter in self._waiters:
                if waiter.start >= end:
                    break
                if waiter.end > start and waiter.error is None:
                    waiter.error = error
        while self._waiters and self._waiters[0].end <= end:
            waiter = self._waiters.popleft()
            if waiter.future.done():
                continue  # the sender went away
            if waiter.error is None:
                waiter.future.set_result(None)
            else:
                waiter.future.set_exception(waiter.error)

    def _arm_timer(self) -> None:
        if self._pending and self._timer is None and not self._stopped:
            self._timer = asyncio.get_running_loop().call_later(self._timeout, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._spawn_flush(keep_remainder=False)

    def _arm_idle_timer(self) -> None:
        """(Re)start the quiet-input countdown: each arrival pushes the early flush back."""
        if not self._idle or self._idle >= self._timeout:
            return
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = asyncio.get_running_loop().call_later(self._idle, self._on_idle)

    def _on_idle(self) -> None:
        self._idle_timer = None
        if self._pending and not self._stopped:
            self._spawn_flush(keep_remainder=False)

    def _split(self, batch: Batch) -> list[Batch]:
        return split(batch, self._max) if self._max else [batch]

    def _take(self) -> Batch:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        pending, self._pending, self._pending_items = self._pending, [], 0
        return merge(pending)


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
