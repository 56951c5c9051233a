"""OTLP/JSON written straight off the wire (`json_wire`, under `json_stream.pieces`): protobuf's JSON
printer's text, character for character, on what the OpenTelemetry SDK sends and on odd values; a
layout protobuf would merge, drop or refuse is left to protobuf. Every test runs on both writers:
the compiled one (agent/_otlpjson.c) and the Python one."""

from __future__ import annotations

import struct

import pytest
from google.protobuf.message import DecodeError
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agent import otlp_json
from agent.attributes import set_any_value
from agent.exporters import json_stream, json_wire
from agent.signals import Signal
from tests.otlp_data import logs, metrics, traces



@pytest.fixture(autouse=True, params=["compiled", "python"])
def writer(request, monkeypatch):
    if request.param == "compiled" and json_wire._otlpjson is None:
        pytest.skip("agent/_otlpjson.c is not built (test_json_wire_parity.py fails on that)")
    monkeypatch.setattr(json_wire, "COMPILED", request.param == "compiled")
    return request.param


RESOURCE = Resource.create({"service.name": "fraud-api", "service.version": "1.8.2", "host.name": "ip-10-0-3-17",
                            "process.pid": 4211, "process.runtime.name": "cpython"})


def _assert_written_as_protobuf_would(signal: Signal, wire: bytes, taken: bool = True) -> None:
    reference = otlp_json.encode_with_json_format(signal.request_type.FromString(wire))
    assert "".join(json_stream.pieces(signal, wire)) == reference
    whole = json_wire.message_text(signal.request_type, wire)
    if taken:
        assert whole == reference  # read off the wire, not left to protobuf
    else:
        assert whole is None


def _sdk_spans() -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("inference", "0.3.0")
    with tracer.start_as_current_span("POST /v1/predict", kind=trace.SpanKind.SERVER) as request:
        request.set_attribute("http.route", "/v1/predict")
        for i in range(40):
            model, version = [("fraud", "v3"), ("fraud", "v4"), ("churn", "2024-06")][i % 3]
            with tracer.start_as_current_span("predict") as span:
                span.set_attributes({
                    "ml.model.name": model, "ml.model.version": version, "ml.prediction.id": f"req-{i:04d}",
                    "ml.prediction.label": ["approve", "review", "deny"][i % 3],
                    "ml.prediction.confidence": 0.5 + i / 100, "ml.prediction.probabilities": [0.25, 0.5, 0.25],
                    "ml.feature.country": ["de", "fr", "üs"][i % 3], "http.status_code": 200,
                    "cache.hit": i % 4 == 0, "tier": "pro", "retries": -i,
                })
                for f in range(8):
                    if (i + f) % 7:  # some features missing
                        span.set_attribute(f"ml.feature.f{f}", (i - 20) * 0.1 * f)
                if i % 10 == 0:
                    span.record_exception(TimeoutError("feature store took too long — ünïcode"))
                    span.set_status(trace.StatusCode.ERROR, "timeout")
                span.add_link(request.get_span_context(), {"link.kind": "parent-request"})
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


def _sdk_metrics() -> bytes:
    reader = InMemoryMetricReader()
    exponential_view = View(instrument_name="latency.exp", aggregation=ExponentialBucketHistogramAggregation())
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader],
                             views=[exponential_view, View(instrument_name="*")])
    meter = provider.get_meter("inference")
    counter, histogram = meter.create_counter("predictions"), meter.create_histogram("latency")
    exponential, updown = meter.create_histogram("latency.exp"), meter.create_up_down_counter("in_flight")
    gauge = meter.create_gauge("confidence")
    for i in range(30):
        attrs = {"ml.model.name": ["fraud", "churn"][i % 2]}
        counter.add(1, attrs)
        histogram.record(i * 3.5, attrs)
        exponential.record(0.001 * (i + 1) ** 2, attrs)
        updown.add(1 if i % 3 else -2, attrs)
        gauge.set(-0.0 if i == 29 else i / 30, attrs)
    return encode_metrics(reader.get_metrics_data()).SerializeToString()


def _sdk_logs() -> bytes:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("inference")
    for i in range(10):
        logger.emit(body={"msg": "predicted", "i": i, "tags": ["a", "ü"]} if i % 2 else "plain",
                    severity_number=SeverityNumber.WARN, severity_text="WARN",
                    attributes={"ml.model.name": "fraud", "bytes": b"\x00\xff", "n": i})
    return encode_logs(exporter.get_finished_logs()).SerializeToString()


@pytest.mark.parametrize("signal,build", [(Signal.TRACES, _sdk_spans), (Signal.METRICS, _sdk_metrics),
                                          (Signal.LOGS, _sdk_logs)], ids=["spans", "metrics", "logs"])
def test_what_the_sdk_sends_is_written_as_protobufs_printer_writes_it(signal, build):
    _assert_written_as_protobuf_would(signal, build())


@pytest.mark.parametrize("group_bytes", [64, 1])
def test_what_the_sdk_sends_is_the_same_text_however_the_stream_cuts_it(monkeypatch, group_bytes):
    # Small groups open every resource and scope: json_wire writes single spans between the walker's pieces.
    monkeypatch.setattr(json_stream, "_GROUP_BYTES", group_bytes)
    for signal, wire in ((Signal.TRACES, _sdk_spans()), (Signal.METRICS, _sdk_metrics()), (Signal.LOGS, _sdk_logs())):
        reference = otlp_json.encode_with_json_format(signal.request_type.FromString(wire))
        assert "".join(json_stream.pieces(signal, wire)) == reference


def test_odd_values_are_written_as_protobufs_printer_writes_them():
    request = traces(3, resources=2, scopes=2, payload="é\"\\\n\x00\u2028" * 40)  # longer than a kept attribute
    span = request.resource_spans[0].scope_spans[0].spans[0]
    for key, value in (("nan", float("nan")), ("inf", float("inf")), ("-inf", float("-inf")), ("neg0", -0.0),
                       ("zero", 0.0), ("tiny", 5e-324), ("big", 1e308), ("int.min", -2**63), ("int.0", 0),
                       ("bytes", b"\x00\xff/+"), ("empty", ""), ("", "an empty key"), ("ü→", "ключ"),
                       ("list", [1, "a", True, 2.5]), ("map", {"k": -1, "n": {"deep": [b"x"]}})):
        set_any_value(span.attributes.add(key=key).value, value)
    span.attributes.add(key="unset")  # a KeyValue with no value at all
    span.attributes.add(key="list.with.empty").value.array_value.values.add()  # an empty AnyValue in a list
    span.attributes.add(key="bool.false").value.bool_value = False  # a oneof member at its default
    span.dropped_attributes_count, span.flags = 2**32 - 1, 0x301
    span.trace_state = "vendor=x"
    span.events.add(name="e", time_unix_nano=2**64 - 1)
    _assert_written_as_protobuf_would(Signal.TRACES, request.SerializeToString())
    _assert_written_as_protobuf_would(Signal.METRICS, metrics(3, points=2).SerializeToString())
    _assert_written_as_protobuf_would(Signal.LOGS, logs(3).SerializeToString())


def _field(number: int, payload: bytes) -> bytes:
    assert number < 16 and len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


SPAN_NAME = _field(5, b"predict")
KEY_VALUE = _field(1, b"k") + _field(2, _field(1, b"v"))  # KeyValue{key: "k", value: {string_value: "v"}}


def _request(span: bytes) -> bytes:
    return _field(1, _field(2, _field(2, span)))  # one span in one scope in one resource


@pytest.mark.parametrize("span", [
    _field(5, b"b") + _field(1, b"\x01" * 16),  # name before trace_id
    SPAN_NAME + SPAN_NAME,  # a singular field twice: protobuf keeps the last
    _field(9, KEY_VALUE) + bytes([0x38, 7]) + _field(9, KEY_VALUE),  # attributes on either side of another field
    _field(9, _field(2, _field(1, b"v")) + _field(1, b"k")),  # a KeyValue's value before its key
    _field(9, _field(1, b"k") + _field(2, _field(1, b"v") + b"\x18\x05")),  # two members of AnyValue's oneof
    SPAN_NAME + b"\xa0\x06\x01",  # an unknown field (100)
    SPAN_NAME + b"\x29" + struct.pack("<d", 1.0),  # a known number (kind) with another wire type
    SPAN_NAME + bytes([0x38, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),  # a 10-byte varint
    SPAN_NAME + bytes([0x30, 0x80, 0x80, 0x80, 0x80, 0x10]),  # kind 2^32: protobuf keeps 32 bits, 0, left out
    SPAN_NAME + bytes([0x30, 0x81, 0x80, 0x80, 0x80, 0x10]),  # kind 2^32 + 1: 1
    bytes([0xAA, 0x80, 0x80, 0x80, 0x00, 1]) + b"x",  # a tag padded to 5 bytes (taken)
    _field(5, b"\x00"),  # a NUL is valid UTF-8 (taken)
])
def test_layouts_protobuf_merges_or_drops_come_out_as_protobuf_reads_them(span):
    wire = _request(span)
    reference = otlp_json.encode_with_json_format(ExportTraceServiceRequest.FromString(wire))
    assert "".join(json_stream.pieces(Signal.TRACES, wire)) == reference


def test_a_layout_json_wire_leaves_to_protobuf_is_not_read_off_the_wire():
    _assert_written_as_protobuf_would(Signal.TRACES, _request(SPAN_NAME + SPAN_NAME), taken=False)
    _assert_written_as_protobuf_would(Signal.TRACES, _request(SPAN_NAME + b"\xa0\x06\x01"), taken=False)


@pytest.mark.parametrize("span", [_field(5, b"\xff"), _field(9, _field(1, b"\xc3") + _field(2, _field(1, b"v")))])
def test_bad_utf8_is_refused_as_protobuf_refuses_it(span):
    with pytest.raises(DecodeError):
        "".join(json_stream.pieces(Signal.TRACES, _request(span)))


def test_values_nested_deeper_than_protobuf_reads_are_refused():
    value = AnyValue(string_value="x")
    for _ in range(60):  # 120 messages deep
        outer = AnyValue()
        outer.array_value.values.add().CopyFrom(value)
        value = outer
    wire = value.SerializeToString()
    span = b"\x4a" + _varint(len(wire) + 3) + b"\x0a\x01k\x12" + _varint(len(wire)) + wire
    request = _request_long(span)
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest.FromString(request)
    with pytest.raises(DecodeError):
        "".join(json_stream.pieces(Signal.TRACES, request))


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _request_long(span: bytes) -> bytes:
    scope = b"\x12" + _varint(len(span)) + span
    resource = b"\x12" + _varint(len(scope)) + scope
    return b"\x0a" + _varint(len(resource)) + resource


def _double_attribute_with_long_key(key_length: int) -> bytes:
    # A key of 128 bytes or more has a two-byte length: its first byte alone must not be read as the length.
    return _attribute(b"\x0a" + _varint(key_length) + b"k" * key_length + b"\x12\x09\x21" + struct.pack("<d", 0.5))


def _attribute(key_value: bytes) -> bytes:
    return b"\x4a" + _varint(len(key_value)) + key_value


@pytest.mark.parametrize("span", [
    bytes([0xAA, 0x80, 0x80, 0x80, 0x80, 0x00, 1]) + b"x",  # a tag padded beyond 5 bytes
    bytes([0x2A, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00]) + b"x",  # a length padded beyond 5 bytes
    # A key whose two-byte length 0x85 0x01 reads as 133 on its first byte alone: the bytes do not parse.
    _attribute(b"\x0a\x85" + b"k" * 133 + b"\x12\x09\x21" + bytes(8)),
], ids=["tag", "length", "key-length"])
def test_padded_or_misread_lengths_are_refused_as_protobuf_refuses_them(span):
    wire = _request_long(span)
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest.FromString(wire)
    with pytest.raises(DecodeError):
        "".join(json_stream.pieces(Signal.TRACES, wire))


def test_a_double_attribute_with_a_long_key_is_written():
    _assert_written_as_protobuf_would(Signal.TRACES, _request_long(_double_attribute_with_long_key(200)))


def test_a_child_tag_padded_beyond_5_bytes_is_not_walked():
    # The walker refuses it (ValueError): the exporters then parse, and protobuf refuses the request.
    wire = bytes([0x8A, 0x80, 0x80, 0x80, 0x80, 0x00, 4]) + _field(2, _field(2, b""))
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest.FromString(wire)
    with pytest.raises(ValueError):
        "".join(json_stream.pieces(Signal.TRACES, wire))


@pytest.mark.parametrize("writer", ["python"], indirect=True)  # the compiled writer keeps no texts
def test_kept_attribute_texts_stay_bounded(writer):
    request = traces(1)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    for i in range(3 * json_wire._CACHE_ENTRIES):
        span.attributes.add(key=f"id.{i}").value.string_value = f"{i:08d}"
        span.attributes.add(key=f"feature.{i}").value.double_value = i / 7
    _assert_written_as_protobuf_would(Signal.TRACES, request.SerializeToString())
    for kept in (json_wire._CACHE, json_wire._KEYS, json_wire._DOUBLE_HEADS):
        assert 0 < len(kept) <= json_wire._CACHE_ENTRIES
