"""What one model version's predictions did: requests, errors, latency and confidence, and canaries.

Per model version, counted on whole batches with numpy:

- since start (cumulative counters): predictions by predicted class, errors
  by error type (both bounded: classes and error types beyond the cap are
  counted as `_OTHER`);
- per interval (delta histograms and gauges): latency and confidence
  histograms, the share of predictions under the low-confidence threshold,
  the mean entropy of the class probabilities, and the predicted-class counts
  the canary comparison uses; with exemplars on, the slowest and the
  lowest-confidence predictions that came with a trace id (`agent.ml.exemplars`).

Canary: when two or more versions of a model made predictions in the same
interval, each version is compared with a baseline version (configured, else
the version first seen) by the Jensen–Shannon distance of their
predicted-class distributions and of their confidence histograms, over that
same interval.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from agent.ml import stats
from agent.ml.columns import RawColumn
from agent.metrics_builder import Exemplar
from agent.ml.exemplars import BucketReservoir, Traces
from agent.ml.histogram import Histogram
from agent.ml.performance import categories
from agent.ml.vocabulary import OTHER_ERROR, PREDICTION_CONFIDENCE as CONFIDENCE, PREDICTION_LABEL as LABEL

if TYPE_CHECKING:
    from agent.ml.predictions import Predictions

OTHER = OTHER_ERROR  # classes beyond max_classes share the catch-all name of error types beyond theirs


@dataclass
class Interval:
    """One model version's predictions in one interval."""

    started_ns: int
    duration: Histogram
    confidence: Histogram
    requests: int = 0
    errors: int = 0
    low_confidence: int = 0
    entropy_sum: float = 0.0
    entropy_count: int = 0
    classes: Counter[str] = field(default_factory=Counter)
    slowest: BucketReservoir | None = None  # exemplars, when on
    lowest_confidence: BucketReservoir | None = None
    failed: dict[str, list[Exemplar]] | None = None  # by error type, the latest failed predictions

    @property
    def empty(self) -> bool:
        return self.requests == 0

    def merged(self, other: Interval | None) -> Interval:
        """This interval and `other` (an earlier one) together, for a view of the recent past."""
        if other is None:
            return self
        duration, confidence = other.duration.copy(), other.confidence.copy()
        duration.merge(self.duration)
        confidence.merge(self.confidence)
        return Interval(other.started_ns, duration, confidence, other.requests + self.requests,
                        other.errors + self.errors, other.low_confidence + self.low_confidence,
                        other.entropy_sum + self.entropy_sum, other.entropy_count + self.entropy_count,
                        other.classes + self.classes, _merged(self.slowest, other.slowest),
                        _merged(self.lowest_confidence, other.lowest_confidence))


def _merged(mine: BucketReservoir | None, theirs: BucketReservoir | None) -> BucketReservoir | None:
    if mine is None or theirs is None:
        return mine or theirs
    out = theirs.copy()
    out.merge(mine)
    return out


class Traffic:
    def __init__(self, duration_bounds: list[float], confidence_bounds: list[float], low_threshold: float,
                 max_classes: int, max_error_types: int, exemplars: int = 0) -> None:
        self._duration_bounds = np.asarray(duration_bounds, dtype=float)
        self._confidence_bounds = np.asarray(confidence_bounds, dtype=float)
        self._low = low_threshold
        self._max_classes = max_classes
        self._max_error_types = max_error_types
        self._exemplars = exemplars  # at most this many per point; 0: none
        self.requests = 0
        self.errors = 0
        self.by_class: Counter[str | None] = Counter()  # None: predictions without a class
        self._classes = 0  # classes counted by name (at most max_classes)
        self.by_error: Counter[str] = Counter()
        self.interval = self._new_interval()
        self.previous: Interval | None = None

    def _new_interval(self) -> Interval:
        interval = Interval(time.time_ns(), Histogram(self._duration_bounds), Histogram(self._confidence_bounds))
        if self._exemplars:
            interval.slowest = BucketReservoir(self._duration_bounds, True, self._exemplars)
            interval.lowest_confidence = BucketReservoir(self._confidence_bounds, False, self._exemplars)
            interval.failed = {}
        return interval

    def add(self, found: Predictions, outputs: dict[str, RawColumn], traces: Traces | None = None) -> None:
        """Count the batch; `traces`: its rows' trace ids, for exemplars (None when none has one)."""
        interval = self.interval
        rows = found.rows
        self.requests += rows
        interval.requests += rows
        durations = found.duration_seconds()
        interval.duration.add(durations)
        if interval.slowest is not None:
            interval.slowest.offer(durations, traces)
        if found.error_types:
            errors = Counter(found.error_types)
            self.errors += len(found.error_types)
            interval.errors += len(found.error_types)
            for name, n in errors.items():
                if name not in self.by_error and len(self.by_error) >= self._max_error_types:
                    name = OTHER
                self.by_error[name] += n
            if traces is not None and interval.failed is not None:
                self._failed(interval.failed, found, traces)
        label = outputs.get(LABEL)
        if label is None:
            self.by_class[None] += rows
        else:
            counts = Counter(categories(label).tolist())
            for name, n in counts.items():
                if name is not None and name not in self.by_class:
                    if self._classes >= self._max_classes:
                        name = OTHER
                    else:
                        self._classes += 1
                self.by_class[name] += n
                if name is not None:
                    interval.classes[name] += n
        confidence = outputs.get(CONFIDENCE)
        if confidence is not None:
            values = confidence.numbers
            interval.confidence.add(values)
            interval.low_confidence += int(np.count_nonzero(values < self._low))
            if interval.lowest_confidence is not None:
                interval.lowest_confidence.offer(values, traces)
        if found.probability_rows:
            entropy = found.probability_stats()[1]
            entropy = entropy[np.isfinite(entropy)]
            interval.entropy_sum += float(entropy.sum())
            interval.entropy_count += int(entropy.size)

    def _failed(self, failed: dict[str, list[Exemplar]], found: Predictions, traces: Traces) -> None:
        """The batch's latest failed predictions with a trace id, by error type (the counter's value: 1)."""
        rows = np.asarray(found.error_rows)
        for i in np.flatnonzero(traces.traced[rows])[-self._exemplars:].tolist():
            name = found.error_types[i] if found.error_types[i] in self.by_error else OTHER
            kept = failed.setdefault(name, [])
            kept.append(traces.exemplar(int(rows[i]), 1.0))
            del kept[:-self._exemplars]

    def take_interval(self) -> Interval:
        """The interval so far; a new one starts."""
        done, self.interval = self.interval, self._new_interval()
        self.previous = done
        return done

    def recent(self) -> Interval:
        """The last full interval and the current one together."""
        return self.interval.merged(self.previous)


@dataclass
class Divergence:
    version: str
    baseline: str
    output: str  # ml.prediction.label or ml.prediction.confidence
    distance: float


def divergences(intervals: dict[str, Interval], baseline: str, min_predictions: int) -> list[Divergence]:
    """Jensen–Shannon distance of each version's predictions from the baseline's, in one interval."""
    base = intervals.get(baseline)
    if base is None or base.requests < min_predictions:
        return []
    out = []
    for version, interval in intervals.items():
        if version == baseline or interval.requests < min_predictions:
            continue
        names = sorted(set(base.classes) | set(interval.classes))
        if names:
            a = np.array([base.classes.get(n, 0) for n in names], dtype=float)
            b = np.array([interval.classes.get(n, 0) for n in names], dtype=float)
            distance = stats.jensen_shannon(a, b)
            if math.isfinite(distance):
                out.append(Divergence(version, baseline, LABEL, distance))
        if base.confidence.count and interval.confidence.count:
            distance = stats.jensen_shannon(base.confidence.counts, interval.confidence.counts)
            if math.isfinite(distance):
                out.append(Divergence(version, baseline, CONFIDENCE, distance))
    return out
