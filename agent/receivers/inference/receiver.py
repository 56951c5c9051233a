"""The `inference` receiver itself: each server's metrics scraped, read by its kind, handed on per model.

Every `collection_interval` each server is scraped at once (a slow one delays only itself, up to
`timeout`); its page is parsed and read by its kind in a worker thread, the per-model view turns it
into deltas, and one batch per server goes to the pipelines: a resource per served model
(`service.name` = the kind, `ml.model.name`, `ml.model.version`, `server.address`, `server.port`) and
the server's own (`ml.server.up`). A server that is down, too slow, answers an HTTP error, a page too
large, one that does not parse or one without its kind's metrics is `up` 0 with the reason in
`status()`; its models send nothing until it is back and are `failing` meanwhile. Discovery, when on,
adds the servers found among the host's processes; GPU attribution joins NVML's per-process use to the
servers whose process is known.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from agent import __version__
from agent.component import Consumer, Settings
from agent.errors import ConsumerError
from agent.metrics_builder import MetricsBuilder
from agent.ml import vocabulary as v
from agent.receivers.delivery import Delivery
from agent.receivers.inference import health, metrics
from agent.receivers.inference.config import InferenceReceiverConfig, server_url, split_endpoint
from agent.receivers.inference.kinds import KIND_NAMES, kind as kind_of
from agent.receivers.inference.kinds.base import ModelKey, Page, Readings, ServerKind
from agent.receivers.inference.view import Delta, ServerView, mean, quantile
from agent.receivers.schedule import ScrapeErrors, cancel_all, repeat
from agent.signals import Signal

_ACCEPT = "text/plain;version=0.0.4;q=0.9,*/*;q=0.1"


class ScrapeError(Exception):
    """The scrape failed; the message is the reason `status()` gives."""


@dataclass
class ModelState:
    """What the receiver knows of one served model since it first saw it."""

    requests: float = 0.0
    errors: float = 0.0
    tokens: dict[str, float] = field(default_factory=lambda: {v.TOKEN_INPUT: 0.0, v.TOKEN_OUTPUT: 0.0})
    last: Delta = field(default_factory=Delta)

    def add(self, delta: Delta) -> None:
        self.last = delta
        self.requests += delta.total(v.METRIC_PREDICTIONS)
        self.errors += delta.total(v.METRIC_PREDICTION_ERRORS)
        for (name, attributes), value in delta.counters.items():
            if name == v.SERVER_TOKENS:
                kind = dict(attributes).get(v.GENAI_TOKEN_TYPE)
                if kind in self.tokens:
                    self.tokens[kind] += value


@dataclass
class Server:
    kind: ServerKind
    endpoint: str
    metrics_path: str
    model: str | None = None  # the config's model, for servers whose metrics name none
    discovered: bool = False
    pid: int | None = None
    view: ServerView = field(default_factory=ServerView)
    models: dict[ModelKey, ModelState] = field(default_factory=dict)
    up: bool = False
    reason: str | None = "not scraped yet"
    recognised: bool = False  # its kind's metrics were on a page once
    asked_model: str | None = None  # what the server said it serves (model_info)
    last_ok_ns: int = 0
    gpu: Any = None

    @property
    def url(self) -> str:
        return server_url(self.endpoint, self.metrics_path)

    def resource(self) -> dict[str, Any]:
        _, host, port = split_endpoint(self.endpoint)
        return {v.SERVICE_NAME: self.kind.name, "service.instance.id": self.endpoint,
                "server.address": host, "server.port": port}


class InferenceReceiver:
    def __init__(self, config: InferenceReceiverConfig, settings: Settings,
                 consumers: dict[Signal, Consumer]) -> None:
        self._config = config
        self._delivery = Delivery(settings, consumers)
        self._log = settings.logger
        self._id = str(settings.id)
        self._errors = ScrapeErrors(settings)
        self.servers: list[Server] = [Server(kind_of(s.kind), s.endpoint, s.metrics_path, s.model)
                                      for s in config.servers]
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task] = []
        self._gpu: Any = None
        self._gpu_failed = False

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(headers={"User-Agent": f"vigil/{__version__}"})
        self._tasks = [asyncio.create_task(repeat(self.scrape_all, self._config.collection_interval, self._log,
                                                  "scraping inference servers"), name=f"{self._id}/scrape")]
        if self._config.discovery.enabled:
            self._tasks.append(asyncio.create_task(
                repeat(self.discover_once, self._config.discovery.interval, self._log,
                       "discovering inference servers"), name=f"{self._id}/discovery"))

    async def shutdown(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._gpu is not None:
            await asyncio.to_thread(self._gpu.close)
            self._gpu = None

    # -- discovery and GPU ---------------------------------------------------------------------------

    async def discover_once(self) -> None:
        """Add the servers found among the host's processes; drop discovered ones that are gone.

        A configured server that is found keeps its config and gains its pid (for GPU attribution).
        """
        from agent.receivers.inference.discovery import discover

        found = [f for f in await asyncio.to_thread(discover, KIND_NAMES) if f.kind in KIND_NAMES]
        new = list(found)
        for server in list(self.servers):
            match = next((f for f in found if _same_endpoint(f.endpoint, server.endpoint)), None)
            if match is not None:
                server.pid = match.pid
                if match in new:
                    new.remove(match)
            elif server.discovered:
                self._log.info("the %s server at %s (pid %s) is gone", server.kind.name, server.endpoint,
                               server.pid)
                self.servers.remove(server)
        for f in new:
            self._log.info("found a %s server (pid %d: %s); scraping %s", f.kind, f.pid, f.command[:200],
                           server_url(f.endpoint, f.metrics_path))
            self.servers.append(Server(kind_of(f.kind), f.endpoint, f.metrics_path, discovered=True, pid=f.pid))

    async def _sample_gpu(self) -> None:
        pids = {s.pid: s.endpoint for s in self.servers if s.pid is not None}
        if not self._config.gpu.enabled or self._gpu_failed or not pids:
            return
        try:
            if self._gpu is None:
                from agent.receivers.inference.gpu import GpuAttribution

                self._gpu = GpuAttribution(self._log)
            uses = await asyncio.to_thread(self._gpu.sample, pids)
        except Exception as exc:  # noqa: BLE001 - GPU attribution is a bonus; the scrape goes on without it
            self._gpu_failed = True
            self._log.warning("GPU attribution is off: %s", exc)
            return
        for server in self.servers:
            server.gpu = uses.get(server.endpoint)

    # -- scraping ------------------------------------------------------------------------------------

    async def scrape_all(self) -> None:
        await self._sample_gpu()
        servers = list(self.servers)
        results = await asyncio.gather(*(self.scrape_once(s) for s in servers), return_exceptions=True)
        for server, result in zip(servers, results):
            if isinstance(result, Exception):  # a bug: logged, and the other servers' scrapes stand
                self._log.error("scraping %s failed", server.url, exc_info=result)

    async def scrape_once(self, server: Server) -> None:
        """One scrape of `server`: fetch, read in a thread, update its view, hand the points on."""
        now_ns = time.time_ns()
        deltas: dict[ModelKey, Delta] | None = None
        try:
            text = await self._fetch(server.url)
            model = server.model or await self._model_of(server)
            readings, names, started = await asyncio.to_thread(_read, server.kind, text, model)
            self._check_kind(server, names)
            deltas = server.view.update(readings, started)
        except ScrapeError as exc:
            self._down(server, str(exc))
        except ValueError as exc:
            self._down(server, f"the page does not parse: {exc}")
        except Exception as exc:  # noqa: BLE001 - a page a kind cannot read takes only that server down
            self._log.debug("reading %s failed", server.url, exc_info=True)
            self._down(server, f"the page could not be read as {server.kind.name}'s metrics: {exc!r}")
        builder = MetricsBuilder(now_ns)
        builder.resource(server.resource()).record(metrics.UP, 1.0 if deltas is not None else 0.0)
        if deltas is not None:
            self._up(server)
            start_ns = server.last_ok_ns or now_ns
            server.last_ok_ns = now_ns
            server.models = {key: server.models.get(key) or ModelState() for key in deltas}
            one_model = len(deltas) == 1
            for key, delta in deltas.items():
                server.models[key].add(delta)
                model = _model_attributes(key)
                out = builder.resource(model | server.resource())
                metrics.write(out, delta, start_ns, model)
                if one_model and server.gpu is not None:
                    metrics.write_gpu(out, server.gpu, start_ns, model)
            if not one_model and server.gpu is not None:
                metrics.write_gpu(builder.resource(server.resource()), server.gpu, start_ns)
        batch = builder.batch()
        if batch is None:
            return
        try:
            await self._delivery.deliver(batch, "scrape")
        except ConsumerError as exc:
            self._log.warning("pipelines refused %d points scraped from %s: %s", batch.items, server.url, exc)

    @staticmethod
    def _check_kind(server: Server, names: set[str]) -> None:
        """Raise ScrapeError unless the page is its kind's (or an empty one, or an idle server's)."""
        kind = server.kind
        if not names or kind.recognises(names):
            server.recognised = server.recognised or bool(names)
            return
        for name in KIND_NAMES:
            if name != kind.name and kind_of(name).recognises(names):
                raise ScrapeError(f"the page is {name}'s metrics, not {kind.name}'s: check the server's kind")
        if server.recognised:
            raise ScrapeError(f"the server's metric set changed: none of {kind.name}'s metrics are on the page "
                              f"any more")
        if kind.idle_page_has_metrics:
            raise ScrapeError(f"none of {kind.name}'s metrics are on the page ({len(names)} other names)")

    def _up(self, server: Server) -> None:
        if not server.up and server.reason != "not scraped yet":
            self._log.info("%s server %s is back", server.kind.name, server.url)
        server.up, server.reason = True, None

    def _down(self, server: Server, reason: str) -> None:
        self._errors.add(server.url)
        if server.up or server.reason != reason:
            self._log.warning("scraping %s server %s failed: %s", server.kind.name, server.url, reason)
        server.up, server.reason = False, reason
        for state in server.models.values():
            state.last = Delta()  # nothing was measured this interval
        server.asked_model = None  # ask again once it is back: a restart may serve another model

    async def _fetch(self, url: str) -> str:
        assert self._session is not None
        limit, timeout = self._config.body_size_limit, self._config.timeout
        try:
            async with self._session.get(url, headers={"Accept": _ACCEPT},
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                if response.status != 200:
                    raise ScrapeError(f"HTTP {response.status} from {url}")
                if response.content_length is not None and response.content_length > limit:
                    raise ScrapeError(f"the page is larger than body_size_limit ({limit} bytes)")
                body = bytearray()
                async for chunk in response.content.iter_chunked(256 * 1024):
                    body += chunk
                    if len(body) > limit:
                        raise ScrapeError(f"the page is larger than body_size_limit ({limit} bytes)")
                return body.decode(response.charset or "utf-8", "replace")
        except TimeoutError:
            raise ScrapeError(f"no answer within timeout ({timeout:g}s)") from None
        except aiohttp.ClientError as exc:
            raise ScrapeError(str(exc) or type(exc).__name__) from None

    async def _model_of(self, server: Server) -> str | None:
        """The model a server whose metrics name none serves: asked once, else its endpoint."""
        if server.kind.model_info is None:
            return None
        if server.asked_model is None:
            path, extract = server.kind.model_info
            url = server_url(server.endpoint, path)
            try:
                server.asked_model = extract(json.loads(await self._fetch(url))) or server.endpoint
            except (ScrapeError, ValueError) as exc:
                self._log.info("%s did not say which model it serves (%s); naming it %s; set `model` in the "
                               "config to name it", url, exc, server.endpoint)
                server.asked_model = server.endpoint
        return server.asked_model

    # -- status --------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        servers, models = [], []
        for server in self.servers:
            servers.append({"kind": server.kind.name, "endpoint": server.endpoint, "up": server.up,
                            "reason": server.reason, "discovered": server.discovered, "pid": server.pid,
                            "models": len(server.models)})
            one_model = len(server.models) == 1
            for (model, version), state in server.models.items():
                entry = _model_entry(server, model, version, state, server.gpu if one_model else None)
                entry["health"] = health.judge(entry, state.last.total(v.METRIC_PREDICTIONS),
                                               server.kind.generative, self._config.health, server.reason)
                models.append(entry)
        return {"servers": servers, "models": models}


def _model_attributes(key: ModelKey) -> dict[str, str]:
    model, version = key
    return {v.MODEL_NAME: model} if version is None else {v.MODEL_NAME: model, v.MODEL_VERSION: version}


_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"})


def _same_endpoint(a: str, b: str) -> bool:
    """Whether two endpoints are one server: the same port on the same host (every local name is one)."""
    _, host_a, port_a = split_endpoint(a)
    _, host_b, port_b = split_endpoint(b)
    return port_a == port_b and (host_a == host_b or {host_a, host_b} <= _LOCAL_HOSTS)


def _read(kind: ServerKind, text: str, model: str | None) -> tuple[Readings, set[str], float | None]:
    """The page read by its kind, the names on it, its process's start (blocking: a worker thread)."""
    page = Page(text)
    return kind.read(page, model), page.names, page.process_start


def _model_entry(server: Server, model: str, version: str | None, state: ModelState, gpu: Any) -> dict[str, Any]:
    last, kind = state.last, server.kind
    latency = last.histograms.get(kind.latency)
    first_response = last.histograms.get(v.SERVER_FIRST_RESPONSE_DURATION)
    p95_from = first_response if first_response is not None and first_response.bounds else latency
    interval_requests = last.total(v.METRIC_PREDICTIONS)
    pending = last.gauges.get(v.SERVER_REQUESTS_PENDING)
    return {
        "model": model, "version": version, "source": kind.name, "server": server.endpoint, "up": server.up,
        "requests": round(state.requests), "errors": round(state.errors),
        "error_rate": last.total(v.METRIC_PREDICTION_ERRORS) / interval_requests if interval_requests else None,
        "latency_p95_s": quantile(p95_from, 0.95), "latency_mean_s": mean(latency),
        "latency_from": "histogram" if p95_from is not None and p95_from.bounds else "mean",
        "ttft_p95_s": quantile(last.histograms.get(v.GENAI_SERVER_TIME_TO_FIRST_TOKEN), 0.95),
        "tpot_p95_s": quantile(last.histograms.get(v.GENAI_SERVER_TIME_PER_OUTPUT_TOKEN), 0.95),
        "kv_cache_usage": last.gauges.get(v.SERVER_KV_CACHE_USAGE),
        "queue": round(pending) if pending is not None else None,
        "tokens": {k: round(n) for k, n in state.tokens.items()} if kind.generative else None,
        "gpu": _gpu_entry(gpu, last) if gpu is not None else None,
    }


def _gpu_entry(gpu: Any, last: Delta) -> dict[str, Any]:
    """GPU use now; with the energy of GPUs the server owns, joules per 1,000 output tokens / predictions."""
    entry = {"memory_bytes": int(gpu.memory_bytes), "utilization": gpu.utilization,
             "energy_joules": gpu.energy_joules}
    tokens = sum(value for (name, attributes), value in last.counters.items()
                 if name == v.SERVER_TOKENS and dict(attributes).get(v.GENAI_TOKEN_TYPE) == v.TOKEN_OUTPUT)
    predictions = last.total(v.METRIC_PREDICTIONS)
    energy = gpu.energy_joules
    entry["joules_per_1k_output_tokens"] = energy * 1000 / tokens if energy is not None and tokens else None
    entry["joules_per_1k_predictions"] = energy * 1000 / predictions if energy is not None and predictions else None
    return entry
