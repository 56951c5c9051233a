"""What the scraping receivers (hostmetrics, nvml) share: one scheduled loop per scraper.

Each scraper runs on its own schedule (`agent.receivers.schedule`) in a worker
thread (psutil and NVML calls block), so a slow scraper never delays another,
the receivers, or the event loop. A scraper that raises is logged and
counted; the next turn runs as usual.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Annotated, Any, Mapping, Protocol

from pydantic import Field

from agent.component import Consumer, Settings
from agent.configmodel import Duration, StrictModel
from agent.errors import ConsumerError
from agent.metrics_builder import MetricsBuilder
from agent.receivers.delivery import Delivery
from agent.receivers.latest import Latest
from agent.receivers.schedule import ScrapeErrors, cancel_all, repeat
from agent.signals import Signal


class ScrapeConfig(StrictModel):
    """The Collector's scraper-controller settings."""

    collection_interval: Annotated[Duration, Field(gt=0)] = 10.0
    initial_delay: Annotated[Duration, Field(ge=0)] = 1.0


class Scraper(Protocol):
    name: str

    def scrape(self, out: MetricsBuilder, resource: Mapping[str, Any]) -> None:
        """Record this scraper's metrics into `out` (blocking; runs in a worker thread)."""


class ScrapingReceiver:
    def __init__(self, scrapers: list[Scraper], config: ScrapeConfig, settings: Settings,
                 consumers: dict[Signal, Consumer], resource: Mapping[str, Any]) -> None:
        self._scrapers = scrapers
        self._interval = config.collection_interval
        self._initial_delay = config.initial_delay
        self._delivery = Delivery(settings, consumers)
        self._resource = dict(resource)
        self._log = settings.logger
        self._id = str(settings.id)
        self._errors = ScrapeErrors(settings)
        self._tasks: list[asyncio.Task] = []
        self.latest = Latest()  # what the status page's host panel shows

    def status(self) -> dict[str, Any]:
        return {"latest": self.latest.status()}

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(repeat(functools.partial(self.scrape_once, s), self._interval, self._log,
                                                  f"scraper {s.name}", self._initial_delay),
                                           name=f"{self._id}/{s.name}")
                       for s in self._scrapers]

    async def shutdown(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []

    async def scrape_once(self, scraper: Scraper) -> None:
        """One turn of `scraper`: scrape in a thread, then hand the points to the pipelines."""
        builder = MetricsBuilder()
        try:
            await asyncio.to_thread(scraper.scrape, builder, self._resource)
        except Exception as exc:
            self._errors.add(scraper.name)
            self._log.warning("scraper %s failed: %s", scraper.name, exc, exc_info=True)
            return
        batch = builder.batch()
        if batch is None:
            return
        try:
            self.latest.observe(batch.message)
        except Exception as exc:  # the panel's view must never stop the data
            self._log.warning("scraper %s: cannot read the latest values for the status page: %s", scraper.name, exc)
        try:
            await self._delivery.deliver(batch, "scrape")
        except Exception as exc:  # whatever the pipeline raises, the next turn still runs
            self._log.warning("pipelines refused %d points from scraper %s: %s", batch.items,
                              scraper.name, exc, exc_info=not isinstance(exc, ConsumerError))
