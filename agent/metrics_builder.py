"""Writing OTLP metrics directly: metric specs and a builder for one export request.

Scrapers (host, GPU) and the processors that derive metrics declare each
metric once as a `MetricSpec` (name, unit, instrument kind, description, as
the semantic conventions give them) and record points against it; the
builder groups points by resource and metric name into an
`ExportMetricsServiceRequest`. Cumulative sums take their own start time (boot
time for host counters, process start for process counters), which an SDK
instrument cannot express. A point may carry exemplars: the trace and span of
measurements it counts, so a backend can lead from the point to the trace.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Sequence

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from agent import __version__
from agent.attributes import set_any_value
from agent.signals import Batch, Signal


class Instrument(enum.Enum):
    GAUGE = "gauge"
    COUNTER = "counter"  # cumulative, monotonic sum
    DELTA_COUNTER = "delta_counter"  # delta, monotonic sum: what one interval added
    UPDOWN = "updowncounter"  # cumulative, non-monotonic sum
    HISTOGRAM = "histogram"  # explicit buckets, delta: the counts of one interval


@dataclass(frozen=True)
class MetricSpec:
    name: str
    unit: str
    instrument: Instrument
    description: str


class Exemplar(NamedTuple):
    """One measurement a point counts, with the trace and span it was made in (OTLP's Exemplar)."""

    trace_id: bytes  # 16 bytes
    span_id: bytes  # 8 bytes
    value: float
    time_unix_nano: int
    attributes: Mapping[str, Any] | None = None  # what the point's own attributes leave out


def _add_exemplars(point: Any, exemplars: Sequence[Exemplar]) -> None:
    for e in exemplars:
        added = point.exemplars.add(time_unix_nano=e.time_unix_nano, as_double=e.value,
                                    trace_id=e.trace_id, span_id=e.span_id)
        for name, value in (e.attributes or {}).items():
            set_any_value(added.filtered_attributes.add(key=name).value, value)


class ResourceMetrics:
    """The metrics of one resource within a request being built."""

    def __init__(self, message: Any, time_ns: int) -> None:
        self._scope = message.scope_metrics.add()
        self._scope.scope.name = "vigil"
        self._scope.scope.version = __version__
        self._time_ns = time_ns
        self._metrics: dict[str, Any] = {}

    def record(self, spec: MetricSpec, value: float | int, attributes: Mapping[str, Any] | None = None,
               start_ns: int = 0, exemplars: Sequence[Exemplar] = ()) -> None:
        """Add one point; `start_ns` is the start of a sum (cumulative or delta; ignored for gauges)."""
        metric = self._metrics.get(spec.name)
        if metric is None:
            metric = self._metrics[spec.name] = self._scope.metrics.add(
                name=spec.name, unit=spec.unit, description=spec.description)
            if spec.instrument is Instrument.GAUGE:
                metric.gauge.SetInParent()
            else:
                metric.sum.aggregation_temporality = (
                    metrics_pb2.AGGREGATION_TEMPORALITY_DELTA if spec.instrument is Instrument.DELTA_COUNTER
                    else metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE)
                metric.sum.is_monotonic = spec.instrument in (Instrument.COUNTER, Instrument.DELTA_COUNTER)
        points = metric.gauge.data_points if spec.instrument is Instrument.GAUGE else metric.sum.data_points
        point = points.add(time_unix_nano=self._time_ns)
        if spec.instrument is not Instrument.GAUGE and start_ns:
            point.start_time_unix_nano = start_ns
        if isinstance(value, int) and not isinstance(value, bool):
            point.as_int = value
        else:
            point.as_double = float(value)
        if attributes:
            _add_attributes(point, attributes)
        if exemplars:
            _add_exemplars(point, exemplars)

    def record_histogram(self, spec: MetricSpec, bounds: Sequence[float], counts: Sequence[int],
                         total: float, attributes: Mapping[str, Any] | None = None, start_ns: int = 0,
                         minimum: float | None = None, maximum: float | None = None,
                         exemplars: Sequence[Exemplar] = ()) -> None:
        """Add one explicit-bucket histogram point covering [start_ns, now] (delta temporality).

        `counts` has len(bounds) + 1 entries: (-inf, b0], (b0, b1], ..., (b_last, +inf).
        """
        metric = self._metrics.get(spec.name)
        if metric is None:
            metric = self._metrics[spec.name] = self._scope.metrics.add(
                name=spec.name, unit=spec.unit, description=spec.description)
            metric.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
        point = metric.histogram.data_points.add(
            time_unix_nano=self._time_ns, start_time_unix_nano=start_ns, count=int(sum(counts)), sum=total)
        point.explicit_bounds.extend(float(b) for b in bounds)
        point.bucket_counts.extend(int(c) for c in counts)
        if minimum is not None:
            point.min = minimum
        if maximum is not None:
            point.max = maximum
        if attributes:
            _add_attributes(point, attributes)
        if exemplars:
            _add_exemplars(point, exemplars)

    @property
    def empty(self) -> bool:
        return not self._metrics


# Serialized attribute lists by point type and attributes: scrapers and processors write the same few sets
# (a model and a feature, a CPU and a state) on every round, and merging their bytes into a point is one call
# where building them is one per attribute. Bounded: sets that never repeat (a pid) only cycle through it.
_ATTRIBUTE_BYTES: dict[tuple, bytes] = {}
_MAX_ATTRIBUTE_SETS = 4096


def _add_attributes(point: Any, attributes: Mapping[str, Any]) -> None:
    try:
        # Types too: 1, 1.0 and True are equal keys but different attribute values.
        key = (type(point), *((name, type(value), value) for name, value in attributes.items()))
        encoded = _ATTRIBUTE_BYTES.get(key)
    except TypeError:  # a list or dict value: not hashable, written directly
        key = encoded = None
    if encoded is None:
        holder = type(point)()
        for name, value in attributes.items():
            set_any_value(holder.attributes.add(key=name).value, value)
        encoded = holder.SerializeToString()
        if key is not None:
            if len(_ATTRIBUTE_BYTES) >= _MAX_ATTRIBUTE_SETS:
                _ATTRIBUTE_BYTES.clear()
            _ATTRIBUTE_BYTES[key] = encoded
    point.MergeFromString(encoded)


class MetricsBuilder:
    """Builds one `ExportMetricsServiceRequest`; every point shares the time it was made at."""

    def __init__(self, time_ns: int | None = None) -> None:
        self._request = ExportMetricsServiceRequest()
        self.time_ns = time.time_ns() if time_ns is None else time_ns

    def resource(self, attributes: Mapping[str, Any]) -> ResourceMetrics:
        message = self._request.resource_metrics.add()
        for key, value in attributes.items():
            set_any_value(message.resource.attributes.add(key=key).value, value)
        return ResourceMetrics(message, self.time_ns)

    def batch(self) -> Batch | None:
        """The request as a batch, without empty resources; None when there is no point at all."""
        kept = [rm for rm in self._request.resource_metrics if any(sm.metrics for sm in rm.scope_metrics)]
        if not kept:
            return None
        if len(kept) != len(self._request.resource_metrics):
            request = ExportMetricsServiceRequest()
            request.resource_metrics.extend(kept)
            self._request = request
        return Batch(Signal.METRICS, self._request)
