"""A scraped page as OTLP metrics, on its target's resource (blocking; runs in a worker thread).

The page is parsed by prometheus-client's parser (the text format;
OpenMetrics when a target answers in it) and converted as the Collector does:

- counter → cumulative monotonic sum, named as exposed (`requests_total`);
- gauge, untyped, info, stateset → gauge;
- histogram → cumulative explicit-bucket histogram; summary → summary.

A cumulative point's start time is the series' `_created` sample when the
target exposes one (those series are then not passed on as gauges), else the
time the series was first seen; a value that goes down marks a reset and a
new start. Per target and scrape, as Prometheus does: `up` (1, or 0 when the
scrape failed), `scrape_duration_seconds` and `scrape_samples_scraped`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from agent import __version__
from agent.attributes import set_any_value
from agent.metrics_builder import Instrument, MetricSpec

UP = MetricSpec("up", "1", Instrument.GAUGE, "1 when the target was scraped, 0 when the scrape failed")
SCRAPE_DURATION = MetricSpec("scrape_duration_seconds", "s", Instrument.GAUGE, "How long the scrape took")
SCRAPE_SAMPLES = MetricSpec("scrape_samples_scraped", "{sample}", Instrument.GAUGE,
                            "Samples the target exposed in the scrape")


@dataclass
class _Series:
    start_ns: int
    last: float


@dataclass
class Target:
    """One endpoint of one job, and what the start-time bookkeeping remembers of its series."""

    job: str
    instance: str
    url: str
    resource: dict[str, Any]
    interval: float
    timeout: float
    body_size_limit: int
    honor_timestamps: bool
    series: dict[tuple, _Series] = field(default_factory=dict)


def _family_parser(content_type: str):
    if content_type.startswith("application/openmetrics-text"):
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
    else:
        from prometheus_client.parser import text_string_to_metric_families
    return text_string_to_metric_families


_CREATED_BASES = ("counter", "histogram", "summary")


def convert(target: Target, text: str, content_type: str, now_ns: int) -> tuple[ExportMetricsServiceRequest, int]:
    """The page as one request on the target's resource, and how many samples it held.

    Raises ValueError when the page does not parse. Blocking: runs in a worker thread.
    """
    families = list(_family_parser(content_type)(text))
    samples = sum(len(f.samples) for f in families)
    types = {f.name: f.type for f in families}
    # `_created` samples: start times of counters, histograms and summaries, not series of their own.
    created: dict[tuple[str, frozenset], int] = {}
    kept = []
    for family in families:
        base = family.name[: -len("_created")] if family.name.endswith("_created") else None
        if family.type in ("gauge", "unknown") and base is not None and types.get(base) in _CREATED_BASES:
            for s in family.samples:
                created[(base, frozenset(s.labels.items()))] = _seconds_to_ns(s.value)
            continue
        if family.type in _CREATED_BASES:
            for s in family.samples:
                if s.name == family.name + "_created":
                    created[(family.name, frozenset(s.labels.items()))] = _seconds_to_ns(s.value)
        kept.append(family)

    request, scope = _empty_request(target)
    seen: dict[tuple, _Series] = {}

    def time_of(sample: Any) -> int:
        if target.honor_timestamps and sample.timestamp is not None:
            return _seconds_to_ns(float(sample.timestamp))
        return now_ns

    def start_of(key: tuple, count: float, at: int, created_ns: int | None) -> int:
        previous = target.series.get(key)
        if created_ns:
            start = created_ns
        elif previous is None or count < previous.last:  # new, or reset (the process restarted)
            start = at
        else:
            start = previous.start_ns
        seen[key] = _Series(start, count)
        return start

    for family in kept:
        if family.type == "counter":
            metric = None
            for s in family.samples:
                if s.name.endswith("_created"):
                    continue
                if metric is None:
                    metric = _metric(scope, s.name, family)
                    metric.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
                    metric.sum.is_monotonic = True
                labels = frozenset(s.labels.items())
                at = time_of(s)
                value = float(s.value)
                point = metric.sum.data_points.add(time_unix_nano=at, as_double=value)
                point.start_time_unix_nano = start_of((s.name, labels), value, at,
                                                      created.get((family.name, labels)))
                _labels(point, s.labels)
        elif family.type == "histogram":
            _histograms(scope, family, time_of, start_of, created)
        elif family.type == "summary":
            _summaries(scope, family, time_of, start_of, created)
        else:  # gauge, unknown (untyped), info, stateset, gaugehistogram: each series as a gauge
            metrics: dict[str, Any] = {}
            for s in family.samples:
                metric = metrics.get(s.name)
                if metric is None:
                    metric = metrics[s.name] = _metric(scope, s.name, family)
                    metric.gauge.SetInParent()
                point = metric.gauge.data_points.add(time_unix_nano=time_of(s), as_double=float(s.value))
                _labels(point, s.labels)
    target.series = seen  # series gone from the page are forgotten
    return request, samples


def _metric(scope: Any, name: str, family: Any) -> Any:
    return scope.metrics.add(name=name, description=family.documentation or "", unit=family.unit or "")


def _labels(point: Any, labels: dict[str, str], skip: str | None = None) -> None:
    for key, value in labels.items():
        if key != skip:
            point.attributes.add(key=key).value.string_value = value


def _seconds_to_ns(seconds: float) -> int:
    return int(seconds * 1e9) if math.isfinite(seconds) and seconds > 0 else 0


def _whole(value: float) -> int:
    return max(0, round(value)) if math.isfinite(value) else 0


def _group(samples: Iterable[Any], special: str) -> dict[frozenset, list[Any]]:
    groups: dict[frozenset, list[Any]] = {}
    for s in samples:
        key = frozenset((k, v) for k, v in s.labels.items() if k != special)
        groups.setdefault(key, []).append(s)
    return groups


def _histograms(scope: Any, family: Any, time_of, start_of, created) -> None:
    metric = _metric(scope, family.name, family)
    metric.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    for labels, samples in _group(family.samples, "le").items():
        buckets: list[tuple[float, float]] = []
        count = total = None
        at = None
        for s in samples:
            suffix = s.name[len(family.name):]
            if suffix == "_bucket" and "le" in s.labels:
                buckets.append((float(s.labels["le"]), float(s.value)))
            elif suffix == "_count":
                count = float(s.value)
            elif suffix == "_sum":
                total = float(s.value)
            else:
                continue
            at = time_of(s) if at is None else at
        if at is None:
            continue
        buckets.sort()
        if count is None:
            count = buckets[-1][1] if buckets else 0.0
        bounds = [le for le, _ in buckets if math.isfinite(le)]
        cumulative = [c for le, c in buckets if math.isfinite(le)] + [count]
        counts = [_whole(c - p) for c, p in zip(cumulative, [0.0] + cumulative[:-1])]
        point = metric.histogram.data_points.add(time_unix_nano=at, count=_whole(count))
        point.explicit_bounds.extend(bounds)
        point.bucket_counts.extend(counts)
        if total is not None:
            point.sum = total
        point.start_time_unix_nano = start_of((family.name, labels), count, at,
                                              created.get((family.name, labels)))
        _labels(point, dict(labels))


def _summaries(scope: Any, family: Any, time_of, start_of, created) -> None:
    metric = _metric(scope, family.name, family)
    for labels, samples in _group(family.samples, "quantile").items():
        point = metric.summary.data_points.add()
        count, at = 0.0, None
        for s in samples:
            suffix = s.name[len(family.name):]
            if suffix == "" and "quantile" in s.labels:
                point.quantile_values.add(quantile=float(s.labels["quantile"]), value=float(s.value))
            elif suffix == "_count":
                count = float(s.value)
                point.count = _whole(count)
            elif suffix == "_sum":
                point.sum = float(s.value)
            else:
                continue
            at = time_of(s) if at is None else at
        if at is None:
            del metric.summary.data_points[-1]
            continue
        point.time_unix_nano = at
        point.start_time_unix_nano = start_of((family.name, labels), count, at,
                                              created.get((family.name, labels)))
        _labels(point, dict(labels))


def scrape_metrics(target: Target, up: bool, duration: float, samples: int, now_ns: int,
                   request: ExportMetricsServiceRequest | None = None) -> ExportMetricsServiceRequest:
    """`up`, `scrape_duration_seconds` and `scrape_samples_scraped` for the target, added to `request`."""
    if request is None:
        request, scope = _empty_request(target)
    else:
        scope = request.resource_metrics[0].scope_metrics[0]
    for spec, value in ((UP, 1.0 if up else 0.0), (SCRAPE_DURATION, duration), (SCRAPE_SAMPLES, float(samples))):
        metric = scope.metrics.add(name=spec.name, unit=spec.unit, description=spec.description)
        metric.gauge.data_points.add(time_unix_nano=now_ns, as_double=value)
    return request


def _empty_request(target: Target) -> tuple[ExportMetricsServiceRequest, Any]:
    """A request with the target's resource and Vigil's scope, and that scope to add metrics to."""
    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    for key, value in target.resource.items():
        set_any_value(resource_metrics.resource.attributes.add(key=key).value, value)
    scope = resource_metrics.scope_metrics.add()
    scope.scope.name = "vigil.prometheus"
    scope.scope.version = __version__
    return request, scope
