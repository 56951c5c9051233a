"""The per-model view of one server: cumulative values in, what each scrape added out.

A counter's delta is its value minus the previous scrape's; a value that went down is a counter reset
(the server restarted) and is itself the delta, as Prometheus's `increase` reads it. On a server's
first good scrape every series is a baseline (what came before Vigil is not counted); a series that
appears on a later scrape counted from zero since the previous one (a model just loaded, a first error
of its kind). A server that exposes its process's start time restarted when that changes, whatever the
counters say. A model or a series missing from a page is forgotten at once, so nothing stale is sent.
A histogram's delta is taken bucket by bucket; new bounds start it over, as a reset does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.receivers.inference.kinds.base import Attributes, Histogram, ModelKey, Reading, Readings


@dataclass
class Delta:
    """What one scrape added to one model: counters' and histograms' increase, gauges as read."""

    counters: dict[tuple[str, Attributes], float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)  # cumulative over the interval's buckets

    def total(self, metric: str) -> float:
        """A counter's increase over all its attributes."""
        return sum(value for (name, _), value in self.counters.items() if name == metric)


class ServerView:
    """The previous scrape's cumulative values per model of one server."""

    def __init__(self) -> None:
        self._previous: Readings | None = None  # None: no good scrape yet
        self._process_start: float | None = None

    def update(self, readings: Readings, process_start: float | None = None) -> dict[ModelKey, Delta]:
        """Each model's delta since the previous good scrape (on the first, the models with nothing yet).

        `process_start`, where the server exposes it, tells a restart for certain: every counter then
        started again from zero, even one that has already grown past its value before the restart.
        """
        baseline = self._previous is None
        previous = self._previous or Readings()
        if not baseline and process_start is not None and self._process_start is not None \
                and process_start != self._process_start:
            previous = Readings()
        deltas = {key: _delta(previous.get(key), reading, baseline) for key, reading in readings.items()}
        self._previous = readings
        self._process_start = process_start
        return deltas

    def forget(self) -> None:
        """Start over: the next scrape is a baseline again."""
        self._previous = None


def _delta(before: Reading | None, now: Reading, baseline: bool) -> Delta:
    delta = Delta(gauges=dict(now.gauges))
    for key, value in now.counters.items():
        last = before.counters.get(key) if before is not None else None
        if last is None:
            if not baseline:
                delta.counters[key] = value
        else:
            delta.counters[key] = value if value < last else value - last
    for name, histogram in now.histograms.items():
        last = before.histograms.get(name) if before is not None else None
        if last is None:
            if not baseline:
                delta.histograms[name] = histogram
        elif last.bounds != histogram.bounds or histogram.count < last.count:
            delta.histograms[name] = histogram  # reset, or new buckets: all of it is new
        else:
            delta.histograms[name] = Histogram(
                histogram.bounds, tuple(max(0.0, a - b) for a, b in zip(histogram.cumulative, last.cumulative)),
                max(0.0, histogram.total - last.total))
    return delta


def quantile(histogram: Histogram | None, q: float) -> float | None:
    """The q-quantile of a histogram, interpolated within its bucket (Prometheus's histogram_quantile).

    None without buckets or observations; the highest finite bound when it falls in the last bucket.
    """
    if histogram is None or not histogram.bounds or histogram.count <= 0:
        return None
    rank = q * histogram.count
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(histogram.bounds, histogram.cumulative):
        if cumulative >= rank:
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, cumulative
    return histogram.bounds[-1]


def mean(histogram: Histogram | None) -> float | None:
    if histogram is None or histogram.count <= 0:
        return None
    return histogram.total / histogram.count
