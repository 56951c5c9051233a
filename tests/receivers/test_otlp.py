"""The `otlp` receiver with real parts: the OpenTelemetry SDK's exporters, raw gRPC and HTTP clients.

What arrives is read back from a `file` exporter (OTLP/JSON lines) and turned into
protobuf here with a decoder of this file's own (hex ids to bytes, then the
protobuf JSON parser), so the comparison does not lean on `agent.otlp_json`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import gzip
import json
import socket
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry import trace as trace_api
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from agent.service import StartupError
from tests.conftest import async_wait_for, otlp_receiver_config, read_json_lines, running_vigil

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
SIGNALS = ("traces", "metrics", "logs")
REQUEST_TYPES = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
}
RESPONSE_TYPES = {
    "traces": trace_service_pb2.ExportTraceServiceResponse,
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
    "logs": logs_service_pb2.ExportLogsServiceResponse,
}
GRPC_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
ITEM_NAMES = {"traces": "spans", "metrics": "metric_points", "logs": "log_records"}
TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"


# --- helpers -------------------------------------------------------------------


def file_config(tmp_path: Path, receiver: dict | None = None, signals=SIGNALS, **service: Any) -> dict:
    """The otlp receiver feeding one pipeline per signal, each into its own file exporter."""
    return {
        "receivers": {"otlp": receiver or otlp_receiver_config()},
        "exporters": {f"file/{s}": {"path": str(tmp_path / f"{s}.json")} for s in signals},
        "service": {"pipelines": {s: {"receivers": ["otlp"], "exporters": [f"file/{s}"]} for s in signals},
                    **service},
    }


def _hex_ids_to_base64(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for value in node:
            _hex_ids_to_base64(value)


def from_file(path: Path, signal: str) -> Message:
    """Every request the file exporter wrote for `signal`, merged into one protobuf message."""
    merged = REQUEST_TYPES[signal]()
    for line in read_json_lines(path):
        line = copy.deepcopy(line)
        _hex_ids_to_base64(line)
        part = REQUEST_TYPES[signal]()
        json_format.ParseDict(line, part)  # strict: an unknown key in the file is a failure
        merged.MergeFrom(part)
    return merged


def file_spans(path: Path) -> list[dict]:
    return [span for line in read_json_lines(path) for rs in line["resourceSpans"]
            for ss in rs["scopeSpans"] for span in ss["spans"]]


def attrs(kvs: list[dict]) -> dict[str, dict]:
    """OTLP/JSON attributes as {key: AnyValue-as-JSON}."""
    return {kv["key"]: kv["value"] for kv in kvs}


def small_traces_request(name: str = "ok", n: int = 1, trace_id: bytes = bytes.fromhex(TRACE_ID)):
    request = trace_service_pb2.ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "raw-client"
    scope = rs.scope_spans.add()
    for i in range(n):
        span = scope.spans.add(name=name, trace_id=trace_id, span_id=(i + 1).to_bytes(8, "big"),
                               start_time_unix_nano=1, end_time_unix_nano=2)
        span.attributes.add(key="i").value.int_value = i
    return request


def small_request(signal: str) -> Message:
    if signal == "traces":
        return small_traces_request()
    if signal == "metrics":
        request = metrics_service_pb2.ExportMetricsServiceRequest()
        metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="ok.gauge")
        metric.gauge.data_points.add(time_unix_nano=1, as_int=1)
        return request
    request = logs_service_pb2.ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.add(time_unix_nano=1).body.string_value = "ok"
    return request


def decode_status(response_content_type: str, body: bytes) -> status_pb2.Status:
    if response_content_type == PROTOBUF:
        return status_pb2.Status.FromString(body)
    assert response_content_type == JSON
    return json_format.Parse(body, status_pb2.Status())


@contextlib.contextmanager
def closed_port():
    """A port bound by this test but not listening: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


async def post(session: aiohttp.ClientSession, url: str, body: bytes, content_type: str | None,
               **headers: str) -> tuple[int, str, bytes, Any]:
    if content_type is not None:
        headers["Content-Type"] = content_type
    async with session.post(url, data=body, headers=headers) as response:
        return response.status, response.content_type, await response.read(), response.headers


async def grpc_call(endpoint: str, signal: str, body: bytes) -> bytes:
    async with grpc.aio.insecure_channel(endpoint) as channel:
        return await channel.unary_unary(GRPC_METHODS[signal])(body, timeout=5)


# --- 1. the OpenTelemetry SDK, over gRPC and HTTP/protobuf ---------------------

SDK_RESOURCE = Resource({
    "service.name": "inference-app",
    "service.version": "1.2.3",
    "host.cores": 64,
    "deployment.canary": True,
    "ml.threshold": 0.75,
})

EVERY_TYPE = {
    "s": "naïve ✓ text",
    "empty": "",
    "b": True,
    "b.false": False,
    "i": 2**62 + 1,  # above 2**53: lost if int64 ever went through a JSON number
    "i.neg": -42,
    "f": 0.1,
    "f.big": 1.5e300,
    "s.list": ["a", "b", ""],
    "b.list": [True, False],
    "i.list": [1, -2, 2**62],
    "f.list": [0.5, -1.25],
}


def sdk_exporter(kind: str, signal: str, vigil):
    """The SDK's OTLP exporter of `signal` pointed at Vigil; kind is grpc, grpc-gzip, http or http-gzip."""
    if kind.startswith("grpc"):
        compression = grpc.Compression.Gzip if kind.endswith("gzip") else grpc.Compression.NoCompression
        cls = {"traces": GrpcSpanExporter, "metrics": GrpcMetricExporter, "logs": GrpcLogExporter}[signal]
        return cls(endpoint=vigil.grpc_endpoint(), insecure=True, timeout=5, compression=compression)
    compression = HttpCompression.Gzip if kind.endswith("gzip") else HttpCompression.NoCompression
    cls = {"traces": HttpSpanExporter, "metrics": HttpMetricExporter, "logs": HttpLogExporter}[signal]
    return cls(endpoint=vigil.http_url(f"/v1/{signal}"), timeout=5, compression=compression)


async def sdk_export(kind: str, signal: str, vigil, data) -> Any:
    """`data` exported once by `sdk_exporter(kind, signal, vigil)` (in a thread: the SDK blocks), which is
    then shut down; the export result."""
    exporter = sdk_exporter(kind, signal, vigil)
    try:
        return await asyncio.to_thread(exporter.export, data)
    finally:
        await asyncio.to_thread(exporter.shutdown)


def make_spans():
    """Spans of every shape from the SDK: a parent, a child with everything, a linked span."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=SDK_RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.receivers", "0.1", schema_url="https://opentelemetry.io/schemas/1.21.0")
    with tracer.start_as_current_span("other", kind=SpanKind.PRODUCER) as other:
        pass
    with tracer.start_as_current_span("parent", kind=SpanKind.SERVER):
        with tracer.start_as_current_span(
                "child", kind=SpanKind.CLIENT, attributes=EVERY_TYPE,
                links=[Link(other.get_span_context(), {"link.reason": "batch", "link.n": 3})]) as child:
            child.add_event("retry", {"attempt": 2, "backoff.s": 0.25, "fatal": False, "codes": [500, 503]})
            child.add_event("no-attributes")
            child.set_status(Status(StatusCode.ERROR, "model server said no"))
    provider.shutdown()
    spans = memory.get_finished_spans()
    assert [s.name for s in spans] == ["other", "child", "parent"]
    return spans


@pytest.mark.parametrize("kind", ["grpc", "grpc-gzip", "http", "http-gzip"])
async def test_sdk_traces_arrive_intact(tmp_path, kind):
    out = tmp_path / "traces.json"
    async with running_vigil(file_config(tmp_path, signals=["traces"])) as vigil:
        spans = make_spans()
        result = await sdk_export(kind, "traces", vigil, spans)
        assert result is SpanExportResult.SUCCESS
        transport = kind.split("-")[0]
        assert vigil.counter("vigil_receiver_accepted_spans", transport=transport) == 3
        assert vigil.counter("vigil_receiver_refused_spans") == 0

    # Exactly what the SDK encoded, field for field.
    assert from_file(out, "traces") == encode_spans(spans)

    # And the file speaks OTLP/JSON: hex ids, lowerCamelCase, int64 as strings, enums as integers.
    other, child, parent = spans
    (line,) = read_json_lines(out)
    (rs,) = line["resourceSpans"]
    assert attrs(rs["resource"]["attributes"]) == {
        "service.name": {"stringValue": "inference-app"},
        "service.version": {"stringValue": "1.2.3"},
        "host.cores": {"intValue": "64"},
        "deployment.canary": {"boolValue": True},
        "ml.threshold": {"doubleValue": 0.75},
    }
    (ss,) = rs["scopeSpans"]
    assert ss["scope"] == {"name": "tests.receivers", "version": "0.1"}
    assert ss["schemaUrl"] == "https://opentelemetry.io/schemas/1.21.0"
    by_name = {s["name"]: s for s in ss["spans"]}
    c = by_name["child"]
    assert c["traceId"] == format(child.context.trace_id, "032x")
    assert c["spanId"] == format(child.context.span_id, "016x")
    assert c["parentSpanId"] == format(parent.context.span_id, "016x")
    assert by_name["parent"]["traceId"] == c["traceId"]
    assert "parentSpanId" not in by_name["parent"]
    assert c["kind"] == 3 and by_name["parent"]["kind"] == 2 and by_name["other"]["kind"] == 4
    assert c["status"] == {"code": 2, "message": "model server said no"}
    assert c["startTimeUnixNano"] == str(child.start_time)
    assert c["endTimeUnixNano"] == str(child.end_time)
    assert attrs(c["attributes"]) == {
        "s": {"stringValue": "naïve ✓ text"},
        "empty": {"stringValue": ""},
        "b": {"boolValue": True},
        "b.false": {"boolValue": False},
        "i": {"intValue": str(2**62 + 1)},
        "i.neg": {"intValue": "-42"},
        "f": {"doubleValue": 0.1},
        "f.big": {"doubleValue": 1.5e300},
        "s.list": {"arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}, {"stringValue": ""}]}},
        "b.list": {"arrayValue": {"values": [{"boolValue": True}, {"boolValue": False}]}},
        "i.list": {"arrayValue": {"values": [{"intValue": "1"}, {"intValue": "-2"}, {"intValue": str(2**62)}]}},
        "f.list": {"arrayValue": {"values": [{"doubleValue": 0.5}, {"doubleValue": -1.25}]}},
    }
    retry, bare = c["events"]
    assert retry["name"] == "retry" and retry["timeUnixNano"] == str(child.events[0].timestamp)
    assert attrs(retry["attributes"]) == {
        "attempt": {"intValue": "2"}, "backoff.s": {"doubleValue": 0.25}, "fatal": {"boolValue": False},
        "codes": {"arrayValue": {"values": [{"intValue": "500"}, {"intValue": "503"}]}},
    }
    assert bare["name"] == "no-attributes" and "attributes" not in bare
    (link,) = c["links"]
    assert link["traceId"] == format(other.context.trace_id, "032x")
    assert link["spanId"] == format(other.context.span_id, "016x")
    assert attrs(link["attributes"]) == {"link.reason": {"stringValue": "batch"}, "link.n": {"intValue": "3"}}


@pytest.mark.parametrize("kind", ["grpc", "http"])
async def test_sdk_metrics_arrive_intact(tmp_path, kind):
    out = tmp_path / "metrics.json"
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], resource=SDK_RESOURCE)
    meter = provider.get_meter("tests.receivers.metrics", "0.2")
    requests = meter.create_counter("inference.requests", unit="1", description="requests served")
    latency = meter.create_histogram("inference.latency", unit="ms")
    temperature = meter.create_gauge("gpu.temperature", unit="Cel")
    requests.add(5, {"model": "resnet", "ok": True})
    requests.add(2, {"model": "resnet", "ok": True})
    requests.add(1, {"model": "bert", "ok": False})
    for value in (3.0, 12.5, 700.0):
        latency.record(value, {"model": "resnet"})
    temperature.set(71.5, {"gpu": 0})
    data = reader.get_metrics_data()
    provider.shutdown()

    async with running_vigil(file_config(tmp_path, signals=["metrics"])) as vigil:
        result = await sdk_export(kind, "metrics", vigil, data)
        assert result is MetricExportResult.SUCCESS
        # 2 counter series + 1 histogram series + 1 gauge series.
        assert vigil.counter("vigil_receiver_accepted_metric_points", transport=kind) == 4

    assert from_file(out, "metrics") == encode_metrics(data)

    (line,) = read_json_lines(out)
    metrics = {m["name"]: m for m in line["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]}
    counter = metrics["inference.requests"]
    assert counter["description"] == "requests served"
    assert counter["sum"]["isMonotonic"] is True
    assert counter["sum"]["aggregationTemporality"] == 2  # cumulative, as an integer
    points = {attrs(p["attributes"])["model"]["stringValue"]: p for p in counter["sum"]["dataPoints"]}
    assert points["resnet"]["asInt"] == "7" and points["bert"]["asInt"] == "1"
    assert attrs(points["bert"]["attributes"])["ok"] == {"boolValue": False}
    (h,) = metrics["inference.latency"]["histogram"]["dataPoints"]
    assert metrics["inference.latency"]["unit"] == "ms"
    assert h["count"] == "3" and h["sum"] == 715.5 and h["min"] == 3.0 and h["max"] == 700.0
    assert h["explicitBounds"][:3] == [0.0, 5.0, 10.0]
    assert all(isinstance(c, str) for c in h["bucketCounts"])
    assert sum(int(c) for c in h["bucketCounts"]) == 3
    (g,) = metrics["gpu.temperature"]["gauge"]["dataPoints"]
    assert g["asDouble"] == 71.5 and attrs(g["attributes"]) == {"gpu": {"intValue": "0"}}
    assert g["timeUnixNano"].isdigit()


@pytest.mark.parametrize("kind", ["grpc", "http"])
async def test_sdk_logs_arrive_intact(tmp_path, kind):
    out = tmp_path / "logs.json"
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=SDK_RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("tests.receivers.logs", "0.3")
    span_context = trace_api.SpanContext(int(TRACE_ID, 16), int(SPAN_ID, 16), is_remote=False,
                                         trace_flags=trace_api.TraceFlags(1))
    ctx = trace_api.set_span_in_context(trace_api.NonRecordingSpan(span_context))
    logger.emit(body="prediction failed", severity_number=SeverityNumber.ERROR, severity_text="ERROR",
                attributes={"ml.model.name": "resnet", "attempt": 3, "retry": True, "score": 0.5,
                            "tags": ["a", "b"]},
                context=ctx, timestamp=1_700_000_000_123_456_789)
    logger.emit(body={"event": "drift", "psi": 0.31, "features": ["age", "income"]},
                severity_number=SeverityNumber.WARN, severity_text="WARN")
    provider.shutdown()
    records = memory.get_finished_logs()
    assert len(records) == 2

    async with running_vigil(file_config(tmp_path, signals=["logs"])) as vigil:
        result = await sdk_export(kind, "logs", vigil, records)
        assert result is LogRecordExportResult.SUCCESS
        assert vigil.counter("vigil_receiver_accepted_log_records", transport=kind) == 2

    assert from_file(out, "logs") == encode_logs(records)

    (line,) = read_json_lines(out)
    first, second = line["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    assert first["traceId"] == TRACE_ID and first["spanId"] == SPAN_ID and first["flags"] == 1
    assert first["timeUnixNano"] == "1700000000123456789"
    assert first["severityNumber"] == 17 and first["severityText"] == "ERROR"
    assert first["body"] == {"stringValue": "prediction failed"}
    assert attrs(first["attributes"]) == {
        "ml.model.name": {"stringValue": "resnet"}, "attempt": {"intValue": "3"},
        "retry": {"boolValue": True}, "score": {"doubleValue": 0.5},
        "tags": {"arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}},
    }
    assert second["severityNumber"] == 13 and "traceId" not in second
    assert attrs(second["body"]["kvlistValue"]["values"]) == {
        "event": {"stringValue": "drift"}, "psi": {"doubleValue": 0.31},
        "features": {"arrayValue": {"values": [{"stringValue": "age"}, {"stringValue": "income"}]}},
    }


# --- 2. HTTP/JSON, protobuf answers, compression --------------------------------

JSON_REQUESTS = {
    "traces": {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-app"}}]},
        "scopeSpans": [{"scope": {"name": "hand-made", "version": "1"}, "spans": [{
            "traceId": TRACE_ID, "spanId": SPAN_ID, "parentSpanId": "eee19b7ec3c1b173",
            "name": "predict", "kind": 2, "flags": 257,
            "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": "1544712661000000000",
            "attributes": [{"key": "big", "value": {"intValue": "9007199254740993"}},
                           {"key": "conf", "value": {"doubleValue": 0.93}},
                           {"key": "labels", "value": {"arrayValue": {"values": [{"stringValue": "cat"}]}}}],
            "events": [{"timeUnixNano": "1544712660500000000", "name": "ev",
                        "attributes": [{"key": "k", "value": {"boolValue": True}}]}],
            "links": [{"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708"}],
            "status": {"code": 2, "message": "bad"},
        }]}],
    }]},
    "metrics": {"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-app"}}]},
        "scopeMetrics": [{"metrics": [
            {"name": "requests", "unit": "1", "sum": {
                "aggregationTemporality": 2, "isMonotonic": True,
                "dataPoints": [{"asInt": "9007199254740993", "timeUnixNano": "1544712660000000000",
                                "attributes": [{"key": "model", "value": {"stringValue": "m"}}]}]}},
            {"name": "temp", "gauge": {"dataPoints": [{"asDouble": 21.5, "timeUnixNano": "1"}]}},
            {"name": "latency", "histogram": {"aggregationTemporality": 1, "dataPoints": [
                {"count": "4", "sum": 10.5, "bucketCounts": ["1", "3"], "explicitBounds": [2.0],
                 "timeUnixNano": "2",
                 "exemplars": [{"asDouble": 1.5, "timeUnixNano": "2", "traceId": TRACE_ID,
                                "spanId": SPAN_ID}]}]}},
        ]}],
    }]},
    "logs": {"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-app"}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": "1544712660000000000", "observedTimeUnixNano": "1544712660000000001",
            "severityNumber": 9, "severityText": "INFO", "body": {"stringValue": "hello"},
            "traceId": TRACE_ID, "spanId": SPAN_ID, "flags": 1,
            "attributes": [{"key": "n", "value": {"intValue": "-7"}}],
        }]}],
    }]},
}
JSON_ITEMS = {"traces": 1, "metrics": 3, "logs": 1}


@pytest.mark.parametrize("signal", SIGNALS)
async def test_http_json_request_accepted_and_round_trips(tmp_path, signal):
    async with running_vigil(file_config(tmp_path)) as vigil, aiohttp.ClientSession() as session:
        status, content_type, body, _ = await post(
            session, vigil.http_url(f"/v1/{signal}"), json.dumps(JSON_REQUESTS[signal]).encode(), JSON)
        assert (status, content_type) == (200, JSON)
        assert json.loads(body) == {}
        assert vigil.counter(f"vigil_receiver_accepted_{ITEM_NAMES[signal]}", transport="http") \
            == JSON_ITEMS[signal]
    # What the file holds is exactly what was sent (same hex ids, same string int64s).
    assert read_json_lines(tmp_path / f"{signal}.json") == [JSON_REQUESTS[signal]]


async def test_http_json_lenient_input(tmp_path):
    """Receivers take int64 as JSON numbers, charset parameters and unknown fields, as the spec asks."""
    request = {"resourceSpans": [{"futureField": {"x": 1}, "scopeSpans": [{"spans": [{
        "traceId": TRACE_ID.upper(), "spanId": SPAN_ID, "name": "n", "startTimeUnixNano": 1544712660000000000,
        "attributes": [{"key": "i", "value": {"intValue": 42}}], "someNewThing": True}]}]}]}
    async with running_vigil(file_config(tmp_path, signals=["traces"])) as vigil, \
            aiohttp.ClientSession() as session:
        status, _, body, _ = await post(session, vigil.http_url("/v1/traces"), json.dumps(request).encode(),
                                        "application/json; charset=utf-8")
        assert status == 200, body
    (span,) = file_spans(tmp_path / "traces.json")
    assert span == {"traceId": TRACE_ID, "spanId": SPAN_ID, "name": "n",
                    "startTimeUnixNano": "1544712660000000000",
                    "attributes": [{"key": "i", "value": {"intValue": "42"}}]}


async def test_http_json_snake_case_ids_are_hex(tmp_path):
    """The protobuf JSON parser takes original field names too; their ids must be read as hex."""
    request = {"resource_spans": [{"scope_spans": [{"spans": [{
        "trace_id": TRACE_ID, "span_id": SPAN_ID, "parent_span_id": "eee19b7ec3c1b173", "name": "snake"}]}]}]}
    async with running_vigil(file_config(tmp_path, signals=["traces"])) as vigil, \
            aiohttp.ClientSession() as session:
        status, _, body, _ = await post(session, vigil.http_url("/v1/traces"), json.dumps(request).encode(), JSON)
        assert status == 200, body
    (span,) = file_spans(tmp_path / "traces.json")
    assert (span["traceId"], span["spanId"], span["parentSpanId"]) == (TRACE_ID, SPAN_ID, "eee19b7ec3c1b173")


@pytest.mark.parametrize("signal", SIGNALS)
async def test_http_protobuf_answered_with_protobuf(tmp_path, signal):
    request = small_request(signal)
    async with running_vigil(file_config(tmp_path)) as vigil, aiohttp.ClientSession() as session:
        status, content_type, body, _ = await post(session, vigil.http_url(f"/v1/{signal}"),
                                                   request.SerializeToString(), PROTOBUF)
        assert (status, content_type) == (200, PROTOBUF)
        response = RESPONSE_TYPES[signal].FromString(body)
        assert not response.HasField("partial_success")
    assert from_file(tmp_path / f"{signal}.json", signal) == request


@pytest.mark.parametrize("encoding,compress", [("gzip", gzip.compress), ("deflate", zlib.compress),
                                               ("GZip", gzip.compress)])
@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
async def test_http_compressed_bodies_accepted(tmp_path, content_type, encoding, compress):
    request = small_traces_request("compressed", n=50)
    plain = (request.SerializeToString() if content_type == PROTOBUF
             else json.dumps(JSON_REQUESTS["traces"]).encode())
    body = compress(plain)
    assert body != plain
    async with running_vigil(file_config(tmp_path, signals=["traces"])) as vigil, \
            aiohttp.ClientSession(auto_decompress=False) as session:
        status, response_type, answer, _ = await post(session, vigil.http_url("/v1/traces"), body, content_type,
                                                      **{"Content-Encoding": encoding})
        assert (status, response_type) == (200, content_type), answer
    expected = request if content_type == PROTOBUF else None
    got = from_file(tmp_path / "traces.json", "traces")
    if expected is not None:
        assert got == expected
    else:
        assert read_json_lines(tmp_path / "traces.json") == [JSON_REQUESTS["traces"]]


async def test_http_multi_member_gzip_body_is_read_whole(tmp_path):
    # A gzip body may be several members back to back (valid gzip); every byte must arrive.
    request = small_traces_request("multi-member", n=20)
    wire = request.SerializeToString()
    body = gzip.compress(wire[:len(wire) // 2]) + gzip.compress(wire[len(wire) // 2:])
    async with running_vigil(file_config(tmp_path, signals=["traces"])) as vigil, \
            aiohttp.ClientSession(auto_decompress=False) as session:
        status, _, answer, _ = await post(session, vigil.http_url("/v1/traces"), body, PROTOBUF,
                                          **{"Content-Encoding": "gzip"})
        assert status == 200, answer
        junk = gzip.compress(wire) + b"not gzip"
        status, _, answer, _ = await post(session, vigil.http_url("/v1/traces"), junk, PROTOBUF,
                                          **{"Content-Encoding": "gzip"})
        assert status == 400
        assert b"not valid gzip" in answer
    assert from_file(tmp_path / "traces.json", "traces") == request


async def test_custom_url_path(tmp_path):
    receiver = {"protocols": {"http": {"endpoint": "127.0.0.1:0", "traces_url_path": "/ingest/spans"}}}
    async with running_vigil(file_config(tmp_path, receiver=receiver, signals=["traces"])) as vigil, \
            aiohttp.ClientSession() as session:
        assert vigil.receiver().grpc_port is None
        wire = small_traces_request("custom").SerializeToString()
        status, *_ = await post(session, vigil.http_url("/ingest/spans"), wire, PROTOBUF)
        assert status == 200
        status, *_ = await post(session, vigil.http_url("/v1/traces"), wire, PROTOBUF)
        assert status == 404
    assert [s["name"] for s in file_spans(tmp_path / "traces.json")] == ["custom"]


async def test_concurrent_requests_all_arrive(tmp_path):
    async with running_vigil(file_config(tmp_path, signals=["traces"])) as vigil, \
            aiohttp.ClientSession() as session, grpc.aio.insecure_channel(vigil.grpc_endpoint()) as channel:
        call = channel.unary_unary(GRPC_METHODS["traces"])

        def request(i: int) -> bytes:
            return small_traces_request(f"r{i}", n=3, trace_id=i.to_bytes(16, "big")).SerializeToString()

        results = await asyncio.gather(
            *(call(request(i), timeout=10) for i in range(1, 31)),
            *(post(session, vigil.http_url("/v1/traces"), request(i), PROTOBUF) for i in range(31, 61)))
        assert results[:30] == [b""] * 30
        assert [r[0] for r in results[30:]] == [200] * 30
        assert vigil.counter("vigil_receiver_accepted_spans") == 180
    spans = file_spans(tmp_path / "traces.json")
    assert len(read_json_lines(tmp_path / "traces.json")) == 60  # one whole line per request
    assert sorted((int(s["traceId"], 16), s["name"]) for s in spans) == \
        sorted((i, f"r{i}") for i in range(1, 61) for _ in range(3))


# --- 3. errors, on both protocols ------------------------------------------------

LIMIT = 4096
VALID_WIRE = small_traces_request("valid").SerializeToString()
BIG_WIRE = small_traces_request("x" * 8000).SerializeToString()
BOMB = gzip.compress(small_traces_request("a" * 200_000).SerializeToString())
assert len(BOMB) < LIMIT < len(BIG_WIRE)


def _json_with_span(**span: Any) -> bytes:
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()


# (content type, headers, body, expected HTTP status, words the message must contain)
HTTP_ERRORS = {
    "garbage-protobuf": (PROTOBUF, {}, b"\xff\xff\xff\xff garbage \x00\x01", 400,
                         ["malformed OTLP traces protobuf"]),
    "truncated-protobuf": (PROTOBUF, {}, small_traces_request("t", n=3).SerializeToString()[:60], 400,
                           ["malformed OTLP traces protobuf"]),
    "invalid-json": (JSON, {}, b'{"resourceSpans": [', 400, ["invalid JSON"]),
    "json-not-object": (JSON, {}, b"[1, 2]", 400, ["must be a JSON object"]),
    "json-not-utf8": (JSON, {}, b'{"a": "\xff\xfe"}', 400, ["invalid JSON"]),
    "json-spans-not-list": (JSON, {}, b'{"resourceSpans": [{"scopeSpans": [{"spans": "x"}]}]}', 400,
                            ["invalid OTLP/JSON", "spans"]),
    "json-name-not-string": (JSON, {}, _json_with_span(name=5), 400, ["invalid OTLP/JSON", "name"]),
    "json-bad-int64": (JSON, {}, _json_with_span(startTimeUnixNano="soon"), 400, ["startTimeUnixNano"]),
    "bad-hex-trace-id": (JSON, {}, _json_with_span(traceId="zz" * 16), 400,
                         ["resourceSpans[0].scopeSpans[0].spans[0].traceId", "not a hex id"]),
    "short-trace-id": (JSON, {}, _json_with_span(traceId="abcd"), 400,
                       ["spans[0].traceId", "expected 32 hex digits"]),
    "long-span-id": (JSON, {}, _json_with_span(spanId="00" * 9), 400, ["spans[0].spanId", "16 hex digits"]),
    "gzip-header-not-gzip": (PROTOBUF, {"Content-Encoding": "gzip"}, VALID_WIRE, 400, ["not valid gzip"]),
    "gzip-header-not-gzip-json": (JSON, {"Content-Encoding": "gzip"}, b"{}", 400, ["not valid gzip"]),
    "truncated-gzip": (PROTOBUF, {"Content-Encoding": "gzip"}, gzip.compress(VALID_WIRE)[:-12], 400,
                       ["not valid gzip", "truncated"]),
    "unsupported-encoding": (PROTOBUF, {"Content-Encoding": "br"}, VALID_WIRE, 400,
                             ["unsupported Content-Encoding", "br"]),
    "unsupported-encoding-json": (JSON, {"Content-Encoding": "compress"}, b"{}", 400,
                                  ["unsupported Content-Encoding", "compress"]),
    "oversized": (PROTOBUF, {}, BIG_WIRE, 413, [f"larger than {LIMIT} bytes"]),
    "oversized-json": (JSON, {}, b'{"resourceSpans": []}' + b" " * (2 * LIMIT), 413, [f"larger than {LIMIT}"]),
    "gzip-bomb": (PROTOBUF, {"Content-Encoding": "gzip"}, BOMB, 413, ["once decompressed"]),
    "gzip-bomb-json": (JSON, {"Content-Encoding": "gzip"}, gzip.compress(b"[" + b" " * 100_000 + b"]"), 413,
                       ["once decompressed"]),
}


async def _assert_still_serves_http(vigil, session, out: Path) -> None:
    status, content_type, body, _ = await post(session, vigil.http_url("/v1/traces"), VALID_WIRE, PROTOBUF)
    assert (status, content_type, body) == (200, PROTOBUF, b"")
    status, content_type, body, _ = await post(session, vigil.http_url("/v1/traces"),
                                               json.dumps(JSON_REQUESTS["traces"]).encode(), JSON)
    assert (status, content_type, body) == (200, JSON, b"{}")
    # Only the good requests reached the pipeline: nothing of the bad one leaked through.
    assert [s["name"] for s in file_spans(out)] == ["valid", "predict"]
    assert vigil.counter("vigil_receiver_accepted_spans") == 2


@pytest.mark.parametrize("case", HTTP_ERRORS)
async def test_http_bad_request(tmp_path, case):
    content_type, headers, body, expected_status, words = HTTP_ERRORS[case]
    receiver = {"protocols": {"http": {"endpoint": "127.0.0.1:0", "max_request_body_size": LIMIT}}}
    async with running_vigil(file_config(tmp_path, receiver=receiver, signals=["traces"])) as vigil, \
            aiohttp.ClientSession(auto_decompress=False) as session:
        status, response_type, answer, _ = await post(session, vigil.http_url("/v1/traces"), body,
                                                      content_type, **headers)
        assert status == expected_status, answer
        assert response_type == content_type  # the error speaks the request's encoding
        error = decode_status(response_type, answer)
        assert error.code == code_pb2.INVALID_ARGUMENT
        for word in words:
            assert word in error.message
        await _assert_still_serves_http(vigil, session, tmp_path / "traces.json")


@pytest.mark.parametrize("content_type", ["text/plain", "application/grpc", None, "application/protobuf"])
async def test_http_unsupported_content_type_415(tmp_path, content_type):
    async with running_vigil(file_config(tmp_path, signals=["traces"])) as vigil, \
            aiohttp.ClientSession(skip_auto_headers=["Content-Type"]) as session:
        status, response_type, answer, _ = await post(session, vigil.http_url("/v1/traces"), VALID_WIRE,
                                                      content_type)
        assert (status, response_type) == (415, JSON)
        error = decode_status(JSON, answer)
        assert error.code == code_pb2.INVALID_ARGUMENT
        assert "unsupported content type" in error.message
        assert PROTOBUF in error.message and JSON in error.message
        if content_type:
            assert repr(content_type) in error.message
        await _assert_still_serves_http(vigil, session, tmp_path / "traces.json")


@pytest.mark.parametrize("method,path,expected,text", [
    ("POST", "/v1/trace", 404, "Not Found"),
    ("POST", "/v2/traces", 404, "Not Found"),
    ("POST", "/", 404, "Not Found"),
    ("GET", "/v1/traces", 405, "Method Not Allowed"),
    ("PUT", "/v1/traces", 405, "Method Not Allowed"),
])
async def test_http_wrong_path_or_method(tmp_path, method, path, expected, text):
    async with running_vigil(file_config(tmp_path, signals=["traces"])) as vigil, \
            aiohttp.ClientSession() as session:
        async with session.request(method, vigil.http_url(path), data=VALID_WIRE,
                                   headers={"Content-Type": PROTOBUF}) as response:
            assert response.status == expected
            assert text in await response.text()
            if expected == 405:
                assert response.headers["Allow"] == "POST"
        await _assert_still_serves_http(vigil, session, tmp_path / "traces.json")


def _with(signal: str, path: list, value: Any) -> bytes:
    """The signal's hand-made JSON request with the field at `path` replaced by `value`."""
    data = copy.deepcopy(JSON_REQUESTS[signal])
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return json.dumps(data).encode()


_METRIC = ["resourceMetrics", 0, "scopeMetrics", 0, "metrics"]
_LOG = ["resourceLogs", 0, "scopeLogs", 0, "logRecords", 0]


@pytest.mark.parametrize("signal,content_type,body,words", [
    ("metrics", PROTOBUF, b"\xff\xff\xff", ["malformed OTLP metrics protobuf"]),
    ("logs", PROTOBUF, b"\xff\xff\xff", ["malformed OTLP logs protobuf"]),
    ("metrics", JSON, _with("metrics", _METRIC + [2, "histogram", "dataPoints", 0, "exemplars", 0, "traceId"],
                            "not-hex"), ["exemplars[0].traceId", "not a hex id"]),
    ("metrics", JSON, _with("metrics", _METRIC + [0, "sum", "dataPoints", 0, "asInt"], "many"), ["asInt"]),
    ("metrics", JSON, _with("metrics", _METRIC + [1, "gauge", "dataPoints"], {}), ["dataPoints"]),
    ("logs", JSON, _with("logs", _LOG + ["spanId"], "abc"), ["logRecords[0].spanId", "not a hex id"]),
    ("logs", JSON, _with("logs", _LOG + ["traceId"], "ab" * 15), ["traceId", "expected 32 hex digits, got 30"]),
    ("logs", JSON, _with("logs", _LOG + ["severityNumber"], [9]), ["severityNumber"]),
], ids=["metrics-garbage-protobuf", "logs-garbage-protobuf", "metrics-bad-exemplar-trace-id",
        "metrics-bad-int64", "metrics-data-points-not-list", "logs-bad-span-id", "logs-short-trace-id",
        "logs-severity-not-int"])
async def test_http_bad_metrics_and_logs(tmp_path, signal, content_type, body, words):
    async with running_vigil(file_config(tmp_path)) as vigil, aiohttp.ClientSession() as session:
        url = vigil.http_url(f"/v1/{signal}")
        status, response_type, answer, _ = await post(session, url, body, content_type)
        assert (status, response_type) == (400, content_type), answer
        error = decode_status(content_type, answer)
        assert error.code == code_pb2.INVALID_ARGUMENT
        for word in words:
            assert word in error.message
        status, *_ = await post(session, url, json.dumps(JSON_REQUESTS[signal]).encode(), JSON)
        assert status == 200
    assert read_json_lines(tmp_path / f"{signal}.json") == [JSON_REQUESTS[signal]]


async def _assert_still_serves_grpc(vigil, out: Path, signal: str = "traces") -> None:
    request = small_request(signal)
    reply = await grpc_call(vigil.grpc_endpoint(), signal, request.SerializeToString())
    assert RESPONSE_TYPES[signal].FromString(reply) == RESPONSE_TYPES[signal]()
    assert from_file(out, signal) == request  # only the good request arrived


GRPC_GARBAGE = {
    "garbage": b"\xff\xff\xff\xff garbage \x00\x01",
    "truncated": None,  # the signal's valid request cut in half
    "bad-wire-type": b"\x0f\x01",
}


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("case", GRPC_GARBAGE)
async def test_grpc_malformed_request_invalid_argument(tmp_path, signal, case):
    body = GRPC_GARBAGE[case]
    if body is None:
        wire = small_request(signal).SerializeToString()
        body = wire[: len(wire) // 2]
    async with running_vigil(file_config(tmp_path)) as vigil:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await grpc_call(vigil.grpc_endpoint(), signal, body)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert f"malformed OTLP {signal} protobuf" in caught.value.details()
        assert vigil.counter(f"vigil_receiver_accepted_{ITEM_NAMES[signal]}") == 0
        await _assert_still_serves_grpc(vigil, tmp_path / f"{signal}.json", signal)


async def test_grpc_oversized_message_resource_exhausted(tmp_path):
    receiver = {"protocols": {"grpc": {"endpoint": "127.0.0.1:0", "max_recv_msg_size_mib": 1}}}
    big = small_traces_request("x" * (2 * 1024 * 1024)).SerializeToString()
    just_under = small_traces_request("y" * (1024 * 1024 - 200)).SerializeToString()
    assert len(just_under) < 1024 * 1024 < len(big)
    async with running_vigil(file_config(tmp_path, receiver=receiver, signals=["traces"])) as vigil:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await grpc_call(vigil.grpc_endpoint(), "traces", big)
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in caught.value.details()
        assert await grpc_call(vigil.grpc_endpoint(), "traces", just_under) == b""
        await grpc_call(vigil.grpc_endpoint(), "traces", VALID_WIRE)
    assert [len(s["name"]) for s in file_spans(tmp_path / "traces.json")] == [1024 * 1024 - 200, 5]


# --- 4. refusal for load ---------------------------------------------------------


async def test_full_sending_queue_refuses_with_unavailable_and_503(tmp_path):
    with closed_port() as port:
        config = {
            "receivers": {"otlp": otlp_receiver_config()},
            "exporters": {"otlp": {
                "endpoint": f"127.0.0.1:{port}", "tls": {"insecure": True}, "timeout": "1s",
                "sending_queue": {"queue_size": 1, "num_consumers": 1},
                "retry_on_failure": {"initial_interval": "10s", "max_interval": "10s"},
            }},
            "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp"]}},
                        "shutdown_timeout": "1s"},
        }
        wire = small_traces_request("load", n=3).SerializeToString()
        async with running_vigil(config) as vigil, aiohttp.ClientSession() as session:
            # The first request goes to the (failing, backing-off) worker, the second fills the queue.
            assert await grpc_call(vigil.grpc_endpoint(), "traces", wire) == b""
            assert await async_wait_for(lambda: vigil.counter("vigil_exporter_queue_size") == 0)
            assert await grpc_call(vigil.grpc_endpoint(), "traces", wire) == b""
            assert vigil.counter("vigil_exporter_queue_size") == 1

            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await grpc_call(vigil.grpc_endpoint(), "traces", wire)
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "sending queue of exporter otlp is full" in caught.value.details()
            # The retry hint travels as google.rpc.RetryInfo, as HTTP's Retry-After does.
            details = dict(caught.value.trailing_metadata())["grpc-status-details-bin"]
            info = error_details_pb2.RetryInfo()
            assert status_pb2.Status.FromString(details).details[0].Unpack(info)
            assert info.retry_delay.seconds == 10

            status, content_type, body, headers = await post(session, vigil.http_url("/v1/traces"), wire,
                                                             PROTOBUF)
            assert (status, content_type) == (503, PROTOBUF)
            error = decode_status(PROTOBUF, body)
            assert error.code == code_pb2.UNAVAILABLE and "queue" in error.message and "full" in error.message
            assert headers["Retry-After"] == "10"

            status, content_type, body, headers = await post(
                session, vigil.http_url("/v1/traces"), json.dumps(JSON_REQUESTS["traces"]).encode(), JSON)
            assert (status, content_type) == (503, JSON)
            assert decode_status(JSON, body).code == code_pb2.UNAVAILABLE

            assert vigil.counter("vigil_receiver_accepted_spans") == 6
            assert vigil.counter("vigil_receiver_refused_spans", transport="grpc") == 3
            assert vigil.counter("vigil_receiver_refused_spans", transport="http") == 4
            assert vigil.counter("vigil_receiver_refused_spans", receiver="otlp") == 7
            assert vigil.counter("vigil_exporter_enqueue_failed_spans", exporter="otlp") == 7
            assert vigil.counter("vigil_exporter_sent_spans") == 0


# --- 5. fan-out to two pipelines, one that edits ------------------------------------


@pytest.mark.parametrize("editing_first", [True, False], ids=["editing-first", "editing-last"])
async def test_fan_out_edit_in_one_pipeline_is_not_seen_by_the_other(tmp_path, editing_first):
    plain_out, edited_out = tmp_path / "plain.json", tmp_path / "edited.json"
    pipelines = {
        "traces/plain": {"receivers": ["otlp"], "exporters": ["file/plain"]},
        "traces/edited": {"receivers": ["otlp"], "processors": ["resource"], "exporters": ["file/edited"]},
    }
    if editing_first:
        pipelines = dict(reversed(pipelines.items()))
    config = {
        "receivers": {"otlp": otlp_receiver_config()},
        "processors": {"resource": {"attributes": [
            {"key": "deployment.environment", "value": "production", "action": "upsert"},
            {"key": "service.name", "value": "renamed", "action": "upsert"},
        ]}},
        "exporters": {"file/plain": {"path": str(plain_out)}, "file/edited": {"path": str(edited_out)}},
        "service": {"pipelines": pipelines},
    }
    async with running_vigil(config) as vigil, aiohttp.ClientSession() as session:
        await grpc_call(vigil.grpc_endpoint(), "traces", VALID_WIRE)
        status, *_ = await post(session, vigil.http_url("/v1/traces"), VALID_WIRE, PROTOBUF)
        assert status == 200
        status, *_ = await post(session, vigil.http_url("/v1/traces"),
                                json.dumps(JSON_REQUESTS["traces"]).encode(), JSON)
        assert status == 200
        assert vigil.counter("vigil_receiver_accepted_spans") == 3

    plain, edited = read_json_lines(plain_out), read_json_lines(edited_out)
    assert len(plain) == len(edited) == 3
    for original, p, e in zip(["raw-client", "raw-client", "json-app"], plain, edited):
        assert attrs(p["resourceSpans"][0]["resource"]["attributes"]) == {
            "service.name": {"stringValue": original}}
        assert attrs(e["resourceSpans"][0]["resource"]["attributes"]) == {
            "service.name": {"stringValue": "renamed"},
            "deployment.environment": {"stringValue": "production"}}
        # Everything below the resource is the same in both.
        assert p["resourceSpans"][0]["scopeSpans"] == e["resourceSpans"][0]["scopeSpans"]
    assert plain[2] == JSON_REQUESTS["traces"]


# --- 6. a signal with no pipeline ---------------------------------------------------


async def test_signal_without_pipeline_is_unimplemented_and_404(tmp_path):
    async with running_vigil(file_config(tmp_path, signals=["traces"])) as vigil, \
            aiohttp.ClientSession() as session:
        for signal in ("metrics", "logs"):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await grpc_call(vigil.grpc_endpoint(), signal, small_request(signal).SerializeToString())
            assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
            for content_type, body in ((PROTOBUF, small_request(signal).SerializeToString()),
                                       (JSON, json.dumps(JSON_REQUESTS[signal]).encode())):
                status, *_ = await post(session, vigil.http_url(f"/v1/{signal}"), body, content_type)
                assert status == 404
        # Traces, which has a pipeline, still works on both.
        await grpc_call(vigil.grpc_endpoint(), "traces", VALID_WIRE)
        status, *_ = await post(session, vigil.http_url("/v1/traces"), VALID_WIRE, PROTOBUF)
        assert status == 200
        assert vigil.counter("vigil_receiver_accepted_spans") == 2
        assert vigil.counter("vigil_receiver_accepted_metric_points") == 0
    assert not (tmp_path / "metrics.json").exists()


async def test_second_receiver_on_the_same_grpc_port_fails_to_start(tmp_path):
    # gRPC would share the port (SO_REUSEPORT) and split traffic between two agents; it must refuse.
    async with running_vigil(file_config(tmp_path / "a", receiver={"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}},
                                         signals=["traces"])) as first:
        port = first.receiver().grpc_port
        taken = {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{port}"}}}
        with pytest.raises(StartupError, match=f"receivers.otlp.*{port}"):
            async with running_vigil(file_config(tmp_path / "b", receiver=taken, signals=["traces"])):
                pass


async def test_failed_start_releases_the_port_that_did_open(tmp_path):
    from tests.conftest import free_port

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        grpc_port = free_port()
        receiver = {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                                  "http": {"endpoint": f"127.0.0.1:{blocker.getsockname()[1]}"}}}
        with pytest.raises(StartupError):
            async with running_vigil(file_config(tmp_path, receiver=receiver, signals=["traces"])):
                pass
    with socket.socket() as probe:  # the gRPC port opened before HTTP failed is free again
        probe.bind(("127.0.0.1", grpc_port))
