"""Off the forwarding path: a bounded queue of exchanges, and the task that turns them into spans.

`offer` is all the forwarding path calls: it appends to the queue or, when
the queue holds `queue_size` exchanges or `max_queued_bytes`, drops the
exchange and counts it (`vigil_inference_proxy_observations_dropped`), with
one log line a minute summing the drops. The task takes what is queued,
asks the protocol's observation for spans (an exchange it cannot read is
skipped and counted by reason in `vigil_inference_proxy_observations_skipped`),
and delivers them as one batch. A pipeline that refuses loses that batch
(counted refused by `Delivery`); a slow one only lets the queue fill.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Callable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agent import __version__
from agent.component import Consumer, Settings
from agent.receivers.delivery import Delivery
from agent.receivers.inference_proxy.exchange import Exchange
from agent.signals import Batch, Signal

SCOPE = "vigil.inference_proxy"
_BATCH = 256  # exchanges turned into one batch of spans at most
_LINGER = 0.05  # seconds a first exchange waits for others to share its batch (a pipeline call per span costs)
_LOG_EVERY = 60.0  # seconds between two lines about drops or refusals


class NotObservable(Exception):
    """An exchange the observation cannot read; its argument is the reason counted."""

    @property
    def reason(self) -> str:
        return self.args[0]


class Observer:
    def __init__(self, settings: Settings, consumers: dict[Signal, Consumer], service_name: str,
                 to_spans: Callable[[Exchange], list[Span]], queue_size: int, max_queued_bytes: int,
                 log: logging.Logger) -> None:
        self._delivery = Delivery(settings, consumers) if Signal.TRACES in consumers else None
        self._service_name = service_name
        self._to_spans = to_spans
        self._queue: deque[Exchange] = deque()
        self._queued_bytes = 0
        self._queue_size = queue_size
        self._max_bytes = max_queued_bytes
        self._ready = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._log = log
        attrs = {"receiver": str(settings.id)}
        self._attrs = attrs
        self._dropped = settings.telemetry.counter(
            "vigil_inference_proxy_observations_dropped", "observed calls dropped: the observation queue was full")
        self._skipped = settings.telemetry.counter(
            "vigil_inference_proxy_observations_skipped",
            "observed calls that gave no span, by reason (too_large, malformed, encoded, client_disconnected, ...)")
        self._cut = settings.telemetry.counter(
            "vigil_inference_proxy_observations_cut",
            "streams longer than max_observed_body_size, observed from their first and last chunks")
        self._drops_unlogged = 0
        self._refusals_unlogged = 0
        self._last_drop_log = self._last_refusal_log = self._last_error_log = -_LOG_EVERY
        self.dropped = 0  # for status()
        self.skipped: dict[str, int] = {}

    def start(self) -> None:
        if self._delivery is not None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="inference_proxy observer")

    async def stop(self) -> None:
        """Turn what is queued into spans and deliver them, then stop."""
        if self._task is None:
            return
        self._stopping = True
        self._ready.set()
        try:
            await asyncio.wait_for(self._task, 5)
        except (TimeoutError, asyncio.CancelledError):
            pass
        self._task = None

    def offer(self, exchange: Exchange) -> None:
        """Queue `exchange` for observation, or drop it when the queue is full. Never blocks."""
        if self._delivery is None:
            return
        size = exchange.size
        if len(self._queue) >= self._queue_size or self._queued_bytes + size > self._max_bytes:
            self._dropped.add(1, self._attrs)
            self.dropped += 1
            self._drops_unlogged += 1
            now = time.monotonic()
            if now - self._last_drop_log >= _LOG_EVERY:
                self._log.warning("%d observed calls dropped since the last report: the observation queue is "
                                  "full (the pipelines are slower than the calls); the calls were forwarded",
                                  self._drops_unlogged)
                self._drops_unlogged, self._last_drop_log = 0, now
            return
        self._queue.append(exchange)
        self._queued_bytes += size
        self._ready.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._ready.clear()
                await self._ready.wait()
                continue
            if len(self._queue) < _BATCH and not self._stopping:
                await asyncio.sleep(_LINGER)
            exchanges = [self._queue.popleft() for _ in range(min(_BATCH, len(self._queue)))]
            self._queued_bytes -= sum(exchange.size for exchange in exchanges)
            # Reading bodies is CPU work (a V2 batch of 1,000 rows takes about 0.1 s): in a thread, so
            # the event loop goes on forwarding meanwhile.
            spans, skipped, cut = await asyncio.to_thread(self._read, exchanges)
            for reason in skipped:
                self._skip(reason)
            if cut:
                self._cut.add(cut, self._attrs)
            if spans:
                await self._deliver(spans)

    def _read(self, exchanges: list[Exchange]) -> tuple[list[Span], list[str], int]:
        """The spans of `exchanges`, the reasons of those that gave none, and how many streams were cut."""
        spans: list[Span] = []
        skipped: list[str] = []
        cut = 0
        for exchange in exchanges:
            try:
                if exchange.skipped is not None:
                    raise NotObservable(exchange.skipped)
                spans.extend(self._to_spans(exchange))
                cut += exchange.cut
            except NotObservable as exc:
                skipped.append(exc.reason)
            except Exception:  # a bug reading one call must not stop the observation of the others
                now = time.monotonic()
                if now - self._last_error_log >= _LOG_EVERY:  # once a minute at most
                    self._log.exception("reading an observed call failed (counted as skipped, reason error)")
                    self._last_error_log = now
                skipped.append("error")
        return spans, skipped, cut

    def _skip(self, reason: str) -> None:
        self._skipped.add(1, {**self._attrs, "reason": reason})
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    async def _deliver(self, spans: list[Span]) -> None:
        message = ExportTraceServiceRequest()
        resource_spans = message.resource_spans.add()
        resource_spans.resource.attributes.add(key="service.name").value.string_value = self._service_name
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name, scope_spans.scope.version = SCOPE, __version__
        scope_spans.spans.extend(spans)
        try:
            await self._delivery.deliver(Batch(Signal.TRACES, message, items=len(spans)), "http")
        except Exception as exc:  # counted refused by Delivery; the calls themselves were answered
            self._refusals_unlogged += len(spans)
            now = time.monotonic()
            if now - self._last_refusal_log >= _LOG_EVERY:
                self._log.warning("%d spans of observed calls refused by the pipelines since the last report "
                                  "(last: %s)", self._refusals_unlogged, exc)
                self._refusals_unlogged, self._last_refusal_log = 0, now
