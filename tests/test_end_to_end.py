"""Data through the whole agent with real peers on both sides.

    SDK or rotel ─▶ Vigil otlp receiver ─▶ pipeline ─▶ otlp exporter ─▶ a gRPC server recording raw bytes
                                                   └─▶ file exporter
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json

import aiohttp
import grpc
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import async_wait_for, otlp_receiver_config, read_json_lines, rotel_process, running_vigil

TRACES_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@contextlib.asynccontextmanager
async def recording_backend():
    """A grpc.aio server on port 0 that accepts every trace export and keeps its raw bytes."""
    received: list[bytes] = []

    async def export(request: bytes, context) -> bytes:
        received.append(request)
        return b""

    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(export)})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", received
    finally:
        await server.stop(grace=None)


def forwarding_config(backend: str, file_path) -> dict:
    return {
        "receivers": {"otlp": otlp_receiver_config()},
        "exporters": {
            "otlp": {"endpoint": backend, "tls": {"insecure": True},
                     "retry_on_failure": {"initial_interval": "100ms", "max_interval": "100ms"}},
            "file": {"path": str(file_path)},
        },
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp", "file"]}},
                    "shutdown_timeout": "5s"},
    }


def sdk_spans():
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "e2e", "ml.model.name": "resnet"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("e2e")
    with tracer.start_as_current_span("request", attributes={"ml.prediction.confidence": 0.87}):
        with tracer.start_as_current_span("predict", attributes={"ml.model.version": "7", "batch": 32}):
            pass
    provider.shutdown()
    return memory.get_finished_spans()


async def test_sdk_over_http_gzip_is_forwarded_byte_for_byte(tmp_path):
    """An unedited batch leaves Vigil as the very bytes the SDK encoded (after gzip is undone)."""
    spans = sdk_spans()
    async with recording_backend() as (backend, received):
        async with running_vigil(forwarding_config(backend, tmp_path / "t.json")) as vigil:
            exporter = HttpSpanExporter(endpoint=vigil.http_url("/v1/traces"), timeout=5,
                                        compression=HttpCompression.Gzip)
            try:
                assert await asyncio.to_thread(exporter.export, spans) is SpanExportResult.SUCCESS
            finally:
                await asyncio.to_thread(exporter.shutdown)
            assert await async_wait_for(lambda: len(received) == 1, timeout=10)
            # Counted once the backend's answer is back, a moment after it has the data.
            assert await async_wait_for(lambda: vigil.counter("vigil_exporter_sent_spans", exporter="otlp") == 2)
        assert received == [encode_spans(spans).SerializeToString()]
    assert [s["name"] for s in read_json_lines(tmp_path / "t.json")[0]["resourceSpans"][0]["scopeSpans"][0]["spans"]] \
        == ["predict", "request"]


async def test_fields_vigil_does_not_know_survive_the_trip(tmp_path):
    """A newer SDK's fields (unknown to Vigil's schema) are not lost on the way through, on either protocol."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(
        name="from-the-future", trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    span.attributes.add(key="k").value.string_value = "v"
    # Field 999 of Span (length-delimited), unknown to every released schema; then field 77 of the request.
    span_wire = span.SerializeToString() + b"\xba\x3e\x05hello"
    inner = trace_service_pb2.ExportTraceServiceRequest()
    inner.resource_spans.add().scope_spans.add().spans.add().MergeFromString(span_wire)
    wire = inner.SerializeToString() + b"\xea\x04\x03abc"
    assert trace_service_pb2.ExportTraceServiceRequest.FromString(wire).SerializeToString() == wire  # kept

    async with recording_backend() as (backend, received):
        async with running_vigil(forwarding_config(backend, tmp_path / "t.json")) as vigil, \
                aiohttp.ClientSession() as session:
            async with grpc.aio.insecure_channel(vigil.grpc_endpoint()) as channel:
                assert await channel.unary_unary(TRACES_METHOD)(wire, timeout=5) == b""
            async with session.post(vigil.http_url("/v1/traces"), data=gzip.compress(wire),
                                    headers={"Content-Type": "application/x-protobuf",
                                             "Content-Encoding": "gzip"}) as response:
                assert response.status == 200
            assert await async_wait_for(lambda: len(received) == 2, timeout=10)
        assert received == [wire, wire]


async def test_rotel_collector_sends_into_vigil(tmp_path, rotel_binary):
    """A real (Rust) collector as the sender: SDK ─▶ rotel ─▶ Vigil ─▶ file."""
    out = tmp_path / "traces.json"
    config = {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "exporters": {"file": {"path": str(out)}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }
    spans = sdk_spans()
    async with running_vigil(config) as vigil:
        with rotel_process(rotel_binary, tmp_path, f"http://{vigil.grpc_endpoint()}") as rotel_endpoint:
            def send() -> SpanExportResult:
                exporter = GrpcSpanExporter(endpoint=rotel_endpoint, insecure=True, timeout=5)
                try:
                    return exporter.export(spans)
                finally:
                    exporter.shutdown()

            assert await asyncio.to_thread(send) is SpanExportResult.SUCCESS
            assert await async_wait_for(lambda: vigil.counter("vigil_receiver_accepted_spans") >= 2, timeout=15)
        assert vigil.counter("vigil_receiver_accepted_spans", transport="grpc") == 2
        assert vigil.counter("vigil_receiver_refused_spans") == 0

    got = {}
    for line in read_json_lines(out):
        for rs in line["resourceSpans"]:
            resource = {kv["key"]: kv["value"] for kv in rs["resource"]["attributes"]}
            for ss in rs["scopeSpans"]:
                for s in ss["spans"]:
                    got[s["name"]] = (resource, s)
    assert set(got) == {"request", "predict"}
    by_name = {s.name: s for s in spans}
    for name, (resource, span) in got.items():
        assert resource["service.name"] == {"stringValue": "e2e"}
        assert resource["ml.model.name"] == {"stringValue": "resnet"}
        assert span["traceId"] == format(by_name[name].context.trace_id, "032x")
        assert span["spanId"] == format(by_name[name].context.span_id, "016x")
        assert span["startTimeUnixNano"] == str(by_name[name].start_time)
    assert got["predict"][1]["parentSpanId"] == format(by_name["request"].context.span_id, "016x")
    assert {kv["key"]: kv["value"] for kv in got["predict"][1]["attributes"]} == {
        "ml.model.version": {"stringValue": "7"}, "batch": {"intValue": "32"}}
    assert json.dumps(got["request"][1]["attributes"]) == json.dumps(
        [{"key": "ml.prediction.confidence", "value": {"doubleValue": 0.87}}])


async def test_sdk_batch_processor_over_grpc_delivers_everything(tmp_path):
    """The SDK as an app uses it (BatchSpanProcessor, gzip gRPC): 500 spans in several exports, none lost."""
    out = tmp_path / "traces.json"
    config = {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "exporters": {"file": {"path": str(out)}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                             "exporters": ["file"]}}},
        "processors": {"batch": {"send_batch_size": 128, "timeout": "50ms"}},
    }
    async with running_vigil(config) as vigil:
        def app() -> None:
            provider = TracerProvider(resource=Resource({"service.name": "busy"}))
            provider.add_span_processor(BatchSpanProcessor(
                GrpcSpanExporter(endpoint=vigil.grpc_endpoint(), insecure=True, timeout=5,
                                 compression=grpc.Compression.Gzip),
                max_export_batch_size=100, schedule_delay_millis=50))
            tracer = provider.get_tracer("busy")
            for i in range(500):
                with tracer.start_as_current_span(f"s{i}", attributes={"i": i}):
                    pass
            provider.shutdown()

        await asyncio.to_thread(app)
        assert vigil.counter("vigil_receiver_accepted_spans") == 500
    names = [s["name"] for line in read_json_lines(out) for rs in line["resourceSpans"]
             for ss in rs["scopeSpans"] for s in ss["spans"]]
    assert sorted(names) == sorted(f"s{i}" for i in range(500))
