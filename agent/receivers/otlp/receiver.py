"""The `otlp` receiver itself: starts the gRPC and HTTP front ends it is configured with, and stops them."""

from __future__ import annotations

import grpc
from aiohttp import web

from agent.component import Consumer, Settings
from agent.receivers.intake import IncompleteRequests, MemoryReleaser
from agent.receivers.otlp.config import OtlpReceiverConfig
from agent.receivers.otlp.export import ExportHandler
from agent.receivers.otlp.grpc_server import start_grpc
from agent.receivers.otlp.http_server import start_http
from agent.signals import Signal


class OtlpReceiver:
    def __init__(self, config: OtlpReceiverConfig, settings: Settings,
                 consumers: dict[Signal, Consumer]) -> None:
        self._config = config
        self._log = settings.logger
        self._exports = ExportHandler(config, settings, consumers)
        self._releaser = MemoryReleaser()
        self._incomplete = IncompleteRequests(settings, self._releaser)
        self._grpc_server: grpc.aio.Server | None = None
        self._http_runner: web.AppRunner | None = None
        self.grpc_port: int | None = None
        self.http_port: int | None = None

    async def start(self) -> None:
        protocols = self._config.protocols
        self._exports.start()
        try:
            if protocols.grpc is not None:
                self._grpc_server, self.grpc_port = await start_grpc(protocols.grpc, self._exports,
                                                                     self._incomplete, self._log)
                self._releaser.start()
            if protocols.http is not None:
                self._http_runner, self.http_port = await start_http(protocols.http, self._exports,
                                                                     self._incomplete, self._log)
        except BaseException:
            await self.shutdown()  # release the port that did open
            raise

    async def shutdown(self) -> None:
        # Stop taking new requests; requests in flight finish within the grace period.
        if self._grpc_server is not None:
            await self._grpc_server.stop(grace=5)
            self._grpc_server = None
        if self._http_runner is not None:
            await self._http_runner.cleanup()
            self._http_runner = None
        self._exports.close()
        self._incomplete.close()
        self._releaser.stop()
