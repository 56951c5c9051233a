"""Builds the graph from a config, runs it, reloads it, and stops it in order within a deadline.

Start: exporters first, receivers last, so nothing is received before it can
go somewhere; then the admin endpoint, then systemd hears READY=1. Stop:
receivers stop taking data, processors flush downstream, then exporters drain
their queues, all within `service.shutdown_timeout`.

Reload (SIGHUP, or POST /-/reload on the admin endpoint) does what Alloy does,
not what the Collector does: the new config is read and checked first, and if
it is invalid the running graph stays as it is and the log says why. A valid
one is built beside the running graph, reusing every component whose config
(and what it feeds) did not change, so queues, ml windows and learned
references live on. New components start first; if one cannot, the reload is
abandoned and the old graph keeps running untouched. Then the reused
components' edges are re-pointed at the new graph at once, and what only the
old graph had is stopped in shutdown order, flushing what it holds downstream,
so no accepted data is dropped. Receivers whose config changed are restarted
last (they may need the port the old one holds): their senders see a moment of
refused connections and retry.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from agent import pipeline
from agent.config import ConfigError, VigilConfig, load as load_config
from agent.pipeline import Graph
from agent.systemd import Notifier
from agent.telemetry import SelfTelemetry

log = logging.getLogger("vigil.service")

WORKER_THREADS = 4  # the event loop's pool for blocking calls (asyncio.to_thread)


class StartupError(Exception):
    """A component could not start (a port in use, an unreadable file); names the component."""


class Service:
    """The running agent: its graph, self-telemetry, admin endpoint and systemd notifications.

    `loader` reads the config again for a reload (by default, the file the config came from).
    """

    def __init__(self, config: VigilConfig, loader: Callable[[], VigilConfig] | None = None,
                 notifier: Notifier | None = None, configure_logs: bool = False) -> None:
        self.config = config
        self.telemetry = SelfTelemetry()
        self.graph: Graph | None = None
        self.notifier = notifier or Notifier()
        self.state = "new"  # starting, running, reloading, stopping, stopped
        self.started_at: float | None = None
        # Components that are not running although the config has them (a receiver a reload could
        # not restart): the service is then not ready.
        self.problems: list[str] = []
        self.last_reload: dict[str, Any] | None = None
        self.admin = None  # agent.admin.AdminServer, when service.admin.endpoint is set
        self._loader = loader
        self._configure_logs = configure_logs
        self._lock = asyncio.Lock()
        self._watchdog: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def ready(self) -> bool:
        """Every pipeline runs and every receiver listens."""
        return self.state in ("running", "reloading") and not self.problems

    # --- start and stop ----------------------------------------------------------------

    async def start(self) -> None:
        async with self._lock:
            self.state = "starting"
            self.graph = pipeline.build(self.config, self.telemetry)
            self.graph.commit()
            started: list[tuple[str, Any, Any]] = []
            for name, node, component in self.graph.startup_order():
                try:
                    await component.start()
                except Exception as exc:
                    log.error("cannot start %s: %s", name, exc)
                    await self._stop(list(reversed(started)), self.config.service.shutdown_timeout)
                    self.state = "stopped"
                    raise StartupError(f"cannot start {name}: {exc}") from exc
                started.append((name, node, component))
            try:
                await self._start_admin(self.config)
            except OSError as exc:
                # The endpoint is a window onto the agent: losing it must not stop the telemetry.
                log.error("cannot start the admin endpoint on %s; running without it: %s",
                          self.config.service.admin.endpoint, exc)
                self.problems.append(f"admin endpoint: {exc}")
            self.state = "running"
            self.started_at = time.time()
        summary = (f"{len(self.graph.pipelines)} pipelines, {len(self.graph.receivers)} receivers, "
                   f"{len(self.graph.exporters)} exporters")
        log.info("Vigil is running: %s", summary)
        self.notifier.ready(f"running: {summary}")
        interval = self.notifier.watchdog_interval
        if interval:
            self._watchdog = asyncio.create_task(self._ping_watchdog(interval), name="systemd-watchdog")

    async def shutdown(self) -> None:
        if self.graph is None:
            return
        self.state = "stopping"
        self.notifier.stopping()
        async with self._lock:
            await self._stop(self.graph.shutdown_order(), self.config.service.shutdown_timeout)
            self.graph = None
        if self.admin is not None:
            await self.admin.stop()
            self.admin = None
        for task in [self._watchdog, *self._tasks]:
            if task is not None:
                task.cancel()
        self.telemetry.shutdown()
        self.state = "stopped"
        log.info("Vigil stopped")

    @staticmethod
    async def _stop(components: list[tuple[str, Any, Any]], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for name, _, component in components:
            # Whatever the deadline, each component gets a moment to close its sockets and files.
            remaining = max(deadline - loop.time(), 0.5)
            try:
                await asyncio.wait_for(component.shutdown(), remaining)
            except TimeoutError:
                log.warning("%s did not finish shutting down in time", name)
            except Exception:
                log.exception("error shutting down %s", name)

    async def _ping_watchdog(self, interval: float) -> None:
        # From the event loop itself: a loop stuck in a blocking call stops pinging and systemd restarts us.
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    # --- reload --------------------------------------------------------------------------

    def request_reload(self) -> None:
        """Reload in the background (the SIGHUP handler)."""
        task = asyncio.get_running_loop().create_task(self.reload(), name="reload")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self, config: VigilConfig | None = None) -> dict[str, Any]:
        """Read (unless given), check and apply a new config; the outcome, as the admin API returns it.

        `status` is `reloaded`, `invalid` (the config has problems; nothing changed) or `failed` (a new
        component could not start; nothing changed).
        """
        async with self._lock:
            if self.state != "running" or self.graph is None:
                return {"status": "failed", "problems": [f"the service is {self.state}"]}
            result = await self._reload(config)
            self.last_reload = {**result, "time": time.time()}
            return result

    async def _reload(self, config: VigilConfig | None) -> dict[str, Any]:
        log.info("reloading the config")
        if config is None:
            try:
                config = await asyncio.to_thread(self._load)
            except ConfigError as exc:
                log.error("the new config is invalid; still running the previous one:\n%s", exc)
                return {"status": "invalid", "problems": [str(exc)]}
        for warning in config.warnings:
            log.warning("%s: %s", config.source, warning)
        self.state = "reloading"
        self.notifier.reloading()
        try:
            return await self._apply(config)
        finally:
            if self.state == "reloading":  # not when a shutdown began meanwhile
                self.state = "running"
            self.notifier.ready(f"running: {len(self.graph.pipelines)} pipelines"
                                + (f"; not running: {'; '.join(self.problems)}" if self.problems else ""))

    def _load(self) -> VigilConfig:
        if self._loader is not None:
            return self._loader()
        return load_config(self.config.source)

    async def _apply(self, config: VigilConfig) -> dict[str, Any]:
        old = self.graph
        timeout = config.service.shutdown_timeout
        try:
            new = pipeline.build(config, self.telemetry, previous=old)
        except Exception as exc:
            log.exception("cannot build the new config's components; still running the previous config")
            return {"status": "failed", "problems": [f"cannot build the components: {exc}"]}
        fresh = [(name, node, c) for name, node, c in new.startup_order() if node not in new.reused]
        # Everything but the receivers starts while the old graph still runs: a failure leaves it untouched.
        started: list[tuple[str, Any, Any]] = []
        for name, node, component in fresh:
            if node[0] == "receivers":
                continue
            try:
                await component.start()
            except Exception as exc:
                log.error("reload abandoned, still running the previous config: cannot start %s: %s", name, exc)
                await self._stop(list(reversed(started)), timeout)
                self._release(new, [node for _, node, _ in fresh])
                return {"status": "failed", "problems": [f"cannot start {name}: {exc}"]}
            started.append((name, node, component))

        new.commit()
        leftovers = [(name, node, c) for name, node, c in old.shutdown_order() if node not in new.reused]
        await self._stop(leftovers, timeout)
        self._release(old, [node for _, node, _ in leftovers])

        problems = []
        for name, node, component in fresh:
            if node[0] != "receivers":
                continue
            try:
                await component.start()
            except Exception as exc:
                log.error("cannot start %s after the reload; it is not running: %s", name, exc)
                problems.append(f"{name}: {exc}")
        self.graph, previous, self.config = new, self.config, config
        self.problems = problems
        if self._configure_logs and config.service.telemetry.logs != previous.service.telemetry.logs:
            from agent import logs

            logs.setup(config.service.telemetry.logs)
        if config.service.admin != previous.service.admin:
            # Not from here: this may run inside a request to the admin endpoint being moved.
            self._spawn(self._move_admin(config))
        old_nodes = {n for _, n, _ in old.startup_order()}
        counts = {"kept": len(new.reused), "started": len(fresh),
                  "stopped": len(leftovers), "replaced": sum(1 for _, n, _ in fresh if n in old_nodes)}
        log.info("reloaded %s: %d components kept, %d started (%d of them replacing changed ones), "
                 "%d stopped", config.source, counts["kept"], counts["started"], counts["replaced"],
                 counts["stopped"])
        return {"status": "reloaded", "problems": problems, **counts}

    def _release(self, graph: Graph, nodes: list) -> None:
        for node in nodes:
            if node in graph.owners:
                self.telemetry.release(graph.owners[node])

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the admin endpoint -----------------------------------------------------------------

    async def _start_admin(self, config: VigilConfig) -> None:
        if config.service.admin.endpoint is None:
            return
        from agent.admin import AdminServer  # aiohttp's web app, only when it serves

        admin = AdminServer(self, config.service.admin.endpoint)
        await admin.start()
        self.admin = admin

    async def _move_admin(self, config: VigilConfig) -> None:
        await asyncio.sleep(0.1)  # let the answer to a POST /-/reload go out first
        if self.admin is not None:
            await self.admin.stop()
            self.admin = None
        try:
            await self._start_admin(config)
        except OSError as exc:
            log.error("cannot move the admin endpoint to %s; it is off: %s", config.service.admin.endpoint, exc)
            self.problems.append(f"admin endpoint: {exc}")


async def run(config: VigilConfig, loader: Callable[[], VigilConfig] | None = None,
              configure_logs: bool = False) -> int:
    """Run until SIGTERM or SIGINT (SIGHUP reloads), then shut down in order; the process's exit code."""
    service = Service(config, loader, configure_logs=configure_logs)
    loop = asyncio.get_running_loop()
    # Blocking work (scrapes, file writes) is short and rarely overlaps: a few threads do, where the
    # default pool grows to cores + 4 threads, each with its own malloc arena on a many-core host.
    loop.set_default_executor(ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="vigil-worker"))
    # Handlers first: a signal that comes while components start still ends in an orderly shutdown.
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, service.request_reload)
    try:
        await service.start()
    except StartupError:
        return 1  # Service.start has logged which component could not start, and why
    await stop.wait()
    log.info("shutting down")
    await service.shutdown()
    return 0
