"""The metrics of the `ml` processor's second half: traffic, confidence, performance, labels, GenAI.

Each metric is declared once here as a `MetricSpec` and written by one
function from what the engine computed; the drift and health metrics are
declared and written by the engine itself (`agent.ml.engine`).

Attributes besides `ml.model.name` and `ml.model.version`:
`ml.prediction.label` (the predicted class, on `ml.predictions`),
`error.type`, `ml.class` (per-class precision/recall/F1), `ml.average`
(`macro`), `ml.performance.source` (`estimated` or `realized`),
`ml.performance.metric`, `ml.model.baseline_version`, `ml.feature.name` (the
output a divergence compares), `reason` (label counters) and the GenAI
conventions' `gen_ai.*`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from agent.metrics_builder import Instrument, MetricSpec, ResourceMetrics
from agent.ml import genai as genai_, performance
from agent.ml.genai import GenAi
from agent.ml.histogram import Histogram
from agent.ml.performance import Classification, PerformanceProfile
from agent.ml.traffic import Divergence, Interval

G, C, H = Instrument.GAUGE, Instrument.COUNTER, Instrument.HISTOGRAM

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

LABELS_RECEIVED = MetricSpec("ml.labels.received", "{label}", C, "Ground-truth labels received")
LABELS_MATCHED = MetricSpec("ml.labels.matched", "{label}", C, "Labels joined to their prediction")
LABELS_EXPIRED = MetricSpec("ml.labels.expired", "{prediction}", C,
                            "Predictions that stopped waiting for their label (reason: ttl, max_pending)")
LABELS_UNMATCHED = MetricSpec("ml.labels.unmatched", "{label}", C,
                              "Labels joined to no prediction (reason: unknown_id, duplicate, late)")
LABELS_PENDING = MetricSpec("ml.labels.pending", "{prediction}", G, "Predictions waiting for their label")

GENAI_TOKENS = MetricSpec("gen_ai.client.token.usage", "{token}", H, "Measures number of input and output tokens used")
GENAI_DURATION = MetricSpec("gen_ai.client.operation.duration", "s", H, "GenAI operation duration")


def _histogram(rm: ResourceMetrics, spec: MetricSpec, h: Histogram, attrs: Mapping[str, Any], start_ns: int) -> None:
    if h.count:
        rm.record_histogram(spec, h.bounds.tolist(), h.counts.tolist(), h.total, attrs, start_ns, h.min, h.max)


def write_traffic(rm: ResourceMetrics, model: Mapping[str, str], by_class: Mapping[str | None, int],
                  by_error: Mapping[str, int], interval: Interval, started_ns: int) -> None:
    """Counters since `started_ns`; histograms and gauges of the interval."""
    for name, n in by_class.items():
        rm.record(PREDICTIONS, int(n), model if name is None else {**model, "ml.prediction.label": name}, started_ns)
    for name, n in by_error.items():
        rm.record(PREDICTION_ERRORS, int(n), {**model, "error.type": name}, started_ns)
    _histogram(rm, PREDICTION_DURATION, interval.duration, model, interval.started_ns)
    confidence = interval.confidence
    if confidence.count:
        _histogram(rm, CONFIDENCE, confidence, model, interval.started_ns)
        rm.record(CONFIDENCE_MEAN, confidence.mean(), model)
        rm.record(LOW_CONFIDENCE, interval.low_confidence / confidence.count, model)
    if interval.entropy_count:
        rm.record(ENTROPY, interval.entropy_sum / interval.entropy_count, model)


def write_divergences(rm: ResourceMetrics, model: str, found: list[Divergence]) -> None:
    for d in found:
        rm.record(DIVERGENCE, d.distance, {"ml.model.name": model, "ml.model.version": d.version,
                                           "ml.model.baseline_version": d.baseline, "ml.feature.name": d.output})


def write_estimate(rm: ResourceMetrics, model: Mapping[str, str], perf: PerformanceProfile,
                   estimate: Mapping[str, float], sigma: float, watched: list[str]) -> bool:
    """The estimated metrics of a window, their bounds and the verdict; returns it."""
    positive = {"ml.class": perf.positive_class} if perf.problem == performance.BINARY else {}
    for name, spec in ESTIMATED.items():
        value = estimate.get(name, math.nan)
        if math.isfinite(value):
            rm.record(spec, value, {**model, **positive} if name in ("precision", "recall", "f1") else model)
    return _verdict(rm, model, perf, estimate, int(estimate.get("rows", 0)), sigma, watched, "estimated")


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
                _gauge(rm, REALIZED[metric], float(getattr(result, metric)[i]),
                       {**model, "ml.class": result.classes[i]})
            _gauge(rm, REALIZED[metric], result.macro(metric), {**model, "ml.average": "macro"})
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
        rm.record(BOUND, bound, {**model, "ml.performance.source": source, "ml.performance.metric": name})
    if bounds:
        rm.record(DEGRADED, int(bad), {**model, "ml.performance.source": source})
    return bad


def _gauge(rm: ResourceMetrics, spec: MetricSpec, value: float, attrs: Mapping[str, Any]) -> None:
    if math.isfinite(value):
        rm.record(spec, value, attrs)


def write_labels(rm: ResourceMetrics, model: str, received: int, matched: Mapping[str, int],
                 expired: Mapping[tuple[str, str], int], unmatched: Mapping[str, int], pending: Mapping[str, int],
                 started_ns: int) -> None:
    """One model's label counters: matched, expired and pending by version; unmatched by reason."""
    rm.record(LABELS_RECEIVED, int(received), {"ml.model.name": model}, started_ns)
    for version, n in matched.items():
        rm.record(LABELS_MATCHED, int(n), {"ml.model.name": model, "ml.model.version": version}, started_ns)
    for (version, reason), n in expired.items():
        rm.record(LABELS_EXPIRED, int(n), {"ml.model.name": model, "ml.model.version": version, "reason": reason},
                  started_ns)
    for reason, n in unmatched.items():
        rm.record(LABELS_UNMATCHED, int(n), {"ml.model.name": model, "reason": reason}, started_ns)
    for version, n in pending.items():
        rm.record(LABELS_PENDING, int(n), {"ml.model.name": model, "ml.model.version": version})


def write_genai(resource: Any, calls: GenAi) -> None:
    """GenAI histograms, one resource per service; `resource(service)` gives its ResourceMetrics."""
    for key, usage in calls.tokens.items():
        rm = resource(key[0])
        attrs = genai_.attributes(key)
        _histogram(rm, GENAI_TOKENS, usage.input, {**attrs, "gen_ai.token.type": "input"}, calls.started_ns)
        _histogram(rm, GENAI_TOKENS, usage.output, {**attrs, "gen_ai.token.type": "output"}, calls.started_ns)
    for (key, error), duration in calls.durations.items():
        attrs = genai_.attributes(key)
        _histogram(resource(key[0]), GENAI_DURATION, duration, {**attrs, "error.type": error} if error else attrs,
                   calls.started_ns)
