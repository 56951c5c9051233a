"""The `otlp` exporter end to end: Vigil's OTLP receiver → exporter → a real grpc.aio backend."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from agent import attributes
from agent.signals import Signal
from tests.conftest import async_wait_for, otlp_receiver_config, running_vigil
from tests.exporters.backends import FAST_RETRY, GrpcBackend, GrpcReply, TcpProxy, grpc_backend, reserve_port
from tests.otlp_data import item_names, request, send_grpc, send_span_batches, traces


def exporter(endpoint: str, **extra) -> dict:
    return {"endpoint": f"http://{endpoint}", "retry_on_failure": FAST_RETRY, **extra}


def vigil_config(exporter_config: dict, signals=(Signal.TRACES,), processors: dict | None = None,
                 shutdown_timeout: str | None = None) -> dict:
    pipeline = {"receivers": ["otlp"], "exporters": ["otlp"]}
    if processors:
        pipeline["processors"] = list(processors)
    config = {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "processors": processors or {},
        "exporters": {"otlp": exporter_config},
        "service": {"pipelines": {s.value: dict(pipeline) for s in signals}},
    }
    if shutdown_timeout:
        config["service"]["shutdown_timeout"] = shutdown_timeout
    return config


def spans(vigil, what: str) -> float:
    return vigil.counter(f"vigil_exporter_{what}_spans", exporter="otlp")


@pytest.mark.parametrize("signal", list(Signal), ids=lambda s: s.value)
async def test_each_signal_arrives_byte_identical(signal):
    body = request(signal, 4).SerializeToString()
    async with grpc_backend() as backend:
        async with running_vigil(vigil_config(exporter(backend.endpoint), signals=[signal])) as vigil:
            await send_grpc(vigil.grpc_endpoint(), signal, body)
            assert await async_wait_for(lambda: vigil.counter(
                f"vigil_exporter_sent_{signal.item_name}", exporter="otlp") == 4)
        assert [c.signal for c in backend.calls] == [signal]
        assert backend.calls[0].body == body


async def test_sdk_spans_arrive_with_their_content():
    async with grpc_backend() as backend:
        async with running_vigil(vigil_config(exporter(backend.endpoint))) as vigil:
            def send() -> None:
                provider = TracerProvider(resource=Resource({"service.name": "scorer"}))
                provider.add_span_processor(SimpleSpanProcessor(
                    OTLPSpanExporter(endpoint=vigil.grpc_endpoint(), insecure=True)))
                tracer = provider.get_tracer("inference")
                with tracer.start_as_current_span("predict", attributes={"ml.model.name": "churn",
                                                                         "ml.prediction.confidence": 0.9}):
                    pass
                provider.shutdown()

            await asyncio.to_thread(send)
            assert await async_wait_for(lambda: spans(vigil, "sent") == 1)
    message = backend.calls[0].message
    resource = attributes.as_dict(message.resource_spans[0].resource.attributes)
    assert resource["service.name"] == "scorer"
    scope = message.resource_spans[0].scope_spans[0]
    assert scope.scope.name == "inference"
    (span,) = scope.spans
    assert span.name == "predict" and len(span.trace_id) == 16
    assert attributes.as_dict(span.attributes) == {"ml.model.name": "churn", "ml.prediction.confidence": 0.9}


async def test_edited_batch_arrives_as_edited():
    sent = traces(3, resources=2)
    processors = {"resource": {"attributes": [{"key": "deployment.environment", "value": "prod",
                                               "action": "upsert"}]}}
    async with grpc_backend() as backend:
        async with running_vigil(vigil_config(exporter(backend.endpoint), processors=processors)) as vigil:
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, sent)
            assert await async_wait_for(lambda: backend.ok_calls())
    expected = traces(3, resources=2)
    for rs in expected.resource_spans:
        attributes.set_any_value(rs.resource.attributes.add(key="deployment.environment").value, "prod")
    assert backend.calls[0].message == expected


async def test_headers_arrive_as_metadata():
    headers = {"signoz-ingestion-key": "s3cr3t", "X-Tenant": "team-a"}
    async with grpc_backend() as backend:
        async with running_vigil(vigil_config(exporter(backend.endpoint, headers=headers))) as vigil:
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(1))
            assert await async_wait_for(lambda: backend.ok_calls())
    metadata = backend.calls[0].metadata
    assert metadata["signoz-ingestion-key"] == "s3cr3t"
    assert metadata["x-tenant"] == "team-a"


@pytest.mark.parametrize("compression", ["gzip", "none"])
async def test_compression_on_the_wire(compression):
    body = traces(40, payload="prediction features " * 100).SerializeToString()
    assert len(body) > 80_000
    async with grpc_backend() as backend:
        proxy = await TcpProxy(backend.port).start()
        try:
            config = exporter(f"127.0.0.1:{proxy.port}", compression=compression)
            async with running_vigil(vigil_config(config)) as vigil:
                await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, body)
                assert await async_wait_for(lambda: backend.ok_calls())
        finally:
            await proxy.stop()
    assert backend.calls[0].body == body  # the backend sees the request decompressed
    if compression == "gzip":
        assert proxy.client_bytes < len(body) / 10
    else:
        assert proxy.client_bytes > len(body)


async def test_data_sent_while_backend_is_down_arrives_when_it_comes_up():
    port = reserve_port()
    async with running_vigil(vigil_config(exporter(f"127.0.0.1:{port}"))) as vigil:
        await send_span_batches(vigil.grpc_endpoint(), 3)
        await asyncio.sleep(0.5)
        assert spans(vigil, "sent") == 0
        async with grpc_backend(port) as backend:
            assert await async_wait_for(lambda: spans(vigil, "sent") == 6, timeout=15)
            arrived = [name for c in backend.ok_calls() for name in item_names(Signal.TRACES, c.message)]
            assert sorted(arrived) == sorted(f"span-{k}" for k in range(6))
            assert spans(vigil, "send_failed") == 0


async def test_invalid_argument_is_not_retried(caplog):
    caplog.set_level(logging.WARNING, logger="vigil")  # whatever an earlier test did to logging
    async with grpc_backend() as backend:
        backend.default = GrpcReply(grpc.StatusCode.INVALID_ARGUMENT, "span name is empty")
        async with running_vigil(vigil_config(exporter(backend.endpoint))) as vigil:
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(5))
            assert await async_wait_for(lambda: spans(vigil, "send_failed") == 5)
            await asyncio.sleep(0.6)  # several retry intervals
            assert backend.attempts() == 1
            assert spans(vigil, "sent") == 0
    assert "INVALID_ARGUMENT" in caplog.text and "span name is empty" in caplog.text


async def test_unavailable_is_retried_until_success():
    body = traces(3).SerializeToString()
    async with grpc_backend() as backend:
        backend.script = [GrpcReply(grpc.StatusCode.UNAVAILABLE, "restarting")] * 3
        async with running_vigil(vigil_config(exporter(backend.endpoint))) as vigil:
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, body)
            assert await async_wait_for(lambda: spans(vigil, "sent") == 3)
            assert spans(vigil, "send_failed") == 0
    assert backend.attempts() == 4
    assert [c.body for c in backend.ok_calls()] == [body]


async def test_resource_exhausted_without_retry_info_is_not_retried():
    async with grpc_backend() as backend:
        backend.script = [GrpcReply(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota")]
        async with running_vigil(vigil_config(exporter(backend.endpoint))) as vigil:
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(2))
            assert await async_wait_for(lambda: spans(vigil, "send_failed") == 2)
            await asyncio.sleep(0.6)
            assert backend.attempts() == 1
            assert not backend.ok_calls()


async def test_resource_exhausted_with_retry_info_is_retried_after_its_delay():
    async with grpc_backend() as backend:
        backend.script = [GrpcReply(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", retry_delay=1.0)]
        async with running_vigil(vigil_config(exporter(backend.endpoint))) as vigil:
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(2))
            assert await async_wait_for(lambda: spans(vigil, "sent") == 2)
            assert spans(vigil, "send_failed") == 0
    assert backend.attempts() == 2
    gap = backend.calls[1].at - backend.calls[0].at
    assert 0.9 <= gap < 2.5, gap  # the backoff alone would have waited about 0.1s


async def test_partial_success_is_counted_and_logged_not_retried(caplog):
    caplog.set_level(logging.WARNING, logger="vigil")  # whatever an earlier test did to logging
    async with grpc_backend() as backend:
        backend.default = GrpcReply(rejected=2, error_message="2 spans older than retention")
        async with running_vigil(vigil_config(exporter(backend.endpoint))) as vigil:
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(5))
            assert await async_wait_for(lambda: spans(vigil, "rejected") == 2)
            await asyncio.sleep(0.5)
            assert spans(vigil, "sent") == 3
            assert spans(vigil, "send_failed") == 0
            assert backend.attempts() == 1
    assert "2 spans older than retention" in caplog.text


async def test_max_elapsed_time_gives_up_and_counts(caplog):
    caplog.set_level(logging.WARNING, logger="vigil")  # whatever an earlier test did to logging
    retry = {"initial_interval": "100ms", "max_interval": "200ms", "max_elapsed_time": "700ms"}
    async with grpc_backend() as backend:
        backend.default = GrpcReply(grpc.StatusCode.UNAVAILABLE, "down for maintenance")
        async with running_vigil(vigil_config(exporter(backend.endpoint, retry_on_failure=retry))) as vigil:
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(4))
            assert await async_wait_for(lambda: spans(vigil, "send_failed") == 4, timeout=5)
            attempts = backend.attempts()
            await asyncio.sleep(0.5)
            assert backend.attempts() == attempts  # it stopped trying
    assert attempts >= 2
    assert backend.calls[-1].at - backend.calls[0].at <= 0.7 + 0.2
    assert "dropped 4 spans" in caplog.text


async def test_full_sending_queue_refuses_and_counts():
    queue = {"num_consumers": 1, "queue_size": 1}
    async with grpc_backend() as backend:
        backend.default = GrpcReply(grpc.StatusCode.UNAVAILABLE, "down")
        config = vigil_config(exporter(backend.endpoint, sending_queue=queue))
        async with running_vigil(config) as vigil:
            endpoint = vigil.grpc_endpoint()
            await send_grpc(endpoint, Signal.TRACES, traces(1, start=0))  # taken by the one worker
            assert await async_wait_for(lambda: backend.attempts() >= 1)
            await send_grpc(endpoint, Signal.TRACES, traces(1, start=1))  # waits in the queue
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await send_grpc(endpoint, Signal.TRACES, traces(3, start=2))
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "queue" in refused.value.details()
            assert spans(vigil, "enqueue_failed") == 3
            assert vigil.counter("vigil_receiver_refused_spans") == 3
            # What the queue took is not lost: it goes out once the backend recovers.
            backend.default = GrpcReply()
            assert await async_wait_for(lambda: spans(vigil, "sent") == 2)
    arrived = [n for c in backend.ok_calls() for n in item_names(Signal.TRACES, c.message)]
    assert arrived == ["span-0", "span-1"]


async def test_shutdown_drains_the_queue_to_a_live_backend():
    async with grpc_backend() as backend:
        backend.default = GrpcReply(delay=0.2)  # a slow backend
        config = vigil_config(exporter(backend.endpoint, sending_queue={"num_consumers": 1}))
        async with running_vigil(config) as vigil:
            await send_span_batches(vigil.grpc_endpoint(), 5)
            assert len(backend.calls) < 5  # most of it is still queued when shutdown begins
        assert spans(vigil, "sent") == 10
        assert spans(vigil, "send_failed") == 0
    arrived = [n for c in backend.ok_calls() for n in item_names(Signal.TRACES, c.message)]
    assert arrived == [f"span-{k}" for k in range(10)]


async def test_shutdown_with_a_dead_backend_ends_in_time_and_counts_dropped(caplog):
    caplog.set_level(logging.WARNING, logger="vigil")  # whatever an earlier test did to logging
    port = reserve_port()
    retry = {"initial_interval": "100ms", "max_interval": "200ms", "max_elapsed_time": "60s"}
    config = vigil_config(exporter(f"127.0.0.1:{port}", retry_on_failure=retry,
                                   sending_queue={"num_consumers": 1}), shutdown_timeout="1s")
    async with running_vigil(config) as vigil:
        await send_span_batches(vigil.grpc_endpoint(), 3)
        await asyncio.sleep(0.3)
        started = time.monotonic()
    took = time.monotonic() - started
    assert took < 1.0 + 0.8, took
    assert spans(vigil, "send_failed") == 6
    assert spans(vigil, "sent") == 0
    # Every dropped span is in one line, the one mid-retry as well as those still queued.
    dropped = [r.getMessage() for r in caplog.records if "dropped at shutdown" in r.getMessage()]
    assert dropped == ["dropped at shutdown, the deadline having passed: 6 spans in 3 requests (1 being sent or "
                       "between retries, 2 still queued)"]


@pytest.mark.timeout(90)
async def test_delivery_resumes_within_the_retry_interval_after_an_outage():
    """gRPC's own reconnect backoff (up to 120 s) is bounded by retry_on_failure: once the backend is back,
    the next retry gets through, not the channel's next reconnect minutes later."""
    outage = 19.0  # long enough for gRPC's default backoff to have grown past 10 s
    retry = {"initial_interval": "100ms", "max_interval": "500ms", "max_elapsed_time": "0s"}
    backend = await GrpcBackend().start()
    try:
        async with running_vigil(vigil_config(exporter(backend.endpoint, retry_on_failure=retry))) as vigil:
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(1, start=0))
            assert await async_wait_for(lambda: spans(vigil, "sent") == 1)  # connected
            await backend.stop()
            down = time.monotonic()
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(1, start=1))  # queued, retried
            await asyncio.sleep(outage)
            await backend.start(backend.port)  # the same port: the channel's target
            back = time.monotonic()
            assert await async_wait_for(lambda: spans(vigil, "sent") == 2, timeout=40)
            resumed = time.monotonic() - back
    finally:
        await backend.stop()
    print(f"\nbackend down {back - down:.0f}s: delivery resumed {resumed:.1f}s after it came back")
    assert resumed < 3.0  # max_interval (0.5 s) with its jitter, and a connect
