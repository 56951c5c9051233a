"""The scraper loop the scraping receivers share: schedules, overruns, refusals, shutdown.

These drive `ScrapingReceiver` with small scrapers of their own (no psutil
involved) and a consumer that records what reaches it.
"""

from __future__ import annotations

import asyncio
import time

from agent.component import ComponentId, Settings
from agent.errors import RefusedError
from agent.metrics_builder import Instrument, MetricSpec
from agent.receivers.scraping import ScrapeConfig, ScrapingReceiver
from agent.signals import Signal
from agent.telemetry import SelfTelemetry
from tests.conftest import async_wait_for
from tests.sink import InMemorySink

TICK = MetricSpec("test.tick", "1", Instrument.GAUGE, "one point per scrape")


class Ticker:
    """Records the monotonic start of each scrape; sleeps `delays[i]` in scrape i (0 after)."""

    def __init__(self, name: str = "ticker", delays: tuple[float, ...] = (), points: bool = True) -> None:
        self.name = name
        self.starts: list[float] = []
        self._delays = list(delays)
        self._points = points

    def scrape(self, out, resource) -> None:
        self.starts.append(time.monotonic())
        if self._delays:
            time.sleep(self._delays.pop(0))
        if self._points:
            out.resource(resource).record(TICK, len(self.starts))


def _receiver(scrapers, interval: float, initial_delay: float = 0.0):
    telemetry = SelfTelemetry()
    consumer = InMemorySink()
    receiver = ScrapingReceiver(scrapers, ScrapeConfig(collection_interval=f"{interval}s",
                                                       initial_delay=f"{initial_delay}s"),
                                Settings(ComponentId("test"), telemetry), {Signal.METRICS: consumer},
                                {"host.name": "h"})
    return receiver, consumer, telemetry


async def test_an_overrunning_scrape_skips_the_turns_it_missed_instead_of_queueing_them():
    ticker = Ticker(delays=(0.35,))
    receiver, consumer, _ = _receiver([ticker], interval=0.1)
    await receiver.start()
    try:
        assert await async_wait_for(lambda: len(ticker.starts) >= 4, timeout=5)
    finally:
        await receiver.shutdown()
    gaps = [b - a for a, b in zip(ticker.starts, ticker.starts[1:])]
    # The first scrape took 0.35s: the turns at 0.1, 0.2 and 0.3 are gone, the next is on the grid at
    # 0.4 (not three scrapes back to back), and the interval holds after that.
    assert 0.37 <= gaps[0] <= 0.5, gaps
    assert all(0.07 <= gap <= 0.2 for gap in gaps[1:]), gaps


async def test_initial_delay_comes_before_the_first_scrape():
    ticker = Ticker()
    receiver, _, _ = _receiver([ticker], interval=0.1, initial_delay=0.3)
    started = time.monotonic()
    await receiver.start()
    try:
        assert await async_wait_for(lambda: ticker.starts, timeout=5)
    finally:
        await receiver.shutdown()
    assert ticker.starts[0] - started >= 0.28


async def test_points_refused_by_the_pipelines_are_counted_and_scraping_goes_on():
    ticker = Ticker()
    receiver, consumer, telemetry = _receiver([ticker], interval=0.05)
    consumer.error = RefusedError("queue full")
    await receiver.start()
    try:
        assert await async_wait_for(lambda: len(ticker.starts) >= 3, timeout=5)
        consumer.error = None
        assert await async_wait_for(lambda: consumer.batches, timeout=5)
    finally:
        await receiver.shutdown()
    assert telemetry.total("vigil_receiver_refused_metric_points", receiver="test") >= 2
    assert telemetry.total("vigil_receiver_accepted_metric_points", receiver="test",
                           transport="scrape") == len(consumer.batches)
    assert telemetry.total("vigil_receiver_scrape_errors") == 0


async def test_an_unexpected_pipeline_error_does_not_end_the_scraper():
    ticker = Ticker()
    receiver, consumer, telemetry = _receiver([ticker], interval=0.05)
    consumer.error = OSError("disk full")  # not a ConsumerError: a bug or an I/O failure downstream
    await receiver.start()
    try:
        assert await async_wait_for(lambda: len(ticker.starts) >= 3, timeout=5)
        consumer.error = None
        assert await async_wait_for(lambda: consumer.batches, timeout=5)
    finally:
        await receiver.shutdown()
    assert telemetry.total("vigil_receiver_refused_metric_points", receiver="test") >= 2


def test_a_zero_collection_interval_is_a_config_error():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="greater than 0"):
        ScrapeConfig(collection_interval="0s")


async def test_a_scrape_without_points_sends_nothing():
    empty, ticker = Ticker("empty", points=False), Ticker()
    receiver, consumer, telemetry = _receiver([empty, ticker], interval=0.05)
    await receiver.start()
    try:
        assert await async_wait_for(lambda: len(empty.starts) >= 3 and len(ticker.starts) >= 3, timeout=5)
    finally:
        await receiver.shutdown()
    assert consumer.batches and all(b.items == 1 for b in consumer.batches)
    resource = consumer.batches[0].message.resource_metrics[0].resource
    assert [(kv.key, kv.value.string_value) for kv in resource.attributes] == [("host.name", "h")]


async def test_shutdown_stops_every_loop():
    tickers = [Ticker("a"), Ticker("b")]
    receiver, consumer, _ = _receiver(tickers, interval=0.05)
    await receiver.start()
    assert await async_wait_for(lambda: all(len(t.starts) >= 2 for t in tickers), timeout=5)
    await receiver.shutdown()
    counts = [len(t.starts) for t in tickers]
    batches = len(consumer.batches)
    await asyncio.sleep(0.2)
    assert [len(t.starts) for t in tickers] == counts
    assert len(consumer.batches) == batches
