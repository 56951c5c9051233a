"""The `inference_proxy` receiver itself: the listening server, the forwarder and the observer, started and stopped."""

from __future__ import annotations

import functools
import re
from typing import Any

from aiohttp import web
from yarl import URL

from agent.component import Consumer, Settings
from agent.netconfig import split_host_port
from agent.receivers.inference_proxy import openai, v2
from agent.receivers.inference_proxy.config import InferenceProxyConfig
from agent.receivers.inference_proxy.exchange import Route
from agent.receivers.inference_proxy.forward import Forwarder, ProxyCounters
from agent.receivers.inference_proxy.observer import Observer
from agent.signals import Signal

_V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
_OPENAI = {"/v1/chat/completions": "chat", "/v1/completions": "text_completion"}


def v2_route(method: str, path: str) -> Route | None:
    if method != "POST":
        return None
    match = _V2_INFER.match(path)
    return Route("infer", match[1], match[2]) if match else None


def openai_route(method: str, path: str) -> Route | None:
    operation = _OPENAI.get(path) if method == "POST" else None
    return Route(operation) if operation else None


class InferenceProxyReceiver:
    def __init__(self, config: InferenceProxyConfig, settings: Settings, consumers: dict[Signal, Consumer]) -> None:
        self._config = config
        self._log = settings.logger
        service_name = config.service_name or str(settings.id)
        upstream = URL(config.upstream)
        server = {"server.address": upstream.host, "server.port": upstream.port}
        if config.protocol == "openai":
            to_spans, route = functools.partial(openai.spans, server=server), openai_route
        else:
            to_spans = functools.partial(v2.spans, config=config.payloads, service_name=service_name)
            route = v2_route
        self._observer = Observer(settings, consumers, service_name, to_spans, config.queue_size,
                                  config.max_queued_bytes, self._log)
        self._forwarder = Forwarder(config, route, self._observer.offer,
                                    ProxyCounters(settings.telemetry, str(settings.id)), self._log)
        self._runner: web.ServerRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        self._forwarder.start()
        self._observer.start()
        # The low-level server: no router or middlewares between a request and the forwarder; bodies
        # stay as sent (a gzip body goes upstream gzipped); headers as long as the upstream may take.
        server = web.Server(self._forwarder.handle, access_log=None, auto_decompress=False,
                            max_field_size=65536, max_line_size=65536)
        self._runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=5)
        await self._runner.setup()
        host, port = split_host_port(self._config.endpoint)
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except BaseException:
            await self.shutdown()
            raise
        self.port = site._server.sockets[0].getsockname()[1]  # the real port when 0 was asked
        self._log.info("inference proxy (%s) listening on %s:%d, forwarding to %s", self._config.protocol,
                       host, self.port, self._config.upstream)

    async def shutdown(self) -> None:
        # Requests in flight finish (within the shutdown timeout) before the upstream session closes.
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._forwarder.close()
        await self._observer.stop()

    def status(self) -> dict[str, Any]:
        return {"upstream": self._config.upstream, "protocol": self._config.protocol,
                "observations": {"queued": self._observer.queued, "dropped": self._observer.dropped,
                                 "skipped": dict(self._observer.skipped)}}
