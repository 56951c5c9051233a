"""The running extensions and Vigil's own metrics endpoints, as the service starts, reloads and stops them.

Extensions start before the pipelines and stop after them. A reload keeps each
extension whose config did not change; a changed one is stopped, then its new
config started (a health check keeps its port that way); if one cannot start, the
previous ones run again and the reload fails.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from agent.component import ComponentId, Kind, Settings
from agent.config import VigilConfig
from agent.extensions.health_check import HealthCheck, listens_beside, shares_port
from agent.telemetry import SelfTelemetry

log = logging.getLogger("vigil.service")


class Extensions:
    def __init__(self, telemetry: SelfTelemetry) -> None:
        self._telemetry = telemetry
        self.running: dict[ComponentId, tuple[Any, Any]] = {}  # id -> (config, extension)
        self.metrics_endpoints: list = []  # agent.telemetry_endpoint.MetricsEndpoint

    def _make(self, config: VigilConfig, cid: ComponentId) -> Any:
        component = config.component(Kind.EXTENSION, cid)
        settings = Settings(cid, self._telemetry, logging.getLogger(f"vigil.extensions.{cid}"),
                            Path(config.service.state_dir), config.service.trace_view_url)
        extension = component.factory.create(component.config, settings)
        if isinstance(extension, HealthCheck):
            extension.on_admin = shares_port(component.config.endpoint, config.service.admin.endpoint)
            extension.beside_admin = listens_beside(component.config.endpoint, config.service.admin.endpoint)
        return extension

    async def start(self, config: VigilConfig) -> None:
        """Start every extension `config` enables, in order; on a failure, stop those started and raise."""
        started: list[tuple[ComponentId, Any, Any]] = []
        try:
            for cid in config.extensions:
                extension = self._make(config, cid)
                await _start(cid, extension)
                started.append((cid, config.component(Kind.EXTENSION, cid).config, extension))
        except Exception:
            await _stop([(cid, e) for cid, _, e in reversed(started)])
            raise
        self.running = {cid: (cfg, e) for cid, cfg, e in started}

    async def reload(self, config: VigilConfig) -> None:
        """Apply `config`'s extensions; on a failure the previous ones run again and this raises."""
        wanted = {cid: config.component(Kind.EXTENSION, cid).config for cid in config.extensions}
        keep = {cid for cid, (cfg, _) in self.running.items() if wanted.get(cid) == cfg}
        going = [(cid, e) for cid, (_, e) in reversed(list(self.running.items())) if cid not in keep]
        await _stop(going)
        started: list[tuple[ComponentId, Any, Any]] = []
        try:
            for cid in config.extensions:
                if cid not in keep:
                    extension = self._make(config, cid)
                    await _start(cid, extension)
                    started.append((cid, wanted[cid], extension))
        except Exception:
            await _stop([(cid, e) for cid, _, e in reversed(started)])
            for cid, extension in reversed(going):
                try:
                    await extension.start()
                except Exception as exc:  # its port was taken meanwhile
                    log.error("cannot start extensions.%s again: %s", cid, exc)
            raise
        fresh = {cid: (cfg, e) for cid, cfg, e in started}
        self.running = {cid: self.running[cid] if cid in keep else fresh[cid] for cid in config.extensions}

    def set_ready(self, ready: bool) -> None:
        """Tell the extensions that watch the pipelines (the health check) whether all of them run."""
        for _, extension in self.running.values():
            notify = getattr(extension, "ready" if ready else "not_ready", None)
            if callable(notify):
                notify()

    def health_check_on_admin(self) -> HealthCheck | None:
        for _, extension in self.running.values():
            if isinstance(extension, HealthCheck) and extension.on_admin:
                return extension
        return None

    async def stop(self) -> None:
        await _stop([(cid, e) for cid, (_, e) in reversed(list(self.running.items()))])
        self.running = {}

    # --- service.telemetry.metrics ----------------------------------------------------------

    async def serve_metrics(self, endpoints: list[str]) -> None:
        """Serve Vigil's own metrics on `endpoints`, replacing those served now if they differ."""
        if [m.endpoint for m in self.metrics_endpoints] == endpoints:
            return
        from agent.telemetry_endpoint import MetricsEndpoint  # aiohttp, only when asked

        await self.stop_metrics()
        for endpoint in endpoints:
            served = MetricsEndpoint(self._telemetry, endpoint)
            try:
                await served.start()
            except OSError as exc:
                await self.stop_metrics()
                raise OSError(exc.errno, f"service.telemetry.metrics: cannot listen on {endpoint}: "
                                         f"{exc.strerror or exc}") from exc
            self.metrics_endpoints.append(served)

    async def stop_metrics(self) -> None:
        for served in self.metrics_endpoints:
            await served.stop()
        self.metrics_endpoints = []


async def _start(cid: ComponentId, extension: Any) -> None:
    try:
        await extension.start()
    except Exception as exc:
        raise RuntimeError(f"cannot start extensions.{cid}: {exc}") from exc


async def _stop(extensions: list[tuple[ComponentId, Any]]) -> None:
    for cid, extension in extensions:
        try:
            await extension.shutdown()
        except Exception:
            log.exception("error shutting down extensions.%s", cid)
