"""The series that rules read: the latest values, and short histories where a rule needs a window.

Only metrics some rule names are kept, and of those only the series that
match at least one of the rules' matchers. A series is its metric name and
its labels: the resource's attributes with the point's on top. Gauges (and
sums read as gauges) keep their latest point; series read by `rate`,
`increase` or a windowed `quantile` keep the points of the longest window
plus the one before it (the baseline the increase is measured from), at most
`max_samples` of them: past that, a series is thinned, older stretches kept
sparser than recent ones, so a long window (an SLO's 3 days) keeps its length
however often points come. Series not seen for their staleness horizon are
dropped, and at most `max_series` series are kept in all; what does not fit
is counted, not kept.

Memory is bounded in all, not only per series: the samples held count
against `max_stored_samples` (a histogram's as one per bucket), and a series
that goes over it forgets its own oldest samples, down to its latest one (its
window then covers less; a rate stays a rate). Histograms with more than
`max_buckets` buckets, or bounds that are not finite and increasing, are not
kept (`dropped_points`).

Times: `observed` is the engine's clock when a point arrived (windows and
staleness use it, so a skewed app clock cannot hide or age data); rates
divide by the points' own timestamps when they have them.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

from opentelemetry.proto.metrics.v1 import metrics_pb2

from agent.alerts.matchers import matches_all
from agent.alerts.rules import QueryConfig
from agent.attributes import any_value
from agent.signals import Batch

GAUGE, COUNTER, HISTOGRAM = "gauge", "counter", "histogram"
_DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA


@dataclass
class Sample:
    observed: float
    time: float  # the point's own time (seconds), or `observed` when it has none
    value: float = 0.0
    start: float = 0.0  # a cumulative point's start time (seconds), 0 when it has none
    # histograms: explicit bounds and counts (len(bounds) + 1 buckets); a delta histogram's counts are
    # summed since the series began (or its bounds changed), so a window's counts are two samples apart
    bounds: tuple[float, ...] = ()
    counts: tuple[int, ...] = ()
    # numbers: the increase since the series' first sample, a drop counted as a restart from 0, so an
    # increase over a window is two samples apart however many lie between (or were thinned out)
    total: float = 0.0


@dataclass
class Series:
    metric: str
    labels: dict[str, str]
    kind: str
    delta: bool  # the points are increments (delta temporality)
    samples: deque = field(default_factory=deque)
    last_seen: float = 0.0
    running: float = 0.0  # a delta sum's running total; a delta histogram's running count
    point_counts: tuple[int, ...] = ()  # a delta histogram's latest point's own counts
    trimmed: bool = False  # samples were forgotten early: the oldest kept is not where the series began
    # The last exemplar with a trace its points carried: (trace id, span id, observed), ids as hex. An
    # alert on the series links it (a slow prediction behind a latency alert, a failed one behind errors)
    # while it is within what the rule reads (the engine leaves older ones out).
    exemplar: tuple[str, str, float] | None = None

    @property
    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None


def _weight(sample: Sample) -> int:
    """What a sample counts against the store's budget: one per number it holds beyond its time."""
    return len(sample.counts) or 1


def label_text(value: Any) -> str:
    """An attribute value as a label (labels are strings, as in Prometheus and Alertmanager)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    if isinstance(value, (list, dict)):
        import json

        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return "" if value is None else str(value)


def _labels(attributes: Iterable) -> dict[str, str]:
    return {kv.key: label_text(any_value(kv.value)) for kv in attributes}


class SeriesStore:
    def __init__(self, queries: Iterable[QueryConfig], *, max_series: int = 10_000, max_samples: int = 1_000,
                 max_stored_samples: int = 200_000, max_buckets: int = 256, horizon: float = 900.0) -> None:
        self._queries: dict[str, list[QueryConfig]] = {}
        self._history: dict[str, float] = {}  # metric -> the longest window a rule reads it over
        for query in queries:
            self._queries.setdefault(query.metric, []).append(query)
            if query.window:
                self._history[query.metric] = max(self._history.get(query.metric, 0.0), query.window)
        self._series: dict[str, dict[frozenset, Series]] = {}  # by metric name, then labels
        self._count = 0
        self._max_series = max_series
        self._max_samples = max_samples
        self._thin_at = min(max_samples, 512)  # a long history is thinned past this many samples
        self._max_stored = max_stored_samples
        self._max_buckets = max_buckets
        self._horizon = horizon  # how long an unseen series is kept (the longest staleness of any rule)
        self.stored_samples = 0  # what the series hold, by _weight
        self.dropped_series = 0  # points of new series refused by max_series
        # Points not kept: kinds rules cannot read (exponential histograms, summaries), histograms over
        # max_buckets or with bounds that cannot be read.
        self.dropped_points = 0
        self.forgotten_samples = 0  # samples a series forgot early, over max_stored_samples or max_samples

    @property
    def metrics(self) -> frozenset[str]:
        return frozenset(self._queries)

    def __len__(self) -> int:
        return self._count

    # --- taking data in --------------------------------------------------------------

    def observe(self, batch: Batch, now: float) -> None:
        """Take the points of the metrics rules read from `batch` (which is not changed)."""
        wanted = self._queries
        for rm in batch.message.resource_metrics:
            resource: dict[str, str] | None = None
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name not in wanted:
                        continue
                    if resource is None:
                        resource = _labels(rm.resource.attributes)
                    self._metric(metric, resource, now)

    def _metric(self, metric: Any, resource: dict[str, str], now: float) -> None:
        kind = metric.WhichOneof("data")
        if kind == "gauge":
            for point in metric.gauge.data_points:
                self._number(metric.name, GAUGE, False, point, resource, now)
        elif kind == "sum":
            delta = metric.sum.aggregation_temporality == _DELTA
            series_kind = COUNTER if metric.sum.is_monotonic else GAUGE
            for point in metric.sum.data_points:
                self._number(metric.name, series_kind, delta, point, resource, now)
        elif kind == "histogram":
            delta = metric.histogram.aggregation_temporality == _DELTA
            for point in metric.histogram.data_points:
                self._histogram(metric.name, delta, point, resource, now)
        elif kind is not None:
            self.dropped_points += 1

    def _series_for(self, name: str, kind: str, delta: bool, point: Any, resource: dict[str, str],
                    now: float) -> Series | None:
        labels = {**resource, **_labels(point.attributes)}
        key = frozenset(labels.items())
        of_metric = self._series.setdefault(name, {})
        series = of_metric.get(key)
        if series is None:
            if not any(matches_all(q.matchers, labels) for q in self._queries[name]):
                return None
            if self._count >= self._max_series:
                self.dropped_series += 1
                return None
            series = of_metric[key] = Series(name, labels, kind, delta)
            self._count += 1
        series.last_seen = now
        return series

    def _number(self, name: str, kind: str, delta: bool, point: Any, resource: dict[str, str], now: float) -> None:
        if point.flags & 1:  # no recorded value
            return
        value = point.as_double if point.WhichOneof("value") == "as_double" else float(point.as_int)
        if math.isnan(value):
            return
        series = self._series_for(name, kind, delta, point, resource, now)
        if series is None:
            return
        if point.exemplars:
            _take_exemplar(series, point, now)
        if delta:
            series.running += value
            value = series.running
        self._append(series, Sample(now, point.time_unix_nano / 1e9 or now, value, point.start_time_unix_nano / 1e9),
                     name)

    def _histogram(self, name: str, delta: bool, point: Any, resource: dict[str, str], now: float) -> None:
        if point.flags & 1:  # no recorded value
            return
        bounds = point.explicit_bounds
        if (len(point.bucket_counts) != len(bounds) + 1 or len(bounds) >= self._max_buckets
                or not all(math.isfinite(b) for b in bounds)
                or any(a >= b for a, b in zip(bounds, bounds[1:]))):
            self.dropped_points += 1
            return
        series = self._series_for(name, HISTOGRAM, delta, point, resource, now)
        if series is None:
            return
        if point.exemplars:
            _take_exemplar(series, point, now)
        bounds, counts, count = tuple(bounds), tuple(point.bucket_counts), float(point.count)
        if delta:
            series.point_counts = counts
            latest = series.latest
            if latest is not None and latest.bounds == bounds:
                counts = tuple(a + b for a, b in zip(latest.counts, counts))
                count += series.running
            series.running = count
        self._append(series, Sample(now, point.time_unix_nano / 1e9 or now, count, point.start_time_unix_nano / 1e9,
                                    bounds, counts), name)

    def _append(self, series: Series, sample: Sample, name: str) -> None:
        samples = series.samples
        if not sample.counts:
            previous = samples[-1] if samples else None
            sample.total = sample.value if previous is None else previous.total + _step(previous.value, sample.value)
        samples.append(sample)
        self.stored_samples += _weight(sample)
        window = self._history.get(name)
        if window is None:
            while len(samples) > 1:
                self._forget(samples)
            return
        start = sample.observed - window
        # Keep one sample at or before the window's start: the baseline of an increase.
        while len(samples) > 2 and samples[1].observed <= start:
            self._forget(samples)
        if len(samples) > self._thin_at:
            self._thin(series, sample.observed)
        while len(samples) > self._max_samples or (self.stored_samples > self._max_stored and len(samples) > 1):
            self._forget(samples)
            self.forgotten_samples += 1
            series.trimmed = True

    def _thin(self, series: Series, now: float) -> None:
        """Fewer samples over the same span, the older the sparser: a gap may be 1/k of its age, so a
        window's start moves by at most ~1/k of its length and a 3-day window keeps 3 days when points
        come every few seconds. (Counts and totals are running sums: dropping a sample loses nothing.)"""
        samples = list(series.samples)
        k = self._thin_at / 8
        keep = _sparse(samples, now, k)
        while len(keep) > self._thin_at * 3 // 4 and k >= 2:
            k /= 2
            keep = _sparse(samples, now, k)
        kept = [sample for i, sample in enumerate(samples) if i in keep]
        self.stored_samples += sum(map(_weight, kept)) - sum(map(_weight, samples))
        series.samples.clear()  # in place: the caller holds the deque
        series.samples.extend(kept)

    def _forget(self, samples: deque) -> None:
        self.stored_samples -= _weight(samples.popleft())

    # --- reading -----------------------------------------------------------------------

    def select(self, query: QueryConfig, now: float, stale_after: float) -> list[Series]:
        """The live series of `query`'s metric that pass its matchers."""
        matchers = query.matchers
        return [s for s in self._series.get(query.metric, {}).values()
                if now - s.last_seen < stale_after and (not matchers or matches_all(matchers, s.labels))]

    def all_series(self) -> list[Series]:
        return [s for of_metric in self._series.values() for s in of_metric.values()]

    def prune(self, now: float) -> None:
        """Forget series not seen within the horizon."""
        for of_metric in self._series.values():
            for key in [k for k, s in of_metric.items() if now - s.last_seen > self._horizon]:
                self.stored_samples -= sum(map(_weight, of_metric.pop(key).samples))
                self._count -= 1


def _take_exemplar(series: Series, point: Any, now: float) -> None:
    for exemplar in reversed(point.exemplars):
        if len(exemplar.trace_id) == 16 and any(exemplar.trace_id):
            series.exemplar = (exemplar.trace_id.hex(), exemplar.span_id.hex(), now)
            return


def _sparse(samples: list[Sample], now: float, k: float) -> set[int]:
    """The indices to keep: the newest, the oldest (a window's baseline), and between them each sample
    at least 1/k of its age older than the last one kept."""
    keep = {0, len(samples) - 1}
    last = samples[-1].observed
    for i in range(len(samples) - 2, 0, -1):
        observed = samples[i].observed
        if last - observed >= (now - observed) / k:
            keep.add(i)
            last = observed
    return keep


# --- what one series says over a window ---------------------------------------------------------


def _observed(sample: Sample) -> float:
    return sample.observed


def window_edges(series: Series, now: float, window: float) -> tuple[Sample | None, Sample | None, int]:
    """The baseline (the last sample at or before the window's start, if any), the first sample within
    the window (if any), and how many are within."""
    samples = series.samples
    i = bisect.bisect_right(samples, now - window, key=_observed)
    inside = len(samples) - i
    return (samples[i - 1] if i else None), (samples[i] if inside else None), inside


def increase(series: Series, now: float, window: float) -> tuple[float, float] | None:
    """(increase, seconds it spans) of a counter over the window; a drop counts as a restart from 0.

    Measured from the baseline before the window; a series that began within the window (its start
    time says so, or its increments all came within it) is measured from 0 at its start.
    """
    baseline, first, inside = window_edges(series, now, window)
    if first is None:
        return None
    last = series.samples[-1]
    if baseline is not None:
        return last.total - baseline.total, last.time - baseline.time
    began = first.start if first.start and 0 <= first.time - first.start <= window else None
    if series.delta and series.samples[0] is first and not series.trimmed:
        began = first.start or first.time
    if began is not None:
        return last.total - first.total + _step(0.0, first.value), last.time - began
    if inside < 2:
        return None
    return last.total - first.total, last.time - first.time


def _step(a: float, b: float) -> float:
    return b - a if b >= a else b


def histogram_counts(series: Series, now: float, window: float | None) -> tuple[tuple[float, ...], list[int]] | None:
    """The bucket counts of a histogram series: within the window, or its latest point's."""
    latest = series.latest
    if latest is None or not latest.counts:
        return None
    if window is None:
        return latest.bounds, list(series.point_counts if series.delta else latest.counts)
    baseline, first, inside = window_edges(series, now, window)
    if first is None:
        return None
    if series.delta:  # running counts since the series began (or its bounds changed)
        if baseline is None and series.trimmed:
            baseline = first  # what came before the oldest kept sample is not known
        if baseline is None or baseline.bounds != latest.bounds:
            return latest.bounds, list(latest.counts)  # it all came within the window
        return latest.bounds, [max(b - a, 0) for a, b in zip(baseline.counts, latest.counts)]
    start = baseline if baseline is not None else (first if inside > 1 else None)
    if start is None or start.bounds != latest.bounds or start.value > latest.value:
        return latest.bounds, list(latest.counts)  # new series, changed buckets or a reset: all of it
    return latest.bounds, [max(b - a, 0) for a, b in zip(start.counts, latest.counts)]


def quantile(q: float, bounds: tuple[float, ...], counts: list[int]) -> float | None:
    """The q-quantile of explicit-bucket counts, interpolated within its bucket as Prometheus's
    histogram_quantile does: the first bucket starts at 0 (when its bound is positive), and a quantile
    in the overflow bucket is the highest finite bound."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if seen + count >= rank and count > 0:
            if i == len(bounds):  # the (last bound, +inf) bucket
                return bounds[-1] if bounds else None
            upper = bounds[i]
            lower = bounds[i - 1] if i > 0 else (0.0 if upper > 0 else upper)
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return bounds[-1] if bounds else None


def fraction_over(bound: float, bounds: tuple[float, ...], counts: list[int]) -> float | None:
    """The share of explicit-bucket counts above `bound`, interpolated within the bucket it falls in (the
    first bucket starting at 0, as in quantile). Past the highest finite bound, the overflow bucket counts
    as above: its observations may be. A histogram without buckets (a count and a sum) says nothing."""
    total = sum(counts)
    if total <= 0 or not bounds:
        return None
    above = 0.0
    for i, count in enumerate(counts):
        if not count:
            continue
        if i == len(bounds):  # (last bound, +inf)
            above += count
            continue
        upper = bounds[i]
        lower = bounds[i - 1] if i > 0 else min(0.0, upper)
        if bound <= lower:
            above += count
        elif bound < upper:
            above += count * (upper - bound) / (upper - lower)
    return above / total
