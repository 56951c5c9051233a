"""The `otlphttp` exporter: OTLP over HTTP (protobuf or JSON) to any backend.

`endpoint` is the base URL; `/v1/traces`, `/v1/metrics` and `/v1/logs` are
added to it, unless a signal's own URL (`traces_endpoint`, ...) is set.
Retries follow the OTLP spec: 429, 502, 503 and 504 are retried, honouring
`Retry-After`; any other failure is permanent.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
import zlib
from typing import Annotated, Literal

import aiohttp
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from pydantic import Field, model_validator

from agent import otlp_json
from agent.component import Factory, Kind, Settings
from agent.configmodel import Duration, StrictModel
from agent.exporters import json_stream
from agent.exporters.helper import ExportError, QueueConfig, QueuedExporter, RetryConfig, partial_success
from agent.netconfig import TlsClientConfig, client_ssl_context
from agent.signals import Batch, Signal

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
_PATHS = {Signal.TRACES: "/v1/traces", Signal.METRICS: "/v1/metrics", Signal.LOGS: "/v1/logs"}


class OtlpHttpExporterConfig(StrictModel):
    endpoint: str | None = None
    traces_endpoint: str | None = None
    metrics_endpoint: str | None = None
    logs_endpoint: str | None = None
    headers: dict[str, str] = {}
    compression: Literal["gzip", "none", ""] = "gzip"
    encoding: Literal["proto", "json"] = "proto"
    timeout: Annotated[Duration, Field(gt=0)] = 30.0
    tls: TlsClientConfig = TlsClientConfig()
    retry_on_failure: RetryConfig = RetryConfig()
    sending_queue: QueueConfig = QueueConfig()

    @model_validator(mode="after")
    def _check(self) -> OtlpHttpExporterConfig:
        urls = [self.endpoint, self.traces_endpoint, self.metrics_endpoint, self.logs_endpoint]
        if not any(urls):
            raise ValueError("set endpoint (or traces_endpoint, metrics_endpoint, logs_endpoint)")
        for url in filter(None, urls):
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"endpoint {url!r} must start with http:// or https://")
        return self

    def url(self, signal: Signal) -> str | None:
        own = {Signal.TRACES: self.traces_endpoint, Signal.METRICS: self.metrics_endpoint,
               Signal.LOGS: self.logs_endpoint}[signal]
        if own:
            return own
        return self.endpoint.rstrip("/") + _PATHS[signal] if self.endpoint else None


class OtlpHttpSender:
    def __init__(self, config: OtlpHttpExporterConfig, settings: Settings) -> None:
        self._config = config
        self._log = settings.logger
        self._session: aiohttp.ClientSession | None = None
        content_type = "application/json" if config.encoding == "json" else "application/x-protobuf"
        self._headers = {**config.headers, "Content-Type": content_type}
        if config.compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"

    async def start(self) -> None:
        # The URL's scheme decides plaintext or TLS; for https, certificates are checked unless
        # insecure_skip_verify says otherwise (aiohttp's ssl=False would skip the check silently).
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=client_ssl_context(self._config.tls)))

    async def push(self, batch: Batch) -> int:
        url = self._config.url(batch.signal)
        if url is None:
            raise ExportError(f"no URL for {batch.signal.value}: set endpoint or "
                              f"{batch.signal.value}_endpoint", retryable=False)
        json_body = self._config.encoding == "json"
        if json_body or self._config.compression == "gzip":
            # Encoding and compressing a large batch takes a while: not on the event loop.
            body = await asyncio.to_thread(self._body, batch, json_body)
        else:
            body = batch.wire()
        try:
            async with self._session.post(url, data=body, headers=self._headers) as response:
                payload = await response.read()
                if response.status // 100 == 2:
                    return self._partial_success(batch, payload, json_body)
                message = _status_message(payload) or response.reason or ""
                raise ExportError(f"HTTP {response.status} from {url}: {message}",
                                  retryable=response.status in RETRYABLE_STATUSES,
                                  retry_after=_retry_after(response.headers.get("Retry-After")))
        except aiohttp.ClientError as exc:
            raise ExportError(f"cannot reach {url}: {exc}", retryable=True) from None

    def _body(self, batch: Batch, json_body: bool) -> bytes:
        if not json_body:
            return self._compressed([batch.wire()])
        try:
            # A bounded slice of the batch at a time: millions of small resources never become Python
            # objects all at once, and with gzip only the compressed body is held whole.
            return self._compressed(piece.encode() for piece in json_stream.pieces(batch.signal, batch.wire()))
        except ValueError:  # bytes the walker cannot follow: protobuf's parser gives the verdict
            return self._compressed([otlp_json.encode(batch.message).encode()])

    def _compressed(self, pieces) -> bytes:
        if self._config.compression != "gzip":
            return b"".join(pieces)
        gzip = zlib.compressobj(5, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 16+: a gzip header and trailer
        return b"".join([*(gzip.compress(piece) for piece in pieces), gzip.flush()])

    def _partial_success(self, batch: Batch, payload: bytes, json_body: bool) -> int:
        response = batch.signal.response_type()
        try:
            if json_body:
                json_format.Parse(payload or b"{}", response, ignore_unknown_fields=True)
            else:
                response.ParseFromString(payload)
        except (DecodeError, json_format.ParseError):
            return 0  # a success whose body we cannot read is still a success
        return partial_success(self._log, batch, response)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _status_message(payload: bytes) -> str:
    """The message of a google.rpc.Status body (protobuf or JSON), or the text itself."""
    status = status_pb2.Status()
    try:
        status.ParseFromString(payload)
        if status.message:
            return status.message
    except DecodeError:
        pass
    try:
        json_format.Parse(payload, status, ignore_unknown_fields=True)
        return status.message
    except (json_format.ParseError, UnicodeDecodeError):
        return payload[:200].decode(errors="replace")


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _create(config: OtlpHttpExporterConfig, settings: Settings) -> QueuedExporter:
    return QueuedExporter(OtlpHttpSender(config, settings), settings, config.timeout,
                          config.retry_on_failure, config.sending_queue)


FACTORY = Factory(
    kind=Kind.EXPORTER,
    type="otlphttp",
    config_model=OtlpHttpExporterConfig,
    create=_create,
    signals=frozenset(Signal),
    description="OTLP over HTTP (protobuf or JSON), with a sending queue and retries",
)
