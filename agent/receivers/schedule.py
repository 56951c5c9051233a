"""The schedule every scraping receiver runs on, and the count of its scrapes that failed.

A scrape runs on a fixed grid of `interval` seconds. A scrape still running
when its next turn comes makes that turn skipped, not queued, so a slow
target or scraper never piles scrapes up; a turn that raises is logged and
the next runs as usual.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, NoReturn

from agent.component import Settings


async def repeat(turn: Callable[[], Awaitable[None]], interval: float, log: logging.Logger, what: str,
                 initial_delay: float = 0.0) -> NoReturn:
    """Run `turn` every `interval` seconds, after `initial_delay`, until cancelled; `what` names it in the log."""
    await asyncio.sleep(initial_delay)
    next_turn = time.monotonic()
    while True:
        try:
            await turn()
        except Exception:  # noqa: BLE001 - a bug must not end the schedule
            log.exception("%s failed", what)
        next_turn += interval
        now = time.monotonic()
        if next_turn < now:  # the turn overran: skip the turns it missed
            skipped = int((now - next_turn) // interval) + 1
            next_turn += skipped * interval
            log.debug("%s overran; skipped %d turns", what, skipped)
        await asyncio.sleep(next_turn - now)


class ScrapeErrors:
    """One receiver's `vigil_receiver_scrape_errors`, by scraper (a host scraper, a target's URL)."""

    def __init__(self, settings: Settings) -> None:
        self._counter = settings.telemetry.counter("vigil_receiver_scrape_errors", "scrapes that failed, by scraper")
        self._receiver = str(settings.id)

    def add(self, scraper: str) -> None:
        self._counter.add(1, {"receiver": self._receiver, "scraper": scraper})


async def cancel_all(tasks: list[asyncio.Task]) -> None:
    """Stop a receiver's schedule loops and wait until each has ended."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
