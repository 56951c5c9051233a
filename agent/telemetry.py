"""Vigil's own telemetry: counters per component, with the Collector's names.

`otelcol_receiver_accepted_spans` becomes `vigil_receiver_accepted_spans`, and
so on. Instruments come from an OpenTelemetry SDK `MeterProvider` owned by the
service (never the global one, so two agents in one process stay apart).
"""

from __future__ import annotations

from typing import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Counter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

from agent import __version__


class SelfTelemetry:
    def __init__(self) -> None:
        self._reader = InMemoryMetricReader()
        self._provider = MeterProvider(
            metric_readers=[self._reader],
            resource=Resource({"service.name": "vigil", "service.version": __version__}),
        )
        self._meter = self._provider.get_meter("vigil", __version__)
        self._counters: dict[str, Counter] = {}

    def counter(self, name: str, description: str, unit: str = "1") -> Counter:
        """The counter `name`, made on first use (the same instrument for every component)."""
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = self._meter.create_counter(name, unit, description)
        return counter

    def gauge(self, name: str, description: str, read: Callable[[], Iterable[tuple[float, dict]]],
              unit: str = "1") -> None:
        """An observable gauge; `read` yields (value, attributes) pairs at each collection."""

        def callback(_: CallbackOptions) -> Iterable[Observation]:
            return [Observation(value, attrs) for value, attrs in read()]

        self._meter.create_observable_gauge(name, [callback], unit, description)

    def values(self) -> dict[str, dict[frozenset, float]]:
        """Current values: metric name -> {frozenset(attributes.items()): value}."""
        out: dict[str, dict[frozenset, float]] = {}
        data = self._reader.get_metrics_data()
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    points = out.setdefault(metric.name, {})
                    for point in metric.data.data_points:
                        points[frozenset(point.attributes.items())] = point.value
        return out

    def total(self, name: str, **attributes: str) -> float:
        """The sum of `name` over every series whose attributes include `attributes`."""
        wanted = set(attributes.items())
        return sum(v for attrs, v in self.values().get(name, {}).items() if wanted <= attrs)

    def shutdown(self) -> None:
        self._provider.shutdown()
