"""The `prometheus` receiver itself: each target scraped on its job's schedule, the page handed on as OTLP.

Each target is its own resource: `service.name` (the job),
`service.instance.id` (host:port), `server.address`, `server.port`,
`url.scheme`, plus the target's static labels. A scrape fails (`up` 0, and
`vigil_receiver_scrape_errors`) when the target is unreachable, does not
answer within `scrape_timeout`, answers an HTTP error or a page over
`body_size_limit`, or the page does not parse.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

import aiohttp

from agent import __version__
from agent.component import Consumer, Settings
from agent.errors import ConsumerError
from agent.receivers.delivery import Delivery
from agent.receivers.prometheus.config import PrometheusReceiverConfig, split_target
from agent.receivers.prometheus.convert import Target, convert, scrape_metrics
from agent.receivers.schedule import ScrapeErrors, cancel_all, repeat
from agent.signals import Batch, Signal

# What a scrape asks for: the text format, which every exporter speaks (OpenMetrics is parsed too
# when a target answers with it anyway).
ACCEPT = "text/plain;version=0.0.4;q=0.9,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1"


class ScrapeError(Exception):
    """The scrape failed; the message says why, for the log."""


class PrometheusReceiver:
    def __init__(self, config: PrometheusReceiverConfig, settings: Settings,
                 consumers: dict[Signal, Consumer]) -> None:
        self._delivery = Delivery(settings, consumers)
        self._log = settings.logger
        self._id = str(settings.id)
        self.targets: list[Target] = []
        for job in config.config.scrape_configs:
            for static in job.static_configs:
                for instance in static.targets:
                    host, port = split_target(instance)
                    resource: dict[str, Any] = {"service.name": job.job_name, "service.instance.id": instance,
                                                "server.address": host, "server.port": port,
                                                "url.scheme": job.scheme}
                    resource.update(static.labels)
                    self.targets.append(Target(job.job_name, instance,
                                               f"{job.scheme}://{instance}{job.metrics_path}", resource,
                                               job.scrape_interval, job.scrape_timeout, job.body_size_limit,
                                               job.honor_timestamps))
        self._errors = ScrapeErrors(settings)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task] = []
        self._last: dict[str, dict[str, Any]] = {}

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(headers={"User-Agent": f"vigil/{__version__}"})
        self._tasks = [asyncio.create_task(repeat(functools.partial(self.scrape_once, t), t.interval, self._log,
                                                  f"scraping {t.url}"),
                                           name=f"{self._id}/{t.job}/{t.instance}")
                       for t in self.targets]

    async def shutdown(self) -> None:
        await cancel_all(self._tasks)
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
            self._errors.add(target.url)
            self._log.warning("scraping %s failed: %s", target.url, error)
        batch = Batch(Signal.METRICS, request)
        try:
            await self._delivery.deliver(batch, "scrape")
        except ConsumerError as exc:
            self._log.warning("pipelines refused %d points scraped from %s: %s", batch.items, target.url, exc)

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
