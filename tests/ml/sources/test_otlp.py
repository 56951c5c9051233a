"""What the extractor reads from spans and log records besides features: ids, latency, errors,
class probabilities, labels and GenAI calls (real OTLP messages, built as an SDK exporter would)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from scipy import stats as scipy_stats

from agent.attributes import set_any_value
from agent.ml.sources.otlp import Extractor
from agent.ml.vocabulary import PREDICTION_CONFIDENCE as CONFIDENCE, PREDICTION_LABEL as LABEL
from agent.signals import Batch, Signal

START = 1_700_000_000_000_000_000


def spans(*items: tuple[dict[str, Any], dict[str, Any]], service: str = "svc") -> Batch:
    """A traces batch: one span per (attributes, options); options: duration_ms, error, exception."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    set_any_value(rs.resource.attributes.add(key="service.name").value, service)
    scope = rs.scope_spans.add()
    for attributes, options in items:
        span = scope.spans.add(name="predict", start_time_unix_nano=START,
                               end_time_unix_nano=START + int(options.get("duration_ms", 10) * 1e6))
        for key, value in attributes.items():
            set_any_value(span.attributes.add(key=key).value, value)
        if options.get("error"):
            span.status.code = 2
        if "exception" in options:
            event = span.events.add(name="exception")
            set_any_value(event.attributes.add(key="exception.type").value, options["exception"])
    return Batch(Signal.TRACES, request)


def logs(*records: dict[str, Any]) -> Batch:
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    for attributes in records:
        record = scope.log_records.add()
        for key, value in attributes.items():
            set_any_value(record.attributes.add(key=key).value, value)
    return Batch(Signal.LOGS, request)


M = {"ml.model.name": "m", "ml.model.version": "1"}


def test_probabilities_give_confidence_entropy_and_the_predicted_class():
    rng = np.random.default_rng(1)
    probabilities = rng.dirichlet(np.ones(4), 50)
    classes = ["a", "b", "c", "d"]
    items = [({**M, "ml.prediction.probabilities": p.tolist(), "ml.model.classes": classes,
               "ml.feature.x": 1.0}, {}) for p in probabilities]
    items.append(({**M, "ml.prediction.probabilities": [0.2, 0.8], "ml.model.classes": [0, 1],
                   "ml.prediction.label": "given", "ml.prediction.confidence": 0.7}, {}))
    items.append(({**M, "ml.prediction.probabilities": ["x", "y"], "ml.feature.x": 2.0}, {}))  # not numbers
    (found,) = Extractor().extract_all(spans(*items)).predictions
    assert found.rows == 52 and found.probability_rows == list(range(51))
    top, entropy, argmax = found.probability_stats()
    np.testing.assert_allclose(top[:50], probabilities.max(axis=1))
    np.testing.assert_allclose(entropy[:50], scipy_stats.entropy(probabilities, axis=1), rtol=1e-12)
    outputs = found.outputs()
    assert outputs[LABEL].strings[:50].tolist() == [classes[i] for i in probabilities.argmax(axis=1)]
    np.testing.assert_allclose(outputs[CONFIDENCE].numbers[:50], probabilities.max(axis=1))
    # What the prediction said itself wins over what its probabilities imply.
    assert outputs[LABEL].strings[50] == "given" and outputs[CONFIDENCE].numbers[50] == 0.7
    assert outputs[LABEL].is_missing[51] and math.isnan(outputs[CONFIDENCE].numbers[51])


def test_latency_errors_and_ids():
    batch = spans(({**M, "ml.prediction.id": "r1"}, {"duration_ms": 12.5}),
                  ({**M, "ml.prediction.id": 42}, {"duration_ms": 100, "error": True, "exception": "TimeoutError"}),
                  ({**M, "error.type": "model_overloaded"}, {"duration_ms": 3}),
                  ({**M}, {"error": True}))
    (found,) = Extractor().extract_all(batch).predictions
    np.testing.assert_allclose(found.duration_seconds(), [0.0125, 0.1, 0.003, 0.01])
    assert list(zip(found.error_rows, found.error_types)) == [(1, "TimeoutError"), (2, "model_overloaded"),
                                                              (3, "_OTHER")]
    assert list(zip(found.id_rows, found.ids)) == [(0, "r1"), (1, "42")]


def test_log_records_take_latency_and_errors_from_attributes():
    batch = logs({**M, "ml.prediction.duration": 0.25, "ml.prediction.label": "a"},
                 {**M, "error.type": "bad_input", "ml.prediction.label": "b"})
    (found,) = Extractor().extract_all(batch).predictions
    np.testing.assert_allclose(found.duration_seconds(), [0.25, math.nan])
    assert found.error_types == ["bad_input"]


def test_a_label_record_is_a_label_and_a_prediction_with_a_label_is_both():
    batch = logs({"ml.model.name": "m", "ml.prediction.id": "a", "ml.label": "fraud"},
                 {"ml.model.name": "m", "ml.prediction.id": 7, "ml.label": 1},
                 {**M, "ml.prediction.id": "b", "ml.prediction.label": "ok", "ml.label": "ok"},
                 {"ml.model.name": "m", "ml.label": "no id: ignored"},
                 {"ml.model.name": "m", "ml.prediction.id": "c", "ml.label": [1, 2]})
    extracted = Extractor().extract_all(batch)
    (label,) = extracted.labels
    assert (label.model, label.ids, label.values) == ("m", ["a", "7", "b"], ["fraud", 1.0, "ok"])
    (found,) = extracted.predictions
    # Only the record with an output is a prediction: a record with ml.label and nothing of a prediction
    # is not one, whether or not its label could be joined (no id, a list).
    assert found.rows == 1 and found.ids == ["b"]


@pytest.mark.parametrize("names", ["current", "openllmetry"])
def test_genai_spans(names: str):
    if names == "current":
        usage = {"gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 30}
    else:
        usage = {"gen_ai.system": "openai", "gen_ai.usage.prompt_tokens": 120, "gen_ai.usage.completion_tokens": 30}
    call = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024",
            **usage}
    batch = spans((call, {"duration_ms": 800}), ({**call, "error.type": "rate_limited"}, {"error": True}),
                  ({"gen_ai.operation.name": "embeddings"}, {"error": True, "exception": "APIError"}),
                  ({"error.type": "only"}, {}), service="llm-api")
    extracted = Extractor().extract_all(batch)
    assert extracted.predictions == [] and extracted.labels == []
    (calls,) = extracted.genai
    assert calls.service_name == "llm-api" and calls.rows == 3  # error.type alone is no GenAI call
    assert calls.provider == ["openai", "openai", ""] and calls.request_model[:2] == ["gpt-4o"] * 2
    assert calls.input_tokens[:2] == [120.0] * 2 and calls.output_tokens[:2] == [30.0] * 2
    assert math.isnan(calls.input_tokens[2])
    assert calls.error_type == ["", "rate_limited", "APIError"]
    assert calls.duration[0] == pytest.approx(0.8)
