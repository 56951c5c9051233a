"""Real OTLP backends for exporter tests: a grpc.aio server and an aiohttp server.

Both record every request they get (with its arrival time) and answer from a
script: each request takes the next `Reply` from `script`, and `default`
once the script is used up. A TCP proxy that counts the bytes a client sends
shows what compression did on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gzip
import socket
import time
from dataclasses import dataclass, field

import grpc
from aiohttp import web
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from agent.signals import Signal

# A retry policy for an exporter pointed at these backends: quick enough for a test to see retries.
FAST_RETRY = {"initial_interval": "100ms", "max_interval": "200ms", "max_elapsed_time": "10s"}

_REJECTED_FIELD = {Signal.TRACES: "rejected_spans", Signal.METRICS: "rejected_data_points",
                   Signal.LOGS: "rejected_log_records"}


def reserve_port() -> int:
    """A port nobody listens on (bound to 0, then closed), for a backend that comes up later."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def partial_success_response(signal: Signal, rejected: int, message: str) -> Message:
    response = signal.response_type()
    setattr(response.partial_success, _REJECTED_FIELD[signal], rejected)
    response.partial_success.error_message = message
    return response


# --- gRPC ----------------------------------------------------------------------------


@dataclass
class GrpcReply:
    code: grpc.StatusCode | None = None  # None: OK
    message: str = ""
    retry_delay: float | None = None  # a google.rpc.RetryInfo in grpc-status-details-bin
    rejected: int = 0  # with error_message: a partial_success
    error_message: str = ""
    delay: float = 0.0  # seconds to wait before answering


@dataclass
class GrpcCall:
    signal: Signal
    body: bytes
    metadata: dict[str, str]
    at: float
    reply: GrpcReply

    @property
    def ok(self) -> bool:
        return self.reply.code is None

    @property
    def message(self) -> Message:
        return self.signal.request_type.FromString(self.body)


class GrpcBackend:
    """An OTLP/gRPC collector (trace, metrics and logs services) on 127.0.0.1."""

    def __init__(self) -> None:
        self.calls: list[GrpcCall] = []
        self.script: list[GrpcReply] = []
        self.default = GrpcReply()
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None

    async def start(self, port: int = 0) -> GrpcBackend:
        server = grpc.aio.server()
        for signal in Signal:
            service, method = signal.grpc_method.lstrip("/").split("/")
            # No deserializer: the handler sees the exact bytes that came over the wire.
            handler = grpc.unary_unary_rpc_method_handler(self._handler(signal))
            server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, {method: handler})])
        self.port = server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        self._server = server
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(None)
            self._server = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ok_calls(self, signal: Signal | None = None) -> list[GrpcCall]:
        return [c for c in self.calls if c.ok and (signal is None or c.signal is signal)]

    def attempts(self, signal: Signal | None = None) -> int:
        return len([c for c in self.calls if signal is None or c.signal is signal])

    def _handler(self, signal: Signal):
        async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            reply = self.script.pop(0) if self.script else self.default
            metadata = {m.key: m.value for m in context.invocation_metadata()}
            self.calls.append(GrpcCall(signal, request, metadata, time.monotonic(), reply))
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if reply.code is not None:
                trailing: tuple = ()
                if reply.retry_delay is not None:
                    info = error_details_pb2.RetryInfo()
                    info.retry_delay.FromTimedelta(datetime.timedelta(seconds=reply.retry_delay))
                    status = status_pb2.Status(code=reply.code.value[0], message=reply.message)
                    status.details.add().Pack(info)
                    trailing = (("grpc-status-details-bin", status.SerializeToString()),)
                await context.abort(reply.code, reply.message, trailing)
            if reply.rejected or reply.error_message:
                return partial_success_response(signal, reply.rejected, reply.error_message).SerializeToString()
            return b""

        return export


@contextlib.asynccontextmanager
async def grpc_backend(port: int = 0):
    backend = await GrpcBackend().start(port)
    try:
        yield backend
    finally:
        await backend.stop()


# --- HTTP ----------------------------------------------------------------------------


@dataclass
class HttpReply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str = "application/x-protobuf"


@dataclass
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes  # as it came over the wire
    body: bytes  # with Content-Encoding undone
    at: float
    reply: HttpReply

    @property
    def ok(self) -> bool:
        return self.reply.status // 100 == 2


class HttpBackend:
    """An OTLP/HTTP collector on 127.0.0.1 that answers every path."""

    def __init__(self) -> None:
        self.requests: list[HttpRequest] = []
        self.script: list[HttpReply] = []
        self.default = HttpReply()
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    async def start(self, port: int = 0) -> HttpBackend:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # auto_decompress=False: keep the body as it came over the wire; `_handle` inflates it.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        self._runner = runner
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ok_requests(self) -> list[HttpRequest]:
        return [r for r in self.requests if r.ok]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = gzip.decompress(raw) if request.headers.get("Content-Encoding") == "gzip" else raw
        reply = self.script.pop(0) if self.script else self.default
        self.requests.append(HttpRequest(request.method, request.path, dict(request.headers), raw, body,
                                         time.monotonic(), reply))
        return web.Response(status=reply.status, body=reply.body, headers=reply.headers,
                            content_type=reply.content_type)


@contextlib.asynccontextmanager
async def http_backend(port: int = 0):
    backend = await HttpBackend().start(port)
    try:
        yield backend
    finally:
        await backend.stop()


# --- a byte-counting TCP proxy ---------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target port, counting the bytes clients send."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.client_bytes = 0
        self.port: int | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        for task in (self._pipe(reader, up_writer, count=True), self._pipe(up_reader, writer, count=False)):
            t = asyncio.create_task(task)
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: bool) -> None:
        try:
            while data := await reader.read(65536):
                if count:
                    self.client_bytes += len(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
