"""`Batch`, `merge` and `split` (agent/signals.py) and the OTLP/JSON round trip (agent/otlp_json.py)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from agent import _otlpscan, otlp_json
from agent.signals import Batch, DecodeError, Signal, merge, metric_point_count, split
from tests.otlp_data import item_names, logs, metrics, request, span_id, trace_id, traces
from tests.sink import InMemorySink
from tests.wire import field

SIGNALS = pytest.mark.parametrize("signal", list(Signal), ids=lambda s: s.value)


def _groups(signal: Signal, message) -> list[tuple]:
    """Each item with the resource and scope it sits under: (resource, scope, item name)."""
    batch = Batch(signal, message)
    return [(resource.resource.SerializeToString(), resource.schema_url,
             scope.scope.SerializeToString(), scope.schema_url, name)
            for (resource, scope, _), name in zip(batch._walk_items(), item_names(signal, message))]


def all_point_kinds() -> ExportMetricsServiceRequest:
    message = ExportMetricsServiceRequest()
    metrics_out = message.resource_metrics.add().scope_metrics.add().metrics
    m = metrics_out.add(name="gauge")
    m.gauge.data_points.add(as_int=1)
    m = metrics_out.add(name="sum")
    for _ in range(2):
        m.sum.data_points.add(as_double=1.0)
    m = metrics_out.add(name="histogram")
    for _ in range(3):
        m.histogram.data_points.add(count=1)
    m = metrics_out.add(name="exponential")
    for _ in range(4):
        m.exponential_histogram.data_points.add(count=1)
    m = metrics_out.add(name="summary")
    for _ in range(5):
        m.summary.data_points.add(count=1)
    metrics_out.add(name="no data")
    return message


# --- items -------------------------------------------------------------------------------------


def test_items_count_spans_and_log_records():
    assert Batch(Signal.TRACES, traces(3, resources=2, scopes=2)).items == 12
    assert Batch(Signal.LOGS, wire=logs(2, resources=3).SerializeToString()).items == 6


def test_metric_items_are_data_points_of_every_kind():
    assert Batch(Signal.METRICS, all_point_kinds()).items == 1 + 2 + 3 + 4 + 5
    assert Batch(Signal.METRICS, metrics(3, points=4, scopes=2)).items == 24


def test_from_wire_rejects_bytes_that_are_not_a_request():
    with pytest.raises(DecodeError):
        Batch.from_wire(Signal.TRACES, b"\x0a\xff\xff\xff")


def test_edit_drops_the_wire_bytes_and_copy_is_independent():
    wire = traces(2).SerializeToString()
    original = Batch(Signal.TRACES, wire=wire)
    copy = original.copy()
    copy.edit(same_items=True).resource_spans[0].resource.attributes[0].value.string_value = "edited"
    assert original.wire() == wire  # the original is untouched
    assert copy.wire() != wire
    assert Signal.TRACES.request_type.FromString(copy.wire()).resource_spans[0].resource.attributes[0] \
        .value.string_value == "edited"
    message = copy.edit()  # may add or remove items: the count is recomputed
    del message.resource_spans[0].scope_spans[0].spans[0]
    assert copy.items == 1


# --- merge -------------------------------------------------------------------------------------


@SIGNALS
def test_merge_equals_merge_from_of_the_parts(signal):
    parts = [request(signal, n, start=10 * i) for i, n in enumerate((1, 3, 2))]
    # Some batches hold only wire bytes, one only a message: both kinds merge.
    batches = [Batch(signal, wire=parts[0].SerializeToString()), Batch(signal, parts[1]),
               Batch(signal, wire=parts[2].SerializeToString())]
    merged = merge(batches)
    expected = signal.request_type()
    for part in parts:
        expected.MergeFrom(part)
    assert merged.message == expected
    assert merged.items == 6
    assert merged.wire() == b"".join(p.SerializeToString() for p in parts)
    assert item_names(signal, merged.message) == [f"{signal.value}-{k}" for k in (0, 10, 11, 12, 20, 21)]


def test_merge_of_one_batch_is_that_batch():
    batch = Batch(Signal.LOGS, logs(2))
    assert merge([batch]) is batch


# --- split -------------------------------------------------------------------------------------


def test_split_respects_max_keeps_order_and_grouping():
    message = traces(4, resources=2, scopes=2)  # 16 spans in 4 (resource, scope) groups of 4
    parts = split(Batch(Signal.TRACES, wire=message.SerializeToString()), 5)
    assert [p.items for p in parts] == [5, 5, 5, 1]
    assert [g for p in parts for g in _groups(Signal.TRACES, p.message)] == _groups(Signal.TRACES, message)
    # A resource or scope is written once per part, not once per item.
    first = parts[0].message
    assert len(first.resource_spans) == 1
    assert [len(ss.spans) for ss in first.resource_spans[0].scope_spans] == [4, 1]
    second = parts[1].message
    assert len(second.resource_spans) == 2  # spans 5-7 of resource 0, spans 8-9 of resource 1
    assert [len(ss.spans) for rs in second.resource_spans for ss in rs.scope_spans] == [3, 2]


@SIGNALS
@pytest.mark.parametrize("max_items", [1, 2, 3, 7, 11, 35])
def test_split_invariants(signal, max_items):
    message = {Signal.TRACES: traces(3, resources=3, scopes=2),
               Signal.METRICS: metrics(3, resources=3, scopes=2),
               Signal.LOGS: logs(3, resources=3, scopes=2)}[signal]
    parts = split(Batch(signal, message), max_items)
    assert all(0 < p.items <= max_items for p in parts)
    assert sum(p.items for p in parts) == 18
    # Every item once, in order, under its own resource and scope.
    assert [g for p in parts for g in _groups(signal, p.message)] == _groups(signal, message)
    # The counts the parts carry are the counts of what they hold.
    assert [p.items for p in parts] == [Batch(signal, wire=p.wire()).items for p in parts]
    # As full as allowed: only the last part may be smaller than max_items.
    assert all(p.items == max_items for p in parts[:-1])


def test_split_of_a_small_batch_is_that_batch():
    batch = Batch(Signal.TRACES, traces(3))
    assert split(batch, 3) == [batch]


def test_split_counts_metric_points_and_never_cuts_a_metric():
    message = metrics(5, points=3)  # 15 points in 5 metrics
    parts = split(Batch(Signal.METRICS, message), 7)
    assert [p.items for p in parts] == [6, 6, 3]
    assert [item_names(Signal.METRICS, p.message) for p in parts] == [
        ["metric-0", "metric-1"], ["metric-2", "metric-3"], ["metric-4"]]
    assert merge(parts).message.resource_metrics[0].scope_metrics[0].metrics[0] == \
        message.resource_metrics[0].scope_metrics[0].metrics[0]

    big = metrics(1, points=10, start=0)
    big.resource_metrics[0].scope_metrics[0].metrics.extend(metrics(2, points=1, start=1)
                                                            .resource_metrics[0].scope_metrics[0].metrics)
    parts = split(Batch(Signal.METRICS, big), 4)
    assert [p.items for p in parts] == [10, 2]  # the 10-point metric travels alone


# --- OTLP/JSON ---------------------------------------------------------------------------------


@SIGNALS
def test_json_round_trip(signal):
    message = {Signal.TRACES: traces(2, resources=2), Signal.METRICS: all_point_kinds(),
               Signal.LOGS: logs(2, scopes=2)}[signal]
    text = otlp_json.encode(message)
    assert "\n" not in text
    assert otlp_json.decode(signal, text) == message
    assert otlp_json.decode(signal, text.encode()) == message


def test_json_ids_are_hex_and_enums_integers():
    data = json.loads(otlp_json.encode(traces(1)))
    span = data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == trace_id(0).hex()
    assert span["spanId"] == span_id(0).hex()
    assert span["parentSpanId"] == span_id(1000).hex()
    assert span["kind"] == 2 and span["status"]["code"] == 1
    assert span["startTimeUnixNano"] == "1700000000000000000"  # 64-bit integers as strings
    record = json.loads(otlp_json.encode(logs(1)))["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert record["traceId"] == trace_id(0).hex() and record["severityNumber"] == 9


def test_json_decode_of_a_hand_written_request():
    body = json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "app"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "parentSpanId": "", "name": "predict", "kind": 2,
            "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": 1544712661000000000,
            "someFutureField": {"x": 1},
        }]}],
    }]})
    message = otlp_json.decode(Signal.TRACES, body)
    span = message.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes.fromhex("5b8efff798038103d269b633813fc60c")
    assert span.span_id == bytes.fromhex("eee19b7ec3c1b174")
    assert span.parent_span_id == b""
    assert span.kind == 2 and span.name == "predict"
    assert span.end_time_unix_nano == 1544712661000000000


@pytest.mark.parametrize("body,expected", [
    (b"{not json", "invalid JSON"),
    (b"[]", "JSON object"),
    (json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}),
     "resourceSpans[0].scopeSpans[0].spans[0].traceId"),
    (json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "abcd"}]}]}]}),
     "expected 16 hex digits"),
    (json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}), "invalid OTLP/JSON"),
])
def test_json_decode_errors_say_what_is_wrong(body, expected):
    with pytest.raises(otlp_json.JsonDecodeError) as error:
        otlp_json.decode(Signal.TRACES, body)
    assert expected in str(error.value)


async def test_fan_out_gives_every_consumer_the_batch_even_when_one_fails():
    from agent.errors import RefusedError
    from agent.pipeline import FanOut

    class Broken:
        async def consume(self, batch):
            raise OSError("disk full")

    keeper = InMemorySink()
    batch = Batch(Signal.TRACES, traces(2))
    with pytest.raises(RefusedError, match="disk full"):
        await FanOut([(Broken(), False), (keeper, False)]).consume(batch)
    assert keeper.batches == [batch]


# --- metric points counted on the wire (agent/_otlpscan.c) ------------------------------------------------------

point_kinds = st.sampled_from(["gauge", "sum", "histogram", "exponential_histogram", "summary", None])


@settings(max_examples=300, deadline=None)
@given(shape=st.lists(st.lists(st.lists(st.tuples(point_kinds, st.integers(0, 4)), max_size=5), max_size=3),
                      max_size=3))
def test_metric_points_counted_on_the_wire_equal_the_parsed_count(shape):
    request = ExportMetricsServiceRequest()
    for scopes in shape:
        resource = request.resource_metrics.add()
        for metrics_ in scopes:
            scope = resource.scope_metrics.add()
            for kind, points in metrics_:
                metric = scope.metrics.add(name="m")
                if kind is not None:
                    data = getattr(metric, kind)
                    data.SetInParent()
                    for _ in range(points):
                        data.data_points.add()
    wire = request.SerializeToString()
    assert _otlpscan.metric_point_count(wire) == Batch(Signal.METRICS, message=request).items


def test_a_metric_given_two_kinds_counts_the_last_and_one_kind_given_twice_adds_up():
    # protobuf's serializer never writes these, but a request may hold them; the wire count reads them as
    # protobuf does: a oneof member replaces another, the same member given twice is merged.
    point = field(1, b"")
    gauge_then_sum = field(5, point + point) + field(7, point)
    sum_twice = field(7, point) + field(7, point + point)
    wire = field(1, field(2, field(2, gauge_then_sum) + field(2, sum_twice)))
    parsed = Batch.from_wire(Signal.METRICS, wire)
    assert sum(metric_point_count(m) for m in parsed.message.resource_metrics[0].scope_metrics[0].metrics) == 4
    assert _otlpscan.metric_point_count(wire) == 4
    assert Batch(Signal.METRICS, wire=wire).items == 4


def test_damaged_metric_bytes_are_refused_by_the_wire_count():
    wire = metrics(3, points=2).SerializeToString()
    with pytest.raises(ValueError):
        _otlpscan.metric_point_count(wire[:-3])
