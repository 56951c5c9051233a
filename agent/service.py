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
after the rest has started (they may need the port the old one holds): their
senders see a moment of refused connections and retry. If a new receiver
cannot start (its port is taken), the reload is abandoned like any other: the
old receivers start again on the old graph, which was never unwired, and the
answer names the error. An admin endpoint that moves listens on its new
address before the reload commits, so a taken port fails the reload too.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from agent import pipeline
from agent.component import Component, Kind
from agent.config import ConfigError, VigilConfig, load as load_config
from agent.netconfig import split_host_port
from agent.pipeline import Graph, Node, NodeKind
from agent.service_extensions import Extensions
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
        self.extensions = Extensions(self.telemetry)
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
            try:
                await self.extensions.start(self.config)
                await self.extensions.serve_metrics(self.config.service.telemetry.metrics.endpoints())
            except Exception as exc:
                log.error("%s", exc)
                await self.extensions.stop()
                self.state = "stopped"
                raise StartupError(str(exc)) from exc
            self.graph = pipeline.build(self.config, self.telemetry)
            self.graph.commit()
            started: list[tuple[str, Node, Component]] = []
            for name, node, component in self.graph.startup_order():
                try:
                    await component.start()
                except Exception as exc:
                    log.error("cannot start %s: %s", name, exc)
                    await self._stop(list(reversed(started)), self.config.service.shutdown_timeout)
                    await self.extensions.stop_metrics()
                    await self.extensions.stop()
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
            self.extensions.set_ready(self.ready)
        summary = ", ".join(_count(len(parts), noun) for parts, noun in (
            (self.graph.pipelines, "pipeline"), (self.graph.receivers, "receiver"), (self.graph.exporters, "exporter")))
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
        self.extensions.set_ready(False)
        async with self._lock:
            await self._stop(self.graph.shutdown_order(), self.config.service.shutdown_timeout)
            self.graph = None
        if self.admin is not None:
            await self.admin.stop()
            self.admin = None
        await self.extensions.stop_metrics()
        await self.extensions.stop()
        for task in [self._watchdog, *self._tasks]:
            if task is not None:
                task.cancel()
        self.telemetry.shutdown()
        self.state = "stopped"
        log.info("Vigil stopped")

    @staticmethod
    async def _stop(components: list[tuple[str, Node, Component]], timeout: float) -> None:
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
            try:
                await self.extensions.reload(config)
            except Exception as exc:
                log.error("reload abandoned, still running the previous config: %s", exc)
                return {"status": "failed", "problems": [str(exc)]}
            result = await self._apply(config)
            if result["status"] != "reloaded":
                await self._restore_extensions()
            else:
                await self._serve_metrics_again(config)
            return result
        finally:
            if self.state == "reloading":  # not when a shutdown began meanwhile
                self.state = "running"
                self.extensions.set_ready(self.ready)
            self.notifier.ready(f"running: {len(self.graph.pipelines)} pipelines"
                                + (f"; not running: {'; '.join(self.problems)}" if self.problems else ""))

    async def _restore_extensions(self) -> None:
        try:
            await self.extensions.reload(self.config)
        except Exception as exc:
            log.error("the previous config's extensions could not all start again: %s", exc)
            self.problems.append(f"extensions: {exc}")

    async def _serve_metrics_again(self, config: VigilConfig) -> None:
        self.problems = [p for p in self.problems if not p.startswith("service.telemetry.metrics:")]
        try:
            await self.extensions.serve_metrics(config.service.telemetry.metrics.endpoints())
        except OSError as exc:
            log.error("%s", exc.strerror or exc)
            self.problems.append(str(exc.strerror or exc))

    def health_check_on_admin(self):
        """The health_check extension the admin endpoint serves (its port is the admin's), or None."""
        return self.extensions.health_check_on_admin()

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
        leftovers = [(name, node, c) for name, node, c in old.shutdown_order() if node not in new.reused]
        started: list[tuple[str, Node, Component]] = []  # new components running
        displaced: list[tuple[str, Node, Component]] = []  # old ones stopped early to free their port
        stopped_receivers: list = []  # ids of the old receivers stopped for the new ones
        admin = None

        async def abandon(problem: str) -> dict[str, Any]:
            # The old graph was never unwired: what of it stopped starts again, and it runs on as it was.
            log.error("reload abandoned, still running the previous config: %s", problem)
            begun = {node for _, node, _ in started}
            await self._stop([e for e in new.shutdown_order() if e[1] in begun], timeout)
            self._release(new, [node for _, node, _ in fresh])
            if admin is not None:
                await admin.stop()
            await self._start_again(displaced)
            await self._restore_receivers(old, stopped_receivers)
            return {"status": "failed", "problems": [problem]}

        # Everything but the receivers starts while the old graph still runs.
        for name, node, component in fresh:
            if node.kind is not NodeKind.RECEIVER:
                try:
                    await self._start_beside(name, node, component, old, displaced, timeout)
                except Exception as exc:
                    return await abandon(f"cannot start {name}: {exc}")
                started.append((name, node, component))
        try:
            admin = await self._open_admin_beside(config)
        except OSError as exc:
            return await abandon(f"cannot start the admin endpoint on {config.service.admin.endpoint}: {exc}")

        # Receivers that go stop before the new ones start (a changed one may need its own port).
        gone = [entry for entry in leftovers if entry[1].kind is NodeKind.RECEIVER]
        await self._stop(gone, timeout)
        stopped_receivers = [node.id for _, node, _ in gone]
        for name, node, component in fresh:
            if node.kind is NodeKind.RECEIVER:
                try:
                    await component.start()
                except Exception as exc:
                    return await abandon(f"cannot start {name}: {exc}")
                started.append((name, node, component))

        new.commit()
        rest = [entry for entry in leftovers if entry[1].kind is not NodeKind.RECEIVER and entry not in displaced]
        await self._stop(rest, timeout)
        self._release(old, [node for _, node, _ in leftovers])

        self.graph, previous, self.config = new, self.config, config
        # What is still down is what the new graph kept as it was (a receiver a failed reload could
        # not bring back, the admin endpoint if it stays where it is).
        kept = {node.name for node in new.reused if node.kind is NodeKind.RECEIVER}
        if config.service.admin == previous.service.admin:
            kept.add("admin endpoint")
        self.problems = [p for p in self.problems if p.split(":", 1)[0] in kept]
        if self._configure_logs and config.service.telemetry.logs != previous.service.telemetry.logs:
            from agent import logs

            logs.setup(config.service.telemetry.logs)
        if config.service.admin != previous.service.admin:
            # Not from here: this may run inside a request to the admin endpoint being moved.
            self._spawn(self._move_admin(config, admin))
        old_nodes = {n for _, n, _ in old.startup_order()}
        counts = {"kept": len(new.reused), "started": len(fresh),
                  "stopped": len(leftovers), "replaced": sum(1 for _, n, _ in fresh if n in old_nodes)}
        log.info("reloaded %s: %d components kept, %d started (%d of them replacing changed ones), "
                 "%d stopped", config.source, counts["kept"], counts["started"], counts["replaced"],
                 counts["stopped"])
        return {"status": "reloaded", "problems": list(self.problems), **counts}

    async def _start_beside(self, name: str, node: Node, component: Component, old: Graph,
                            displaced: list, timeout: float) -> None:
        """Start a new component while the old graph runs. One that wants the port its predecessor
        (same id, changed config: a `prometheus` exporter) listens on starts once that one has
        stopped, which is then added to `displaced`."""
        try:
            await component.start()
            return
        except OSError as exc:
            previous = old.components().get(node)
            if exc.errno != errno.EADDRINUSE or previous is None:
                raise
        await self._stop([(name, node, previous)], timeout)
        displaced.append((name, node, previous))
        await component.start()

    async def _start_again(self, components: list[tuple[str, Node, Component]]) -> None:
        for name, _, component in components:
            try:
                await component.start()
            except Exception as exc:
                log.error("cannot start %s again after the abandoned reload; it is not running: %s", name, exc)
                self.problems.append(f"{name}: {exc}")

    async def _restore_receivers(self, graph: Graph, cids: list) -> None:
        """Start again, as new instances on their old edges, the receivers a failed reload stopped."""
        back = {f"receivers.{cid}" for cid in cids}
        self.problems = [p for p in self.problems if p.split(":", 1)[0] not in back]
        for cid in cids:
            receiver = pipeline.remake_receiver(graph, self.config, self.telemetry, cid)
            try:
                await receiver.start()
            except Exception as exc:
                # Its port was taken in the moment it was free: the service says it is not ready.
                log.error("cannot start receivers.%s again after the abandoned reload; it is not running: %s",
                          cid, exc)
                self.problems.append(f"receivers.{cid}: {exc}")

    def _release(self, graph: Graph, nodes: list[Node]) -> None:
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
        self.admin = await self._new_admin(config)

    async def _new_admin(self, config: VigilConfig):
        from agent.admin import AdminServer  # aiohttp's web app, only when it serves
        from agent.extensions.health_check import listens_beside

        endpoint = config.service.admin.endpoint
        # A health check on every interface of this port listens beside it: both sockets must allow it.
        beside = any(cid.type == "health_check"
                     and listens_beside(config.component(Kind.EXTENSION, cid).config.endpoint, endpoint)
                     for cid in config.extensions)
        admin = AdminServer(self, endpoint, reuse_port=beside)
        await admin.start()
        return admin

    async def _open_admin_beside(self, config: VigilConfig):
        """The admin endpoint a reload moves to, listening while the old one still serves, so that a
        port it cannot have fails the reload. None when it does not move, is turned off, or wants
        the old one's port (it moves after the answer then)."""
        endpoint = config.service.admin.endpoint
        if endpoint is None or config.service.admin == self.config.service.admin:
            return None
        if self.admin is not None and split_host_port(endpoint)[1] == self.admin.port:
            return None
        return await self._new_admin(config)

    async def _move_admin(self, config: VigilConfig, opened: Any) -> None:
        await asyncio.sleep(0.1)  # let the answer to a POST /-/reload go out first
        old = self.admin
        if opened is not None or config.service.admin.endpoint is None:
            self.admin = opened
            if old is not None:
                await old.stop()
            return
        self.admin = None
        if old is not None:
            await old.stop()
        try:
            self.admin = await self._new_admin(config)
            return
        except OSError as exc:
            log.error("cannot move the admin endpoint to %s: %s", config.service.admin.endpoint, exc)
            problem = f"admin endpoint: cannot move to {config.service.admin.endpoint}: {exc}"
        if old is not None:
            try:
                await old.start()  # back on the port it held a moment ago
                self.admin = old
            except OSError as exc:
                log.error("the admin endpoint is off: %s", exc)
        self.problems.append(problem)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


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
