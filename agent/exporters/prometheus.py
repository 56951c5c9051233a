"""The `prometheus` exporter: what its metrics pipelines carry, for Prometheus to scrape.

    exporters:
      prometheus:
        endpoint: 127.0.0.1:8889          # serves GET /metrics
        namespace: vigil_host             # an optional prefix
        const_labels: {region: eu}
        metric_expiration: 5m             # series not updated for this long are dropped
        resource_to_telemetry_conversion: {enabled: false}   # every resource attribute as a label

OTLP metrics become Prometheus families as the OpenTelemetry "Prometheus and
OpenMetrics compatibility" spec says:

- names: characters outside [a-zA-Z0-9_:] become `_` (runs of `_` collapse); the unit is appended
  as a word (`ms` -> `_milliseconds`, `By` -> `_bytes`, `1/s` -> `_per_second`, `{request}`
  annotations dropped, unit `1` -> `_ratio` on gauges), and monotonic sums end in `_total`;
- attributes become labels (names sanitised; a leading digit gets `key_`; values of attributes
  that collide after sanitising are joined with `;`), plus `otel_scope_name`/`otel_scope_version`;
- the resource gives `job` (`service.namespace/service.name`) and `instance`
  (`service.instance.id`) on every series, and its other attributes one `target_info` series;
- gauges and non-monotonic sums are gauges, monotonic sums counters, explicit-bucket
  histograms histograms (cumulative `le` buckets), summaries summaries; exponential histograms
  are not exposed (logged once per metric);
- delta points are added up into cumulative series (a point whose end is not after the last one
  added is a repeat, a retried request say, and is dropped; windows that overlap, as the `ml`
  processor's may while one is still evaluated, are added); a histogram whose bounds change
  starts again;
- exemplars: a histogram bucket keeps the latest exemplar whose value falls in it, a counter the
  latest of its points', with `trace_id` and `span_id` (hex) and the filtered attributes as labels
  while they fit OpenMetrics' 128 characters; gauges have none in OpenMetrics.

Exposition (text 0.0.4, or OpenMetrics when the scraper asks for it: then with the exemplars) is
prometheus-client's.
"""

from __future__ import annotations

import bisect
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from aiohttp import web
from opentelemetry.proto.metrics.v1 import metrics_pb2
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString
from pydantic import Field

from agent.attributes import any_value
from agent.component import Factory, Kind, Settings
from agent.configmodel import Duration, StrictModel
from agent.listen import listen
from agent.netconfig import ListenEndpoint, split_host_port
from agent.signals import Batch, Signal

DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA


class ResourceToTelemetryConfig(StrictModel):
    enabled: bool = False


class PrometheusExporterConfig(StrictModel):
    # Loopback by default, as every Vigil listener: set 0.0.0.0:8889 for a Prometheus on another host.
    endpoint: ListenEndpoint = "127.0.0.1:8889"
    namespace: str = ""
    const_labels: dict[str, str] = {}
    metric_expiration: Duration = Field(300.0, gt=0)
    resource_to_telemetry_conversion: ResourceToTelemetryConfig = ResourceToTelemetryConfig()
    add_metric_suffixes: bool = True


# --- names -----------------------------------------------------------------------------------------

_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]+")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]+")
_UNITS = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds",
    "us": "microseconds", "ns": "nanoseconds",
    "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes", "TiBy": "tebibytes",
    "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "TBy": "terabytes",
    "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams",
    "Cel": "celsius", "Hz": "hertz", "%": "percent",
}
_PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}


def metric_name(name: str, unit: str, kind: str, namespace: str = "", suffixes: bool = True) -> str:
    """The Prometheus family name of an OTLP metric (without the `_total` a counter's samples get)."""
    full = f"{namespace}_{name}" if namespace else name
    out = re.sub("_+", "_", _INVALID_NAME.sub("_", full))
    if out[:1].isdigit():
        out = "_" + out
    if not suffixes:
        return out
    if kind == "counter" and out.endswith("_total"):
        out = out[: -len("_total")]
    word = unit_word(unit, kind)
    if word and not out.endswith("_" + word):
        out = f"{out}_{word}"
    return out


def unit_word(unit: str, kind: str) -> str:
    unit = re.sub(r"\{[^}]*\}", "", unit).strip()
    if unit == "1":
        return "ratio" if kind == "gauge" else ""
    if not unit:
        return ""
    main, _, per = unit.partition("/")
    words = [_UNITS.get(main, main)] if main else []
    if per:
        words.append("per_" + _PER_UNITS.get(per, _UNITS.get(per, per)))
    return re.sub("_+", "_", _INVALID_LABEL.sub("_", "_".join(words))).strip("_")


def label_name(key: str) -> str:
    out = _INVALID_LABEL.sub("_", key)
    if out[:1].isdigit():
        return "key_" + out
    if out.startswith("_") and not out.startswith("__"):
        return "key" + out
    return out or "key_"


def label_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def labels_of(attributes: Iterable[Any]) -> dict[str, str]:
    """OTLP attributes as labels; keys equal once sanitised have their values joined with `;`,
    in the order of their original keys."""
    grouped: dict[str, list[tuple[str, str]]] = {}
    for kv in attributes:
        grouped.setdefault(label_name(kv.key), []).append((kv.key, label_value(any_value(kv.value))))
    return {name: ";".join(v for _, v in sorted(values)) for name, values in grouped.items()}


# --- the state of what is exposed -----------------------------------------------------------------------


@dataclass
class _Series:
    labels: dict[str, str]
    value: float = 0.0
    bounds: tuple[float, ...] = ()
    counts: list[int] = field(default_factory=list)
    quantiles: list[tuple[float, float]] = field(default_factory=list)
    sum: float = 0.0
    count: int = 0
    start_ns: int = 0
    time_ns: int = 0
    updated: float = 0.0  # monotonic clock, for metric_expiration
    exemplars: dict[int, Exemplar] = field(default_factory=dict)  # by bucket; a counter's under 0


@dataclass
class _Family:
    name: str
    kind: str  # gauge, counter, histogram, summary
    help: str
    series: dict[tuple, _Series] = field(default_factory=dict)


class PrometheusExporter:
    mutates_data = False

    def __init__(self, config: PrometheusExporterConfig, settings: Settings) -> None:
        self._config = config
        self._log = settings.logger
        self._id = str(settings.id)
        self._families: dict[str, _Family] = {}
        self._targets: dict[tuple, tuple[dict[str, str], float]] = {}
        self._warned: set[str] = set()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)
        self._runner: web.AppRunner | None = None
        self._scrapes = 0
        self.port: int | None = None
        self._sent = settings.telemetry.counter("vigil_exporter_sent_metric_points", "items sent")
        self._dropped = settings.telemetry.counter(
            "vigil_exporter_send_failed_metric_points", "items that could not be sent and were dropped")

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._serve)
        self._runner, self.port = await listen(app, self._config.endpoint)
        self._log.info("Prometheus metrics on http://%s:%d/metrics", split_host_port(self._config.endpoint)[0],
                       self.port)

    async def shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _serve(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        self._scrapes += 1
        response = web.Response(body=encoder(self._registry))
        response.headers["Content-Type"] = content_type
        return response

    def status(self) -> dict[str, Any]:
        self._expire()
        return {"endpoint": f"{split_host_port(self._config.endpoint)[0]}:{self.port}",
                "families": len(self._families), "series": sum(len(f.series) for f in self._families.values()),
                "scrapes": self._scrapes}

    # --- taking metrics in ---------------------------------------------------------------------------

    async def consume(self, batch: Batch) -> None:
        now = time.monotonic()
        taken = dropped = 0
        for rm in batch.message.resource_metrics:
            base = self._resource_labels(rm.resource, now)
            for sm in rm.scope_metrics:
                scope = dict(base)
                if sm.scope.name:
                    scope["otel_scope_name"] = sm.scope.name
                if sm.scope.version:
                    scope["otel_scope_version"] = sm.scope.version
                for metric in sm.metrics:
                    n = self._take(metric, scope, now)
                    taken += n
                    dropped += _points(metric) - n
        if taken:
            self._sent.add(taken, {"exporter": self._id})
        if dropped:
            self._dropped.add(dropped, {"exporter": self._id})
        self._expire(now)

    def _resource_labels(self, resource: Any, now: float) -> dict[str, str]:
        attrs = {kv.key: any_value(kv.value) for kv in resource.attributes}
        labels: dict[str, str] = {}
        name, namespace = attrs.get("service.name"), attrs.get("service.namespace")
        if name is not None:
            labels["job"] = f"{namespace}/{name}" if namespace else str(name)
        if attrs.get("service.instance.id") is not None:
            labels["instance"] = label_value(attrs["service.instance.id"])
        info = {k: v for k, v in labels_of(kv for kv in resource.attributes if kv.key not in
                                           ("service.name", "service.namespace", "service.instance.id")).items()}
        if info:
            key = (labels.get("job"), labels.get("instance"))
            self._targets[key] = ({**info, **labels}, now)
        if self._config.resource_to_telemetry_conversion.enabled:
            labels = {**labels_of(resource.attributes), **labels}
        return {**{label_name(k): v for k, v in self._config.const_labels.items()}, **labels}

    def _take(self, metric: Any, scope: dict[str, str], now: float) -> int:
        data = metric.WhichOneof("data")
        if data == "gauge":
            kind, points = "gauge", metric.gauge.data_points
        elif data == "sum":
            kind, points = ("counter" if metric.sum.is_monotonic else "gauge"), metric.sum.data_points
        elif data == "histogram":
            kind, points = "histogram", metric.histogram.data_points
        elif data == "summary":
            kind, points = "summary", metric.summary.data_points
        else:
            self._warn_once(metric.name, f"{metric.name}: {data or 'empty'} metrics are not exposed to Prometheus")
            return 0
        name = metric_name(metric.name, metric.unit, kind, self._config.namespace,
                           self._config.add_metric_suffixes)
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = _Family(name, kind, metric.description)
        elif family.kind != kind:
            self._warn_once(name, f"{metric.name}: dropped, {name} is already a {family.kind}, not a {kind}")
            return 0
        delta = data in ("sum", "histogram") and getattr(metric, data).aggregation_temporality == DELTA
        taken = 0
        for point in points:
            labels = {**labels_of(point.attributes), **scope}
            key = tuple(sorted(labels.items()))
            series = family.series.get(key)
            if series is not None and point.time_unix_nano and point.time_unix_nano < series.time_ns:
                continue  # older than what is exposed
            if series is None:
                series = family.series[key] = _Series(labels)
            if data == "histogram":
                taken += self._histogram(series, point, delta)
            elif data == "summary":
                series.quantiles = [(q.quantile, q.value) for q in point.quantile_values]
                series.sum, series.count = point.sum, point.count
                taken += 1
            else:
                value = point.as_double if point.WhichOneof("value") == "as_double" else float(point.as_int)
                if delta:
                    if series.time_ns and point.time_unix_nano <= series.time_ns:
                        continue  # not after what was already added: a repeat
                    series.value = (series.value if series.time_ns else 0.0) + value
                else:
                    series.value = value
                if kind == "counter" and point.exemplars:
                    series.exemplars[0] = _exemplar(point.exemplars[-1])
                taken += 1
            series.start_ns = series.start_ns or point.start_time_unix_nano
            series.time_ns = max(series.time_ns, point.time_unix_nano)
            series.updated = now
        return taken

    @staticmethod
    def _histogram(series: _Series, point: Any, delta: bool) -> int:
        bounds = tuple(point.explicit_bounds)
        counts = list(point.bucket_counts) or [point.count]
        if len(counts) != len(bounds) + 1:
            return 0  # malformed: the buckets do not match the bounds
        if delta and series.time_ns and series.bounds == bounds:
            if point.time_unix_nano <= series.time_ns:
                return 0  # not after what was already added: a repeat
            series.counts = [a + b for a, b in zip(series.counts, counts)]
            series.sum += point.sum
            series.count += point.count
        else:  # cumulative, or the first delta, or new bounds: start from this point
            if series.bounds != bounds:
                series.exemplars = {}
            series.bounds, series.counts, series.sum, series.count = bounds, counts, point.sum, point.count
        for exemplar in sorted(point.exemplars, key=lambda e: e.time_unix_nano):  # the latest one stays
            value = _exemplar_value(exemplar)
            if value == value:  # NaN falls in no bucket
                series.exemplars[bisect.bisect_left(bounds, value)] = _exemplar(exemplar)
        return 1

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._log.warning(message)

    def _expire(self, now: float | None = None) -> None:
        cutoff = (time.monotonic() if now is None else now) - self._config.metric_expiration
        for name in list(self._families):
            family = self._families[name]
            for key in [k for k, s in family.series.items() if s.updated < cutoff]:
                del family.series[key]
            if not family.series:
                del self._families[name]
        for key in [k for k, (_, updated) in self._targets.items() if updated < cutoff]:
            del self._targets[key]

    # --- prometheus-client's collector protocol -------------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        self._expire()
        if self._targets:
            info = Metric("target", "Target metadata", "info")
            for labels, _ in self._targets.values():
                info.add_sample("target_info", labels, 1.0)
            yield info
        for family in list(self._families.values()):
            out = Metric(family.name, family.help or family.name, family.kind)
            for series in family.series.values():
                labels = series.labels
                if family.kind == "counter":
                    out.add_sample(family.name + "_total", labels, series.value, exemplar=series.exemplars.get(0))
                elif family.kind == "gauge":
                    out.add_sample(family.name, labels, series.value)
                elif family.kind == "histogram":
                    total = 0
                    for i, (bound, count) in enumerate(zip(list(series.bounds) + [float("inf")], series.counts)):
                        total += count
                        out.add_sample(family.name + "_bucket", {**labels, "le": floatToGoString(bound)}, total,
                                       exemplar=series.exemplars.get(i))
                    out.add_sample(family.name + "_count", labels, series.count)
                    out.add_sample(family.name + "_sum", labels, series.sum)
                else:
                    for quantile, value in series.quantiles:
                        out.add_sample(family.name, {**labels, "quantile": floatToGoString(quantile)}, value)
                    out.add_sample(family.name + "_count", labels, series.count)
                    out.add_sample(family.name + "_sum", labels, series.sum)
            yield out


# OpenMetrics: an exemplar's label names and values together are at most 128 characters.
_EXEMPLAR_LABELS = 128


def _exemplar_value(exemplar: Any) -> float:
    return exemplar.as_double if exemplar.WhichOneof("value") == "as_double" else float(exemplar.as_int)


def _exemplar(exemplar: Any) -> Exemplar:
    """An OTLP exemplar as an OpenMetrics one: trace and span ids first, then what attributes fit."""
    labels: dict[str, str] = {}
    if any(exemplar.trace_id):
        labels["trace_id"] = exemplar.trace_id.hex()
    if any(exemplar.span_id):
        labels["span_id"] = exemplar.span_id.hex()
    size = sum(len(k) + len(v) for k, v in labels.items())
    for name, value in labels_of(exemplar.filtered_attributes).items():
        if name not in labels and size + len(name) + len(value) <= _EXEMPLAR_LABELS:
            labels[name] = value
            size += len(name) + len(value)
    timestamp = exemplar.time_unix_nano / 1e9 if exemplar.time_unix_nano else None
    return Exemplar(labels, _exemplar_value(exemplar), timestamp)


def _points(metric: Any) -> int:
    data = metric.WhichOneof("data")
    return len(getattr(metric, data).data_points) if data else 0


def _create(config: PrometheusExporterConfig, settings: Settings) -> PrometheusExporter:
    return PrometheusExporter(config, settings)


FACTORY = Factory(
    kind=Kind.EXPORTER,
    type="prometheus",
    config_model=PrometheusExporterConfig,
    create=_create,
    signals=frozenset({Signal.METRICS}),
    description="metrics for Prometheus to scrape, on an HTTP endpoint of its own",
)
