"""What every server kind is made of: the parsed page, one model's reading, and the kind itself.

A kind reads a `Page` (the server's exposition, parsed by prometheus-client's parser) into `Readings`:
per served model, its values under Vigil's metric names, cumulative as the server exposes them. The
per-model view (`view.py`) turns those into deltas.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from prometheus_client.parser import text_string_to_metric_families

from agent.ml import vocabulary

Labels = dict[str, str]
ModelKey = tuple[str, str | None]  # (model, version); version None where the server has none
Attributes = tuple[tuple[str, str], ...]  # a point's attributes, sorted


def _base(name: str) -> str:
    # prometheus-client's parser adds `_total` to a counter's samples when the name has none (Triton's,
    # TGI's counters), so counters are looked up by the name without it.
    return name.removesuffix("_total")


@dataclass(frozen=True)
class Histogram:
    """A histogram as the server exposes it: cumulative counts at each finite bound, then the total."""

    bounds: tuple[float, ...]
    cumulative: tuple[float, ...]  # len(bounds) + 1: the last is the count of every observation
    total: float  # the sum of the observations

    @property
    def count(self) -> float:
        return self.cumulative[-1]

    @classmethod
    def mean_only(cls, count: float, total: float) -> Histogram:
        """No buckets: a count and a sum (a server's cumulative duration counters, a summary)."""
        return cls((), (count,), total)


class Page:
    """A server's exposition: its samples by name (counters without `_total`)."""

    def __init__(self, text: str) -> None:
        """Raises ValueError when the text is not the Prometheus text format."""
        self._samples: dict[str, list[tuple[Labels, float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                value = float(sample.value)
                if math.isfinite(value):  # NaN (a gauge with no data) or ±Inf say nothing to add up
                    self._samples.setdefault(_base(sample.name), []).append((sample.labels, value))

    @property
    def names(self) -> set[str]:
        return set(self._samples)

    @property
    def process_start(self) -> float | None:
        """When the server's process started (prometheus-client's `process_start_time_seconds`), if it says."""
        values = [value for _, value in self._samples.get("process_start_time_seconds", [])]
        return max(values) if values else None

    @property
    def empty(self) -> bool:
        return not self._samples

    def values(self, name: str) -> list[tuple[Labels, float]]:
        """The samples of `name` (a counter's name with or without `_total`), as (labels, value)."""
        return self._samples.get(_base(name), [])

    def histograms(self, name: str, scale: float = 1.0) -> list[tuple[Labels, Histogram]]:
        """The histogram `name` (from its `_bucket`, `_sum` and `_count`) per label set, bounds × scale."""
        groups: dict[tuple, tuple[Labels, list[tuple[float, float]]]] = {}
        for labels, value in self._samples.get(name + "_bucket", []):
            if "le" not in labels:
                continue
            rest = {k: v for k, v in labels.items() if k != "le"}
            groups.setdefault(tuple(sorted(rest.items())), (rest, []))[1].append((float(labels["le"]), value))
        sums = {tuple(sorted(labels.items())): value for labels, value in self._samples.get(name + "_sum", [])}
        out = []
        for key, (labels, buckets) in groups.items():
            buckets.sort()
            finite = [(le * scale, c) for le, c in buckets if math.isfinite(le)]
            count = buckets[-1][1] if not math.isfinite(buckets[-1][0]) else finite[-1][1]
            out.append((labels, Histogram(tuple(b for b, _ in finite), tuple(c for _, c in finite) + (count,),
                                          sums.get(key, 0.0) * scale)))
        return out

    def summaries(self, name: str, scale: float = 1.0) -> list[tuple[Labels, Histogram]]:
        """A summary's (or bucketless histogram's) `_count` and `_sum` per label set, the sum × scale."""
        sums = {tuple(sorted(labels.items())): value for labels, value in self._samples.get(name + "_sum", [])}
        return [(labels, Histogram.mean_only(count, sums.get(tuple(sorted(labels.items())), 0.0) * scale))
                for labels, count in self._samples.get(name + "_count", [])]


@dataclass
class Reading:
    """One served model's values on one page, under Vigil's names, cumulative as exposed."""

    counters: dict[tuple[str, Attributes], float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)

    def add(self, metric: str, value: float, attributes: Attributes = ()) -> None:
        """Add to a counter (several exposed series may add up to one of Vigil's)."""
        key = (metric, attributes)
        self.counters[key] = self.counters.get(key, 0.0) + value

    def gauge(self, metric: str, value: float, combine: Callable[[float, float], float] = operator.add) -> None:
        """Set a gauge; several series of one model (a data-parallel server's engines) are combined."""
        previous = self.gauges.get(metric)
        self.gauges[metric] = value if previous is None else combine(previous, value)

    def histogram(self, metric: str, value: Histogram) -> None:
        previous = self.histograms.get(metric)
        self.histograms[metric] = value if previous is None else _merge(previous, value)


def _merge(a: Histogram, b: Histogram) -> Histogram:
    """Two series of one model (engines of one data-parallel server) as one; differing bounds: the first."""
    if a.bounds != b.bounds:
        return a
    return Histogram(a.bounds, tuple(x + y for x, y in zip(a.cumulative, b.cumulative)), a.total + b.total)


class Readings(dict[ModelKey, Reading]):
    """Each served model's reading, made as the kind finds its series."""

    def of(self, model: str, version: str | None = None) -> Reading:
        key = (model, version)
        reading = self.get(key)
        if reading is None:
            reading = self[key] = Reading()
        return reading


@dataclass(frozen=True)
class ServerKind:
    """One server kind: how its page reads, and what says a page is its own."""

    name: str
    source: str  # the server version (repo@tag:path) whose documentation and source the mapping follows
    generative: bool  # an LLM server: judged by time to first token, reports tokens
    prefixes: tuple[str, ...]  # a page with a name starting so is this server's
    # (page, the model for servers whose metrics name none) -> readings
    read: Callable[[Page, str | None], Readings]
    latency: str  # the Vigil metric holding its request latency
    # A server whose idle page already shows its metrics: a page without any is the wrong server.
    idle_page_has_metrics: bool = True
    # Where a server whose metrics name no model says which it serves, and how to read the answer.
    model_info: tuple[str, Callable[[Any], str | None]] | None = None

    def recognises(self, names: Iterable[str]) -> bool:
        return any(name.startswith(self.prefixes) for name in names)


def error_type(value: str) -> Attributes:
    return ((vocabulary.ERROR_TYPE, value),)


def token_type(value: str) -> Attributes:
    return ((vocabulary.GENAI_TOKEN_TYPE, value),)
