"""The wire reader (agent/_otlpscan.c + agent/ml/sources/wire_reader.py) gives exactly what the parsed-message
path gives: predictions, columns, trace and span ids, embeddings, labels, GenAI calls and the dropped-feature
count, on generated batches of spans and log records with every kind of value, repeated keys, mapped names and
odd shapes."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from agent.ml.predictions import Extracted
from agent.ml.sources import wire_reader
from agent.ml.sources.otlp import Extractor
from agent.signals import Batch, Signal
from tests.wire import field

KEYS = ["ml.model.name", "ml.model.version", "ml.prediction.id", "ml.label", "ml.prediction.label",
        "ml.prediction.score", "ml.prediction.confidence", "ml.prediction.value", "ml.prediction.probabilities",
        "ml.model.classes", "ml.prediction.duration", "ml.feature.a", "ml.feature.b", "ml.feature.c",
        "ml.other", "gen_ai.system", "gen_ai.operation.name", "gen_ai.usage.input_tokens", "error.type",
        "http.route", "features.x", "features.a", "model", "pid", "probs", "ml.feature.é",
        # an inference server's own names: vLLM's / SGLang's request span, Triton's model span
        "gen_ai.latency.e2e", "gen_ai.latency.time_to_first_token", "gen_ai.latency.time_in_queue",
        "gen_ai.usage.completion_tokens", "triton.model_name", "triton.model_version", "triton.trace_id",
        "ml.embedding", "emb"]
# Mapped names, some of which collide with the ml.* names also sent (features.a / ml.feature.a, pid / ...).
MAPPING = {"ml.feature.*": "features.*", "ml.model.name": "model", "ml.prediction.id": "pid",
           "ml.prediction.probabilities": "probs", "ml.embedding": "emb"}

texts = st.one_of(st.sampled_from(["fraud", "churn", "", "0", "1", "v3", "a" * 300]), st.text(max_size=8))
scalars = st.one_of(
    st.tuples(st.just("string_value"), texts),
    st.tuples(st.just("bool_value"), st.booleans()),
    st.tuples(st.just("int_value"), st.one_of(st.integers(-3, 3), st.integers(-2**63, 2**63 - 1))),
    st.tuples(st.just("double_value"), st.one_of(st.floats(), st.sampled_from([0.25, 0.75, 1.0, 3.0])))
)
values = st.one_of(
    scalars, scalars, scalars,
    st.tuples(st.just("array_value"), st.lists(scalars, max_size=4)),
    st.tuples(st.just("kvlist_value"), st.just(None)),
    st.tuples(st.just("bytes_value"), st.binary(max_size=3)),
    st.tuples(st.just("empty"), st.none()),
)
# Most items are predictions or labels of one of two models; the rest of their attributes are drawn at random.
usual = st.lists(st.sampled_from([
    ("ml.model.name", ("string_value", "fraud")), ("ml.model.name", ("string_value", "churn")),
    ("ml.model.version", ("string_value", "v1")), ("ml.prediction.id", ("string_value", "p-1")),
    ("ml.prediction.id", ("int_value", 7)), ("ml.label", ("string_value", "yes")), ("ml.label", ("double_value", 1.0)),
    ("ml.feature.a", ("double_value", 0.5)), ("ml.prediction.score", ("double_value", 0.8)),
    ("pid", ("string_value", "p-2")), ("features.a", ("double_value", 0.25)),
    ("probs", ("array_value", [("double_value", 0.3), ("double_value", 0.7)])),
    ("triton.model_name", ("string_value", "scorer")), ("triton.model_version", ("int_value", 1)),
    ("gen_ai.latency.e2e", ("double_value", 1.25)), ("gen_ai.latency.time_to_first_token", ("double_value", 0.25)),
    ("gen_ai.usage.completion_tokens", ("int_value", 5)),
    ("ml.embedding", ("array_value", [("double_value", 0.5), ("double_value", -1.5)])),
    ("ml.embedding", ("array_value", [("int_value", 2), ("double_value", 0.25)])),
    ("ml.embedding", ("array_value", [("double_value", 0.5), ("double_value", 1.0), ("double_value", 2.0)])),
    ("ml.embedding", ("array_value", [("double_value", float("nan")), ("double_value", 1.0)])),
    ("ml.embedding", ("array_value", [("bool_value", True), ("double_value", 1.0)])),
    ("emb", ("array_value", [("double_value", 3.0), ("double_value", 4.0)])),
]), max_size=5)
attributes = st.builds(lambda first, rest: first + rest, usual,
                       st.lists(st.tuples(st.sampled_from(KEYS), values), max_size=10))
ids = st.sampled_from([b"", bytes(range(1, 17)), bytes(16), b"\x00" * 15 + b"\x01", b"short"])
items = st.fixed_dictionaries({
    "attributes": attributes,
    "trace_id": ids,
    "span_id": st.sampled_from([b"", b"abcdefgh", bytes(8), b"toolong-span-id"]),
    "start": st.sampled_from([0, 1_000, 5_000_000_000]),
    "end": st.sampled_from([0, 2_000, 5_250_000_000]),
    "status": st.sampled_from([0, 1, 2]),
    "events": st.lists(st.tuples(st.sampled_from(["exception", "retry"]), st.sampled_from(["ValueError", "", None])),
                       max_size=2),
})
scopes = st.lists(st.tuples(st.sampled_from(["app", "vigil.alerts"]), st.lists(items, max_size=6)), max_size=3)
resources = st.lists(st.tuples(st.sampled_from([None, "svc", 7]), scopes), min_size=1, max_size=3)


def set_value(target: AnyValue, kind: str, value) -> None:
    if kind == "empty":
        return
    if kind == "array_value":
        array = target.array_value
        array.SetInParent()
        for element_kind, element in value:
            set_value(array.values.add(), element_kind, element)
    elif kind == "kvlist_value":
        target.kvlist_value.values.add(key="k").value.string_value = "v"
    else:
        setattr(target, kind, value)


def build(signal: Signal, shape) -> Batch:
    request = ExportTraceServiceRequest() if signal is Signal.TRACES else ExportLogsServiceRequest()
    for service, scope_list in shape:
        resource = (request.resource_spans if signal is Signal.TRACES else request.resource_logs).add()
        if service is not None:
            kv = resource.resource.attributes.add(key="service.name")
            set_value(kv.value, "string_value" if isinstance(service, str) else "int_value", service)
        for scope_name, item_list in scope_list:
            scope = (resource.scope_spans if signal is Signal.TRACES else resource.scope_logs).add()
            scope.scope.name = scope_name
            for item in item_list:
                if signal is Signal.TRACES:
                    out = scope.spans.add(name="predict", start_time_unix_nano=item["start"],
                                          end_time_unix_nano=item["end"], trace_id=item.get("trace_id", b""),
                                          span_id=item.get("span_id", b""))
                    out.status.code = item["status"]
                    for name, exception_type in item["events"]:
                        event = out.events.add(name=name)
                        event.attributes.add(key="exception.message").value.string_value = "boom"
                        if exception_type is not None:
                            event.attributes.add(key="exception.type").value.string_value = exception_type
                else:
                    out = scope.log_records.add(time_unix_nano=item["start"], trace_id=item.get("trace_id", b""),
                                                span_id=item.get("span_id", b""))
                for key, (kind, value) in item["attributes"]:
                    set_value(out.attributes.add(key=key).value, kind, value)
    return Batch(signal, wire=request.SerializeToString())


def same(a, b) -> bool:
    """Equality with NaN equal to NaN, through lists, tuples, dicts, dataclass fields and numpy arrays."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and all(same(x, y) for x, y in zip(a.tolist(), b.tolist()))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def summary(extracted: Extracted) -> dict:
    predictions = [{
        "model": p.model, "version": p.version, "rows": p.rows, "service": p.service_name,
        "feature_count": p.feature_count, "durations": list(p.durations), "id_rows": list(p.id_rows),
        "ids": list(p.ids), "error_rows": list(p.error_rows), "error_types": list(p.error_types),
        "probability_rows": list(p.probability_rows), "probabilities": p.probabilities, "classes": p.classes,
        "features": {name: (c.numbers, c.strings) for name, c in p.features().items()},
        "outputs": {name: (c.numbers, c.strings) for name, c in p.outputs().items()},
        "trace_ids": p.trace_ids.tobytes(),
        "span_ids": p.span_ids.tobytes(), "embeddings": p.embeddings,
    } for p in extracted.predictions]
    labels = [(label.model, label.ids, label.values) for label in extracted.labels]
    genai = [vars(calls) for calls in extracted.genai]
    return {"predictions": predictions, "labels": labels, "genai": genai}


def both(batch: Batch, **options) -> tuple[dict, dict, Extracted | None]:
    by_scanner = Extractor(**options)
    reading = by_scanner.wire_reader.read(batch)
    by_message = Extractor(use_scanner=False, **options)
    expected = by_message.extract_all(Batch(batch.signal, wire=batch.wire()))
    got = reading if reading is not None else expected
    return ({**summary(got), "dropped": by_scanner.dropped_features},
            {**summary(expected), "dropped": by_message.dropped_features}, reading)


def test_the_wire_scanner_is_built():
    # `make test` installs with a C compiler at hand; without one Vigil still runs, on the slower path.
    assert wire_reader.available


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=resources, signal=st.sampled_from([Signal.TRACES, Signal.LOGS]), max_features=st.sampled_from([200, 1]),
       mapped=st.booleans())
def test_the_scanner_reads_what_the_parsed_message_gives(shape, signal, max_features, mapped):
    options = {"max_features": max_features, "attributes": MAPPING if mapped else None}
    got, expected, _ = both(build(signal, shape), **options)
    assert same(got, expected), (got, expected)


def test_typical_prediction_spans_take_the_scanner_path():
    shape = [("svc", [("app", [{"attributes": [("ml.model.name", ("string_value", "fraud")),
                                               ("ml.model.version", ("string_value", "v3")),
                                               ("ml.prediction.id", ("string_value", f"id-{i}")),
                                               ("ml.feature.a", ("double_value", i / 10)),
                                               ("ml.feature.b", ("string_value", "red")),
                                               ("ml.prediction.score", ("double_value", 0.9)),
                                               ("ml.prediction.probabilities",
                                                ("array_value", [("double_value", 0.1), ("double_value", 0.9)])),
                                               ("ml.model.classes",
                                                ("array_value", [("string_value", "no"), ("string_value", "yes")]))],
                                "start": 1_000, "end": 2_000, "status": 0, "events": []}
                               for i in range(50)])])]
    got, expected, reading = both(build(Signal.TRACES, shape))
    assert reading is not None, "a plain batch is read by the scanner, not handed back to protobuf"
    assert same(got, expected)
    (predictions,) = reading.predictions
    assert predictions.rows == 50 and predictions.ids[:2] == ["id-0", "id-1"]
    assert predictions.features()["a"].numbers[:3].tolist() == [0.0, 0.1, 0.2]
    assert predictions.outputs()["ml.prediction.label"].strings[0] == "yes"  # from the top probability


def test_two_keys_mapped_to_one_name_keep_the_last_as_the_message_path_does():
    # No key repeats within the span, but `pid` and `ml.prediction.id` (and `features.a` and `ml.feature.a`)
    # name the same thing under the mapping: the later one counts.
    attributes = [("ml.model.name", ("string_value", "fraud")), ("pid", ("string_value", "a")),
                  ("features.a", ("double_value", 1.0)), ("ml.prediction.id", ("string_value", "b")),
                  ("ml.feature.a", ("double_value", 2.0))]
    shape = [("svc", [("app", [{"attributes": attributes, "start": 1, "end": 2, "status": 0, "events": []}])])]
    got, expected, reading = both(build(Signal.TRACES, shape), attributes=MAPPING, max_features=1)
    assert reading is not None and same(got, expected)
    (predictions,) = reading.predictions
    assert predictions.ids == ["b"] and predictions.features()["a"].numbers.tolist() == [2.0]


def test_a_value_given_twice_is_left_to_protobuf_which_merges_it():
    # protobuf's serializer never writes this, but a request may hold it: the feature's AnyValue sent twice,
    # which protobuf merges (the last double wins). The scanner hands such a request back.
    model = KeyValue(key="ml.model.name", value=AnyValue(string_value="fraud")).SerializeToString()
    feature = field(1, b"ml.feature.a") + field(2, AnyValue(double_value=1.5).SerializeToString()) + \
        field(2, AnyValue(double_value=2.5).SerializeToString())
    batch = Batch(Signal.TRACES, wire=field(1, field(2, field(2, field(9, model) + field(9, feature)))))
    assert Extractor().wire_reader.read(batch) is None
    (predictions,) = Extractor().extract_all(batch).predictions
    assert predictions.features()["a"].numbers.tolist() == [2.5]


def test_ids_and_embeddings_come_per_row_as_sent():
    def item(i: int, embedding) -> dict:
        return {"attributes": [("ml.model.name", ("string_value", "search")), ("ml.embedding", embedding)],
                "start": 1_000, "end": 2_000, "status": 0, "events": [],
                "trace_id": bytes([i + 1]) * 16 if i != 2 else b"", "span_id": bytes([i + 1]) * 8}
    floats = ("array_value", [("double_value", 0.5), ("double_value", -1.5)])
    shape = [("svc", [("app", [item(0, floats), item(1, ("array_value", [("int_value", 2), ("double_value", 3.0)])),
                               item(2, ("array_value", [("double_value", 1.0)])),  # another width
                               item(3, ("array_value", [("bool_value", True), ("double_value", 1.0)])),
                               item(4, ("string_value", "0.5,1.5"))])])]
    for signal in (Signal.TRACES, Signal.LOGS):
        got, expected, reading = both(build(signal, shape))
        assert reading is not None and same(got, expected)
        predictions = reading.predictions[0]
        assert predictions.trace_ids.tobytes() == b"".join([b"\x01" * 16, b"\x02" * 16, bytes(16), b"\x04" * 16,
                                                            b"\x05" * 16])
        assert predictions.span_ids[3].tobytes() == b"\x04" * 8
        assert predictions.embeddings.shape == (5, 2)
        assert predictions.embeddings[:2].tolist() == [[0.5, -1.5], [2.0, 3.0]]
        assert np.isnan(predictions.embeddings[2:]).all()  # another width, a bool, a string: missing
