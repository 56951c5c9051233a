"""The `otlp` receiver: OTLP over gRPC and over HTTP (protobuf and JSON), all three signals.

Status codes follow the OTLP spec: a body that does not parse is
INVALID_ARGUMENT / 400 with a message; a pipeline refusing for load is
UNAVAILABLE / 503, which SDKs retry. Over HTTP, a wrong path is 404, a wrong
method 405, an unknown content type 415 and a body over the limit 413 (also
when it only grows over the limit once decompressed: a gzip bomb is stopped
as it inflates). The gRPC services take the raw request bytes, so an
unchanged batch is forwarded as it arrived and a malformed one is answered
with INVALID_ARGUMENT rather than gRPC's generic decoding error.

Limits and protection (`limits`, and per protocol `tls` and `auth`): a request
takes one of `max_concurrent_requests` only once its body is in, as nginx
hands a request upstream only once it has buffered it, so senders that stall
mid-upload hold a connection, never the pipeline's capacity; past the limit a
request is refused (UNAVAILABLE / 429 with Retry-After). How bodies get in,
bounded in size, time and number, is `agent.receivers.intake`'s: an HTTP body
declared over the limit is refused (413) unread, one not in within
`read_timeout` is answered 408; a gRPC call whose message is not in within its
`read_timeout` is cancelled, and at most `max_receiving_calls` wait for theirs.
Bodies over 64 KiB that take Python work to decode (JSON, attribute limits,
decompression) are decoded on a small pool of threads, so that one large
request never holds up the event loop's other work. Attribute limits cut what
exceeds them and count it (`agent.receivers.limits`); TLS, mTLS and bearer
tokens come from `agent.receivers.security` (UNAUTHENTICATED / 401). Error
messages are cut to 512 characters.
"""

from __future__ import annotations

import asyncio
import datetime
from concurrent.futures import ThreadPoolExecutor

import grpc
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from pydantic import Field, model_validator

from agent import otlp_json_reader
from agent.component import Consumer, Factory, Kind, Settings
from agent.configmodel import Duration, OptionalPartsModel, StrictModel
from agent.errors import ConsumerError, InvalidDataError, RefusedError
from agent.netconfig import ListenEndpoint, split_host_port
from agent.receivers import security
from agent.receivers.intake import (CallReader, IncompleteRequests, MemoryReleaser, ServerLog, TooLarge,
                                   decompress, read_body)
from agent.receivers.limits import AttributeLimits, AttributeLimitsConfig
from agent.receivers.security import BearerAuth, BearerAuthConfig, TlsServerConfig
from agent.signals import Batch, Signal
from agent.telemetry import ReceiverCounters

_MIB = 1024 * 1024
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# Bodies up to this size are decoded on the event loop (a thread hop would cost more than they do).
_DECODE_INLINE = 64 * 1024
# Decodes of larger bodies at once: each holds its text and the bytes it writes, about twice the body.
_DECODE_THREADS = 2
_MAX_MESSAGE = 512  # characters of an error message sent back


class GrpcConfig(StrictModel):
    endpoint: ListenEndpoint = "127.0.0.1:4317"
    max_recv_msg_size_mib: int = Field(4, gt=0)
    # Calls at once on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS, the floor RFC 9113 advises;
    # nginx has 128). 0: gRPC's own default, no limit.
    max_concurrent_streams: int = Field(100, ge=0)
    # How long a call's request message may take to arrive once the call began; past it the call is
    # cancelled (DEADLINE_EXCEEDED), and what gRPC held of it freed.
    read_timeout: Duration = Field(30.0, gt=0)
    # Calls at once, over all connections, still waiting for their request message: gRPC holds up to
    # max_recv_msg_size_mib of each. Past it, the call waiting longest is cancelled (UNAVAILABLE). 0: no limit.
    max_receiving_calls: int = Field(64, ge=0)
    tls: TlsServerConfig | None = None
    auth: BearerAuthConfig | None = None


class HttpConfig(StrictModel):
    endpoint: ListenEndpoint = "127.0.0.1:4318"
    # Applies to the body as sent and, separately, to the body once decompressed.
    max_request_body_size: int = Field(20 * _MIB, gt=0)
    # How long a request's body may take to arrive once its headers are in; past it, 408 and the
    # connection closes. (The Collector's confighttp read_timeout has no limit by default; SDKs give up
    # on an export after 10 s.)
    read_timeout: Duration = Field(30.0, gt=0)
    # How long an open connection may wait for its next request, or for the rest of a request's headers.
    idle_timeout: Duration = Field(60.0, gt=0)
    traces_url_path: str = "/v1/traces"
    metrics_url_path: str = "/v1/metrics"
    logs_url_path: str = "/v1/logs"
    tls: TlsServerConfig | None = None
    auth: BearerAuthConfig | None = None


class ReceiverLimitsConfig(AttributeLimitsConfig):
    # Requests being handled at once, over both protocols; more are refused (retryable), unread.
    max_concurrent_requests: int = Field(1024, ge=0)  # 0: no limit


class ProtocolsConfig(OptionalPartsModel):
    grpc: GrpcConfig | None = None
    http: HttpConfig | None = None


    @model_validator(mode="after")
    def _at_least_one(self) -> ProtocolsConfig:
        if self.grpc is None and self.http is None:
            raise ValueError("at least one protocol (grpc or http) must be enabled")
        return self


class OtlpReceiverConfig(StrictModel):
    protocols: ProtocolsConfig = ProtocolsConfig(grpc=GrpcConfig(), http=HttpConfig())
    limits: ReceiverLimitsConfig = ReceiverLimitsConfig()


class _Counters:
    def __init__(self, settings: Settings) -> None:
        self.id = self._id = str(settings.id)
        t = settings.telemetry
        self._items = ReceiverCounters(t, self._id)
        self._dropped_attributes = t.counter("vigil_receiver_dropped_attributes",
                                             "attributes dropped over max_attributes")
        self._truncated_values = t.counter("vigil_receiver_truncated_values",
                                           "attribute values cut to max_attribute_value_length or "
                                           "max_array_length")
        self._unauthenticated = t.counter("vigil_receiver_unauthenticated_requests",
                                          "requests refused for a missing or wrong bearer token")
        self._too_many = t.counter("vigil_receiver_refused_requests_concurrency",
                                   "requests refused over max_concurrent_requests")

    def accepted(self, signal: Signal, transport: str, n: int) -> None:
        self._items.accepted(signal, transport, n)

    def refused(self, signal: Signal, transport: str, n: int) -> None:
        self._items.refused(signal, transport, n)

    def limited(self, dropped: int, truncated: int) -> None:
        if dropped:
            self._dropped_attributes.add(dropped, {"receiver": self._id})
        if truncated:
            self._truncated_values.add(truncated, {"receiver": self._id})

    def unauthenticated(self, transport: str) -> None:
        self._unauthenticated.add(1, {"receiver": self._id, "transport": transport})

    def too_many(self, transport: str) -> None:
        self._too_many.add(1, {"receiver": self._id, "transport": transport})


class OtlpReceiver:
    def __init__(self, config: OtlpReceiverConfig, settings: Settings,
                 consumers: dict[Signal, Consumer]) -> None:
        self._config = config
        self._consumers = consumers
        self._log = settings.logger
        self._counters = _Counters(settings)
        self._releaser = MemoryReleaser()
        self._incomplete = IncompleteRequests(settings, self._releaser)
        self._limits = AttributeLimits(config.limits)
        self._max_in_flight = config.limits.max_concurrent_requests
        self._in_flight = 0
        self._decoders: ThreadPoolExecutor | None = None
        self._grpc_server: grpc.aio.Server | None = None
        self._http_runner: web.AppRunner | None = None
        self.grpc_port: int | None = None
        self.http_port: int | None = None

    async def start(self) -> None:
        protocols = self._config.protocols
        self._decoders = ThreadPoolExecutor(_DECODE_THREADS, thread_name_prefix=f"{self._counters.id}-decode")
        try:
            if protocols.grpc is not None:
                await self._start_grpc(protocols.grpc)
                self._releaser.start()
            if protocols.http is not None:
                await self._start_http(protocols.http)
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
        if self._decoders is not None:
            self._decoders.shutdown(wait=False, cancel_futures=True)
            self._decoders = None
        self._incomplete.close()
        self._releaser.stop()

    def _admit(self) -> bool:
        """Take a slot for one request, unless max_concurrent_requests are being handled."""
        if self._max_in_flight and self._in_flight >= self._max_in_flight:
            return False
        self._in_flight += 1
        return True

    def _prepare(self, batch: Batch) -> Batch:
        """Apply the limits to `batch`, just checked on its wire bytes.

        A request the limits left alone goes on as its bytes and item count, without the parsed
        message: parsed, a request takes about four times its size, for as long as its sender waits
        (ten 300 KiB requests held 12 MiB). A processor that reads it parses it again.
        """
        wire = batch.wire()
        if self._limits.enabled:
            dropped, truncated = self._limits.apply(batch)
            self._counters.limited(dropped, truncated)
            if dropped or truncated:
                return batch
        return Batch(batch.signal, wire=wire, items=batch.items)

    def _decode(self, signal: Signal, body: bytes, content_type: str = PROTOBUF, encoding: str = "",
                max_size: int = 0) -> Batch:
        """The batch a request body holds: decompressed, read (OTLP/JSON into wire bytes), checked and
        limited. Raises `TooLarge`, `DecodeError` or `ValueError` (JsonDecodeError) for a bad body."""
        body = decompress(body, encoding, max_size)
        if content_type == JSON:
            body = otlp_json_reader.read(signal, body)
        return self._prepare(Batch.from_wire(signal, body))

    async def _decode_off_loop(self, signal: Signal, body: bytes, content_type: str = PROTOBUF,
                               encoding: str = "", max_size: int = 0) -> Batch:
        """`_decode`, on a decoding thread where a large body takes Python work: OTLP/JSON, attribute
        limits, or inflating it (zlib lets go of the GIL). A protobuf body is checked where it is, in
        C and at gigabytes a second: a thread hop would cost it more than the check.

        The JSON reader is Python and holds the GIL in slices, so the event loop keeps its turn
        (sys.getswitchinterval, 5 ms) while a large body is read; a thread per decode would not bound
        memory, so decodes beyond the pool's threads wait their turn.
        """
        args = (signal, body, content_type, encoding, max_size)
        python_work = content_type == JSON or encoding or self._limits.enabled
        if len(body) <= _DECODE_INLINE or not python_work or self._decoders is None:
            return self._decode(*args)
        return await asyncio.get_running_loop().run_in_executor(self._decoders, self._decode, *args)

    async def _receive(self, batch: Batch, transport: str) -> None:
        """Hand `batch` to the pipelines and count the outcome; raises what they raise."""
        try:
            await self._consumers[batch.signal].consume(batch)
        except ConsumerError:
            self._counters.refused(batch.signal, transport, batch.items)
            raise
        except Exception:
            self._counters.refused(batch.signal, transport, batch.items)
            self._log.exception("pipeline failed on a %s batch; answered as retryable", batch.signal.value)
            raise RefusedError("internal error in the pipeline") from None
        self._counters.accepted(batch.signal, transport, batch.items)

    # --- gRPC ------------------------------------------------------------------

    async def _start_grpc(self, config: GrpcConfig) -> None:
        options = [("grpc.max_receive_message_length", config.max_recv_msg_size_mib * _MIB),
                   # gRPC's default SO_REUSEPORT would let a second agent share the port and split traffic.
                   ("grpc.so_reuseport", 0)]
        if config.max_receiving_calls:
            # Calls gRPC holds before the receiver picks them up buffer their message too: past half as
            # many as max_receiving_calls some are refused, past as many all (RESOURCE_EXHAUSTED).
            options += [("grpc.server.max_pending_requests", max(1, config.max_receiving_calls // 2)),
                        ("grpc.server.max_pending_requests_hard_limit", config.max_receiving_calls)]
        if config.max_concurrent_streams:
            options.append(("grpc.max_concurrent_streams", config.max_concurrent_streams))
        server = grpc.aio.server(options=options)
        reader = CallReader(config.read_timeout, config.max_receiving_calls, self._incomplete)
        for signal in self._consumers:
            service, method = signal.grpc_method.lstrip("/").split("/")
            # No deserializer: the handler gets the request's bytes and keeps them.
            handler = self._grpc_handler(signal, config, reader)
            server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, {method: handler})])
        host, port = split_host_port(config.endpoint)
        try:
            if config.tls is not None:
                self.grpc_port = server.add_secure_port(config.endpoint,
                                                        security.grpc_server_credentials(config.tls))
            else:
                self.grpc_port = server.add_insecure_port(config.endpoint)
        except RuntimeError as exc:
            raise OSError(f"cannot listen for gRPC on {config.endpoint}: {exc}") from None
        await server.start()
        self._grpc_server = server
        self._log.info("OTLP/gRPC listening on %s:%d%s", host, self.grpc_port,
                       security.describe(config.tls, config.auth))

    def _grpc_handler(self, signal: Signal, config: GrpcConfig, reader: CallReader):
        """The handler of one signal's Export method: stream-unary on this side (a unary client sees
        no difference), so that a call is seen from its start and its one message read in bounded time."""
        auth = BearerAuth(config.auth) if config.auth is not None else None

        async def export(_: object, context: grpc.aio.ServicerContext) -> bytes:
            if auth is not None and not auth.allows(_grpc_authorization(context)):
                self._counters.unauthenticated("grpc")
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
            request, error = await reader.read(context)
            if error is None:
                if not self._admit():
                    self._counters.too_many("grpc")
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "too many concurrent requests")
                try:
                    error = await self._grpc_receive(signal, request)
                finally:
                    self._in_flight -= 1
                if error is None:
                    return b""  # an empty Export*ServiceResponse: everything accepted
            # Outside any `except`, and with the request no longer referenced from this frame: grpc keeps
            # the abort in a reference cycle with this frame until a full garbage collection, and the
            # request (and a refusal's traceback, through exception chaining) must not stay with it.
            del request
            await context.abort(*error)

        return grpc.stream_unary_rpc_method_handler(export)

    async def _grpc_receive(self, signal: Signal, request: bytes) -> tuple | None:
        """Decode and take one request; the status (and trailing metadata) to abort with, or None."""
        try:
            batch = await self._decode_off_loop(signal, request)
        except DecodeError as exc:
            self._counters.refused(signal, "grpc", 0)
            return grpc.StatusCode.INVALID_ARGUMENT, _short(f"malformed OTLP {signal.value} protobuf: {exc}")
        try:
            await self._receive(batch, "grpc")
        except RefusedError as exc:
            return grpc.StatusCode.UNAVAILABLE, _short(str(exc)), _retry_info(str(exc), exc.retry_after)
        except InvalidDataError as exc:
            return grpc.StatusCode.INVALID_ARGUMENT, _short(str(exc))
        return None

    # --- HTTP ------------------------------------------------------------------

    async def _start_http(self, config: HttpConfig) -> None:
        app = web.Application()  # the body size is checked as it is read (`_read_body`)
        paths = {Signal.TRACES: config.traces_url_path, Signal.METRICS: config.metrics_url_path,
                 Signal.LOGS: config.logs_url_path}
        for signal in self._consumers:
            app.router.add_post(paths[signal], self._http_handler(signal, config))
        # auto_decompress=False: `decompress` undoes Content-Encoding itself, with the size limit and
        # a google.rpc.Status answer; aiohttp would otherwise inflate first, so gzip bodies were inflated twice.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5,
                               auto_decompress=False, keepalive_timeout=config.idle_timeout,
                               logger=ServerLog(self._log, self._incomplete))
        await runner.setup()
        host, port = split_host_port(config.endpoint)
        ssl_context = security.server_ssl_context(config.tls) if config.tls is not None else None
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._http_runner = runner
        self.http_port = site._server.sockets[0].getsockname()[1]  # the real port when 0 was asked
        self._log.info("OTLP/HTTP listening on %s:%d%s", host, self.http_port,
                       security.describe(config.tls, config.auth))

    def _http_handler(self, signal: Signal, config: HttpConfig):
        auth = BearerAuth(config.auth) if config.auth is not None else None
        max_size = config.max_request_body_size
        too_large = f"request body larger than {max_size} bytes"

        async def export(request: web.Request) -> web.Response:
            content_type = request.content_type
            if auth is not None and not auth.allows(request.headers.get("Authorization")):
                self._counters.unauthenticated("http")
                return _status_response(content_type, 401, code_pb2.UNAUTHENTICATED,
                                        "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})
            if content_type not in (PROTOBUF, JSON):
                return _status_response(JSON, 415, code_pb2.INVALID_ARGUMENT,
                                        f"unsupported content type {content_type!r}: use {PROTOBUF} or {JSON}")
            if request.content_length is not None and request.content_length > max_size:
                return _unread(_status_response(content_type, 413, code_pb2.INVALID_ARGUMENT, too_large))
            try:
                async with asyncio.timeout(config.read_timeout):
                    body = await read_body(request, max_size)
            except TooLarge:  # sent without a Content-Length
                return _unread(_status_response(content_type, 413, code_pb2.INVALID_ARGUMENT, too_large))
            except TimeoutError:
                self._incomplete.add("http", "read_timeout")
                return _unread(_status_response(content_type, 408, code_pb2.DEADLINE_EXCEEDED,
                                                f"request body not received within {config.read_timeout:g} s "
                                                f"(read_timeout)"))
            except ConnectionError:  # the sender went away mid-body: there is nobody to answer
                self._incomplete.add("http", "disconnected")
                return _unread(web.Response(status=400))
            except HttpProcessingError as exc:  # a broken chunked encoding, say
                return _unread(_status_response(content_type, 400, code_pb2.INVALID_ARGUMENT,
                                                f"malformed request body: {exc.message}"))
            if not self._admit():
                self._counters.too_many("http")
                return _status_response(content_type, 429, code_pb2.UNAVAILABLE,
                                        "too many concurrent requests", {"Retry-After": "1"})
            try:
                try:
                    batch = await self._decode_off_loop(signal, body, content_type,
                                                        request.headers.get("Content-Encoding", ""), max_size)
                except TooLarge as exc:
                    return _status_response(content_type, 413, code_pb2.INVALID_ARGUMENT, str(exc))
                except DecodeError as exc:
                    self._counters.refused(signal, "http", 0)
                    return _status_response(content_type, 400, code_pb2.INVALID_ARGUMENT,
                                            f"malformed OTLP {signal.value} protobuf: {exc}")
                except ValueError as exc:  # bad encoding or OTLP/JSON
                    self._counters.refused(signal, "http", 0)
                    return _status_response(content_type, 400, code_pb2.INVALID_ARGUMENT, str(exc))
                del body  # a JSON body is no longer needed: the batch holds its wire bytes
                return await deliver(batch, content_type)
            finally:
                self._in_flight -= 1

        async def deliver(batch: Batch, content_type: str) -> web.Response:
            try:
                await self._receive(batch, "http")
            except RefusedError as exc:
                headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after else None
                return _status_response(content_type, 503, code_pb2.UNAVAILABLE, str(exc), headers)
            except InvalidDataError as exc:
                return _status_response(content_type, 400, code_pb2.INVALID_ARGUMENT, str(exc))
            if content_type == PROTOBUF:
                return web.Response(body=b"", content_type=PROTOBUF)
            return web.Response(body=b"{}", content_type=JSON)

        return export


def _unread(response: web.Response) -> web.Response:
    """`response`, for a request whose body was not read whole: its connection closes once it is sent.

    Until then, what the sender still sends is read and dropped for a few seconds (aiohttp's lingering
    close, as nginx's), so that it sees this answer rather than a reset.
    """
    response.force_close()
    return response


def _grpc_authorization(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value
    return None


def _retry_info(message: str, retry_after: float | None) -> tuple:
    """Trailing metadata carrying a google.rpc.RetryInfo, the gRPC twin of HTTP's Retry-After."""
    if not retry_after:
        return ()
    info = error_details_pb2.RetryInfo()
    info.retry_delay.FromTimedelta(datetime.timedelta(seconds=retry_after))
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message)
    status.details.add().Pack(info)
    return (("grpc-status-details-bin", status.SerializeToString()),)


def _short(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[:_MAX_MESSAGE - 3] + "..."


def _status_response(content_type: str, http_status: int, code: int, message: str,
                     headers: dict[str, str] | None = None) -> web.Response:
    """An error answer: a google.rpc.Status in the request's encoding, as the OTLP spec asks."""
    status = status_pb2.Status(code=code, message=_short(message))
    if content_type == PROTOBUF:
        body = status.SerializeToString()
    else:
        content_type = JSON
        body = json_format.MessageToJson(status, indent=None).encode()
    return web.Response(status=http_status, body=body, content_type=content_type, headers=headers)


def _create(config: OtlpReceiverConfig, settings: Settings, consumers: dict[Signal, Consumer]) -> OtlpReceiver:
    return OtlpReceiver(config, settings, consumers)


FACTORY = Factory(
    kind=Kind.RECEIVER,
    type="otlp",
    config_model=OtlpReceiverConfig,
    create=_create,
    signals=frozenset(Signal),
    description="OTLP over gRPC and HTTP (protobuf and JSON), all signals",
)
