"""Every metric the `ml` processor derives: each declared once as a `MetricSpec`, and its writers.

A writer records into a `ResourceMetrics` what the engine computed: a drift
window (drift, data health, feature values, the performance estimate), a
window of joined labels (realised performance), and an interval (traffic,
confidence, canary divergence, label counters, GenAI). Attribute names come
from `agent.ml.vocabulary`; docs/DESIGN.md lists which metric carries which.
Points of latency, confidence, feature values, drift and data health carry
the exemplars `agent.ml.exemplars` chose, when there are any.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

from agent.metrics_builder import Exemplar, Instrument, MetricSpec, MetricsBuilder, ResourceMetrics
from agent.ml import genai as genai_, performance
from agent.ml.columns import ColumnView
from agent.ml.drift import DriftResult
from agent.ml.exemplars import ColumnExemplars, WindowExemplars
from agent.ml.genai import GenAi
from agent.ml.health import ColumnHealth
from agent.ml.histogram import Histogram
from agent.ml.performance import Classification, PerformanceProfile
from agent.ml.profile import NUMERIC, Profile
from agent.ml.traffic import Divergence, Interval
from agent.ml.vocabulary import (AVERAGE, BASELINE_VERSION, CLASS, DRIFT_METHOD, ERROR_TYPE, FEATURE_NAME,
                                 GENAI_SERVER_REQUEST_DURATION, GENAI_SERVER_TIME_PER_OUTPUT_TOKEN,
                                 GENAI_SERVER_TIME_TO_FIRST_TOKEN, GENAI_TOKEN_TYPE, HEALTH_KINDS, MODEL_NAME,
                                 MODEL_VERSION, PERFORMANCE_METRIC, PERFORMANCE_SOURCE, PREDICTION_LABEL, REASON,
                                 SERVER_QUEUE_DURATION, SERVICE_NAME)
from agent.ml.vocabulary import MODEL_MULTIVARIATE_DRIFT, MODEL_MULTIVARIATE_DRIFTED

G, C, H = Instrument.GAUGE, Instrument.COUNTER, Instrument.HISTOGRAM

# --- per drift window ---------------------------------------------------------------------------------

FEATURE_DRIFT_SCORE = MetricSpec("ml.feature.drift.score", "1", G,
                                 "Effect size of the column's drift in the window (method in ml.drift.method)")
FEATURE_DRIFT_P_VALUE = MetricSpec("ml.feature.drift.p_value", "1", G,
                                   "p-value of the column's drift test, corrected across the model's columns")
FEATURE_DRIFTED = MetricSpec("ml.feature.drifted", "1", G, "1 when the column drifted in the window")
MODEL_DRIFT_SHARE = MetricSpec("ml.model.drift.share", "1", G, "Share of the model's columns that drifted")
MODEL_DRIFTED = MetricSpec("ml.model.drifted", "1", G, "1 when the share of drifted columns reached drift_share")
DRIFT_WINDOWS = MetricSpec("ml.drift.windows", "{window}", C, "Windows evaluated")
_HEALTH_MEANING = {
    "missing": "Share of predictions without the value",
    "sentinel": "Share of values equal to a sentinel",
    "type_mismatch": "Share of values of another type than the reference's",
    "out_of_range": "Share of values outside the reference's range",
    "unseen_category": "Share of values in categories the reference never had",
}
HEALTH = {kind: MetricSpec(f"ml.feature.{kind}.ratio", "1", G, _HEALTH_MEANING[kind]) for kind in HEALTH_KINDS}
FEATURE_VALUE = MetricSpec("ml.feature.value", "1", H,
                           "Values of a numeric column in the window, on the reference's quantile bins")

# --- performance: estimated per drift window, realised per window of joined labels ---------------------

ESTIMATED = {m: MetricSpec(f"ml.model.{m}.estimated", "1", G, f"{m} estimated without labels from calibrated "
                           "confidence") for m in performance.CLASSIFICATION_METRICS}
REALIZED = {m: MetricSpec(f"ml.model.{m}", "1", G, f"{m} on the predictions whose labels arrived")
            for m in performance.CLASSIFICATION_METRICS}
REALIZED.update({m: MetricSpec(f"ml.model.{m}", "1", G, f"{m.upper()} on the predictions whose labels arrived")
                 for m in performance.REGRESSION_METRICS})
DEGRADED = MetricSpec("ml.model.performance.degraded", "1", G,
                      "1 when a watched performance metric went past its bound")
BOUND = MetricSpec("ml.model.performance.bound", "1", G,
                   "Where a performance metric counts as degraded (a lower bound; an upper one for errors), "
                   "from its sampling variability on the reference")

# --- per interval ---------------------------------------------------------------------------------------

PREDICTIONS = MetricSpec("ml.predictions", "{prediction}", C, "Predictions (requests), by predicted class")
PREDICTION_ERRORS = MetricSpec("ml.prediction.errors", "{prediction}", C, "Failed predictions, by error.type")
PREDICTION_DURATION = MetricSpec("ml.prediction.duration", "s", H, "Prediction latency (the span's duration)")
CONFIDENCE = MetricSpec("ml.prediction.confidence", "1", H, "Top-class probability of the predictions")
CONFIDENCE_MEAN = MetricSpec("ml.prediction.confidence.mean", "1", G, "Mean top-class probability")
LOW_CONFIDENCE = MetricSpec("ml.prediction.low_confidence.ratio", "1", G,
                            "Share of predictions under the low-confidence threshold")
ENTROPY = MetricSpec("ml.prediction.entropy", "1", G,
                     "Mean entropy (natural log) of the predictions' class probabilities")
DIVERGENCE = MetricSpec("ml.model.version.divergence", "1", G,
                        "Jensen–Shannon distance of a version's predictions from the baseline version's, "
                        "over the same interval")

LABELS_RECEIVED = MetricSpec("ml.labels.received", "{label}", C, "Ground-truth labels received")
LABELS_MATCHED = MetricSpec("ml.labels.matched", "{label}", C, "Labels joined to their prediction")
LABELS_EXPIRED = MetricSpec("ml.labels.expired", "{prediction}", C,
                            "Predictions that stopped waiting for their label (reason: ttl, max_pending)")
LABELS_UNMATCHED = MetricSpec("ml.labels.unmatched", "{label}", C,
                              "Labels joined to no prediction (reason: unknown_id, duplicate, late)")
LABELS_PENDING = MetricSpec("ml.labels.pending", "{prediction}", G, "Predictions waiting for their label")

GENAI_TOKENS = MetricSpec("gen_ai.client.token.usage", "{token}", H, "Measures number of input and output tokens used")
GENAI_DURATION = MetricSpec("gen_ai.client.operation.duration", "s", H, "GenAI operation duration")
# From inference servers' request spans (vLLM, SGLang); descriptions as the semantic conventions give them.
GENAI_SERVER_DURATION = MetricSpec(GENAI_SERVER_REQUEST_DURATION, "s", H,
                                   "Generative AI server request duration such as time-to-last byte or last "
                                   "output token")
GENAI_SERVER_TTFT = MetricSpec(GENAI_SERVER_TIME_TO_FIRST_TOKEN, "s", H,
                               "Time to generate first token for successful responses")
GENAI_SERVER_TPOT = MetricSpec(GENAI_SERVER_TIME_PER_OUTPUT_TOKEN, "s", H,
                               "Time per output token generated after the first token for successful responses")
SERVER_QUEUE = MetricSpec(SERVER_QUEUE_DURATION, "s", H, "Time a request waited in the server's queue")


# --- resources and attributes ---------------------------------------------------------------------------


def service_resource(out: MetricsBuilder, service: str, host: str) -> ResourceMetrics:
    """A new resource in `out`: the service the predictions came from, on this host."""
    return out.resource({SERVICE_NAME: service or "unknown_service", "host.name": host})


class Resources:
    """One `ResourceMetrics` per service in `out`, made when first asked for."""

    def __init__(self, out: MetricsBuilder, host: str) -> None:
        self._out = out
        self._host = host
        self._made: dict[str, ResourceMetrics] = {}

    def __call__(self, service: str) -> ResourceMetrics:
        rm = self._made.get(service)
        if rm is None:
            rm = self._made[service] = service_resource(self._out, service, self._host)
        return rm


def model_attributes(model: str, version: str) -> dict[str, str]:
    return {MODEL_NAME: model, MODEL_VERSION: version}


def _histogram(rm: ResourceMetrics, spec: MetricSpec, h: Histogram, attrs: Mapping[str, Any], start_ns: int,
               exemplars: Sequence[Exemplar] = ()) -> None:
    if h.count:
        rm.record_histogram(spec, h.bounds.tolist(), h.counts.tolist(), h.total, attrs, start_ns, h.min, h.max,
                            exemplars)


def _gauge(rm: ResourceMetrics, spec: MetricSpec, value: float, attrs: Mapping[str, Any]) -> None:
    if math.isfinite(value):
        rm.record(spec, value, attrs)


# --- a drift window -------------------------------------------------------------------------------------


def write_drift(rm: ResourceMetrics, model: Mapping[str, str], result: DriftResult, windows_evaluated: int,
                started_ns: int, exemplars: WindowExemplars | None = None) -> None:
    """The model's verdict on the window, and the windows evaluated since `started_ns`."""
    found = exemplars.model if exemplars is not None else ()
    rm.record(MODEL_DRIFT_SHARE, result.share, model, exemplars=found)
    rm.record(MODEL_DRIFTED, int(result.detected), model, exemplars=found)
    rm.record(DRIFT_WINDOWS, windows_evaluated, model, started_ns)


def write_columns(rm: ResourceMetrics, model: Mapping[str, str], profile: Profile, result: DriftResult,
                  views: Mapping[str, ColumnView], health: Mapping[str, ColumnHealth], window_started_ns: int,
                  exemplars: WindowExemplars | None = None) -> None:
    """Per column of the reference: its drift test, its data health, and (numeric) its values on the
    reference's bins."""
    none = ColumnExemplars()
    for name, reference in profile.columns().items():
        view = views[name]
        attrs = {**model, FEATURE_NAME: name}
        col = result.columns[name]
        found = exemplars.columns.get(name, none) if exemplars is not None else none
        if col.tested:
            rm.record(FEATURE_DRIFT_SCORE, col.score, {**attrs, DRIFT_METHOD: col.method}, exemplars=found.drift)
            rm.record(FEATURE_DRIFT_P_VALUE, col.p_adjusted, attrs)
            rm.record(FEATURE_DRIFTED, int(col.drifted), attrs, exemplars=found.drift if col.drifted else ())
        for key, value in health[name].as_dict().items():
            rm.record(HEALTH[key], value, attrs, exemplars=found.health.get(key, ()))
        if reference.kind == NUMERIC and col.current_counts is not None and reference.bin_edges.size:
            values, ordered = view.usable_numbers, view.sorted_numbers
            rm.record_histogram(FEATURE_VALUE, reference.bin_edges, col.current_counts, float(values.sum()),
                                attrs, window_started_ns,
                                float(ordered[0]) if values.size else None,
                                float(ordered[-1]) if values.size else None, found.values)


def write_estimate(rm: ResourceMetrics, model: Mapping[str, str], perf: PerformanceProfile,
                   estimate: Mapping[str, float], sigma: float, watched: list[str]) -> bool:
    """The estimated metrics of a window, their bounds and the verdict; returns it."""
    # Precision, recall and F1: of the positive class (binary), else the macro average, as realised.
    positive = {CLASS: perf.positive_class} if perf.problem == performance.BINARY else {AVERAGE: "macro"}
    for name, spec in ESTIMATED.items():
        value = estimate.get(name, math.nan)
        if math.isfinite(value):
            rm.record(spec, value, {**model, **positive} if name in ("precision", "recall", "f1") else model)
    return _verdict(rm, model, perf, estimate, int(estimate.get("rows", 0)), sigma, watched, "estimated")


# --- a window of joined labels ----------------------------------------------------------------------------


def write_realized(rm: ResourceMetrics, model: Mapping[str, str], result: Classification | Mapping[str, float],
                   perf: PerformanceProfile | None, sigma: float, watched: list[str], max_classes: int) -> bool | None:
    """Realised metrics of a window of joined labels (per class and macro for classification);
    with a labelled reference, their bounds and the verdict."""
    if isinstance(result, Classification):
        rows = result.rows
        _gauge(rm, REALIZED["accuracy"], result.accuracy, model)
        _gauge(rm, REALIZED["roc_auc"], result.roc_auc, model)
        # Per class: the classes with the most labels, at most max_classes of them.
        order = sorted(range(len(result.classes)), key=lambda i: (-int(result.support[i]), result.classes[i]))
        for metric in ("precision", "recall", "f1"):
            for i in order[:max_classes]:
                _gauge(rm, REALIZED[metric], float(getattr(result, metric)[i]), {**model, CLASS: result.classes[i]})
            _gauge(rm, REALIZED[metric], result.macro(metric), {**model, AVERAGE: "macro"})
        summary = result.summary()
    else:
        rows = int(result.get("rows", 0))
        for name in performance.REGRESSION_METRICS:
            _gauge(rm, REALIZED[name], result.get(name, math.nan), model)
        summary = dict(result)
    if perf is None:
        return None
    return _verdict(rm, model, perf, summary, rows, sigma, watched, "realized")


def _verdict(rm: ResourceMetrics, model: Mapping[str, str], perf: PerformanceProfile, metrics: Mapping[str, float],
             rows: int, sigma: float, watched: list[str], source: str) -> bool:
    bad, bounds = performance.degraded(perf, dict(metrics), rows, sigma, watched, realized_=source == "realized")
    for name, bound in bounds.items():
        rm.record(BOUND, bound, {**model, PERFORMANCE_SOURCE: source, PERFORMANCE_METRIC: name})
    if bounds:
        rm.record(DEGRADED, int(bad), {**model, PERFORMANCE_SOURCE: source})
    return bad


# --- an interval ------------------------------------------------------------------------------------------


def write_traffic(rm: ResourceMetrics, model: Mapping[str, str], by_class: Mapping[str | None, int],
                  by_error: Mapping[str, int], interval: Interval, started_ns: int,
                  low_threshold: float = 0.0) -> None:
    """Counters since `started_ns`; histograms and gauges of the interval."""
    for name, n in by_class.items():
        rm.record(PREDICTIONS, int(n), model if name is None else {**model, PREDICTION_LABEL: name}, started_ns)
    failed = interval.failed or {}
    for name, n in by_error.items():
        rm.record(PREDICTION_ERRORS, int(n), {**model, ERROR_TYPE: name}, started_ns, failed.get(name, ()))
    slowest = interval.slowest.take() if interval.slowest is not None else ()
    _histogram(rm, PREDICTION_DURATION, interval.duration, model, interval.started_ns, slowest)
    confidence = interval.confidence
    if confidence.count:
        lowest = interval.lowest_confidence.take() if interval.lowest_confidence is not None else []
        _histogram(rm, CONFIDENCE, confidence, model, interval.started_ns, lowest)
        rm.record(CONFIDENCE_MEAN, confidence.mean(), model)
        rm.record(LOW_CONFIDENCE, interval.low_confidence / confidence.count, model,
                  exemplars=[e for e in lowest if e.value < low_threshold])
    if interval.entropy_count:
        rm.record(ENTROPY, interval.entropy_sum / interval.entropy_count, model)


def write_divergences(rm: ResourceMetrics, model: str, found: list[Divergence]) -> None:
    for d in found:
        rm.record(DIVERGENCE, d.distance, {MODEL_NAME: model, MODEL_VERSION: d.version,
                                           BASELINE_VERSION: d.baseline, FEATURE_NAME: d.output})


def write_label_counters(resource: Callable[[str], ResourceMetrics], service_of: Mapping[str, str],
                         received: Mapping[str, int], matched: Mapping[tuple[str, str], int],
                         expired: Mapping[tuple[str, str, str], int], unmatched: Mapping[tuple[str, str], int],
                         pending: Mapping[tuple[str, str], int], started_ns: int) -> None:
    """The label join's counters, model by model (`service_of`: the service a model's predictions came from)."""
    models = set(received) | {m for m, _ in matched} | {m for m, _, _ in expired} | \
        {m for m, _ in unmatched} | {m for m, _ in pending}
    for model in sorted(models):
        write_labels(
            resource(service_of.get(model, "")), model, received.get(model, 0),
            {v: n for (m, v), n in matched.items() if m == model},
            {(v, r): n for (m, v, r), n in expired.items() if m == model},
            {r: n for (m, r), n in unmatched.items() if m == model},
            {v: n for (m, v), n in pending.items() if m == model}, started_ns)


def write_labels(rm: ResourceMetrics, model: str, received: int, matched: Mapping[str, int],
                 expired: Mapping[tuple[str, str], int], unmatched: Mapping[str, int], pending: Mapping[str, int],
                 started_ns: int) -> None:
    """One model's label counters: matched, expired and pending by version; unmatched by reason."""
    rm.record(LABELS_RECEIVED, int(received), {MODEL_NAME: model}, started_ns)
    for version, n in matched.items():
        rm.record(LABELS_MATCHED, int(n), {MODEL_NAME: model, MODEL_VERSION: version}, started_ns)
    for (version, reason), n in expired.items():
        rm.record(LABELS_EXPIRED, int(n), {MODEL_NAME: model, MODEL_VERSION: version, REASON: reason}, started_ns)
    for reason, n in unmatched.items():
        rm.record(LABELS_UNMATCHED, int(n), {MODEL_NAME: model, REASON: reason}, started_ns)
    for version, n in pending.items():
        rm.record(LABELS_PENDING, int(n), {MODEL_NAME: model, MODEL_VERSION: version})


def write_genai(resource: Callable[[str], ResourceMetrics], calls: GenAi) -> None:
    """GenAI histograms, client and server, one resource per service; `resource(service)` gives its
    ResourceMetrics."""
    for key, usage in calls.tokens.items():
        rm = resource(key[0])
        attrs = genai_.attributes(key)
        _histogram(rm, GENAI_TOKENS, usage.input, {**attrs, GENAI_TOKEN_TYPE: "input"}, calls.started_ns)
        _histogram(rm, GENAI_TOKENS, usage.output, {**attrs, GENAI_TOKEN_TYPE: "output"}, calls.started_ns)
    for (key, error), duration in calls.durations.items():
        attrs = genai_.attributes(key)
        _histogram(resource(key[0]), GENAI_DURATION, duration, {**attrs, ERROR_TYPE: error} if error else attrs,
                   calls.started_ns)
    for (key, error), duration in calls.server_durations.items():
        attrs = genai_.attributes(key)
        _histogram(resource(key[0]), GENAI_SERVER_DURATION, duration,
                   {**attrs, ERROR_TYPE: error} if error else attrs, calls.started_ns)
    for key, times in calls.server_times.items():
        rm, attrs = resource(key[0]), genai_.attributes(key)
        _histogram(rm, GENAI_SERVER_TTFT, times.time_to_first_token, attrs, calls.started_ns)
        _histogram(rm, GENAI_SERVER_TPOT, times.time_per_output_token, attrs, calls.started_ns)
        _histogram(rm, SERVER_QUEUE, times.queue, attrs, calls.started_ns)


# --- multivariate drift (agent/processors/ml/multivariate.py) ----------------------------------------------

MULTIVARIATE_DRIFT = MetricSpec(MODEL_MULTIVARIATE_DRIFT, "1", G,
                                "Drift statistic of the window's features or embeddings taken together, by "
                                "ml.drift.method (mmd: MMD², reconstruction: mean reconstruction error)")
MULTIVARIATE_DRIFTED = MetricSpec(MODEL_MULTIVARIATE_DRIFTED, "1", G,
                                  "1 when the window's features or embeddings drifted taken together")


def write_multivariate(rm: ResourceMetrics, model: Mapping[str, str], found: Mapping[str, Any]) -> None:
    """A tested window's multivariate statistic and verdict (`found`: the status entry)."""
    if not found.get("tested"):
        return
    attrs = {**model, DRIFT_METHOD: found["method"]}
    if found.get("statistic") is not None:
        rm.record(MULTIVARIATE_DRIFT, found["statistic"], attrs)
    rm.record(MULTIVARIATE_DRIFTED, int(found["drifted"]), attrs)
