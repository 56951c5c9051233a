"""Delivery, the one way every receiver hands a batch on: what it counts and what it lets through."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from agent.component import ComponentId, Settings
from agent.errors import InvalidDataError, RefusedError
from agent.receivers.delivery import Delivery
from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry
from tests.sink import InMemorySink


def _batch(records: int) -> Batch:
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    for i in range(records):
        scope.log_records.add().body.string_value = f"line {i}"
    return Batch(Signal.LOGS, request)


def _delivery(sink: InMemorySink) -> tuple[Delivery, SelfTelemetry]:
    telemetry = SelfTelemetry()
    return Delivery(Settings(ComponentId("predictionlog", "app"), telemetry), {Signal.LOGS: sink}), telemetry


async def test_what_the_pipelines_take_is_counted_accepted_by_receiver_and_transport():
    sink = InMemorySink()
    delivery, telemetry = _delivery(sink)
    await delivery.deliver(_batch(3), "file")
    assert sink.items == 3
    assert telemetry.total("vigil_receiver_accepted_log_records", receiver="predictionlog/app",
                           transport="file") == 3
    assert telemetry.total("vigil_receiver_refused_log_records") == 0


@pytest.mark.parametrize("error", [RefusedError("queue full", retry_after=2.0), InvalidDataError("bad"),
                                   OSError("disk full")])
async def test_a_refusal_or_a_failure_is_counted_refused_and_raised_as_it_came(error):
    sink = InMemorySink(fail_next=[error])
    delivery, telemetry = _delivery(sink)
    with pytest.raises(type(error)) as raised:
        await delivery.deliver(_batch(2), "file")
    assert raised.value is error
    assert telemetry.total("vigil_receiver_refused_log_records", receiver="predictionlog/app",
                           transport="file") == 2
    assert telemetry.total("vigil_receiver_accepted_log_records") == 0


async def test_items_refused_before_delivery_are_counted_without_the_pipelines():
    sink = InMemorySink()
    delivery, telemetry = _delivery(sink)
    delivery.refused(Signal.LOGS, "http", 4)
    assert sink.calls == 0
    assert telemetry.values()["vigil_receiver_refused_log_records"] == {
        frozenset({("receiver", "predictionlog/app"), ("transport", "http")}): 4}
