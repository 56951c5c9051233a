"""The shared exporter helper with a scripted transport: what the sender hears, the queue's sizer, the logs."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent.component import ComponentId, Kind, Settings
from agent.config import ConfigError, from_dict
from agent.errors import InvalidDataError, RefusedError
from agent.exporters.helper import ExportError, QueueConfig, QueuedExporter, RetryConfig
from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry
from tests.conftest import async_wait_for
from tests.otlp_data import traces


class ScriptedSender:
    """A transport whose pushes fail with the given errors, in order, then succeed."""

    def __init__(self, *errors: ExportError) -> None:
        self.errors = list(errors)
        self.pushed = 0

    async def start(self) -> None:
        pass

    async def push(self, batch: Batch) -> int:
        self.pushed += 1
        if self.errors:
            raise self.errors.pop(0)
        return 0

    async def close(self) -> None:
        pass


def exporter(sender: ScriptedSender, telemetry: SelfTelemetry) -> QueuedExporter:
    retry = RetryConfig(initial_interval="10ms", max_interval="20ms", max_elapsed_time="200ms")
    return QueuedExporter(sender, Settings(ComponentId("otlp"), telemetry), timeout=1.0, retry=retry,
                          queue=QueueConfig(enabled=False))


def batch() -> Batch:
    return Batch(Signal.TRACES, traces(3))


async def test_without_a_queue_a_permanent_failure_reaches_the_sender():
    telemetry = SelfTelemetry()
    sender = ScriptedSender(ExportError("INVALID_ARGUMENT: bad span", retryable=False))
    component = exporter(sender, telemetry)
    await component.start()
    with pytest.raises(InvalidDataError, match="bad span"):
        await component.consume(batch())
    assert sender.pushed == 1
    assert telemetry.total("vigil_exporter_send_failed_spans") == 3
    await component.shutdown()


async def test_without_a_queue_exhausted_retries_are_retryable_for_the_sender():
    telemetry = SelfTelemetry()
    sender = ScriptedSender(*[ExportError("UNAVAILABLE", retryable=True)] * 100)
    component = exporter(sender, telemetry)
    await component.start()
    with pytest.raises(RefusedError, match="UNAVAILABLE"):
        await component.consume(batch())
    assert sender.pushed > 1
    await component.shutdown()


async def test_without_a_queue_a_retried_success_is_accepted():
    telemetry = SelfTelemetry()
    sender = ScriptedSender(ExportError("UNAVAILABLE", retryable=True))
    component = exporter(sender, telemetry)
    await component.start()
    await component.consume(batch())
    assert sender.pushed == 2
    assert telemetry.total("vigil_exporter_sent_spans") == 3
    await component.shutdown()


def test_grpc_exporter_refuses_insecure_skip_verify():
    doc = {"receivers": {"otlp": {"protocols": {"grpc": None}}},
           "exporters": {"otlp": {"endpoint": "backend:4317", "tls": {"insecure_skip_verify": True}}},
           "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp"]}}}}
    with pytest.raises(ConfigError) as info:
        from_dict(doc)
    assert info.value.problems == [
        "exporters.otlp.tls: insecure_skip_verify is not supported by the gRPC exporter: "
        "give the server's CA in ca_file, or use otlphttp"]


# --- the in-memory queue's sizer ---------------------------------------------------------


class StalledSender(ScriptedSender):
    """A backend that never answers: every push waits until the exporter gives up on it."""

    async def push(self, batch: Batch) -> int:
        self.pushed += 1
        await asyncio.Event().wait()
        return 0


async def stop(component: QueuedExporter) -> None:
    """Shut down as the service does when its deadline passes: the drain is cancelled."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(component.shutdown(), 0.3)


def queued_exporter(sender, telemetry: SelfTelemetry, **queue) -> QueuedExporter:
    retry = RetryConfig(initial_interval="10ms", max_interval="20ms", max_elapsed_time="60s")
    return QueuedExporter(sender, Settings(ComponentId("otlp"), telemetry), timeout=60.0, retry=retry,
                          queue=QueueConfig(num_consumers=1, **queue))


async def test_a_byte_bound_refuses_retryably_once_the_bytes_waiting_reach_it():
    telemetry = SelfTelemetry()
    component = queued_exporter(StalledSender(), telemetry, sizer="bytes", queue_size=20_000)
    await component.start()
    one = Batch(Signal.TRACES, traces(10, payload="x" * 100))
    size = len(one.wire())
    accepted = 0
    with pytest.raises(RefusedError, match="sending queue of exporter otlp is full"):
        for _ in range(1000):
            await component.consume(Batch(Signal.TRACES, traces(10, payload="x" * 100)))
            accepted += 1
    # What waits (all but the one being sent) is within 20,000 bytes, and one more would not be.
    waiting = telemetry.total("vigil_exporter_queue_size_bytes")
    assert waiting <= 20_000 < waiting + size and waiting >= (accepted - 1) * size
    assert telemetry.total("vigil_exporter_enqueue_failed_spans") == 10
    with pytest.raises(InvalidDataError, match="can never fit in the sending queue"):
        await component.consume(Batch(Signal.TRACES, traces(1, payload="x" * 30_000)))
    await stop(component)


def test_sizer_config():
    def doc(queue):
        return {"receivers": {"otlp": {"protocols": {"grpc": None}}},
                "exporters": {"otlp": {"endpoint": "backend:4317", "sending_queue": queue}},
                "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp"]}}}}

    config = from_dict(doc({"sizer": "bytes", "queue_size": 268435456}))
    assert config.component(Kind.EXPORTER, ComponentId("otlp")).config.sending_queue.sizer == "bytes"
    for queue, problem in (
            ({"sizer": "bytes"}, "with sizer: bytes, set queue_size in bytes (e.g. 268435456)"),
            ({"sizer": "items", "storage": {}, "queue_size": 10},
             "sizer is for the in-memory queue: storage is bounded by storage.max_size_mib"),
            ({"sizer": "pages", "queue_size": 10}, None)):
        with pytest.raises(ConfigError) as info:
            from_dict(doc(queue))
        if problem:
            assert info.value.problems == [f"exporters.otlp.sending_queue: {problem}"]
        else:
            assert info.value.problems[0].startswith("exporters.otlp.sending_queue.sizer")


async def test_an_outage_logs_one_line_per_interval_not_one_per_retry(caplog):
    caplog.set_level(logging.WARNING, logger="vigil")
    telemetry = SelfTelemetry()
    sender = ScriptedSender(*[ExportError("UNAVAILABLE: down", retryable=True)] * 10_000)
    component = queued_exporter(sender, telemetry, queue_size=100)
    await component.start()
    for _ in range(20):
        await component.consume(batch())
    assert await async_wait_for(lambda: sender.pushed >= 100, timeout=10)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("sending 3 spans failed, retrying in")
    await stop(component)  # says what it held back, and what it dropped
    summary, dropped = [r.getMessage() for r in caplog.records[1:]]
    assert " more like this in the last 10s; the last: sending 3 spans failed" in summary
    assert int(summary.split()[0]) >= 99
    assert dropped == ("dropped at shutdown, the deadline having passed: 60 spans in 20 requests (1 being sent "
                       "or between retries, 19 still queued)")
    assert telemetry.total("vigil_exporter_send_failed_spans") == 60
