"""The `batch` processor: the Collector's size/timeout/split semantics, and what happens on refusal.

Most tests drive the processor through its factory with a small downstream
consumer that records what reaches it and can refuse (the next consumer is
the processor's only collaborator); one test runs it in a real pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from agent import config as config_module
from agent.component import ComponentId, Settings
from agent.errors import InvalidDataError, RefusedError
from agent.processors import batch as batch_module
from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry
from tests.conftest import async_wait_for, otlp_receiver_config, read_json_lines, running_vigil
from tests.otlp_data import item_names, metrics, send_grpc, send_span_batches, traces


class Downstream:
    """The next consumer: records batches; refuses the next `refuse` calls, or rejects as invalid."""

    def __init__(self, refuse: int = 0, invalid: int = 0) -> None:
        self.refuse = refuse
        self.invalid = invalid
        self.calls = 0
        self.batches: list[Batch] = []
        self.times: list[float] = []

    async def consume(self, batch: Batch) -> None:
        self.calls += 1
        if self.refuse:
            self.refuse -= 1
            raise RefusedError("sending queue is full")
        if self.invalid:
            self.invalid -= 1
            raise InvalidDataError("the exporter cannot take this")
        self.batches.append(batch)
        self.times.append(time.monotonic())

    def sizes(self) -> list[int]:
        return [b.items for b in self.batches]

    def names(self, signal: Signal = Signal.TRACES) -> list[str]:
        return [n for b in self.batches for n in item_names(signal, b.message)]


def make(config: dict, downstream: Downstream, signal: Signal = Signal.TRACES):
    telemetry = SelfTelemetry()
    model = batch_module.FACTORY.config_model.model_validate(config)
    processor = batch_module.FACTORY.create(model, Settings(ComponentId("batch"), telemetry), signal, downstream)
    return processor, telemetry


def spans_batch(count: int, start: int) -> Batch:
    return Batch(Signal.TRACES, wire=traces(count, start=start).SerializeToString())


def dropped(telemetry: SelfTelemetry, signal: Signal = Signal.TRACES) -> float:
    return telemetry.total(f"vigil_processor_dropped_{signal.item_name}", processor="batch")


def names(count: int, start: int = 0) -> list[str]:
    return [f"span-{k}" for k in range(start, start + count)]


async def test_sends_as_soon_as_send_batch_size_is_reached():
    down = Downstream()
    processor, _ = make({"send_batch_size": 10, "timeout": "10s"}, down)
    for i in range(3):
        await processor.consume(spans_batch(3, 3 * i))
    assert down.batches == []  # 9 items: below the size, and the timeout is far away
    await processor.consume(spans_batch(3, 9))
    assert down.sizes() == [12]  # no max size: all that is pending goes, at once
    assert down.names() == names(12)
    await processor.shutdown()


async def test_sends_after_timeout_counted_from_the_first_item():
    down = Downstream()
    processor, _ = make({"send_batch_size": 100, "timeout": "400ms"}, down)
    started = time.monotonic()
    await processor.consume(spans_batch(2, 0))
    await asyncio.sleep(0.3)
    await processor.consume(spans_batch(1, 2))
    assert down.batches == []
    assert await async_wait_for(lambda: down.batches, timeout=3, interval=0.01)
    waited = down.times[0] - started
    assert 0.4 <= waited < 0.6, waited  # not restarted by the second item (that would be 0.7s)
    assert down.sizes() == [3]
    await processor.shutdown()


async def test_splits_to_send_batch_max_size_and_keeps_the_remainder():
    down = Downstream()
    processor, _ = make({"send_batch_size": 10, "send_batch_max_size": 15, "timeout": "10s"}, down)
    big = traces(37, resources=1)
    await processor.consume(Batch(Signal.TRACES, big))
    assert down.sizes() == [15, 15]  # the last 7 are fewer than send_batch_size: they wait
    await processor.consume(spans_batch(2, 37))
    assert down.sizes() == [15, 15]
    await processor.shutdown()
    assert down.sizes() == [15, 15, 9]
    assert down.names() == names(39)


async def test_flushes_on_shutdown():
    down = Downstream()
    processor, telemetry = make({"send_batch_size": 100, "timeout": "10s"}, down)
    await processor.consume(spans_batch(5, 0))
    await processor.consume(spans_batch(2, 5))
    await processor.shutdown()
    assert down.sizes() == [7]
    assert down.names() == names(7)
    assert dropped(telemetry) == 0


async def test_keeps_items_in_order_through_size_timeout_and_splits():
    down = Downstream()
    processor, _ = make({"send_batch_size": 7, "send_batch_max_size": 7, "timeout": "30ms"}, down)
    k = 0
    for i in range(40):
        count = 1 + (i * 7) % 5
        await processor.consume(spans_batch(count, k))
        k += count
        if i % 9 == 0:
            await asyncio.sleep(0.05)  # let the timer fire now and then
    await processor.shutdown()
    assert down.names() == names(k)
    assert max(down.sizes()) <= 7
    assert sum(down.sizes()) == k


async def test_timeout_0_sends_at_once_split_to_max_size():
    down = Downstream()
    processor, _ = make({"send_batch_size": 5, "send_batch_max_size": 5, "timeout": 0}, down)
    await processor.consume(spans_batch(12, 0))
    assert down.sizes() == [5, 5, 2]
    assert down.names() == names(12)
    await processor.shutdown()


async def test_metric_points_count_toward_the_sizes():
    down = Downstream()
    processor, _ = make({"send_batch_size": 10, "send_batch_max_size": 10, "timeout": "10s"}, down,
                        Signal.METRICS)
    await processor.consume(Batch(Signal.METRICS, metrics(2, points=4, start=0)))
    assert down.batches == []  # 2 metrics but 8 points
    await processor.consume(Batch(Signal.METRICS, metrics(1, points=4, start=2)))
    # 12 points: split at 10 without cutting a metric, so 8 go and 4 wait for more.
    assert down.sizes() == [8]
    assert down.names(Signal.METRICS) == ["metric-0", "metric-1"]
    await processor.shutdown()
    assert down.sizes() == [8, 4]


async def test_refused_data_is_kept_and_sent_later():
    down = Downstream(refuse=3)
    processor, telemetry = make({"send_batch_size": 5, "timeout": "50ms"}, down)
    await processor.consume(spans_batch(5, 0))  # accepted, although the exporters refused it
    assert down.calls == 1 and down.batches == []
    assert await async_wait_for(lambda: down.batches, timeout=3)
    await processor.consume(spans_batch(2, 5))
    await processor.shutdown()
    assert down.calls == 5
    assert down.names() == names(7)  # each item once, in order
    assert dropped(telemetry) == 0


async def test_new_data_is_refused_while_backlogged_and_accepted_again_after():
    down = Downstream(refuse=1_000_000)
    processor, telemetry = make({"send_batch_size": 5, "timeout": "50ms"}, down)
    await processor.consume(spans_batch(5, 0))  # taken, held as a backlog
    with pytest.raises(RefusedError) as refused:
        await processor.consume(spans_batch(3, 100))
    assert refused.value.retry_after and refused.value.retry_after > 0
    await asyncio.sleep(0.2)
    assert down.calls >= 2  # the backlog is offered again on the timer
    down.refuse = 0
    assert await async_wait_for(lambda: down.batches, timeout=3)
    await processor.consume(spans_batch(2, 5))
    await processor.shutdown()
    assert down.names() == names(7)  # the refused batch was never taken, so never sent
    assert dropped(telemetry) == 0


async def test_permanent_refusal_is_dropped_and_counted(caplog):
    caplog.set_level(logging.WARNING, logger="vigil")  # whatever an earlier test did to logging
    down = Downstream(invalid=1)
    processor, telemetry = make({"send_batch_size": 3, "timeout": "10s"}, down)
    await processor.consume(spans_batch(3, 0))
    assert dropped(telemetry) == 3
    await processor.consume(spans_batch(3, 3))
    assert down.names() == names(3, start=3)  # later data flows again
    await processor.shutdown()
    assert "dropped 3 spans" in caplog.text


async def test_data_still_refused_at_shutdown_is_dropped_and_counted(caplog):
    caplog.set_level(logging.WARNING, logger="vigil")  # whatever an earlier test did to logging
    down = Downstream(refuse=1_000_000)
    processor, telemetry = make({"send_batch_size": 100, "timeout": "10s"}, down)
    await processor.consume(spans_batch(4, 0))
    await processor.shutdown()
    assert down.batches == []
    assert dropped(telemetry) == 4
    assert "dropped 4 spans at shutdown" in caplog.text


def test_max_size_below_size_is_a_config_error():
    config = {
        "receivers": {"otlp": otlp_receiver_config()},
        "processors": {"batch": {"send_batch_size": 100, "send_batch_max_size": 10}},
        "exporters": {"debug": {}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                             "exporters": ["debug"]}}},
    }
    with pytest.raises(config_module.ConfigError) as error:
        config_module.from_dict(config)
    assert "processors.batch" in str(error.value) and "send_batch_max_size" in str(error.value)


async def test_in_a_pipeline_small_requests_become_one(tmp_path):
    out = tmp_path / "traces.json"
    config = {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "processors": {"batch": {"send_batch_size": 6, "timeout": "5s"}},
        "exporters": {"file": {"path": str(out)}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                             "exporters": ["file"]}}},
    }
    async with running_vigil(config) as vigil:
        await send_span_batches(vigil.grpc_endpoint(), 3)
        assert await async_wait_for(lambda: len(read_json_lines(out)) == 1)
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(1, start=6))
    lines = read_json_lines(out)
    assert len(lines) == 2  # the last span was flushed at shutdown
    spans = [[s["name"] for rs in line["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
             for line in lines]
    assert spans == [names(6), ["span-6"]]
