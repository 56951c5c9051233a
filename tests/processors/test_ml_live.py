"""The `ml` processor's second half on the live path: traffic, confidence, canary, performance, labels, GenAI.

The app is the OpenTelemetry SDK, in a thread (`asyncio.to_thread`): one
fraud model served in two versions (v2 on shifted traffic, so its predictions
differ), one span per prediction with the span's start and end set so the
latencies are known, some failing; a GenAI span set (two LLMs, one call
failing); and later, ground-truth labels as log records. Vigil runs
in-process with a reference profile built (with labels) by the offline
engine, and everything is read back from `file` exporters and compared with
what was sent: counts, histograms against numpy, divergence against scipy,
realised metrics against scikit-learn.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode
from scipy.spatial import distance
from sklearn import metrics as skm

from agent.component import ComponentId
from agent.ml import profile as profiles
from agent.ml.columns import RawColumn
from agent.ml.buckets import CONFIDENCE_BOUNDS, DURATION_BOUNDS, GENAI_DURATION_BOUNDS, TOKEN_BOUNDS
from agent.ml.histogram import quantile
from agent.ml.offline.reference import Roles, build_profile
from agent.ml.tables import Table
from tests.conftest import async_wait_for, otlp_receiver_config, read_json_lines, running_vigil
from tests.otlp_json_reading import attributes_of, items
from tests.sink import InMemorySink

MODEL, SERVICE = "fraud", "fraud-api"
CLASSES = ["ok", "fraud"]


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# --- the reference: training data with labels, profiled by the offline engine -----------------------------


def reference_profile(path: Path) -> profiles.Profile:
    rng = np.random.default_rng(1)
    n = 5000
    x = rng.normal(0, 1, n)
    score = sigmoid(2 * x)  # a calibrated model
    truth = np.where(rng.random(n) < score, "fraud", "ok").astype(object)
    predicted = np.where(score >= 0.5, "fraud", "ok").astype(object)
    nothing = np.full(n, None, dtype=object)
    table = Table({"x": RawColumn(x, nothing), "score": RawColumn(score, nothing),
                   "pred": RawColumn(np.full(n, np.nan), predicted), "label": RawColumn(np.full(n, np.nan), truth)},
                  n)
    profile = build_profile(table, model=MODEL, roles=Roles(prediction="pred", score="score", label="label"),
                            window_rows=300)
    assert profile.performance is not None and profile.performance.positive_class == "fraud"
    profiles.save(profile, path)
    return profile


# --- the app --------------------------------------------------------------------------------------------


@dataclass
class Prediction:
    id: str
    version: str
    score: float
    label: str  # predicted
    truth: str
    duration: float  # seconds
    error: str | None  # error.type, or the exception's type for a failed span


def traffic(version: str, n: int, seed: int, shift: float) -> list[Prediction]:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1, n)
    score = sigmoid(2 * x)
    truth = np.where(rng.random(n) < score, "fraud", "ok")
    duration = rng.lognormal(np.log(0.02 if version == "v1" else 0.035), 0.4, n)
    out = []
    for i in range(n):
        error = None
        if i % 50 == 7:
            error = "overloaded" if version == "v1" else "TimeoutError"
        out.append(Prediction(f"{version}-{i}", version, float(score[i]), "fraud" if score[i] >= 0.5 else "ok",
                              str(truth[i]), float(duration[i]), error))
    return out


GENAI = [  # (request model, provider, input tokens, output tokens, seconds, error.type)
    *[("gpt-4o", "openai", 100 + 37 * i, 20 + 11 * i, 0.4 + 0.05 * i, None) for i in range(20)],
    *[("claude-3-5-sonnet", "anthropic", 2000 + i, 300, 1.5, None) for i in range(9)],
    ("claude-3-5-sonnet", "anthropic", 1800, 0, 0.2, "rate_limited"),
]


def run_app(endpoint: str, predictions: list[Prediction]) -> None:
    """Spans as an inference app (and an LLM service) sends them; blocking."""
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=10),
                                                   max_queue_size=10_000, max_export_batch_size=400))
    tracer = provider.get_tracer("fraud-app")
    start = 1_700_000_000_000_000_000
    for k, p in enumerate(predictions):
        attributes = {"ml.model.name": MODEL, "ml.model.version": p.version, "ml.prediction.id": p.id,
                      "ml.feature.x": math.log(p.score / (1 - p.score)) / 2, "ml.prediction.score": p.score,
                      "ml.prediction.label": p.label, "ml.prediction.probabilities": [1 - p.score, p.score],
                      "ml.model.classes": CLASSES}
        if p.error == "overloaded":
            attributes["error.type"] = "overloaded"
        span = tracer.start_span("predict", attributes=attributes, start_time=start + k * 10**9)
        if p.error == "TimeoutError":
            span.record_exception(TimeoutError("model timed out"))
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=start + k * 10**9 + round(p.duration * 1e9))
    llm = TracerProvider(resource=Resource.create({"service.name": "assistant"}))
    llm.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=10)))
    tracer = llm.get_tracer("openllmetry-like")
    for k, (model, system, tokens_in, tokens_out, seconds, error) in enumerate(GENAI):
        attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                      "gen_ai.response.model": model, "gen_ai.usage.input_tokens": tokens_in,
                      "gen_ai.usage.output_tokens": tokens_out,
                      # OpenLLMetry's older name for the provider, on one of the two
                      ("gen_ai.provider.name" if system == "openai" else "gen_ai.system"): system}
        if error:
            attributes["error.type"] = error
        span = tracer.start_span(f"chat {model}", attributes=attributes, start_time=start + k * 10**9)
        if error:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=start + k * 10**9 + round(seconds * 1e9))
    for p in (provider, llm):
        assert p.force_flush(30_000)
        p.shutdown()


def send_labels(endpoint: str, labels: list[tuple[str, Any]]) -> None:
    """Ground truth as log records, as a labelling job would send it; blocking."""
    provider = LoggerProvider(resource=Resource.create({"service.name": "labeller"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(
        OTLPLogExporter(endpoint=endpoint, insecure=True, timeout=10), max_queue_size=10_000,
        max_export_batch_size=500))
    logger = provider.get_logger("labels")
    for id_, label in labels:
        logger.emit(body="label", attributes={"ml.model.name": MODEL, "ml.prediction.id": id_, "ml.label": label})
    assert provider.force_flush(30_000)
    provider.shutdown()


# --- Vigil ------------------------------------------------------------------------------------------------


def vigil_config(tmp: Path, ml: dict[str, Any]) -> dict[str, Any]:
    return {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "processors": {"ml": ml},
        "exporters": {"file/traces": {"path": str(tmp / "traces.json")}, "file/logs": {"path": str(tmp / "logs.json")},
                      "file/metrics": {"path": str(tmp / "metrics.json")}},
        "service": {"state_dir": str(tmp / "state"), "pipelines": {
            "traces": {"receivers": ["otlp"], "processors": ["ml"], "exporters": ["file/traces"]},
            "logs": {"receivers": ["otlp"], "processors": ["ml"], "exporters": ["file/logs"]},
            "metrics": {"receivers": ["ml"], "exporters": ["file/metrics"]}}},
    }


def ml_config(profile: Path, **more: Any) -> dict[str, Any]:
    return {"reference": {"profiles": [str(profile)]},
            "window": {"size": 500, "min_size": 100, "max_age": "1h"},
            "interval": "1h",  # traffic metrics once, at shutdown: one interval holds everything
            "labels": {"ttl": "1h", "wait": "300ms", "save_interval": "100ms",
                       "window": {"size": 300, "min_size": 50, "max_age": "1h"}},
            **more}


# --- reading back -------------------------------------------------------------------------------------------


@dataclass
class Metrics:
    """Every point of every metric in a metrics file: name → [(resource, attributes, point, metric)]."""

    points: dict[str, list[tuple[dict, dict, dict, dict]]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def read(cls, path: Path) -> Metrics:
        out = cls()
        for resource, _, metric in items(read_json_lines(path), "metrics"):
            kind = next(k for k in ("gauge", "sum", "histogram") if k in metric)
            for point in metric[kind]["dataPoints"]:
                out.points[metric["name"]].append((resource, attributes_of(point.get("attributes")), point, metric))
        return out

    def where(self, name: str, **attrs: Any) -> list[tuple[dict, dict]]:
        """(attributes, point) of `name` whose attributes include `attrs` (dots spelled as __)."""
        want = {k.replace("__", "."): v for k, v in attrs.items()}
        return [(a, p) for _, a, p, _ in self.points.get(name, []) if all(a.get(k) == v for k, v in want.items())]

    def value(self, name: str, **attrs: Any) -> float:
        (point,) = [p for _, p in self.where(name, **attrs)]
        return float(point["asDouble"]) if "asDouble" in point else int(point["asInt"])


@dataclass
class Scenario:
    metrics: Metrics
    predictions: list[Prediction]
    status: dict[str, Any]
    profile: profiles.Profile
    labelled: dict[str, list[Prediction]]  # version → labelled predictions, in the order labels were sent


UNKNOWN = [f"nobody-{i}" for i in range(5)]


async def _run(tmp: Path) -> Scenario:
    profile = reference_profile(tmp / "fraud.vigilprofile")
    v1, v2 = traffic("v1", 600, seed=2, shift=0.0), traffic("v2", 600, seed=3, shift=0.8)
    predictions = v1 + v2  # v1 first: it is the baseline
    labelled = {"v1": v1, "v2": v2}
    labels = [(p.id, p.truth) for p in v1 + v2] + [(i, "ok") for i in UNKNOWN] + \
        [(p.id, "fraud") for p in v1[:3]]  # three second labels: duplicates
    async with running_vigil(vigil_config(tmp, ml_config(tmp / "fraud.vigilprofile"))) as vigil:
        engine = vigil.service.graph.shared[ComponentId("ml")]
        await asyncio.to_thread(run_app, vigil.grpc_endpoint(), predictions)
        await asyncio.to_thread(send_labels, vigil.grpc_endpoint(), labels)
        # The unknown ids are given up on once they have waited labels.wait.
        assert await async_wait_for(lambda: engine.engine._join.unmatched.get((MODEL, "unknown_id")) == 5, timeout=10)
        assert await async_wait_for(lambda: all(m.get("realized_accuracy") is not None
                                                for m in engine.status()["models"]), timeout=20)
        status = engine.status()
        errors = vigil.counter("vigil_ml_errors")
    assert errors == 0
    return Scenario(Metrics.read(tmp / "metrics.json"), predictions, status, profile, labelled)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Scenario:
    return asyncio.run(_run(tmp_path_factory.mktemp("ml-part2")))


def of(version: str) -> dict[str, str]:
    return {"ml__model__name": MODEL, "ml__model__version": version}


def by_version(s: Scenario, version: str) -> list[Prediction]:
    return [p for p in s.predictions if p.version == version]


# --- requests, errors, latency -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_predictions_are_counted_by_predicted_class(scenario: Scenario, version: str):
    sent = Counter(p.label for p in by_version(scenario, version))
    points = scenario.metrics.where("ml.predictions", **of(version))
    assert {a["ml.prediction.label"]: int(p["asInt"]) for a, p in points} == dict(sent)
    (_, _, _, metric), *_ = scenario.metrics.points["ml.predictions"]
    assert metric["sum"]["isMonotonic"] and metric["sum"]["aggregationTemporality"] == 2  # cumulative
    assert all(a.keys() == {"ml.model.name", "ml.model.version", "ml.prediction.label"} for a, _ in points)


def test_errors_are_counted_by_error_type(scenario: Scenario):
    v1 = scenario.metrics.where("ml.prediction.errors", **of("v1"))
    v2 = scenario.metrics.where("ml.prediction.errors", **of("v2"))
    assert [(a["error.type"], int(p["asInt"])) for a, p in v1] == [("overloaded", 12)]
    assert [(a["error.type"], int(p["asInt"])) for a, p in v2] == [("TimeoutError", 12)]  # the exception event


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_latency_histogram_gives_the_percentiles_within_one_bucket(scenario: Scenario, version: str):
    (attrs, point), = scenario.metrics.where("ml.prediction.duration", **of(version))
    durations = np.array([p.duration for p in by_version(scenario, version)])
    bounds = np.array(point["explicitBounds"], dtype=float)
    counts = np.array([int(c) for c in point["bucketCounts"]])
    assert bounds.tolist() == list(DURATION_BOUNDS) and counts.sum() == int(point["count"]) == 600
    assert float(point["sum"]) == pytest.approx(durations.sum(), rel=1e-6)
    assert float(point["min"]) == pytest.approx(durations.min(), abs=1e-9)
    for q in (0.5, 0.95, 0.99):
        true = float(np.percentile(durations, q * 100))
        estimate = quantile(bounds, counts, q, float(point["min"]), float(point["max"]))
        i = int(np.searchsorted(bounds, true, side="left"))
        width = (bounds[i] if i < bounds.size else float(point["max"])) - (bounds[i - 1] if i else 0.0)
        assert abs(estimate - true) <= width, (q, true, estimate)
    assert scenario.metrics.points["ml.prediction.duration"][0][3]["histogram"]["aggregationTemporality"] == 1


# --- confidence ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_confidence_histogram_mean_low_share_and_entropy(scenario: Scenario, version: str):
    scores = np.array([p.score for p in by_version(scenario, version)])
    confidence = np.maximum(scores, 1 - scores)
    (_, point), = scenario.metrics.where("ml.prediction.confidence", **of(version))
    assert point["explicitBounds"] == list(CONFIDENCE_BOUNDS)
    expected = np.bincount(np.searchsorted(CONFIDENCE_BOUNDS, confidence, side="left"),
                           minlength=len(CONFIDENCE_BOUNDS) + 1)
    assert [int(c) for c in point["bucketCounts"]] == expected.tolist()
    assert scenario.metrics.value("ml.prediction.confidence.mean", **of(version)) == pytest.approx(confidence.mean())
    assert scenario.metrics.value("ml.prediction.low_confidence.ratio", **of(version)) == pytest.approx(
        np.mean(confidence < 0.6))
    entropy = -(scores * np.log(scores) + (1 - scores) * np.log(1 - scores))
    assert scenario.metrics.value("ml.prediction.entropy", **of(version)) == pytest.approx(entropy.mean())


# --- canary ---------------------------------------------------------------------------------------------------------


def test_versions_diverge_from_the_baseline_over_the_same_interval(scenario: Scenario):
    points = scenario.metrics.where("ml.model.version.divergence")
    assert {(a["ml.model.version"], a["ml.model.baseline_version"], a["ml.feature.name"]) for a, _ in points} == {
        ("v2", "v1", "ml.prediction.label"), ("v2", "v1", "ml.prediction.confidence")}
    v1, v2 = (Counter(p.label for p in by_version(scenario, v)) for v in ("v1", "v2"))
    expected = distance.jensenshannon([v1["ok"], v1["fraud"]], [v2["ok"], v2["fraud"]])
    label = scenario.metrics.value("ml.model.version.divergence", ml__feature__name="ml.prediction.label")
    assert label == pytest.approx(expected, rel=1e-9) and label > 0.1  # v2 sees shifted traffic
    assert scenario.metrics.value("ml.model.version.divergence", ml__feature__name="ml.prediction.confidence") > 0


# --- performance: estimated per drift window, realised per window of labels --------------------------------------


def test_performance_is_estimated_in_each_window_without_labels(scenario: Scenario):
    # A window closes at window.size (500) whatever the app's batches (400 spans); the last 100 of each
    # version's 600 (min_size 100) close at shutdown: two windows each.
    for version, windows in (("v1", 2), ("v2", 2)):
        accuracy = [float(p["asDouble"]) for _, p in scenario.metrics.where("ml.model.accuracy.estimated",
                                                                              **of(version))]
        assert len(accuracy) == windows and all(0.5 < a < 1 for a in accuracy)
        (attrs, _), *_ = scenario.metrics.where("ml.model.precision.estimated", **of(version))
        assert attrs["ml.class"] == "fraud"
        for name in ("recall", "f1", "roc_auc"):
            assert len(scenario.metrics.where(f"ml.model.{name}.estimated", **of(version))) == windows
        verdicts = scenario.metrics.where("ml.model.performance.degraded", **of(version),
                                          ml__performance__source="estimated")
        assert len(verdicts) == windows and all(int(p["asInt"]) in (0, 1) for _, p in verdicts)
        bounds = {a["ml.performance.metric"] for a, _ in scenario.metrics.where(
            "ml.model.performance.bound", **of(version), ml__performance__source="estimated")}
        assert bounds == {"accuracy", "roc_auc"}
    # The estimate against what the labels later said, over all 600 rows: a window's estimated accuracy is
    # a mean over its rows, so the two windows' weighted by their rows (500 and 100) are the 600 rows'.
    for version in ("v1", "v2"):
        window = by_version(scenario, version)
        realized = skm.accuracy_score([p.truth for p in window], [p.label for p in window])
        first, last = [float(p["asDouble"]) for _, p in scenario.metrics.where("ml.model.accuracy.estimated",
                                                                               **of(version))]
        estimated = (500 * first + 100 * last) / 600
        assert abs(estimated - realized) < 0.05  # 600 rows: the realised accuracy's own spread is about 0.017


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_realized_metrics_match_scikit_learn_on_each_window_of_labels(scenario: Scenario, version: str):
    windows = [scenario.labelled[version][:300], scenario.labelled[version][300:600]]
    accuracy = [float(p["asDouble"]) for _, p in scenario.metrics.where("ml.model.accuracy", **of(version))]
    assert len(accuracy) == 2
    for k, window in enumerate(windows):
        truth, predicted = [p.truth for p in window], [p.label for p in window]
        assert accuracy[k] == pytest.approx(skm.accuracy_score(truth, predicted), abs=1e-12)
        per_class = skm.precision_recall_fscore_support(truth, predicted, labels=CLASSES, zero_division=np.nan)
        for m, metric in enumerate(("precision", "recall", "f1")):
            points = scenario.metrics.where(f"ml.model.{metric}", **of(version))
            by_class = {a["ml.class"]: float(p["asDouble"]) for a, p in points[k * 3:(k + 1) * 3] if "ml.class" in a}
            assert by_class == pytest.approx(dict(zip(CLASSES, per_class[m])), abs=1e-12)
            macro = [float(p["asDouble"]) for a, p in points if a.get("ml.average") == "macro"]
            assert macro[k] == pytest.approx(np.nanmean(per_class[m]), abs=1e-12)
        auc = skm.roc_auc_score([t == "fraud" for t in truth], [p.score for p in window])
        assert [float(p["asDouble"]) for _, p in scenario.metrics.where("ml.model.roc_auc", **of(version))][k] == \
            pytest.approx(auc, abs=1e-12)
    realized = scenario.metrics.where("ml.model.performance.degraded", **of(version),
                                      ml__performance__source="realized")
    assert len(realized) == 2


def test_label_counters(scenario: Scenario):
    m = scenario.metrics
    assert m.value("ml.labels.received", ml__model__name=MODEL) == 1200 + 5 + 3
    assert m.value("ml.labels.matched", **of("v1")) == m.value("ml.labels.matched", **of("v2")) == 600
    assert m.value("ml.labels.unmatched", ml__model__name=MODEL, reason="unknown_id") == 5
    assert m.value("ml.labels.unmatched", ml__model__name=MODEL, reason="duplicate") == 3
    assert m.where("ml.labels.expired") == [] and m.where("ml.labels.pending") == []  # every prediction labelled


# --- GenAI -----------------------------------------------------------------------------------------------------------


def test_genai_token_usage_and_duration_per_model(scenario: Scenario):
    m = scenario.metrics
    resources = {r["service.name"] for r, _, _, _ in m.points["gen_ai.client.token.usage"]}
    assert resources == {"assistant"}
    for model, provider in (("gpt-4o", "openai"), ("claude-3-5-sonnet", "anthropic")):
        calls = [c for c in GENAI if c[0] == model]
        base = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.request.model": model,
                "gen_ai.response.model": model}
        for token_type, column in (("input", 2), ("output", 3)):
            (attrs, point), = m.where("gen_ai.client.token.usage", gen_ai__request__model=model,
                                      gen_ai__token__type=token_type)
            assert attrs == {**base, "gen_ai.token.type": token_type}
            assert point["explicitBounds"] == [float(b) for b in TOKEN_BOUNDS]
            assert int(point["count"]) == len(calls) and float(point["sum"]) == sum(c[column] for c in calls)
        durations = m.where("gen_ai.client.operation.duration", gen_ai__request__model=model)
        assert sum(int(p["count"]) for _, p in durations) == len(calls)
        assert all(p["explicitBounds"] == list(GENAI_DURATION_BOUNDS) for _, p in durations)
        failed = [a for a, _ in durations if "error.type" in a]
        assert failed == ([{**base, "error.type": "rate_limited"}] if provider == "anthropic" else [])
    assert m.where("ml.predictions", ml__model__name="gpt-4o") == []  # an LLM call is not a prediction


# --- status -----------------------------------------------------------------------------------------------------------


def test_status_has_requests_errors_latency_confidence_and_performance(scenario: Scenario):
    models = {m["version"]: m for m in scenario.status["models"]}
    assert set(models) == {"v1", "v2"}
    for version, entry in models.items():
        sent = by_version(scenario, version)
        assert entry["requests"] == 600 and entry["errors"] == 12
        assert entry["error_rate"] == pytest.approx(12 / 600)
        durations = np.array([p.duration for p in sent])
        for q, key in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
            assert entry["latency_seconds"][key] == pytest.approx(np.percentile(durations, q * 100), rel=0.5)
        confidence = np.maximum([p.score for p in sent], [1 - p.score for p in sent])
        assert entry["confidence_mean"] == pytest.approx(confidence.mean())
        assert 0.5 < entry["estimated_accuracy"] < 1 and 0.5 < entry["realized_accuracy"] < 1
        assert entry["pending_labels"] == 0
    assert scenario.status["labels"]["pending"] == 0


# --- labels across a restart --------------------------------------------------------------------------------------


async def test_waiting_predictions_and_labels_survive_a_restart(tmp_path: Path):
    reference_profile(tmp_path / "fraud.vigilprofile")
    predictions = traffic("v1", 200, seed=9, shift=0.0)
    early = traffic("v1", 205, seed=9, shift=0.0)[200:]  # labels that come before their predictions
    config = vigil_config(tmp_path, ml_config(tmp_path / "fraud.vigilprofile",
                                              labels={"ttl": "1h", "wait": "1h", "save_interval": "100ms",
                                                      "window": {"size": 1000, "min_size": 10, "max_age": "1h"}}))
    state = tmp_path / "state" / "ml" / "ml" / "@labels.pb"
    async with running_vigil(config) as vigil:
        await asyncio.to_thread(run_app, vigil.grpc_endpoint(), predictions)
        await asyncio.to_thread(send_labels, vigil.grpc_endpoint(),
                                [(predictions[0].id, predictions[0].truth)] + [(p.id, p.truth) for p in early])
    assert state.exists()
    first = Metrics.read(tmp_path / "metrics.json")
    assert first.value("ml.labels.matched", **of("v1")) == 1
    assert first.value("ml.labels.pending", **of("v1")) == 199
    (tmp_path / "metrics.json").unlink()

    async with running_vigil(config) as vigil:
        # The labels of the rest arrive after the restart, the first one a second time.
        await asyncio.to_thread(send_labels, vigil.grpc_endpoint(), [(p.id, p.truth) for p in predictions])
        await asyncio.to_thread(run_app, vigil.grpc_endpoint(), early)  # the early labels' predictions
    second = Metrics.read(tmp_path / "metrics.json")
    assert second.value("ml.labels.matched", **of("v1")) == 199 + 5
    assert second.value("ml.labels.unmatched", ml__model__name=MODEL, reason="duplicate") == 1
    assert second.where("ml.labels.pending") == [] and second.where("ml.labels.expired") == []
    # Realised accuracy over the 204 joined in the second run (one window at shutdown).
    joined = predictions[1:] + early
    (_, point), = second.where("ml.model.accuracy", **of("v1"))
    assert float(point["asDouble"]) == pytest.approx(skm.accuracy_score([p.truth for p in joined],
                                                                        [p.label for p in joined]))


# --- bounds: what a misbehaving app sends cannot grow the state or the metrics without end ---------------------


async def test_classes_error_types_genai_series_and_label_models_are_bounded(tmp_path: Path):
    from google.protobuf.json_format import MessageToDict

    from agent.component import Settings
    from agent.processors.ml.config import MlProcessorConfig
    from agent.processors.ml.engine import MlEngine
    from agent.signals import Signal
    from agent.telemetry import SelfTelemetry
    from tests.ml.sources.test_otlp import logs, spans

    config = MlProcessorConfig(reference={"warmup": 10_000}, limits={"max_models": 3, "max_classes": 5,
                                                                       "max_error_types": 4},
                               genai={"max_series": 6}, labels={"max_pending": 50, "wait": "1h"})
    sink = InMemorySink()
    telemetry = SelfTelemetry()
    engine = MlEngine(config, Settings(ComponentId("ml"), telemetry, state_dir=tmp_path), {Signal.METRICS: sink})
    await engine.start()
    m = {"ml.model.name": "wild", "ml.model.version": "1"}
    engine.observe(spans(*[({**m, "ml.prediction.label": f"class-{i}", "ml.prediction.id": "x" * 10_000 + str(i),
                             "error.type": f"E{i}", "ml.prediction.probabilities": [float(i % 3) - 1] * 1_000},
                            {}) for i in range(300)]))
    engine.observe(spans(*[({"gen_ai.operation.name": "chat", "gen_ai.request.model": f"llm-{i}",
                             "gen_ai.usage.input_tokens": i}, {}) for i in range(40)]))
    engine.observe(logs(*[{"ml.model.name": f"unknown-{i}", "ml.prediction.id": str(i), "ml.label": "x"}
                          for i in range(200)]))
    await engine.shutdown()
    assert telemetry.total("vigil_ml_errors") == 0
    points, values = defaultdict(list), defaultdict(list)
    for batch in sink.batches:
        for resource in MessageToDict(batch.message)["resourceMetrics"]:
            for scope in resource["scopeMetrics"]:
                for metric in scope["metrics"]:
                    kind = next(k for k in ("gauge", "sum", "histogram") if k in metric)
                    for p in metric[kind]["dataPoints"]:
                        points[metric["name"]].append(attributes_of(p.get("attributes")))
                        values[metric["name"]].append(p.get("asInt", p.get("asDouble")))
    classes = {a.get("ml.prediction.label") for a in points["ml.predictions"]}
    assert len(classes) <= 5 + 1 and "_OTHER" in classes
    assert {a["error.type"] for a in points["ml.prediction.errors"]} == {"E0", "E1", "E2", "E3", "_OTHER"}
    assert len(points["gen_ai.client.operation.duration"]) == 6
    assert telemetry.total("vigil_ml_dropped_genai_calls") == 34
    # Labels for models it has seen no prediction of: max_models such models taken, the rest refused.
    received = {a["ml.model.name"]: int(v) for a, v in zip(points["ml.labels.received"], values["ml.labels.received"])}
    assert received == {"wild": 0, "unknown-0": 1, "unknown-1": 1, "unknown-2": 1}  # wild: predictions wait
    assert telemetry.total("vigil_ml_dropped_labels") == 197
    assert len(engine._join.pending) <= 50 and len(engine._join.waiting) <= 50
    assert all(len(id_) <= 256 for _, id_ in engine._join.pending)
    # A 1,000-class probability vector (negative and zero values) still gives a finite entropy or none.
    (entropy,) = [a for a in points["ml.prediction.entropy"]]
    assert entropy == {"ml.model.name": "wild", "ml.model.version": "1"}


# --- config ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ml, problem", [
    ({"confidence": {"buckets": [0.5, 0.5, 1.0]}},
     "processors.ml.confidence.buckets: bucket bounds must be strictly increasing"),
    ({"latency": {"buckets": []}}, "processors.ml.latency.buckets: needs at least one bucket bound"),
    ({"confidence": {"low_threshold": 0}},
     "processors.ml.confidence.low_threshold: Input should be greater than 0 (got 0)"),
    ({"interval": "0s"}, "processors.ml.interval: must be > 0"),
    ({"labels": {"ttl": "0s"}}, "processors.ml.labels.ttl: must be > 0"),
    ({"labels": {"max_pending": 0}},
     "processors.ml.labels.max_pending: Input should be greater than or equal to 1 (got 0)"),
    ({"performance": {"metrics": ["accuracy", "speed"]}}, "processors.ml.performance.metrics[1]: Input should be "
     "'accuracy', 'precision', 'recall', 'f1', 'roc_auc', 'mae', 'rmse' or 'mape' (got 'speed')"),
])
def test_config_problems_name_their_field(ml: dict[str, Any], problem: str):
    from agent import config as config_module

    raw = vigil_config(Path("/tmp"), ml)
    with pytest.raises(config_module.ConfigError) as caught:
        config_module.from_dict(raw, "<test>")
    assert caught.value.problems == [problem]


async def test_the_reference_is_exactly_the_first_warmup_predictions(tmp_path, caplog):
    # The SDK's batches are 512 spans: warmup 1000 completes inside the second one, whose other 24
    # predictions start the first window instead of joining the reference.
    from tests.admin.traffic import MODEL, ml_vigil_config, prediction_spans
    from tests.otlp_data import send_grpc
    from agent.signals import Signal

    caplog.set_level("INFO", logger="vigil")
    config = ml_vigil_config(tmp_path)
    config["processors"]["ml"]["reference"]["warmup"] = 1000
    config["processors"]["ml"]["window"] = {"size": 1000, "min_size": 100}
    async with running_vigil(config) as vigil:
        engine = vigil.service.graph.shared[ComponentId("ml")]
        for k in range(2):
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, prediction_spans(512, seed=k, start=512 * k))
        assert await async_wait_for(lambda: engine.status()["models"][0]["phase"] == "monitoring")
        model = engine.status()["models"][0]
        assert model["reference"] == {"source": "warmup", "rows": 1000}
        assert model["window"]["rows"] == 24 and model["requests"] == 1024
    assert f"{MODEL} 3: reference learned from 1000 predictions" in caplog.text


async def test_windows_filled_while_the_reference_is_built_are_evaluated_once_it_is_learned(tmp_path):
    # One burst: the batch that completes warmup 200 carries 450 more predictions, two whole windows of
    # 200 and 50 more, which wait while the reference is built; with no batch after it, both windows are
    # still evaluated, each of 200, as soon as the reference is learned (not only when max_age comes), and
    # the 50 stay in the open window.
    from tests.admin.traffic import ml_vigil_config, prediction_spans
    from tests.otlp_data import send_grpc
    from agent.signals import Signal

    config = ml_vigil_config(tmp_path)
    config["processors"]["ml"]["reference"]["warmup"] = 200
    config["processors"]["ml"]["window"] = {"size": 200, "min_size": 100, "max_age": "5m"}
    async with running_vigil(config) as vigil:
        engine = vigil.service.graph.shared[ComponentId("ml")]
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, prediction_spans(650, seed=1))
        assert await async_wait_for(lambda: engine.status()["models"][0]["windows_evaluated"] == 2, timeout=10), \
            engine.status()["models"][0]
        assert engine.status()["models"][0]["window"]["rows"] == 50


async def test_idle_model_versions_give_their_slots_to_new_ones_and_active_ones_keep_theirs(tmp_path):
    # Junk names fill every model slot at once; the real model keeps sending and keeps its slot, the
    # junk goes once idle for expire_after, and a model that came too early is watched after that.
    from tests.admin.traffic import ml_vigil_config, prediction_spans
    from tests.otlp_data import send_grpc
    from agent.signals import Signal

    config = ml_vigil_config(tmp_path)
    config["processors"]["ml"]["limits"] = {"max_models": 3, "max_versions": 2, "expire_after": "1s"}
    async with running_vigil(config) as vigil:
        engine = vigil.service.graph.shared[ComponentId("ml")]

        def watched() -> set[tuple[str, str]]:
            return {(m["model"], m["version"]) for m in engine.status()["models"]}

        async def send(model: str, version: str = "1", n: int = 10) -> None:
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, prediction_spans(n, seed=1, model=model,
                                                                                  version=version))
        await send("real")
        for junk in ("junk-1", "junk-2"):
            await send(junk)
        await send("late")  # no slot: dropped, counted
        assert watched() == {("real", "1"), ("junk-1", "1"), ("junk-2", "1")}
        assert vigil.counter("vigil_ml_dropped_predictions", reason="limit") == 10
        for _ in range(6):  # the real model stays busy while the junk goes idle
            await asyncio.sleep(0.25)
            await send("real")
        await send("late")
        assert ("late", "1") in watched() and ("real", "1") in watched()
        assert len(watched()) == 3
        # Versions likewise: a third deploy is watched once an old version is idle.
        await send("real", "2")
        await send("real", "3")
        assert ("real", "3") not in watched()
        await asyncio.sleep(1.1)
        await send("real", "2")
        await send("real", "3")
        assert {("real", "2"), ("real", "3")} <= watched() and ("real", "1") not in watched()
