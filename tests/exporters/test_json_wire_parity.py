"""The compiled OTLP/JSON writer (agent/_otlpjson.c) writes what json_wire's Python writer writes, and what
protobuf's printer writes, character for character, on requests shaped as apps send them: the benchmark's
prediction spans (bench/realistic_payload.py), and the OpenTelemetry SDK's own metrics and logs from an
inference service; and both write every double as repr() does, and every scalar type as protobuf's printer."""

from __future__ import annotations

import importlib.util
import json
import math
import random
import struct
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.proto.metrics.v1.metrics_pb2 import HistogramDataPoint
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from agent import otlp_json
from agent.exporters import json_stream, json_wire
from agent.signals import Signal

_PAYLOAD = Path(__file__).resolve().parents[2] / "bench" / "realistic_payload.py"
_spec = importlib.util.spec_from_file_location("realistic_payload", _PAYLOAD)
realistic_payload = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(realistic_payload)

# An SDK resource as an inference service has one: service.*, telemetry.sdk.* (added by the SDK), host.*, process.*.
RESOURCE = Resource.create({"service.name": "fraud-api", "service.version": "1.8.2",
                            "service.instance.id": "fraud-7f9c", "host.name": "ip-10-0-3-17", "host.arch": "amd64",
                            "process.pid": 4211, "process.runtime.name": "cpython",
                            "process.runtime.version": "3.11.7"})
MODELS = [("fraud", "v3"), ("fraud", "v4"), ("churn", "2024-06")]

needs_compiled = pytest.mark.skipif(json_wire._otlpjson is None, reason="agent/_otlpjson.c is not built")


def test_the_compiled_writer_is_built():
    # `make test` builds agent/_otlpjson.c; without a compiler json_wire's Python writer writes instead.
    assert json_wire._otlpjson is not None
    assert json_wire._compiled(json_wire.plan_of(Span))


def _written(signal: Signal, wire: bytes, compiled: bool, monkeypatch) -> tuple[str, str | None]:
    monkeypatch.setattr(json_wire, "COMPILED", compiled)
    return "".join(json_stream.pieces(signal, wire)), json_wire.message_text(signal.request_type, wire)


def _assert_both_write_the_reference(signal: Signal, wire: bytes, monkeypatch) -> None:
    reference = otlp_json.encode_with_json_format(signal.request_type.FromString(wire))
    assert _written(signal, wire, True, monkeypatch) == (reference, reference)
    assert _written(signal, wire, False, monkeypatch) == (reference, reference)


@needs_compiled
@pytest.mark.parametrize("prediction_id", [True, False], ids=["with-id", "prediction-only"])
def test_realistic_prediction_spans(monkeypatch, prediction_id):
    for seed in range(4):
        wire = realistic_payload.make_request(512, seed, prediction_id=prediction_id)
        _assert_both_write_the_reference(Signal.TRACES, wire, monkeypatch)


def _sdk_metrics(collections: int) -> list[bytes]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader], views=[
        View(instrument_name="ml.prediction.confidence", aggregation=ExponentialBucketHistogramAggregation()),
        View(instrument_name="*")])
    meter = provider.get_meter("inference", "0.3.0")
    predictions = meter.create_counter("ml.predictions", unit="{prediction}")
    latency = meter.create_histogram("http.server.request.duration", unit="s")
    confidence = meter.create_histogram("ml.prediction.confidence")
    in_flight = meter.create_up_down_counter("http.server.active_requests")
    drift = meter.create_gauge("ml.feature.mean")
    rng = random.Random(7)
    requests = []
    for _ in range(collections):
        for i in range(200):
            model, version = MODELS[i % 3]
            attrs = {"ml.model.name": model, "ml.model.version": version, "http.route": "/v1/predict"}
            predictions.add(1, {**attrs, "ml.prediction.label": rng.choice(["approve", "review", "deny"])})
            latency.record(rng.lognormvariate(-4, 0.6), {**attrs, "http.response.status_code": 200})
            confidence.record(rng.uniform(0.5, 1.0), attrs)
            in_flight.add(rng.choice([1, -1]), attrs)
            drift.set(rng.gauss(0, 1), {**attrs, "ml.feature": f"f{i % 8}"})
        requests.append(encode_metrics(reader.get_metrics_data()).SerializeToString())
    return requests


@needs_compiled
def test_sdk_metrics_of_an_inference_service(monkeypatch):
    for wire in _sdk_metrics(3):
        _assert_both_write_the_reference(Signal.METRICS, wire, monkeypatch)


def _sdk_logs() -> bytes:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("inference", "0.3.0")
    tracer = TracerProvider(resource=RESOURCE).get_tracer("inference")
    rng = random.Random(11)
    for i in range(300):
        model, version = MODELS[i % 3]
        with tracer.start_as_current_span("predict"):  # the record carries the span's trace and span ids
            if i % 25 == 0:
                logger.emit(body=f"feature store timed out after {rng.uniform(0.1, 2):.3f}s — retrying",
                            severity_number=SeverityNumber.ERROR, severity_text="ERROR",
                            attributes={"exception.type": "TimeoutError", "ml.model.name": model})
            else:
                logger.emit(body={"event": "prediction", "label": rng.choice(["approve", "review", "deny"]),
                                  "confidence": rng.uniform(0.5, 1.0), "features": [rng.gauss(0, 1) for _ in range(4)],
                                  "cached": i % 4 == 0},
                            severity_number=SeverityNumber.INFO, severity_text="INFO",
                            attributes={"ml.model.name": model, "ml.model.version": version,
                                        "ml.prediction.id": f"{i:06d}-{rng.getrandbits(32):08x}",
                                        "code.lineno": 120 + i % 7, "request.digest": rng.randbytes(6)})
    return encode_logs(exporter.get_finished_logs()).SerializeToString()


@needs_compiled
def test_sdk_logs_of_an_inference_service(monkeypatch):
    _assert_both_write_the_reference(Signal.LOGS, _sdk_logs(), monkeypatch)


@needs_compiled
def test_damaged_realistic_requests_are_taken_or_left_alike(monkeypatch):
    # A byte changed anywhere: both writers write protobuf's text or both leave the request to protobuf.
    original = realistic_payload.make_request(24, 3)
    rng = random.Random(5)
    left = 0
    for _ in range(400):
        wire = bytearray(original)
        wire[rng.randrange(len(wire))] ^= rng.randrange(1, 256)
        wire = bytes(wire)
        texts = []
        for compiled in (True, False):
            monkeypatch.setattr(json_wire, "COMPILED", compiled)
            texts.append(json_wire.message_text(Signal.TRACES.request_type, wire))
        assert texts[0] == texts[1]
        if texts[0] is None:
            left += 1
        else:
            assert texts[0] == otlp_json.encode_with_json_format(Signal.TRACES.request_type.FromString(wire))
    assert 0 < left < 400  # some damage is only a changed value, some is a layout protobuf must judge


def _doubles(rng: random.Random, n: int) -> dict[str, list[float]]:
    def of_bits(bits):
        return [v for v in (struct.unpack("<d", struct.pack("<Q", b))[0] for b in bits) if math.isfinite(v)]
    return {
        "bit patterns": of_bits(rng.getrandbits(64) for _ in range(n)),
        "gauss": [rng.gauss(0, 1) for _ in range(n)],
        "decimals": [round(rng.uniform(-1000, 1000), rng.randrange(0, 8)) for _ in range(n)],
        "integers": [float(rng.randrange(-10**17, 10**17)) for _ in range(n)],
        "scaled": [rng.randrange(1, 10**6) * 10.0 ** rng.randrange(-330, 300) for _ in range(n)],
        "powers of two": [2.0 ** e for e in range(-1074, 1024)],
        "subnormals": of_bits(rng.getrandbits(52) for _ in range(n)) + [5e-324, 2.2250738585072014e-308],
        "short significands": of_bits(rng.getrandbits(3) | rng.randrange(1, 2047) << 52 for _ in range(n)),
        "long significands": of_bits((1 << 52) - 1 - rng.getrandbits(3) | rng.randrange(1, 2047) << 52
                                     for _ in range(n)),
        "format edges": [s * x for s in (1, -1) for x in (0.0, 1e16, 1e15, 9999999999999998.0, 1e-4, 1e-5, 0.1, 1 / 3,
                                                            1.7976931348623157e308, 123456789012345678.0)],
    }


@needs_compiled
def test_doubles_are_written_as_repr_writes_them():
    # The compiled writer finds the shortest digits itself (Grisu3, dtoa where that is not sure): on doubles
    # of every range and shape, the text is repr()'s, as the Python writer's.
    table = json_wire._compiled(json_wire.plan_of(HistogramDataPoint))
    tag = HistogramDataPoint.DESCRIPTOR.fields_by_name["explicit_bounds"].number << 3 | 2  # packed doubles
    for shape, values in _doubles(random.Random(2), 20_000).items():
        packed = struct.pack(f"<{len(values)}d", *values)
        wire = bytes([tag]) + _varint(len(packed)) + packed
        text = json_wire._otlpjson.message(table, 0, wire, 0, len(wire))
        assert text == '{"explicitBounds":[' + ",".join(map(repr, values)) + "]}", shape


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


_F = descriptor_pb2.FieldDescriptorProto
_SCALAR_TYPES = {"double": _F.TYPE_DOUBLE, "float": _F.TYPE_FLOAT, "int64": _F.TYPE_INT64, "uint64": _F.TYPE_UINT64,
                 "int32": _F.TYPE_INT32, "fixed64": _F.TYPE_FIXED64, "fixed32": _F.TYPE_FIXED32, "bool": _F.TYPE_BOOL,
                 "uint32": _F.TYPE_UINT32, "sfixed32": _F.TYPE_SFIXED32, "sfixed64": _F.TYPE_SFIXED64,
                 "sint32": _F.TYPE_SINT32, "sint64": _F.TYPE_SINT64, "string": _F.TYPE_STRING, "bytes": _F.TYPE_BYTES}


def _scalars_type():
    """A proto3 message with every scalar type, singular, repeated (packed) and repeated unpacked: OTLP itself
    has no float, sint or sfixed fields, but the writers take them."""
    file = descriptor_pb2.FileDescriptorProto(name="vigil_test_scalars.proto", package="vigil.test", syntax="proto3")
    message = file.message_type.add(name="Scalars")
    for name, kind in _SCALAR_TYPES.items():
        message.field.add(name=f"{name}_value", number=len(message.field) + 1, type=kind, label=_F.LABEL_OPTIONAL)
        message.field.add(name=f"{name}_values", number=len(message.field) + 1, type=kind, label=_F.LABEL_REPEATED)
        if kind not in (_F.TYPE_STRING, _F.TYPE_BYTES):
            unpacked = message.field.add(name=f"{name}_unpacked", number=len(message.field) + 1, type=kind,
                                         label=_F.LABEL_REPEATED)
            unpacked.options.packed = False
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("vigil.test.Scalars"))


def _scalar(rng: random.Random, name: str):
    if name == "double":
        if rng.random() < 0.5:
            return struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        return rng.gauss(0, 1e3)
    if name == "float":
        if rng.random() < 0.5:
            return struct.unpack("<f", struct.pack("<I", rng.getrandbits(32)))[0]
        return struct.unpack("<f", struct.pack("<f", rng.gauss(0, 10)))[0]
    if name in ("int64", "sfixed64", "sint64"):
        return rng.randrange(-2**63, 2**63)
    if name in ("uint64", "fixed64"):
        return rng.randrange(2**64)
    if name in ("int32", "sfixed32", "sint32"):
        return rng.randrange(-2**31, 2**31)
    if name in ("uint32", "fixed32"):
        return rng.randrange(2**32)
    if name == "bool":
        return rng.random() < 0.5
    if name == "string":
        points = [rng.choice([rng.randrange(0x80), rng.randrange(0x80, 0xD800), rng.randrange(0x10000, 0x110000)])
                  for _ in range(rng.randrange(6))]
        return "".join(map(chr, points))
    return rng.randbytes(rng.randrange(7))


@needs_compiled
def test_every_scalar_type_is_written_as_protobufs_printer_writes_it(monkeypatch):
    scalars = _scalars_type()
    rng = random.Random(3)
    for _ in range(300):
        message = scalars()
        for name in _SCALAR_TYPES:
            if rng.random() < 0.7:  # set, sometimes to its default (then left out)
                value = _scalar(rng, name)
                setattr(message, f"{name}_value", value if rng.random() < 0.8 else type(value)())
            getattr(message, f"{name}_values").extend(_scalar(rng, name) for _ in range(rng.randrange(4)))
            if hasattr(message, f"{name}_unpacked"):
                getattr(message, f"{name}_unpacked").extend(_scalar(rng, name) for _ in range(rng.randrange(4)))
        wire = message.SerializeToString()
        reference = json.dumps(json_format.MessageToDict(message), separators=(",", ":"))
        for compiled in (True, False):
            monkeypatch.setattr(json_wire, "COMPILED", compiled)
            assert json_wire.message_text(scalars, wire) == reference


@needs_compiled
@pytest.mark.parametrize("types", [
    [],  # no types
    [[(10, 1, 0, b'"a":', False, True, 1, -1)]],  # a message field of a type not in the table
    [[(10, 1, 1, b'"a":', False, False, -1, -1), (10, 1, 1, b'"a":', False, False, -1, -1)]],  # a tag twice
    [[(10, 2, 1, b'"a":', False, False, -1, -1)]],  # a tag of another field number
    [[(10, 1, 1, b'"a":', False, False, -1, 64)]],  # a oneof past the 64 it tracks
    [[(10, 1, 99, b'"a":', False, False, -1, -1)]],  # no such kind
    [[(10, 1, 1, '"a":', False, False, -1, -1)]],  # a key that is not bytes
])
def test_a_table_the_compiled_writer_cannot_hold_is_refused(types):
    with pytest.raises((ValueError, TypeError)):
        json_wire._otlpjson.table(types)


@needs_compiled
def test_a_plan_the_compiled_writer_cannot_hold_is_written_by_the_python_writer():
    plan = json_wire._Plan()
    plan.fields[10] = (1, json_wire._STRING, '"a":', False, False, None, 64, False)  # field 1, oneof 64
    assert json_wire._compiled(plan) is False
    assert json_wire.messages(plan, b"\x0a\x03\x0a\x01x" * 2, 0, 10) == '{"a":"x"},{"a":"x"}'


@needs_compiled
@pytest.mark.parametrize("type_index,start,end", [(1000, 0, 3), (-1, 0, 3), (0, 2, 1), (0, 0, 4), (0, -1, 3)])
def test_a_range_outside_the_table_or_the_bytes_is_refused(type_index, start, end):
    table = json_wire._compiled(json_wire.plan_of(Span))
    with pytest.raises(ValueError):
        json_wire._otlpjson.message(table, type_index, b"\x2a\x01x", start, end)
