"""Fuzzing every decode path a sender reaches: OTLP protobuf, OTLP/JSON, gzip and deflate bodies.

A decoder may only refuse with its documented error (DecodeError, ValueError);
whatever it accepts must survive everything the agent then does with a batch:
count its items, split and merge it, apply the attribute limits, encode it as
OTLP/JSON for the file exporter.
"""

from __future__ import annotations

import gzip
import json
import zlib

from google.protobuf.message import DecodeError
from hypothesis import given, strategies as st

from agent import otlp_json
from agent.receivers.limits import AttributeLimits, AttributeLimitsConfig
from agent.receivers.intake import TooLarge, decompress
from agent.signals import Batch, Signal, merge, split
from tests.fuzz.conftest import cases, count
from tests.otlp_data import logs, metrics, traces

SIGNALS = st.sampled_from(list(Signal))
LIMITS = AttributeLimits(AttributeLimitsConfig(max_attributes=3, max_attribute_value_length=8, max_array_length=2))


def valid_request(signal: Signal):
    if signal is Signal.TRACES:
        request = traces(3, resources=2, scopes=2)
        span = request.resource_spans[0].scope_spans[0].spans[0]
        span.events.add(name="e", time_unix_nano=1).attributes.add(key="k").value.string_value = "v" * 20
        span.links.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
        return request
    if signal is Signal.METRICS:
        request = metrics(2, points=3)
        h = request.resource_metrics[0].scope_metrics[0].metrics.add(name="h").histogram
        point = h.data_points.add(count=2, sum=1.5, bucket_counts=[1, 1], explicit_bounds=[1.0])
        point.exemplars.add(as_double=1.0).filtered_attributes.add(key="x").value.int_value = 1
        return request
    return logs(3, resources=2)


VALID = {s: valid_request(s).SerializeToString() for s in Signal}


def survive(batch: Batch) -> None:
    """What the pipelines do with an accepted batch must not raise either."""
    items = batch.items
    parts = split(batch, 2)
    assert sum(p.items for p in parts) == items
    assert merge([Batch(batch.signal, wire=p.wire()) for p in parts]).items == items
    LIMITS.apply(batch)
    json.loads(otlp_json.encode(batch.message))


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """`data` with a few bytes flipped, inserted, deleted or cut."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "varint"]))
        at = draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip" and buf:
            buf[at] ^= draw(st.integers(1, 255))
        elif op == "insert":
            buf[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and buf:
            del buf[at:at + draw(st.integers(1, 8))]
        elif op == "truncate":
            del buf[at:]
        elif op == "varint":  # a huge length or tag, where protobuf reads varints
            buf[at:at] = b"\xff" * draw(st.integers(1, 10))
    return bytes(buf)


def decode_protobuf(signal: Signal, body: bytes) -> None:
    try:
        batch = Batch.from_wire(signal, body)
    except DecodeError:
        return
    survive(batch)


@cases(2000)
@given(SIGNALS, st.binary(max_size=512))
def test_protobuf_random_bytes(signal, body):
    count("protobuf: random bytes")
    decode_protobuf(signal, body)


@cases(1500)
@given(st.data())
def test_protobuf_mutated_requests(data):
    count("protobuf: mutated requests")
    signal = data.draw(SIGNALS)
    decode_protobuf(signal, data.draw(mutated(VALID[signal])))


# --- OTLP/JSON ------------------------------------------------------------------------------------

_KEYS = ["resourceSpans", "resourceMetrics", "resourceLogs", "resource", "scopeSpans", "scopeMetrics",
         "scopeLogs", "scope", "spans", "logRecords", "metrics", "attributes", "key", "value", "stringValue",
         "intValue", "doubleValue", "boolValue", "arrayValue", "kvlistValue", "bytesValue", "values",
         "traceId", "spanId", "parentSpanId", "name", "kind", "startTimeUnixNano", "events", "links",
         "gauge", "sum", "histogram", "dataPoints", "asInt", "asDouble", "body", "severityNumber",
         "droppedAttributesCount", "status", "code"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=False)
    | st.text(max_size=40) | st.sampled_from(["0" * 32, "ab" * 8, "zz", "-1", "1e999", "NaN"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=8), children, max_size=5),
    max_leaves=30)


def decode_json(signal: Signal, body: bytes | str) -> None:
    try:
        message = otlp_json.decode(signal, body)
    except ValueError:  # JsonDecodeError: the receiver's 400 with a message
        return
    survive(Batch(signal, message))


@cases(800)
@given(SIGNALS, st.dictionaries(st.sampled_from(_KEYS[:3]), JSON_VALUES, min_size=1, max_size=2))
def test_otlp_json_random_documents(signal, document):
    count("OTLP/JSON: random documents")
    decode_json(signal, json.dumps(document))


@cases(1000)
@given(st.data())
def test_otlp_json_mutated_requests(data):
    count("OTLP/JSON: mutated requests")
    signal = data.draw(SIGNALS)
    text = otlp_json.encode(valid_request(signal)).encode()
    decode_json(signal, data.draw(mutated(text)))


@cases(300)
@given(SIGNALS, st.binary(max_size=256))
def test_otlp_json_random_bytes(signal, body):
    count("OTLP/JSON: random bytes")
    decode_json(signal, body)


# --- gzip and deflate ------------------------------------------------------------------------------------


def inflate(body: bytes, encoding: str, max_size: int) -> bytes | None:
    try:
        return decompress(body, encoding, max_size)
    except (ValueError, TooLarge):
        return None


@cases(700)
@given(st.sampled_from(["gzip", "deflate"]), st.binary(max_size=300), st.integers(0, 4096))
def test_compressed_random_bytes(encoding, body, max_size):
    count("gzip/deflate: random bytes")
    out = inflate(body, encoding, max_size)
    assert out is None or len(out) <= max_size


@cases(700)
@given(st.data())
def test_compressed_mutated_and_bombs(data):
    count("gzip/deflate: mutated bodies and bombs")
    payload = data.draw(st.binary(max_size=200)) * data.draw(st.integers(1, 200))  # repetitive: a small bomb
    members = data.draw(st.integers(1, 3))
    body = b"".join(gzip.compress(payload) for _ in range(members))
    max_size = data.draw(st.integers(0, 100_000))
    if data.draw(st.booleans()):
        body = data.draw(mutated(body))
        out = inflate(body, "gzip", max_size)
        assert out is None or len(out) <= max_size
        return
    out = inflate(body, "gzip", max_size)
    expected = payload * members
    assert out == (expected if len(expected) <= max_size else None)  # never inflated past the limit


@cases(200)
@given(st.binary(max_size=2000), st.integers(0, 5000))
def test_deflate_round_trip(payload, max_size):
    count("deflate: valid bodies")
    out = inflate(zlib.compress(payload), "deflate", max_size)
    assert out == (payload if len(payload) <= max_size else None)
