"""The `prometheus` receiver: scrapes `/metrics` endpoints and turns what they expose into OTLP metrics.

    prometheus:
      config:
        scrape_configs:
          - job_name: legacy-app
            scrape_interval: 15s
            static_configs:
              - targets: [127.0.0.1:8000]
                labels: {team: fraud}
          - job_name: dcgm
            static_configs: [{targets: [127.0.0.1:9400]}]

The config is the Collector's (`config.scrape_configs`, a subset of
Prometheus's), so a Collector config reads the same; unsupported Prometheus
keys are errors rather than silently ignored. For apps that expose
prometheus_client metrics, the DCGM exporter or node exporter.

Each target is its own resource: `service.name` (the job), `service.instance.id`
(host:port), `server.address`, `server.port`, `url.scheme`, plus the target's
static labels. The page is parsed by prometheus-client's parser (the text
format; OpenMetrics when a target answers in it) in a worker thread, and
converted as the Collector does:

- counter → cumulative monotonic sum, named as exposed (`requests_total`);
- gauge, untyped, info, stateset → gauge;
- histogram → cumulative explicit-bucket histogram; summary → summary.

A cumulative point's start time is the series' `_created` sample when the
target exposes one (those series are then not passed on as gauges), else the
time the series was first seen; a value that goes down marks a reset and a
new start. Per target and scrape, as Prometheus does: `up` (1, or 0 when the
scrape failed: unreachable, timeout, an HTTP error, a body over the limit or
a page that does not parse), `scrape_duration_seconds` and
`scrape_samples_scraped`.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Iterable, Literal
from urllib.parse import urlsplit

import aiohttp
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2
from pydantic import Field, model_validator

from agent import __version__
from agent.attributes import set_any_value
from agent.component import Consumer, Factory, Kind, Settings
from agent.configmodel import Duration, StrictModel
from agent.errors import ConsumerError
from agent.metrics_builder import Instrument, MetricSpec
from agent.signals import Batch, Signal
from agent.telemetry import ReceiverCounters

_MIB = 1024 * 1024

UP = MetricSpec("up", "1", Instrument.GAUGE, "1 when the target was scraped, 0 when the scrape failed")
SCRAPE_DURATION = MetricSpec("scrape_duration_seconds", "s", Instrument.GAUGE, "How long the scrape took")
SCRAPE_SAMPLES = MetricSpec("scrape_samples_scraped", "{sample}", Instrument.GAUGE,
                            "Samples the target exposed in the scrape")

# What a scrape asks for: the text format, which every exporter speaks (OpenMetrics is parsed too
# when a target answers with it anyway).
ACCEPT = "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1"


class StaticConfig(StrictModel):
    targets: list[str] = Field(min_length=1)  # host:port
    labels: dict[str, str] = {}  # added to each target's resource


class ScrapeJobConfig(StrictModel):
    job_name: str = Field(min_length=1)
    # Prometheus's default is 1m; inference hosts want latency and GPU numbers sooner.
    scrape_interval: Annotated[Duration, Field(gt=0)] = 15.0
    scrape_timeout: Annotated[Duration, Field(gt=0)] = 10.0
    metrics_path: str = "/metrics"
    scheme: Literal["http", "https"] = "http"
    honor_timestamps: bool = True  # use the timestamps a target gives its samples
    # A page larger than this fails the scrape (up = 0) rather than taking the agent's memory.
    body_size_limit: int = Field(64 * _MIB, gt=0)
    static_configs: list[StaticConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> ScrapeJobConfig:
        if self.scrape_timeout > self.scrape_interval:
            raise ValueError("scrape_timeout must not exceed scrape_interval")
        if not self.metrics_path.startswith("/"):
            raise ValueError("metrics_path must start with /")
        for static in self.static_configs:
            for target in static.targets:
                _split_target(target)
        return self


class PrometheusConfig(StrictModel):
    scrape_configs: list[ScrapeJobConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_jobs(self) -> PrometheusConfig:
        names = [job.job_name for job in self.scrape_configs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"job_name must be unique: {', '.join(twice)} appears more than once")
        return self


class PrometheusReceiverConfig(StrictModel):
    config: PrometheusConfig


def _split_target(target: str) -> tuple[str, int]:
    parts = urlsplit("//" + target)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.path or parts.query:
        raise ValueError(f"target {target!r} must be host:port")
    return parts.hostname, port


# --- from a page to OTLP -------------------------------------------------------------------


class ScrapeError(Exception):
    """The scrape failed; the message says why, for the log."""


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

    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    for key, value in target.resource.items():
        set_any_value(resource_metrics.resource.attributes.add(key=key).value, value)
    scope = resource_metrics.scope_metrics.add()
    scope.scope.name = "vigil.prometheus"
    scope.scope.version = __version__
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
        request = ExportMetricsServiceRequest()
        resource_metrics = request.resource_metrics.add()
        for key, value in target.resource.items():
            set_any_value(resource_metrics.resource.attributes.add(key=key).value, value)
        scope = resource_metrics.scope_metrics.add()
        scope.scope.name = "vigil.prometheus"
        scope.scope.version = __version__
    else:
        scope = request.resource_metrics[0].scope_metrics[0]
    for spec, value in ((UP, 1.0 if up else 0.0), (SCRAPE_DURATION, duration), (SCRAPE_SAMPLES, float(samples))):
        metric = scope.metrics.add(name=spec.name, unit=spec.unit, description=spec.description)
        metric.gauge.data_points.add(time_unix_nano=now_ns, as_double=value)
    return request


# --- the receiver ---------------------------------------------------------------------------


class PrometheusReceiver:
    def __init__(self, config: PrometheusReceiverConfig, settings: Settings,
                 consumers: dict[Signal, Consumer]) -> None:
        self._consumer = consumers[Signal.METRICS]
        self._log = settings.logger
        self._id = str(settings.id)
        self.targets: list[Target] = []
        for job in config.config.scrape_configs:
            for static in job.static_configs:
                for instance in static.targets:
                    host, port = _split_target(instance)
                    resource: dict[str, Any] = {"service.name": job.job_name, "service.instance.id": instance,
                                                "server.address": host, "server.port": port,
                                                "url.scheme": job.scheme}
                    resource.update(static.labels)
                    self.targets.append(Target(job.job_name, instance,
                                               f"{job.scheme}://{instance}{job.metrics_path}", resource,
                                               job.scrape_interval, job.scrape_timeout, job.body_size_limit,
                                               job.honor_timestamps))
        t = settings.telemetry
        self._items = ReceiverCounters(t, self._id)
        self._failed = t.counter("vigil_receiver_scrape_errors", "scrapes that failed, by scraper")
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task] = []
        self._last: dict[str, dict[str, Any]] = {}

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(headers={"User-Agent": f"vigil/{__version__}"})
        self._tasks = [asyncio.create_task(self._loop(t), name=f"{self._id}/{t.job}/{t.instance}")
                       for t in self.targets]

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    def status(self) -> dict[str, Any]:
        return {"targets": [{"job": t.job, "instance": t.instance, **self._last.get(t.url, {})}
                            for t in self.targets]}

    async def scrape_once(self, target: Target) -> None:
        """One scrape of `target`: fetch, convert in a thread, hand the points to the pipelines."""
        assert self._session is not None
        started = time.monotonic()
        now_ns = time.time_ns()
        request, samples, error = None, 0, None
        try:
            text, content_type = await self._fetch(target)
            request, samples = await asyncio.to_thread(convert, target, text, content_type, now_ns)
        except ScrapeError as exc:
            error = str(exc)
        except ValueError as exc:
            error = f"the page does not parse: {exc}"
        duration = time.monotonic() - started
        request = scrape_metrics(target, error is None, duration, samples, now_ns, request)
        self._last[target.url] = {"up": error is None, "error": error, "duration_seconds": round(duration, 4),
                                  "samples": samples}
        if error is not None:
            self._failed.add(1, {"receiver": self._id, "scraper": target.url})
            self._log.warning("scraping %s failed: %s", target.url, error)
        batch = Batch(Signal.METRICS, request)
        try:
            await self._consumer.consume(batch)
        except ConsumerError as exc:
            self._items.refused(Signal.METRICS, "scrape", batch.items)
            self._log.warning("pipelines refused %d points scraped from %s: %s", batch.items, target.url, exc)
            return
        self._items.accepted(Signal.METRICS, "scrape", batch.items)

    async def _fetch(self, target: Target) -> tuple[str, str]:
        assert self._session is not None
        headers = {"Accept": ACCEPT, "X-Prometheus-Scrape-Timeout-Seconds": f"{target.timeout:g}"}
        try:
            async with self._session.get(target.url, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=target.timeout)) as response:
                if response.status != 200:
                    raise ScrapeError(f"HTTP {response.status}")
                if response.content_length is not None and response.content_length > target.body_size_limit:
                    raise ScrapeError(f"the page is larger than body_size_limit ({target.body_size_limit} bytes)")
                body = bytearray()
                async for chunk in response.content.iter_chunked(256 * 1024):
                    body += chunk
                    if len(body) > target.body_size_limit:
                        raise ScrapeError(f"the page is larger than body_size_limit ({target.body_size_limit} bytes)")
                content_type = response.headers.get("Content-Type", "text/plain")
                return body.decode(response.charset or "utf-8", "replace"), content_type
        except TimeoutError:
            raise ScrapeError(f"no answer within scrape_timeout ({target.timeout:g}s)") from None
        except aiohttp.ClientError as exc:
            raise ScrapeError(str(exc) or type(exc).__name__) from None

    async def _loop(self, target: Target) -> None:
        next_turn = time.monotonic()
        while True:
            try:
                await self.scrape_once(target)
            except Exception:  # noqa: BLE001 - a bug must not end the scrapes of this target
                self._log.exception("scraping %s failed", target.url)
            next_turn += target.interval
            now = time.monotonic()
            if next_turn < now:  # skip turns a slow pipeline made us miss
                next_turn += (int((now - next_turn) // target.interval) + 1) * target.interval
            await asyncio.sleep(next_turn - now)


def _create(config: PrometheusReceiverConfig, settings: Settings,
            consumers: dict[Signal, Consumer]) -> PrometheusReceiver:
    return PrometheusReceiver(config, settings, consumers)


FACTORY = Factory(
    kind=Kind.RECEIVER,
    type="prometheus",
    config_model=PrometheusReceiverConfig,
    create=_create,
    signals=frozenset({Signal.METRICS}),
    description="scrapes Prometheus /metrics endpoints (prometheus_client apps, DCGM, node exporter) into OTLP",
)
