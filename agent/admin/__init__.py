"""The admin HTTP endpoint (`service.admin.endpoint`, default 127.0.0.1:13133).

    GET  /-/healthy                     200 while the process serves (503 once it stops)
    GET  /-/ready                       200 when every pipeline runs and every receiver listens
    POST /-/reload                      reload the config (as SIGHUP); 200, or 400/500 with the problems
    GET  /metrics                       Vigil's own telemetry, Prometheus text format
    GET  /api/v1/status                 every component's state, counters and status(), pipelines
    GET  /api/v1/models                 the models the ml processors watch and the inference servers serve
    GET  /api/v1/models/{name}/health   {"status": "ok"|"degraded"|"failing", "reasons": [...]}
    GET  /                              the status page (HTML with inline SVG, no external assets)
    *    /api/v1/...                    what components offer through `admin_routes()`

Components come and go with reloads, so their routes are not registered in
aiohttp's (frozen) router: one catch-all route resolves them against a router
built for the current graph.

A POST, PUT or DELETE that a browser was made to send from another site is
refused with 403 before any handler runs (`origin.py`).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from aiohttp import web

from agent.admin import models, origin, page, status
from agent.component import AdminRoutes
from agent.listen import listen
from agent.netconfig import split_host_port

log = logging.getLogger("vigil.admin")


def json_response(data: Any, status_code: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, indent=None, default=str), status=status_code,
                        content_type="application/json")


class AdminServer:
    def __init__(self, service: Any, endpoint: str, reuse_port: bool = False) -> None:
        self._service = service
        self._endpoint = endpoint
        self._reuse_port = reuse_port  # a health check listens beside it on this port
        self._runner: web.AppRunner | None = None
        self._routes_for: Any = None  # the graph the component router was built for
        self._component_router: web.UrlDispatcher | None = None
        self.port: int | None = None
        self._refused = service.telemetry.counter(
            "vigil_admin_refused_requests", "state-changing admin requests refused as sent from another site")
        self._refusals_unlogged = 0
        self._refusal_logged_at = float("-inf")

    async def start(self) -> None:
        app = web.Application(middlewares=[self._health_check, self._same_origin_only])
        app.router.add_get("/-/healthy", self._healthy)
        app.router.add_get("/-/ready", self._ready)
        app.router.add_post("/-/reload", self._reload)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/api/v1/status", self._status)
        app.router.add_get("/api/v1/models", self._models)
        app.router.add_get("/api/v1/models/{name}/health", self._model_health)
        app.router.add_get("/", self._page)
        app.router.add_route("*", "/api/v1/{tail:.*}", self._component_route)
        # the real port when 0 was asked
        self._runner, self.port = await listen(app, self._endpoint, reuse_port=self._reuse_port)
        log.info("admin endpoint listening on http://%s:%d/", split_host_port(self._endpoint)[0], self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _health_check(self, request: web.Request, handler: Any) -> web.StreamResponse:
        # A health_check extension on this endpoint's port answers at its path; at / a browser
        # (asking for HTML) still gets the status page.
        health = self._service.health_check_on_admin()
        if (health is not None and request.method == "GET" and request.path == health.path
                and not (health.path == "/" and "text/html" in request.headers.get("Accept", ""))):
            return await health.handle(request)
        return await handler(request)

    @web.middleware
    async def _same_origin_only(self, request: web.Request, handler: Any) -> web.StreamResponse:
        why = origin.refusal(request.method, request.headers, split_host_port(self._endpoint)[0])
        if why is None:
            return await handler(request)
        self._refused.add(1, {"method": request.method})
        self._refusals_unlogged += 1
        now = time.monotonic()
        if now - self._refusal_logged_at >= 60:  # a page may send them in a loop: a line a minute
            log.warning("refused %d state-changing admin request(s) sent from another site, the last "
                        "%s %s: %s", self._refusals_unlogged, request.method, request.path[:100], why)
            self._refusals_unlogged, self._refusal_logged_at = 0, now
        return json_response({"error": f"refused: {why}"}, 403)

    # --- health -----------------------------------------------------------------------------

    async def _healthy(self, _: web.Request) -> web.Response:
        state = self._service.state
        healthy = state in ("starting", "running", "reloading")
        return json_response({"status": "ok" if healthy else "unavailable", "state": state},
                             200 if healthy else 503)

    async def _ready(self, _: web.Request) -> web.Response:
        service = self._service
        if service.ready:
            return json_response({"status": "ready"})
        reasons = list(service.problems) or [f"the service is {service.state}"]
        return json_response({"status": "not ready", "reasons": reasons}, 503)

    async def _reload(self, _: web.Request) -> web.Response:
        result = await self._service.reload()
        code = {"reloaded": 200, "invalid": 400}.get(result["status"], 500)
        return json_response(result, code)

    # --- telemetry and status ------------------------------------------------------------------

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = self._service.telemetry.prometheus(request.headers.get("Accept"))
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def _status(self, _: web.Request) -> web.Response:
        return json_response(status.collect(self._service))

    async def _models(self, _: web.Request) -> web.Response:
        return json_response({"models": models.list_models(self._service)})

    async def _model_health(self, request: web.Request) -> web.Response:
        verdict = models.health(self._service, request.match_info["name"], request.query.get("version"))
        if verdict is None:
            return json_response({"error": f"no ml processor has seen model {request.match_info['name']!r} "
                                           f"and no inference server serves it"}, 404)
        return json_response(verdict)

    async def _page(self, _: web.Request) -> web.Response:
        verdicts = {(entry.get("model"), entry.get("version") or ""): models.version_health(entry, snapshot)
                    for _, entry, snapshot in models.model_entries(self._service)}
        return web.Response(text=page.render(status.collect(self._service), verdicts, self._alerts()),
                            content_type="text/html")

    def _alerts(self) -> list[dict[str, Any]]:
        """Each alerts processor's alerts, as its admin route lists them (for the page's alerts panel)."""
        graph = self._service.graph
        shared = graph.shared.items() if graph is not None else ()
        return [{"processor": str(cid), "alerts": engine.alerts()} for cid, engine in shared
                if callable(getattr(engine, "alerts", None)) and hasattr(engine, "silences")]

    # --- routes components offer ------------------------------------------------------------

    async def _component_route(self, request: web.Request) -> web.StreamResponse:
        router = self._router()
        match = await router.resolve(request)
        if match.http_exception is not None:
            raise match.http_exception
        # As aiohttp's own Application does once it resolved a route: the handler reads its
        # path parameters from request.match_info. On a copy: the outer match is cached once read
        # (a middleware reads it).
        inner = request.clone()
        inner._match_info = match
        return await match.handler(inner)

    def _router(self) -> web.UrlDispatcher:
        graph = self._service.graph
        if self._component_router is None or graph is not self._routes_for:
            router = web.UrlDispatcher()
            for name, _, component in (graph.startup_order() if graph is not None else []):
                if not isinstance(component, AdminRoutes):
                    continue
                for method, path, handler in component.admin_routes():
                    try:
                        router.add_route(method, path, handler)
                    except (ValueError, RuntimeError) as exc:
                        log.warning("%s: cannot serve %s %s: %s", name, method, path, exc)
            self._component_router, self._routes_for = router, graph
        return self._component_router
