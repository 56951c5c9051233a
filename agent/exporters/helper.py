"""What every network exporter shares: a bounded sending queue, retry with backoff, a timeout.

An exporter supplies a `Sender` (open a connection, push one batch, close);
`QueuedExporter` makes it a pipeline component:

    consume(batch) ─▶ sending queue (bounded; full: refused, retryable) ─▶ N workers
                         └─ each: push with timeout ─▶ retryable failure: back off, push again
                                                   └─▶ permanent failure: count, log, drop

The queue never blocks a receiver: when it is full, `consume` raises
`RefusedError` at once, and the sender's SDK retries.

In memory (the default), retries give up after `max_elapsed_time`, and
shutdown drains the queue until the service's shutdown deadline cancels it;
what is left then (queued, or between retries) is counted as dropped and said
in one log line. With `sending_queue.storage`, the
queue is on disk (`agent.exporters.queue_persistent`): a retryable failure is
retried until it succeeds, however long the backend is down (the queue's size
bounds an outage, not a timer), and shutdown only lets pushes under way
finish: what is still queued is sent after the next start.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from typing import Protocol

from pydantic import Field, model_validator

from agent.component import Settings
from agent.configmodel import Duration, StrictModel
from agent.errors import InvalidDataError, RefusedError
from agent.exporters.log_summary import LogSummary
from agent.exporters.queue import QueueConfig, make_queue
from agent.signals import Batch, Signal

__all__ = ["Backoff", "ExportError", "QueueConfig", "QueuedExporter", "RetryConfig", "Sender",
           "partial_success"]


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


_SIZE_BYTES = "bytes the sending queue holds (on disk, for a persistent queue)"
_ABANDONED = object()  # a retry given up because the exporter is stopping; the data stays queued


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
        t = settings.telemetry
        self._queue = make_queue(queue, settings.state_dir, str(settings.id), t, self._attrs,
                                 self._log) if queue.enabled else None
        self._workers: list[asyncio.Task] = []
        self._accepting = False
        self._stopping = asyncio.Event()
        # An outage makes every batch fail alike: one line, then a count every few seconds.
        self._retry_log = LogSummary(self._log, logging.WARNING)
        self._drop_log = LogSummary(self._log, logging.ERROR)
        self._dropped_in_flight: Counter[Signal] = Counter()  # cancelled mid-send or mid-retry at shutdown
        self._requests_in_flight = 0
        self._sent = {s: t.counter(f"vigil_exporter_sent_{s.item_name}", "items sent") for s in Signal}
        self._failed = {s: t.counter(f"vigil_exporter_send_failed_{s.item_name}",
                                     "items that could not be sent and were dropped") for s in Signal}
        self._enqueue_failed = {s: t.counter(f"vigil_exporter_enqueue_failed_{s.item_name}",
                                             "items refused because the sending queue was full")
                                for s in Signal}
        self._rejected = {s: t.counter(f"vigil_exporter_rejected_{s.item_name}",
                                       "items the peer rejected in a partial success") for s in Signal}
        if self._queue is not None:
            t.gauge("vigil_exporter_queue_size", "requests waiting in the sending queue",
                    lambda: [(self._queue.size(), self._attrs)])
            if self._queue.durable:
                t.gauge("vigil_exporter_queue_size_bytes", _SIZE_BYTES,
                        lambda: [(self._queue.used_bytes, self._attrs)], unit="By")
                t.gauge("vigil_exporter_queue_capacity_bytes", "capacity of the persistent queue, in bytes",
                        lambda: [(self._queue.capacity_bytes, self._attrs)], unit="By")
            else:
                t.gauge("vigil_exporter_queue_capacity", "capacity of the in-memory sending queue, in its "
                        "sizer's units (requests, items or bytes)", lambda: [(queue.queue_size, self._attrs)])
                if queue.sizer == "bytes":
                    t.gauge("vigil_exporter_queue_size_bytes", _SIZE_BYTES,
                            lambda: [(self._queue.used, self._attrs)], unit="By")

    async def start(self) -> None:
        await self._sender.start()
        if self._queue is not None:
            try:
                await self._queue.open()
            except BaseException:
                await self._sender.close()
                raise
            self._workers = [asyncio.create_task(self._work(), name=f"{self._attrs['exporter']}-{i}")
                             for i in range(self._queue_config.num_consumers)]
        self._accepting = True

    async def consume(self, batch: Batch) -> None:
        if not self._accepting:
            raise RefusedError(f"exporter {self._attrs['exporter']} is not running")
        if self._queue is None:
            # Without a queue the sender waits for the outcome, so it hears about a failure too.
            error = await self._send(batch)
            if error is not None:
                if error.retryable:
                    raise RefusedError(f"exporter {self._attrs['exporter']}: {error}")
                raise InvalidDataError(f"exporter {self._attrs['exporter']}: {error}")
            return
        try:
            await self._queue.put(batch)
        except RefusedError as exc:
            self._enqueue_failed[batch.signal].add(batch.items, self._attrs)
            if self._queue.durable:
                raise
            raise RefusedError(f"sending queue of exporter {self._attrs['exporter']} is full",
                               retry_after=self._retry.initial_interval) from exc
        except InvalidDataError:
            self._enqueue_failed[batch.signal].add(batch.items, self._attrs)
            raise

    async def shutdown(self) -> None:
        self._accepting = False
        try:
            if self._queue is None:
                await self._sender.close()
            elif self._queue.durable:
                await self._shutdown_durable()
            else:
                await self._shutdown_draining()
        finally:
            self._retry_log.flush()
            self._drop_log.flush()

    async def _shutdown_draining(self) -> None:
        """Drain the queue; when the caller's deadline cancels this, count what is left as dropped."""
        try:
            await self._queue.join()
        finally:
            for worker in self._workers:
                worker.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
            self._workers = []
            self._retry_log.flush()
            dropped, requests = self._dropped_in_flight, self._requests_in_flight
            in_flight = requests
            for batch in self._queue.take_all():
                self._failed[batch.signal].add(batch.items, self._attrs)
                dropped[batch.signal] += batch.items
                requests += 1
            if requests:
                # One line for the whole shutdown, however many batches: the count is what matters.
                self._log.error("dropped at shutdown, the deadline having passed: %s in %d requests (%d being "
                                "sent or between retries, %d still queued)",
                                ", ".join(f"{n} {s.item_name}" for s, n in dropped.items()), requests, in_flight,
                                requests - in_flight)
            await self._sender.close()

    async def _shutdown_durable(self) -> None:
        """Let pushes under way finish and stop; what is queued stays on disk for the next start."""
        self._stopping.set()  # retries waiting to try again give up now
        self._queue.stop_dispatch()  # workers waiting for data get None and stop
        try:
            await asyncio.gather(*self._workers, return_exceptions=True)
        finally:
            # At the deadline: cancelled pushes are not marked done, so they are sent again after a restart.
            for worker in self._workers:
                worker.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
            self._workers = []
            await self._queue.close()
            await self._sender.close()

    async def _work(self) -> None:
        while True:
            got = await self._queue.get()
            if got is None:
                return
            entry, batch = got
            try:
                outcome = await self._send(batch)
            except asyncio.CancelledError:
                if not self._queue.durable:
                    self._failed[batch.signal].add(batch.items, self._attrs)
                    self._dropped_in_flight[batch.signal] += batch.items
                    self._requests_in_flight += 1
                    self._queue.done(entry)
                raise
            except Exception:
                self._failed[batch.signal].add(batch.items, self._attrs)
                self._log.exception("unexpected error sending %d %s", batch.items, batch.signal.item_name)
            else:
                if outcome is _ABANDONED:
                    return  # not done: a durable queue sends it again after the next start
            self._queue.done(entry)

    async def _send(self, batch: Batch):
        """Push `batch`, retrying what is retryable; count the outcome.

        Returns None once the batch is sent, the error that made it give up, or _ABANDONED when a
        durable queue's exporter stops while waiting to retry.
        """
        durable = self._queue is not None and self._queue.durable
        backoff = Backoff(self._retry)
        started = time.monotonic()
        while True:
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that comes as
                # the push ends, and a worker cancelled at the shutdown deadline would then retry forever.
                async with asyncio.timeout(self._timeout):
                    rejected = await self._sender.push(batch)
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
            # A durable queue keeps retrying: its size, not a timer, bounds how long an outage may last.
            limit = 0 if durable else self._retry.max_elapsed_time
            if not (error.retryable and self._retry.enabled) or (limit and elapsed + delay > limit):
                why = "not retryable" if not error.retryable else (
                    "retry disabled" if not self._retry.enabled else f"no success after {elapsed:.0f}s")
                self._failed[batch.signal].add(batch.items, self._attrs)
                self._drop_log("dropped %d %s (%s): %s", batch.items, batch.signal.item_name, why, error,
                               items={batch.signal.item_name: batch.items})
                return error
            if durable and self._stopping.is_set():
                return _ABANDONED
            self._retry_log("sending %d %s failed, retrying in %.1fs: %s", batch.items,
                            batch.signal.item_name, delay, error)
            if durable:
                try:
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()
                    return _ABANDONED
                except TimeoutError:
                    continue
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
