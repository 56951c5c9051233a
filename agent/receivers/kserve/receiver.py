"""The `kserve` receiver itself: an HTTP server for the logger's CloudEvents, pairing them into predictions.

Answers: 200 for an event taken (waiting for its partner, paired and delivered,
or a duplicate, which is counted and not delivered again; KServe's logger logs
any other 2xx as an error); 400 naming the field for an event or payload that
cannot be read; 413 past `max_request_body_size`; 415 for batched events; 503
with Retry-After when the pipelines refuse for now, the partner kept waiting
so that a resent event pairs again. A half pair that waits past `pair_timeout`
is dropped, or (`unpaired_requests: features`, a request) delivered alone by the
sweep. Outcomes are counted in `vigil_receiver_kserve_events` by `outcome`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Any

from aiohttp import web

from agent.component import Consumer, Settings
from agent.errors import InvalidDataError, RefusedError
from agent.ml import vocabulary as v
from agent.netconfig import split_host_port
from agent.receivers import security
from agent.receivers.delivery import Delivery
from agent.receivers.intake import TooLarge, read_body
from agent.receivers.kserve.config import KServeReceiverConfig
from agent.receivers.kserve.events import EventError, LoggedEvent, parse_event
from agent.receivers.kserve.pairing import Pairs
from agent.receivers.payloads import PayloadError, prediction_spans, v1_rows, v2_rows
from agent.signals import Batch, Signal

_TRANSPORT = "http"


class KServeReceiver:
    def __init__(self, config: KServeReceiverConfig, settings: Settings, consumers: dict[Signal, Consumer]) -> None:
        self._config = config
        self._log = settings.logger
        self._id = str(settings.id)
        self._delivery = Delivery(settings, consumers)
        self._unpaired: deque[LoggedEvent] = deque()  # expired requests to deliver alone, at most max_pending
        self._events = settings.telemetry.counter("vigil_receiver_kserve_events",
                                                  "KServe inference logger events, by outcome")
        keep = config.unpaired_requests == "features"
        self._pairs = Pairs(config.max_pending, config.max_pending_bytes, config.pair_timeout, self._count,
                            expired=self._keep_unpaired if keep else None)
        self._runner: web.AppRunner | None = None
        self._sweeper: asyncio.Task | None = None
        self.port: int | None = None
        self.outcomes: dict[str, int] = {}

    async def start(self) -> None:
        app = web.Application(client_max_size=self._config.max_request_body_size)
        app.router.add_post("/{tail:.*}", self._handle)  # the logger posts to `logger.url` as written
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
        await self._runner.setup()
        host, port = split_host_port(self._config.endpoint)
        tls = self._config.tls
        site = web.TCPSite(self._runner, host, port,
                           ssl_context=security.server_ssl_context(tls) if tls is not None else None)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            self._runner = None
            raise
        self.port = site._server.sockets[0].getsockname()[1]  # the real port when 0 was asked
        self._sweeper = asyncio.create_task(self._sweep(), name=f"{self._id}/expire")
        self._log.info("KServe inference logger events on %s:%d%s", host, self.port,
                       security.describe(tls, None))

    async def shutdown(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if len(self._pairs) + len(self._unpaired):
            self._count("unpaired_at_shutdown", len(self._pairs) + len(self._unpaired))

    def status(self) -> dict[str, Any]:
        return {"endpoint": self._config.endpoint, "port": self.port, "waiting": len(self._pairs),
                "waiting_bytes": self._pairs.bytes, "events": dict(self.outcomes)}

    def _count(self, outcome: str, n: int = 1) -> None:
        self._events.add(n, {"receiver": self._id, "outcome": outcome})
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n

    async def _sweep(self) -> None:
        # Expiry also runs on every event; this covers a logger gone quiet, and delivers what expired.
        while True:
            await asyncio.sleep(min(1.0, self._config.pair_timeout / 4))
            self._pairs.expire()
            await self._deliver_unpaired()

    def _keep_unpaired(self, event: LoggedEvent) -> None:
        if event.is_request:  # a response alone has no features to show
            if len(self._unpaired) >= self._config.max_pending:
                self._unpaired.popleft()
                self._count("evicted")
            self._unpaired.append(event)

    async def _deliver_unpaired(self) -> None:
        """Each expired request alone, as features without outputs; a refusal drops it, counted."""
        while self._unpaired:
            request = self._unpaired.popleft()
            try:
                batch = await asyncio.to_thread(self._batch, request, None)
                if batch is not None:
                    await self._delivery.deliver(batch, _TRANSPORT)
            except PayloadError as exc:
                self._count(f"payload_{exc.reason}")
            except Exception as exc:  # whatever the pipelines raise: the sweep must go on
                self._count("unpaired_refused")
                self._log.warning("dropped an unpaired request of %s: %s", request.service or request.source, exc)
            else:
                self._count("unpaired_delivered")

    async def _handle(self, request: web.Request) -> web.Response:
        limit = self._config.max_request_body_size
        if request.content_length is not None and request.content_length > limit:
            self._count("too_large")
            return _answer(413, f"body larger than {limit} bytes (max_request_body_size)", close=True)
        try:
            async with asyncio.timeout(self._config.read_timeout):
                body = await read_body(request, limit)
        except TooLarge:
            self._count("too_large")
            return _answer(413, f"body larger than {limit} bytes (max_request_body_size)", close=True)
        except (TimeoutError, ConnectionError):
            self._count("incomplete")
            return _answer(408, f"body not received within {self._config.read_timeout:g} s", close=True)
        try:
            event = parse_event(request.headers, request.content_type, body)
            _payload(event)  # a body that is not a JSON object is refused now, not once its partner comes
        except EventError as exc:
            self._count("malformed")
            return _answer(exc.status, str(exc))
        paired = self._pairs.add(event)
        if paired == "duplicate":
            self._count("duplicate")
            return _answer(200)
        if paired is None:
            self._count("waiting")
            return _answer(200)
        return await self._deliver(*paired, arrived=event)

    async def _deliver(self, request: LoggedEvent, response: LoggedEvent, arrived: LoggedEvent) -> web.Response:
        try:
            batch = await asyncio.to_thread(self._batch, request, response)
        except PayloadError as exc:
            self._count(f"payload_{exc.reason}")
            self._log.warning("skipped a logged prediction of %s: %s", request.service or request.source, exc)
            return _answer(400, f"data.{exc}")
        if batch is None:
            self._count("no_rows")
            return _answer(200)
        try:
            await self._delivery.deliver(batch, _TRANSPORT)
        except RefusedError as exc:
            self._pairs.put_back(request, response, keep=response if arrived is request else request)
            self._count("refused")
            headers = {"Retry-After": str(max(1, round(exc.retry_after or 1)))}
            return _answer(503, str(exc), headers=headers)
        except InvalidDataError as exc:
            self._count("invalid")
            return _answer(400, str(exc))
        self._count("paired")
        return _answer(200)

    def _batch(self, request: LoggedEvent, response: LoggedEvent | None) -> Batch | None:
        config = self._config
        request_body = _payload(request)
        response_body = _payload(response) if response is not None else None
        model = (config.model_name or request.service
                 or (_text(response_body.get("model_name")) if response_body else "") or request.source)
        protocol = config.protocol
        if protocol == "auto":
            protocol = "v1" if "instances" in request_body else "v2"
        if protocol == "v2":
            rows = v2_rows(request_body, response_body, model=model, config=config.payloads)
        else:
            rows = v1_rows(request_body, response_body, model=model, config=config.payloads,
                           request_id=request.id)
        if not rows:
            return None
        if not any(v.MODEL_VERSION in row for row in rows) and config.model_version:
            for row in rows:
                row[v.MODEL_VERSION] = config.model_version
        if protocol == "v2" and not any(v.PREDICTION_ID in row for row in rows):
            for i, row in enumerate(rows):  # the ce-id is the request's id when the body has none
                row[v.PREDICTION_ID] = (request.id if len(rows) == 1 else f"{request.id}-{i}")[:v.MAX_STRING_LENGTH]
        now = time.time_ns()
        start = request.time_ns or now
        # A request alone has no known length: its span has none.
        end = (response.time_ns or now) if response is not None else start
        resource = {key: value[:v.MAX_STRING_LENGTH] for key, value in ((v.K8S_NAMESPACE, request.namespace),
                                                                        (v.KSERVE_COMPONENT, request.component),
                                                                        (v.KSERVE_ENDPOINT, request.endpoint))
                    if value}
        message = prediction_spans(rows, start_ns=start, end_ns=max(start, end),
                                   service_name=(request.service or model)[:v.MAX_STRING_LENGTH], resource=resource)
        return Batch(Signal.TRACES, message)


def _payload(event: LoggedEvent) -> dict[str, Any]:
    try:
        body = json.loads(event.data)
    except (ValueError, RecursionError):  # nested past the parser's depth
        raise EventError("data", "the payload is not JSON") from None
    if not isinstance(body, dict):
        raise EventError("data", "the payload must be a JSON object")
    return body


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _answer(status: int, message: str = "", *, close: bool = False,
            headers: dict[str, str] | None = None) -> web.Response:
    response = web.json_response({"error": message} if message and status >= 400 else {}, status=status,
                                 headers=headers)
    if close:
        response.force_close()
    return response
