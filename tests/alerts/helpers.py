"""Building metric batches as Vigil's receivers and the `ml` processor would, a fake clock, and rules."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from agent.alerts.config import AlertsConfig
from agent.alerts.rules import RuleConfig
from agent.attributes import set_any_value
from agent.signals import Batch, Signal

RESOURCE = {"service.name": "fraud-api", "host.name": "gpu-host-1"}


class Clock:
    """A clock the test moves by hand (wall-clock seconds)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def _attrs(target: Any, attributes: dict[str, Any]) -> None:
    for key, value in attributes.items():
        set_any_value(target.add(key=key).value, value)


def _request(resource: dict[str, Any] | None) -> tuple[ExportMetricsServiceRequest, Any]:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    _attrs(rm.resource.attributes, RESOURCE if resource is None else resource)
    return request, rm.scope_metrics.add()


def gauge(name: str, points: list[tuple[float, dict[str, Any]]], *, resource: dict[str, Any] | None = None,
          time_s: float = 0.0) -> Batch:
    request, sm = _request(resource)
    metric = sm.metrics.add(name=name)
    for value, attributes in points:
        point = metric.gauge.data_points.add(time_unix_nano=int(time_s * 1e9), as_double=value)
        _attrs(point.attributes, attributes)
    return Batch(Signal.METRICS, request)


def counter(name: str, points: list[tuple[float, dict[str, Any]]], *, time_s: float, start_s: float = 0.0,
            delta: bool = False, resource: dict[str, Any] | None = None) -> Batch:
    request, sm = _request(resource)
    metric = sm.metrics.add(name=name)
    metric.sum.is_monotonic = True
    metric.sum.aggregation_temporality = (metrics_pb2.AGGREGATION_TEMPORALITY_DELTA if delta
                                          else metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE)
    for value, attributes in points:
        point = metric.sum.data_points.add(time_unix_nano=int(time_s * 1e9), start_time_unix_nano=int(start_s * 1e9))
        if isinstance(value, int):
            point.as_int = value
        else:
            point.as_double = value
        _attrs(point.attributes, attributes)
    return Batch(Signal.METRICS, request)


def histogram(name: str, bounds: list[float], counts: list[int], attributes: dict[str, Any], *, time_s: float,
              start_s: float = 0.0, delta: bool = True, resource: dict[str, Any] | None = None) -> Batch:
    request, sm = _request(resource)
    metric = sm.metrics.add(name=name)
    metric.histogram.aggregation_temporality = (metrics_pb2.AGGREGATION_TEMPORALITY_DELTA if delta
                                                else metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE)
    point = metric.histogram.data_points.add(time_unix_nano=int(time_s * 1e9), start_time_unix_nano=int(start_s * 1e9),
                                             count=sum(counts))
    point.explicit_bounds.extend(bounds)
    point.bucket_counts.extend(counts)
    _attrs(point.attributes, attributes)
    return Batch(Signal.METRICS, request)


def rule(**fields: Any) -> RuleConfig:
    fields.setdefault("name", "TestRule")
    fields.setdefault("metric", "m")
    fields.setdefault("threshold", 0.5)
    return RuleConfig.model_validate(fields)


def alerts_config(**fields: Any) -> AlertsConfig:
    return AlertsConfig.model_validate(fields)
