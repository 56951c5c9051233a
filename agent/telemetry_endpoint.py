"""Vigil's own metrics on the address `service.telemetry.metrics` names (the Collector's :8888).

The same exposition as the admin endpoint's /metrics, at /metrics, for a Prometheus
that scrapes Collectors where they publish their own metrics.
"""

from __future__ import annotations

import logging

from aiohttp import web

from agent.listen import listen
from agent.netconfig import split_host_port
from agent.telemetry import SelfTelemetry

log = logging.getLogger("vigil.telemetry")


class MetricsEndpoint:
    def __init__(self, telemetry: SelfTelemetry, endpoint: str) -> None:
        self.endpoint = endpoint
        self._telemetry = telemetry
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner, self.port = await listen(app, self.endpoint, shutdown_timeout=1)
        log.info("Vigil's own metrics on http://%s:%d/metrics", split_host_port(self.endpoint)[0], self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = self._telemetry.prometheus(request.headers.get("Accept"))
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response
