"""Vigil's own telemetry: counters per component, with the Collector's names.

`otelcol_receiver_accepted_spans` becomes `vigil_receiver_accepted_spans`, and
so on. Instruments come from an OpenTelemetry SDK `MeterProvider` owned by the
service (never the global one, so two agents in one process stay apart). Two
readers collect from it: an in-memory one for the JSON status API and the
tests, and the OpenTelemetry Prometheus exporter writing into the service's
own prometheus-client registry, which the admin endpoint serves on `/metrics`
(there, as in the Collector, counters carry `_total` and units their suffix:
`vigil_receiver_accepted_spans_total`, `vigil_process_memory_rss_bytes`).

A gauge belongs to the component that registered it: when a reload replaces
or removes that component, `release` drops its readings, so a queue that no
longer exists is not reported for ever.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Hashable, Iterable

import psutil
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from agent import __version__

Reading = Callable[[], Iterable[tuple[float, dict]]]


class SelfTelemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._reader = InMemoryMetricReader()
        self._provider = MeterProvider(
            metric_readers=[self._reader, PrometheusMetricReader(registry=self.registry)],
            resource=Resource({"service.name": "vigil", "service.version": __version__}),
        )
        self._meter = self._provider.get_meter("vigil", __version__)
        self._counters: dict[str, Counter] = {}
        # One SDK instrument per gauge name; each owner adds its own readings to it.
        self._gauges: dict[str, dict[Hashable, list[Reading]]] = {}
        self._process = psutil.Process(os.getpid())
        self._started = time.time()
        self._observe("vigil_process_cpu_seconds", "CPU time used by the process (user and system)", "s",
                      lambda: sum(self._process.cpu_times()[:2]), counter=True)
        self._observe("vigil_process_memory_rss", "resident memory of the process", "By",
                      lambda: self._process.memory_info().rss)
        self._observe("vigil_process_uptime", "seconds since the process started", "s",
                      lambda: time.time() - self._started, counter=True)

    def counter(self, name: str, description: str, unit: str = "1") -> Counter:
        """The counter `name`, made on first use (the same instrument for every component)."""
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = Counter()
            self._meter.create_observable_counter(name, [counter.observe], unit, description)
        return counter

    def gauge(self, name: str, description: str, read: Reading, unit: str = "1",
              owner: Hashable = None) -> None:
        """An observable gauge; `read` yields (value, attributes) pairs at each collection."""
        owners = self._gauges.get(name)
        if owners is None:
            owners = self._gauges[name] = {}

            def callback(_: CallbackOptions) -> Iterable[Observation]:
                return [Observation(value, attrs) for reads in list(owners.values()) for r in reads
                        for value, attrs in r()]

            self._meter.create_observable_gauge(name, [callback], unit, description)
        owners.setdefault(owner, []).append(read)

    def scoped(self, owner: Hashable) -> ComponentTelemetry:
        """This telemetry as one component sees it: its gauges are released with `release(owner)`."""
        return ComponentTelemetry(self, owner)

    def release(self, owner: Hashable) -> None:
        """Drop the gauges `owner` registered (a component a reload replaced or removed)."""
        for owners in self._gauges.values():
            owners.pop(owner, None)

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

    def prometheus(self, accept: str | None = None) -> tuple[bytes, str]:
        """The Prometheus exposition of every instrument (OpenMetrics when `accept` asks for it)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def shutdown(self) -> None:
        self._provider.shutdown()

    def _observe(self, name: str, description: str, unit: str, read: Callable[[], float],
                 counter: bool = False) -> None:
        def callback(_: CallbackOptions) -> Iterable[Observation]:
            try:
                return [Observation(read())]
            except psutil.Error:
                return []

        create = self._meter.create_observable_counter if counter else self._meter.create_observable_gauge
        create(name, [callback], unit, description)


class Counter:
    """A monotonic counter per attribute set, which the SDK reads when it collects.

    The SDK's own counter costs over 10 µs an `add` (attributes checked and hashed, once per
    reader), on the path of every request and scrape. Here an `add` is a dict update (1.4 µs), and
    the SDK reads the running totals through an observable counter: the same cumulative sums.
    """

    __slots__ = ("_totals", "_lock")

    def __init__(self) -> None:
        self._totals: dict[frozenset, float] = {}
        self._lock = threading.Lock()  # scrapers and the NVML event thread count from their threads

    def add(self, amount: float, attributes: dict[str, Any] | None = None) -> None:
        key = frozenset(attributes.items()) if attributes else frozenset()
        with self._lock:
            self._totals[key] = self._totals.get(key, 0) + amount

    def observe(self, _: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            totals = list(self._totals.items())
        return [Observation(total, dict(key)) for key, total in totals]


class ComponentTelemetry:
    """What a component gets as `settings.telemetry`: the service's telemetry, its gauges tagged as its own."""

    def __init__(self, telemetry: SelfTelemetry, owner: Hashable) -> None:
        self._telemetry = telemetry
        self._owner = owner

    def counter(self, name: str, description: str, unit: str = "1") -> Counter:
        return self._telemetry.counter(name, description, unit)

    def gauge(self, name: str, description: str, read: Reading, unit: str = "1",
              owner: Hashable = None) -> None:
        self._telemetry.gauge(name, description, read, unit, self._owner if owner is None else owner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._telemetry, name)


class ReceiverCounters:
    """One receiver's `vigil_receiver_accepted_<items>` and `vigil_receiver_refused_<items>`.

    Every receiver counts what the pipelines took and what they refused the same way, under the
    Collector's names, with `receiver` and `transport` attributes.
    """

    def __init__(self, telemetry: SelfTelemetry | ComponentTelemetry, receiver: str) -> None:
        from agent.signals import Signal

        self._receiver = receiver
        self._accepted = {s: telemetry.counter(f"vigil_receiver_accepted_{s.item_name}",
                                               f"{s.item_name} accepted into the pipelines") for s in Signal}
        self._refused = {s: telemetry.counter(f"vigil_receiver_refused_{s.item_name}",
                                              f"{s.item_name} refused (bad data or load)") for s in Signal}

    def accepted(self, signal: Any, transport: str, n: int) -> None:
        self._accepted[signal].add(n, {"receiver": self._receiver, "transport": transport})

    def refused(self, signal: Any, transport: str, n: int) -> None:
        self._refused[signal].add(n, {"receiver": self._receiver, "transport": transport})

