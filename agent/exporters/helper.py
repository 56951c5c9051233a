"""What every network exporter shares: a bounded sending queue, retry with backoff, a timeout.

An exporter supplies a `Sender` (open a connection, push one batch, close);
`QueuedExporter` makes it a pipeline component:

    consume(batch) ─▶ sending queue (bounded; full: refused, retryable) ─▶ N workers
                         └─ each: push with timeout ─▶ retryable failure: back off, push again
                                                   └─▶ permanent failure: count, log, drop

The queue never blocks a receiver: when it is full, `consume` raises
`RefusedError` at once, and the sender's SDK retries. Shutdown stops taking
data and drains the queue until the service's shutdown deadline cancels it;
what is left then is counted as dropped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Protocol

from pydantic import Field, model_validator

from agent.component import Settings
from agent.config import Duration, StrictModel
from agent.errors import InvalidDataError, RefusedError
from agent.signals import Batch, Signal


class RetryConfig(StrictModel):
    """The Collector's `retry_on_failure`, with its defaults."""

    enabled: bool = True
    initial_interval: Duration = 5.0
    max_interval: Duration = 30.0
    max_elapsed_time: Duration = 300.0  # 0: retry for ever
    multiplier: float = Field(1.5, ge=1.0)
    randomization_factor: float = Field(0.5, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> RetryConfig:
        if self.initial_interval <= 0:
            raise ValueError("initial_interval must be > 0")
        if self.max_interval < self.initial_interval:
            raise ValueError("max_interval must be at least initial_interval")
        return self


class QueueConfig(StrictModel):
    """The Collector's `sending_queue` (in memory): sizes count requests, not items."""

    enabled: bool = True
    num_consumers: int = Field(10, ge=1)
    queue_size: int = Field(1000, ge=1)


class ExportError(Exception):
    """A push that failed. `retryable` follows the OTLP spec; `retry_after` is the peer's hint."""

    def __init__(self, message: str, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Sender(Protocol):
    async def start(self) -> None: ...

    async def push(self, batch: Batch) -> int:
        """Send one batch; return how many items the peer rejected (partial success), or raise ExportError."""

    async def close(self) -> None: ...


class Backoff:
    """Exponential backoff with jitter, as the Collector's retry sender computes it."""

    def __init__(self, config: RetryConfig) -> None:
        self._config = config
        self._interval = config.initial_interval

    def next_delay(self) -> float:
        c = self._config
        delta = c.randomization_factor * self._interval
        delay = random.uniform(self._interval - delta, self._interval + delta)
        self._interval = min(self._interval * c.multiplier, c.max_interval)
        return delay


class QueuedExporter:
    """A `Sender` wrapped in a sending queue, retries and a timeout: a pipeline component."""

    mutates_data = False

    def __init__(self, sender: Sender, settings: Settings, timeout: float, retry: RetryConfig,
                 queue: QueueConfig) -> None:
        self._sender = sender
        self._timeout = timeout
        self._retry = retry
        self._queue_config = queue
        self._log = settings.logger
        self._attrs = {"exporter": str(settings.id)}
        self._queue: asyncio.Queue[Batch] = asyncio.Queue(queue.queue_size)
        self._workers: list[asyncio.Task] = []
        self._accepting = False
        t = settings.telemetry
        self._sent = {s: t.counter(f"vigil_exporter_sent_{s.item_name}", "items sent") for s in Signal}
        self._failed = {s: t.counter(f"vigil_exporter_send_failed_{s.item_name}",
                                     "items that could not be sent and were dropped") for s in Signal}
        self._enqueue_failed = {s: t.counter(f"vigil_exporter_enqueue_failed_{s.item_name}",
                                             "items refused because the sending queue was full")
                                for s in Signal}
        self._rejected = {s: t.counter(f"vigil_exporter_rejected_{s.item_name}",
                                       "items the peer rejected in a partial success") for s in Signal}
        t.gauge("vigil_exporter_queue_size", "requests waiting in the sending queue",
                lambda: [(self._queue.qsize(), self._attrs)])
        t.gauge("vigil_exporter_queue_capacity", "capacity of the sending queue, in requests",
                lambda: [(queue.queue_size, self._attrs)])

    async def start(self) -> None:
        await self._sender.start()
        if self._queue_config.enabled:
            self._workers = [asyncio.create_task(self._work(), name=f"{self._attrs['exporter']}-{i}")
                             for i in range(self._queue_config.num_consumers)]
        self._accepting = True

    async def consume(self, batch: Batch) -> None:
        if not self._accepting:
            raise RefusedError(f"exporter {self._attrs['exporter']} is not running")
        if not self._queue_config.enabled:
            # Without a queue the sender waits for the outcome, so it hears about a failure too.
            error = await self._send(batch)
            if error is not None:
                if error.retryable:
                    raise RefusedError(f"exporter {self._attrs['exporter']}: {error}")
                raise InvalidDataError(f"exporter {self._attrs['exporter']}: {error}")
            return
        try:
            self._queue.put_nowait(batch)
        except asyncio.QueueFull:
            self._enqueue_failed[batch.signal].add(batch.items, self._attrs)
            raise RefusedError(f"sending queue of exporter {self._attrs['exporter']} is full",
                               retry_after=self._retry.initial_interval) from None

    async def shutdown(self) -> None:
        """Drain the queue; when the caller's deadline cancels this, count what is left as dropped."""
        self._accepting = False
        try:
            if self._workers:
                await self._queue.join()
        finally:
            for worker in self._workers:
                worker.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
            self._workers = []
            while not self._queue.empty():
                batch = self._queue.get_nowait()
                self._failed[batch.signal].add(batch.items, self._attrs)
                self._log.warning("dropped %d %s still queued at shutdown", batch.items,
                                  batch.signal.item_name)
            await self._sender.close()

    async def _work(self) -> None:
        while True:
            batch = await self._queue.get()
            try:
                await self._send(batch)
            except asyncio.CancelledError:
                self._failed[batch.signal].add(batch.items, self._attrs)
                raise
            except Exception:
                self._failed[batch.signal].add(batch.items, self._attrs)
                self._log.exception("unexpected error sending %d %s", batch.items, batch.signal.item_name)
            finally:
                self._queue.task_done()

    async def _send(self, batch: Batch) -> ExportError | None:
        """Push `batch`, retrying what is retryable until max_elapsed_time; count the outcome.

        Returns the error that made it give up, or None once the batch is sent.
        """
        backoff = Backoff(self._retry)
        started = time.monotonic()
        while True:
            try:
                rejected = await asyncio.wait_for(self._sender.push(batch), self._timeout)
            except (ExportError, TimeoutError) as exc:
                error = exc if isinstance(exc, ExportError) else ExportError(
                    f"timed out after {self._timeout:g}s", retryable=True)
            else:
                self._sent[batch.signal].add(batch.items - rejected, self._attrs)
                if rejected:
                    self._rejected[batch.signal].add(rejected, self._attrs)
                return None
            delay = error.retry_after if error.retry_after is not None else backoff.next_delay()
            elapsed = time.monotonic() - started
            limit = self._retry.max_elapsed_time
            if not (error.retryable and self._retry.enabled) or (limit and elapsed + delay > limit):
                why = "not retryable" if not error.retryable else (
                    "retry disabled" if not self._retry.enabled else f"no success after {elapsed:.0f}s")
                self._failed[batch.signal].add(batch.items, self._attrs)
                self._log.error("dropped %d %s (%s): %s", batch.items, batch.signal.item_name, why, error)
                return error
            self._log.warning("sending %d %s failed, retrying in %.1fs: %s", batch.items,
                              batch.signal.item_name, delay, error)
            await asyncio.sleep(delay)  # cancelled at the shutdown deadline


def partial_success(log: logging.Logger, batch: Batch, response) -> int:
    """Items the peer's Export*ServiceResponse says it rejected; logs its message. Never retried."""
    if not response.HasField("partial_success"):
        return 0
    partial = response.partial_success
    rejected = next((getattr(partial, f) for f in ("rejected_spans", "rejected_data_points",
                                                   "rejected_log_records") if hasattr(partial, f)), 0)
    if rejected or partial.error_message:
        log.warning("peer accepted part of %d %s: %d rejected: %s", batch.items,
                    batch.signal.item_name, rejected, partial.error_message or "(no message)")
    return rejected
