"""The `batch` processor: the Collector's size/timeout/split semantics, answering senders only
once their data is handed on, and what happens on refusal.

Most tests drive the processor through its factory with a small downstream
consumer that records what reaches it and can refuse (the next consumer is
the processor's only collaborator); one test runs it in a real pipeline.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from agent import config as config_module
from agent.component import ComponentId, Settings
from agent.errors import InvalidDataError, RefusedError
from agent.processors import batch as batch_module
from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry
from tests.conftest import otlp_receiver_config, read_json_lines, running_vigil
from tests.otlp_data import item_names, metrics, send_grpc, traces
from tests.sink import InMemorySink


def sent_names(sink: InMemorySink, signal: Signal = Signal.TRACES) -> list[str]:
    return [n for b in sink.batches for n in item_names(signal, b.message)]


def make(config: dict, downstream: InMemorySink, signal: Signal = Signal.TRACES):
    """A batch processor; with the Collector's timing (size or timeout) unless the test sets idle_timeout."""
    telemetry = SelfTelemetry()
    model = batch_module.FACTORY.config_model.model_validate({"idle_timeout": "0s", **config})
    processor = batch_module.FACTORY.create(model, Settings(ComponentId("batch"), telemetry), signal, downstream)
    return processor, telemetry


def spans_batch(count: int, start: int) -> Batch:
    return Batch(Signal.TRACES, wire=traces(count, start=start).SerializeToString())


def names(count: int, start: int = 0) -> list[str]:
    return [f"span-{k}" for k in range(start, start + count)]


def offer(processor, batch: Batch) -> asyncio.Task:
    """`consume` in a task of its own: it returns only once the batch's items were handed on."""
    return asyncio.get_running_loop().create_task(processor.consume(batch))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_sends_as_soon_as_send_batch_size_is_reached():
    down = InMemorySink()
    processor, _ = make({"send_batch_size": 10, "timeout": "10s"}, down)
    waiting = [offer(processor, spans_batch(3, 3 * i)) for i in range(3)]
    await settle()
    assert down.batches == []  # 9 items: below the size, and the timeout is far away
    assert not any(t.done() for t in waiting)  # nobody is answered before their data is handed on
    await processor.consume(spans_batch(3, 9))
    assert down.sizes() == [12]  # no max size: all that is pending goes, at once
    assert sent_names(down) == names(12)
    await asyncio.gather(*waiting)
    await processor.shutdown()


async def test_sends_after_timeout_counted_from_the_first_item():
    down = InMemorySink()
    processor, _ = make({"send_batch_size": 100, "timeout": "400ms"}, down)
    started = time.monotonic()
    first = offer(processor, spans_batch(2, 0))
    await asyncio.sleep(0.3)
    second = offer(processor, spans_batch(1, 2))
    await settle()
    assert down.batches == []
    await asyncio.gather(first, second)
    waited = down.received_at[0] - started
    assert 0.4 <= waited < 0.6, waited  # not restarted by the second item (that would be 0.7s)
    assert time.monotonic() - started < 0.6  # both senders were answered by that flush
    assert down.sizes() == [3]
    await processor.shutdown()


async def test_splits_to_send_batch_max_size_and_keeps_the_remainder():
    down = InMemorySink()
    processor, _ = make({"send_batch_size": 10, "send_batch_max_size": 15, "timeout": "10s"}, down)
    big = offer(processor, Batch(Signal.TRACES, traces(37, resources=1)))
    await settle()
    assert down.sizes() == [15, 15]  # the last 7 are fewer than send_batch_size: they wait
    assert not big.done()  # and so does the sender whose items they are
    small = offer(processor, spans_batch(2, 37))
    await settle()
    assert down.sizes() == [15, 15]
    await processor.shutdown()
    await asyncio.gather(big, small)
    assert down.sizes() == [15, 15, 9]
    assert sent_names(down) == names(39)


async def test_flushes_on_shutdown():
    down = InMemorySink()
    processor, _ = make({"send_batch_size": 100, "timeout": "10s"}, down)
    waiting = [offer(processor, spans_batch(5, 0)), offer(processor, spans_batch(2, 5))]
    await settle()
    await processor.shutdown()
    await asyncio.gather(*waiting)
    assert down.sizes() == [7]
    assert sent_names(down) == names(7)
    with pytest.raises(RefusedError):
        await processor.consume(spans_batch(1, 7))  # nothing is taken once it has stopped


async def test_keeps_items_in_order_through_size_timeout_and_splits():
    down = InMemorySink()
    processor, _ = make({"send_batch_size": 7, "send_batch_max_size": 7, "timeout": "30ms"}, down)
    k = 0
    waiting = []
    for i in range(40):
        count = 1 + (i * 7) % 5
        waiting.append(offer(processor, spans_batch(count, k)))
        k += count
        await settle()
        if i % 9 == 0:
            await asyncio.sleep(0.05)  # let the timer fire now and then
    await processor.shutdown()
    await asyncio.gather(*waiting)
    assert sent_names(down) == names(k)
    assert max(down.sizes()) <= 7
    assert sum(down.sizes()) == k


async def test_timeout_0_sends_at_once_split_to_max_size():
    down = InMemorySink()
    processor, _ = make({"send_batch_size": 5, "send_batch_max_size": 5, "timeout": 0}, down)
    await processor.consume(spans_batch(12, 0))
    assert down.sizes() == [5, 5, 2]
    assert sent_names(down) == names(12)
    await processor.shutdown()


async def test_metric_points_count_toward_the_sizes():
    down = InMemorySink()
    processor, _ = make({"send_batch_size": 10, "send_batch_max_size": 10, "timeout": "10s"}, down,
                        Signal.METRICS)
    first = offer(processor, Batch(Signal.METRICS, metrics(2, points=4, start=0)))
    await settle()
    assert down.batches == []  # 2 metrics but 8 points
    second = offer(processor, Batch(Signal.METRICS, metrics(1, points=4, start=2)))
    await settle()
    # 12 points: split at 10 without cutting a metric, so 8 go and 4 wait for more.
    assert down.sizes() == [8]
    assert sent_names(down, Signal.METRICS) == ["metric-0", "metric-1"]
    assert first.done() and not second.done()
    await processor.shutdown()
    await second
    assert down.sizes() == [8, 4]


async def test_a_refusal_downstream_reaches_every_sender_whose_items_it_carried():
    down = InMemorySink(fail_next=[RefusedError("sending queue is full")])
    processor, _ = make({"send_batch_size": 5, "timeout": "50ms"}, down)
    waiting = [offer(processor, spans_batch(2, 0)), offer(processor, spans_batch(3, 2))]
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, RefusedError) for r in results)  # the senders keep their data and retry
    await processor.consume(spans_batch(5, 0))  # the retry
    await processor.shutdown()
    assert sent_names(down) == names(5)  # nothing was kept back to be sent twice


async def test_only_the_senders_of_a_refused_part_hear_of_it():
    down = InMemorySink()
    processor, _ = make({"send_batch_size": 6, "send_batch_max_size": 6, "timeout": "10s"}, down)
    refused_part = {"n": 0}
    real = down.consume

    async def refuse_second_part(batch: Batch) -> None:
        refused_part["n"] += 1
        if refused_part["n"] == 2:
            raise RefusedError("queue full")
        await real(batch)

    down.consume = refuse_second_part
    a = offer(processor, spans_batch(4, 0))  # items 0-3: in the first part
    b = offer(processor, spans_batch(4, 4))  # items 4-7: across both parts
    c = offer(processor, spans_batch(4, 8))  # items 8-11: in the second part
    results = await asyncio.gather(a, b, c, return_exceptions=True)
    assert results[0] is None
    assert isinstance(results[1], RefusedError) and isinstance(results[2], RefusedError)
    await processor.shutdown()


async def test_a_permanent_refusal_reaches_the_senders(caplog):
    down = InMemorySink(fail_next=[InvalidDataError("the exporter cannot take this")])
    processor, _ = make({"send_batch_size": 3, "timeout": "10s"}, down)
    with pytest.raises(InvalidDataError, match="cannot take this"):
        await processor.consume(spans_batch(3, 0))
    await processor.consume(spans_batch(3, 3))
    assert sent_names(down) == names(3, start=3)  # later data flows again
    await processor.shutdown()


async def test_a_sender_that_goes_away_does_not_stop_the_flush():
    down = InMemorySink()
    processor, _ = make({"send_batch_size": 100, "timeout": "50ms"}, down)
    impatient = offer(processor, spans_batch(2, 0))
    patient = offer(processor, spans_batch(2, 2))
    await settle()
    impatient.cancel()  # e.g. the client hung up
    await patient
    assert sent_names(down) == names(4)  # its data still went on (it will retry: at-least-once)
    await processor.shutdown()


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
        "processors": {"batch": {"send_batch_size": 6, "timeout": "1s"}},
        "exporters": {"file": {"path": str(out)}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                             "exporters": ["file"]}}},
    }
    async with running_vigil(config) as vigil:
        # Three senders at once: each is answered when the batch that carries its spans is written.
        await asyncio.gather(*(send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(2, start=2 * i))
                               for i in range(3)))
        assert len(read_json_lines(out)) == 1
        last = asyncio.create_task(send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(1, start=6)))
        await asyncio.sleep(0.2)
    # Answered by the timer while the receiver, stopping, waits for requests in flight (5 s grace).
    await last
    lines = read_json_lines(out)
    assert len(lines) == 2
    spans = [sorted(s["name"] for rs in line["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"])
             for line in lines]
    assert spans == [names(6), ["span-6"]]


async def test_quiet_input_is_flushed_after_idle_timeout_not_the_whole_timeout():
    # One sender at a time (an SDK's batch exporter) is answered once input goes quiet.
    down = InMemorySink()
    processor, _ = make({"send_batch_size": 100, "timeout": "2s", "idle_timeout": "20ms"}, down)
    started = time.monotonic()
    await processor.consume(spans_batch(3, 0))
    assert time.monotonic() - started < 1.0
    assert down.sizes() == [3]
    await processor.shutdown()


async def test_steady_input_keeps_batching_despite_idle_timeout():
    # Arrivals closer together than idle_timeout keep filling one batch up to the size.
    down = InMemorySink()
    processor, _ = make({"send_batch_size": 9, "timeout": "2s", "idle_timeout": "200ms"}, down)
    waiting = []
    for i in range(3):
        waiting.append(offer(processor, spans_batch(3, 3 * i)))
        await asyncio.sleep(0.02)
    await asyncio.gather(*waiting)
    assert down.sizes() == [9]
    await processor.shutdown()
