"""The forwarding path: each request to the upstream as it came, each response back as it comes.

Method, path, query, headers and body go to the upstream unchanged, but for
the hop-by-hop headers (RFC 9110 §7.6.1), which belong to each connection,
and `Host`, which names the upstream (as nginx's proxy_pass sets it). Bodies
are not decompressed. A response of known length up to
`max_observed_body_size` is read and sent in one piece; any other (an SSE
stream, a large or chunked body) is written to the client chunk by chunk as
the upstream sends it. An upstream that cannot be reached is 502, one that
sends nothing within `upstream_timeout` 504; one that fails mid-stream has
the client's connection closed, so the client sees the truncated response a
direct call would have given.

For the calls the protocol observes, the handler keeps a bounded copy of
both bodies and the arrival time of each chunk in an `Exchange` and hands it
to the observer's queue; it never waits for the observer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator, Callable

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict
from yarl import URL

from agent.receivers.inference_proxy.config import InferenceProxyConfig
from agent.receivers.inference_proxy.exchange import Exchange, Route

# RFC 9110 §7.6.1; Expect is answered by this proxy itself (it reads the body before forwarding it).
_HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "TE",
    "Trailer", "Transfer-Encoding", "Upgrade", "Expect"))


class ProxyCounters:
    def __init__(self, telemetry, receiver: str) -> None:
        self._attrs = {"receiver": receiver}
        self._requests = telemetry.counter("vigil_inference_proxy_requests", "requests forwarded to the upstream")
        self._upstream_errors = telemetry.counter(
            "vigil_inference_proxy_upstream_errors",
            "requests the upstream failed: unreachable (502), timeout (504), broken (closed mid-response)")

    def request(self) -> None:
        self._requests.add(1, self._attrs)

    def upstream_error(self, reason: str) -> None:
        self._upstream_errors.add(1, {**self._attrs, "reason": reason})


class Forwarder:
    """The aiohttp handler: forwards, answers, and hands observed exchanges to `observe`."""

    def __init__(self, config: InferenceProxyConfig, route: Callable[[str, str], Route | None],
                 observe: Callable[[Exchange], None], counters: ProxyCounters, log: logging.Logger) -> None:
        self._upstream = config.upstream
        self._host = URL(config.upstream).raw_authority
        self._limit = config.max_observed_body_size
        self._route = route
        self._observe = observe
        self._counters = counters
        self._log = log
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.connect_timeout,
                                              sock_read=config.upstream_timeout)
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        # No limit on connections: the upstream's own limits apply, as to direct calls. No automatic
        # headers, no decompression, no cookies: what goes through is what the client and upstream sent.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
            timeout=self._timeout, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=(hdrs.USER_AGENT, hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.CONTENT_TYPE))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        route = self._route(request.method, request.path)
        exchange = Exchange(route) if route is not None else None
        headers = _forwarded(request.headers, self._host)
        length = request.content_length
        if length is not None and length <= self._limit:
            try:
                data: bytes | AsyncIterator[bytes] | None = await request.content.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError):  # the client went away mid-body
                return web.Response(status=400, text="request body incomplete")
            if exchange is not None:
                exchange.request_body = data
        elif request.body_exists:
            data = self._request_stream(request, exchange)
        else:
            data = None
        if exchange is not None:
            exchange.traceparent = request.headers.get("traceparent")
            exchange.begin()
        self._counters.request()
        try:
            upstream = await self._session.request(request.method, URL(self._upstream + request.raw_path,
                                                                       encoded=True),
                                                   headers=headers, data=data, allow_redirects=False)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            return self._failed("timeout", 504, "upstream timed out", exchange)
        except aiohttp.ClientError as exc:
            return self._failed("unreachable", 502, f"upstream unreachable ({type(exc).__name__})", exchange)
        try:
            return await self._answer(request, upstream, exchange)
        finally:
            upstream.release()

    async def _answer(self, request: web.BaseRequest, upstream: aiohttp.ClientResponse,
                      exchange: Exchange | None) -> web.StreamResponse:
        headers = _returned(upstream.headers)
        length = upstream.content_length
        buffered = (length is not None and length <= self._limit and request.method != hdrs.METH_HEAD
                    and not _is_event_stream(upstream.headers))
        if buffered:
            try:
                body = await upstream.read()
            except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
                return self._failed("timeout", 504, "upstream timed out", exchange)
            except aiohttp.ClientError:
                return self._failed("broken", 502, "upstream response broken", exchange)
            if exchange is not None:
                exchange.response(upstream.status, upstream.headers, body)
                self._observe(exchange)
            return web.Response(status=upstream.status, reason=upstream.reason, headers=headers, body=body)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
        await response.prepare(request)
        if exchange is not None:
            exchange.response(upstream.status, upstream.headers, None)
        kept = 0
        chunks = upstream.content.iter_any()
        while True:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                break
            except (asyncio.TimeoutError, aiohttp.ClientError):  # the upstream failed mid-response
                self._counters.upstream_error("broken")
                if exchange is not None:
                    exchange.skip("upstream_broken")
                    self._observe(exchange)
                if request.transport is not None:
                    request.transport.close()  # the client sees a truncated response, as from the upstream
                return response
            if exchange is not None:
                kept = exchange.add_chunk(time.perf_counter(), chunk, kept, self._limit)
            try:
                await response.write(chunk)
            except ConnectionError:  # the client went away: stop the upstream's work too
                upstream.close()
                if exchange is not None:
                    exchange.skip("client_disconnected")
                    self._observe(exchange)
                return response
        await response.write_eof()
        if exchange is not None:
            exchange.end()
            self._observe(exchange)
        return response

    async def _request_stream(self, request: web.BaseRequest, exchange: Exchange | None) -> AsyncIterator[bytes]:
        """The request's body as it arrives; a copy for `exchange` while it fits in the limit."""
        parts: list[bytes] | None = [] if exchange is not None else None
        size = 0
        async for chunk in request.content.iter_any():
            if parts is not None:
                size += len(chunk)
                if size > self._limit:
                    parts = None
                    exchange.skip("too_large")
                else:
                    parts.append(chunk)
            yield chunk
        if parts is not None:
            exchange.request_body = b"".join(parts)

    def _failed(self, reason: str, status: int, text: str, exchange: Exchange | None) -> web.Response:
        self._counters.upstream_error(reason)
        if exchange is not None:
            exchange.fail(status, "upstream_" + reason)
            self._observe(exchange)
        return web.Response(status=status, text=text)


def _connection_tokens(headers) -> frozenset[str]:
    """The headers a Connection header names: hop-by-hop for this connection only."""
    named = [token.strip().lower() for value in headers.getall(hdrs.CONNECTION, ()) for token in value.split(",")]
    return frozenset(named)


def _forwarded(headers, host: str) -> CIMultiDict[str]:
    drop = _HOP_BY_HOP | _connection_tokens(headers)
    out = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop and k.lower() != "host")
    out[hdrs.HOST] = host
    return out


def _returned(headers) -> CIMultiDict[str]:
    drop = _HOP_BY_HOP | _connection_tokens(headers)
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop)


def _is_event_stream(headers) -> bool:
    return headers.get(hdrs.CONTENT_TYPE, "").startswith("text/event-stream")
