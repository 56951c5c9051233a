"""The shared exporter helper with a scripted transport: what the sender hears without a queue."""

from __future__ import annotations

import pytest

from agent.component import ComponentId, Settings
from agent.config import ConfigError, from_dict
from agent.errors import InvalidDataError, RefusedError
from agent.exporters.helper import ExportError, QueueConfig, QueuedExporter, RetryConfig
from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry
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
