"""The `otlp` receiver's gRPC front end: one Export method per signal, taking the request's raw bytes.

The services take the raw request bytes, so an unchanged batch is forwarded
as it arrived and a malformed one is answered with INVALID_ARGUMENT rather
than gRPC's generic decoding error. A call whose message is not in within
`read_timeout` is cancelled, and at most `max_receiving_calls` wait for
theirs (`agent.receivers.intake`); a refusal for load is UNAVAILABLE, with a
RetryInfo when the pipeline says when to retry.
"""

from __future__ import annotations

import datetime
import logging

import grpc
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2

from agent.errors import InvalidDataError, RefusedError
from agent.netconfig import split_host_port
from agent.receivers import security
from agent.receivers.intake import CallReader, IncompleteRequests
from agent.receivers.otlp.config import GrpcConfig
from agent.receivers.otlp.export import ExportHandler, short
from agent.receivers.security import BearerAuth
from agent.signals import Signal

_MIB = 1024 * 1024


async def start_grpc(config: GrpcConfig, exports: ExportHandler, incomplete: IncompleteRequests,
                     log: logging.Logger) -> tuple[grpc.aio.Server, int]:
    """A started server for every signal `exports` takes, and the port it listens on."""
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
    reader = CallReader(config.read_timeout, config.max_receiving_calls, incomplete)
    for signal in exports.signals:
        service, method = signal.grpc_method.lstrip("/").split("/")
        # No deserializer: the handler gets the request's bytes and keeps them.
        handler = _handler(signal, config, reader, exports)
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, {method: handler})])
    host, _ = split_host_port(config.endpoint)
    try:
        if config.tls is not None:
            port = server.add_secure_port(config.endpoint, security.grpc_server_credentials(config.tls))
        else:
            port = server.add_insecure_port(config.endpoint)
    except RuntimeError as exc:
        raise OSError(f"cannot listen for gRPC on {config.endpoint}: {exc}") from None
    await server.start()
    log.info("OTLP/gRPC listening on %s:%d%s", host, port, security.describe(config.tls, config.auth))
    return server, port


def _handler(signal: Signal, config: GrpcConfig, reader: CallReader, exports: ExportHandler):
    """The handler of one signal's Export method: stream-unary on this side (a unary client sees
    no difference), so that a call is seen from its start and its one message read in bounded time."""
    auth = BearerAuth(config.auth) if config.auth is not None else None

    async def export(_: object, context: grpc.aio.ServicerContext) -> bytes:
        if auth is not None and not auth.allows(_authorization(context)):
            exports.counters.unauthenticated("grpc")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
        request, error = await reader.read(context)
        if error is None:
            if not exports.admit():
                exports.counters.too_many("grpc")
                await context.abort(grpc.StatusCode.UNAVAILABLE, "too many concurrent requests")
            try:
                error = await _receive(signal, request, exports)
            finally:
                exports.release()
            if error is None:
                return b""  # an empty Export*ServiceResponse: everything accepted
        # Outside any `except`, and with the request no longer referenced from this frame: grpc keeps
        # the abort in a reference cycle with this frame until a full garbage collection, and the
        # request (and a refusal's traceback, through exception chaining) must not stay with it.
        del request
        await context.abort(*error)

    return grpc.stream_unary_rpc_method_handler(export)


async def _receive(signal: Signal, request: bytes, exports: ExportHandler) -> tuple | None:
    """Decode and take one request; the status (and trailing metadata) to abort with, or None."""
    try:
        batch = await exports.decode(signal, request)
    except DecodeError as exc:
        exports.refused(signal, "grpc")
        return grpc.StatusCode.INVALID_ARGUMENT, short(f"malformed OTLP {signal.value} protobuf: {exc}")
    try:
        await exports.deliver(batch, "grpc")
    except RefusedError as exc:
        return grpc.StatusCode.UNAVAILABLE, short(str(exc)), _retry_info(str(exc), exc.retry_after)
    except InvalidDataError as exc:
        return grpc.StatusCode.INVALID_ARGUMENT, short(str(exc))
    return None


def _authorization(context: grpc.aio.ServicerContext) -> str | None:
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
