"""Prediction rows written as spans, and read back by the ml processor's own reader as predictions."""

from __future__ import annotations

from opentelemetry.proto.trace.v1 import trace_pb2

from agent.attributes import as_dict
from agent.ml import vocabulary as v
from agent.receivers.payloads import prediction_spans, v2_rows


def _rows():
    request = {"id": "q", "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    response = {"outputs": [{"name": "p", "shape": [2, 2], "datatype": "FP32", "data": [0.25, 0.75, 0.5, 0.5]}]}
    return v2_rows(request, response, model="iris", version="2")


def test_each_row_is_a_server_span_of_one_trace_under_the_service_resource():
    message = prediction_spans(_rows(), start_ns=1_000, end_ns=5_000, service_name="iris-svc",
                               resource={"k8s.namespace.name": "prod"})
    (resource_spans,) = message.resource_spans
    assert as_dict(resource_spans.resource.attributes) == {"service.name": "iris-svc", "k8s.namespace.name": "prod"}
    spans = resource_spans.scope_spans[0].spans
    assert len(spans) == 2 and len({s.trace_id for s in spans}) == 1 and len({s.span_id for s in spans}) == 2
    assert all(s.kind == trace_pb2.Span.SPAN_KIND_SERVER and s.end_time_unix_nano - s.start_time_unix_nano == 4_000
               for s in spans)
    assert as_dict(spans[1].attributes) == {
        v.MODEL_NAME: "iris", v.MODEL_VERSION: "2", v.PREDICTION_ID: "q-1", "ml.feature.x.0": 3,
        "ml.feature.x.1": 4, v.PREDICTION_PROBABILITIES: [0.5, 0.5]}
    assert spans[0].status.code == trace_pb2.Status.STATUS_CODE_UNSET


def test_a_failed_call_marks_every_span_failed_with_its_error_type():
    spans = prediction_spans(_rows(), start_ns=1, end_ns=2, service_name="s",
                             error_type="502").resource_spans[0].scope_spans[0].spans
    assert all(s.status.code == trace_pb2.Status.STATUS_CODE_ERROR and as_dict(s.attributes)[v.ERROR_TYPE] == "502"
               for s in spans)


def test_the_ml_processor_reads_the_spans_as_one_model_version_with_its_features_and_probabilities():
    from agent.ml.sources.otlp import Extractor
    from agent.signals import Batch, Signal

    message = prediction_spans(_rows(), start_ns=10**18, end_ns=10**18 + 2_000_000, service_name="iris-svc")
    for batch in (Batch(Signal.TRACES, message), Batch.from_wire(Signal.TRACES, message.SerializeToString())):
        (found,) = Extractor().extract(batch)  # the parsed-message path and the wire path alike
        assert (found.model, found.version, found.rows, found.service_name) == ("iris", "2", 2, "iris-svc")
        assert found.ids == ["q-0", "q-1"] and found.durations == [0.002, 0.002]
        assert found.probabilities == [[0.25, 0.75], [0.5, 0.5]]
        assert {"ml.feature.x.0", "ml.feature.x.1"} <= set(found.columns)
