"""The `otlp` receiver's HTTP front end: OTLP/HTTP, protobuf and JSON, one path per signal.

A body that does not parse is 400 with a google.rpc.Status in the request's
encoding; a wrong path is 404, a wrong method 405, an unknown content type
415 and a body over the limit 413 (also when it only grows over the limit
once decompressed: a gzip bomb is stopped as it inflates); a body declared
over the limit is refused unread, one not in within `read_timeout` is 408
(`agent.receivers.intake`); a refusal for load is 503 (429 with Retry-After
past `max_concurrent_requests`).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2

from agent.errors import InvalidDataError, RefusedError
from agent.netconfig import split_host_port
from agent.receivers import security
from agent.receivers.intake import IncompleteRequests, ServerLog, TooLarge, read_body
from agent.receivers.otlp.config import HttpConfig
from agent.receivers.otlp.export import JSON, PROTOBUF, ExportHandler, short
from agent.receivers.security import BearerAuth
from agent.signals import Batch, Signal


async def start_http(config: HttpConfig, exports: ExportHandler, incomplete: IncompleteRequests,
                     log: logging.Logger) -> tuple[web.AppRunner, int]:
    """A started server for every signal `exports` takes, and the port it listens on."""
    app = web.Application()  # the body size is checked as it is read (`read_body`)
    paths = {Signal.TRACES: config.traces_url_path, Signal.METRICS: config.metrics_url_path,
             Signal.LOGS: config.logs_url_path}
    for signal in exports.signals:
        app.router.add_post(paths[signal], _handler(signal, config, exports, incomplete))
    # auto_decompress=False: `decompress` undoes Content-Encoding itself, with the size limit and
    # a google.rpc.Status answer; aiohttp would otherwise inflate first, so gzip bodies were inflated twice.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5,
                           auto_decompress=False, keepalive_timeout=config.idle_timeout,
                           logger=ServerLog(log, incomplete))
    await runner.setup()
    host, port = split_host_port(config.endpoint)
    ssl_context = security.server_ssl_context(config.tls) if config.tls is not None else None
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    port = site._server.sockets[0].getsockname()[1]  # the real port when 0 was asked
    log.info("OTLP/HTTP listening on %s:%d%s", host, port, security.describe(config.tls, config.auth))
    return runner, port


def _handler(signal: Signal, config: HttpConfig, exports: ExportHandler, incomplete: IncompleteRequests):
    auth = BearerAuth(config.auth) if config.auth is not None else None
    max_size = config.max_request_body_size
    too_large = f"request body larger than {max_size} bytes"

    async def export(request: web.Request) -> web.Response:
        content_type = request.content_type
        if auth is not None and not auth.allows(request.headers.get("Authorization")):
            exports.counters.unauthenticated("http")
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
            incomplete.add("http", "read_timeout")
            return _unread(_status_response(content_type, 408, code_pb2.DEADLINE_EXCEEDED,
                                            f"request body not received within {config.read_timeout:g} s "
                                            f"(read_timeout)"))
        except ConnectionError:  # the sender went away mid-body: there is nobody to answer
            incomplete.add("http", "disconnected")
            return _unread(web.Response(status=400))
        except HttpProcessingError as exc:  # a broken chunked encoding, say
            return _unread(_status_response(content_type, 400, code_pb2.INVALID_ARGUMENT,
                                            f"malformed request body: {exc.message}"))
        if not exports.admit():
            exports.counters.too_many("http")
            return _status_response(content_type, 429, code_pb2.UNAVAILABLE,
                                    "too many concurrent requests", {"Retry-After": "1"})
        try:
            try:
                batch = await exports.decode(signal, body, content_type,
                                             request.headers.get("Content-Encoding", ""), max_size)
            except TooLarge as exc:
                return _status_response(content_type, 413, code_pb2.INVALID_ARGUMENT, str(exc))
            except DecodeError as exc:
                exports.refused(signal, "http")
                return _status_response(content_type, 400, code_pb2.INVALID_ARGUMENT,
                                        f"malformed OTLP {signal.value} protobuf: {exc}")
            except ValueError as exc:  # bad encoding or OTLP/JSON
                exports.refused(signal, "http")
                return _status_response(content_type, 400, code_pb2.INVALID_ARGUMENT, str(exc))
            del body  # a JSON body is no longer needed: the batch holds its wire bytes
            return await deliver(batch, content_type)
        finally:
            exports.release()

    async def deliver(batch: Batch, content_type: str) -> web.Response:
        try:
            await exports.deliver(batch, "http")
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


def _status_response(content_type: str, http_status: int, code: int, message: str,
                     headers: dict[str, str] | None = None) -> web.Response:
    """An error answer: a google.rpc.Status in the request's encoding, as the OTLP spec asks."""
    status = status_pb2.Status(code=code, message=short(message))
    if content_type == PROTOBUF:
        body = status.SerializeToString()
    else:
        content_type = JSON
        body = json_format.MessageToJson(status, indent=None).encode()
    return web.Response(status=http_status, body=body, content_type=content_type, headers=headers)
