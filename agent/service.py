"""Builds the graph from a config, runs it, and stops it in order within a deadline.

Start: exporters first, receivers last, so nothing is received before it can
go somewhere. Stop: receivers stop taking data, processors flush downstream,
then exporters drain their queues, all within `service.shutdown_timeout`.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from agent import pipeline
from agent.config import VigilConfig
from agent.pipeline import Graph
from agent.telemetry import SelfTelemetry

log = logging.getLogger("vigil.service")


class StartupError(Exception):
    """A component could not start (a port in use, an unreadable file); names the component."""


class Service:
    def __init__(self, config: VigilConfig) -> None:
        self.config = config
        self.telemetry = SelfTelemetry()
        self.graph: Graph | None = None

    async def start(self) -> None:
        self.graph = pipeline.build(self.config, self.telemetry)
        started: list[tuple[str, object]] = []
        for name, component in self.graph.startup_order():
            try:
                await component.start()
            except Exception as exc:
                log.error("cannot start %s: %s", name, exc)
                await self._stop(list(reversed(started)), self.config.service.shutdown_timeout)
                raise StartupError(f"cannot start {name}: {exc}") from exc
            started.append((name, component))
        log.info("Vigil is running: %d pipelines, %d receivers, %d exporters", len(self.graph.pipelines),
                 len(self.graph.receivers), len(self.graph.exporters))

    async def shutdown(self) -> None:
        if self.graph is None:
            return
        await self._stop(self.graph.shutdown_order(), self.config.service.shutdown_timeout)
        self.graph = None
        self.telemetry.shutdown()
        log.info("Vigil stopped")

    @staticmethod
    async def _stop(components: list[tuple[str, object]], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for name, component in components:
            # Whatever the deadline, each component gets a moment to close its sockets and files.
            remaining = max(deadline - loop.time(), 0.5)
            try:
                await asyncio.wait_for(component.shutdown(), remaining)
            except TimeoutError:
                log.warning("%s did not finish shutting down in time", name)
            except Exception:
                log.exception("error shutting down %s", name)


async def run(config: VigilConfig) -> int:
    """Run until SIGTERM or SIGINT, then shut down in order; the process's exit code."""
    service = Service(config)
    # Handlers first: a signal that comes while components start still ends in an orderly shutdown.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await service.start()
    except StartupError:
        return 1  # Service.start has logged which component could not start, and why
    await stop.wait()
    log.info("shutting down")
    await service.shutdown()
    return 0
