"""The `otlp` exporter: OTLP over gRPC to any backend (SigNoz, Jaeger, a Collector).

Batches go out as the bytes they arrived with when nothing changed them.
Retries follow the OTLP spec: only the retryable status codes below, and
RESOURCE_EXHAUSTED only when the server sends RetryInfo (whose delay is
honoured). The channel's own reconnect backoff (gRPC's: 1 s growing to 120 s)
is bounded by `retry_on_failure`, so that once a backend is back, delivery
resumes as soon as the next retry, not minutes later.
"""

from __future__ import annotations

from typing import Annotated, Literal

import grpc
from google.rpc import error_details_pb2, status_pb2
from pydantic import Field, field_validator

from agent.component import Factory, Kind, Settings
from agent.configmodel import Duration, StrictModel
from agent.exporters.helper import ExportError, QueueConfig, QueuedExporter, RetryConfig, partial_success
from agent.netconfig import TlsClientConfig, client_ssl_files, split_host_port
from agent.signals import Batch, Signal

RETRYABLE_CODES = frozenset({
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS,
})


class OtlpExporterConfig(StrictModel):
    # host:port; an http:// prefix means plaintext, https:// means TLS.
    endpoint: str
    headers: dict[str, str] = {}
    compression: Literal["gzip", "none", ""] = "gzip"
    timeout: Annotated[Duration, Field(gt=0)] = 5.0
    tls: TlsClientConfig = TlsClientConfig()
    retry_on_failure: RetryConfig = RetryConfig()
    sending_queue: QueueConfig = QueueConfig()

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        split_host_port(_strip_scheme(value)[0])
        return value

    @field_validator("tls")
    @classmethod
    def _check_tls(cls, value: TlsClientConfig) -> TlsClientConfig:
        if value.insecure_skip_verify:
            # gRPC's Python channel has no switch to skip verification; pretending would be worse.
            raise ValueError("insecure_skip_verify is not supported by the gRPC exporter: "
                             "give the server's CA in ca_file, or use otlphttp")
        return value


def reconnect_options(retry: RetryConfig, timeout: float) -> list[tuple[str, int]]:
    """gRPC channel options that make the channel try to reconnect as often as the exporter retries.

    A channel whose backend went away backs off on its own, up to 120 s between connection attempts,
    and fails every call at once meanwhile; retries past that only hear UNAVAILABLE. `min` is gRPC's
    connect timeout, the time one connection attempt may take: the export timeout.
    """
    return [("grpc.initial_reconnect_backoff_ms", max(1, int(retry.initial_interval * 1000))),
            ("grpc.max_reconnect_backoff_ms", max(1, int(retry.max_interval * 1000))),
            ("grpc.min_reconnect_backoff_ms", max(1, int(timeout * 1000)))]


def _strip_scheme(endpoint: str) -> tuple[str, bool | None]:
    """The target without its scheme, and whether the scheme asked for plaintext (None: no scheme)."""
    for scheme, insecure in (("http://", True), ("https://", False)):
        if endpoint.startswith(scheme):
            return endpoint[len(scheme):].rstrip("/"), insecure
    return endpoint, None


class OtlpGrpcSender:
    def __init__(self, config: OtlpExporterConfig, settings: Settings) -> None:
        self._config = config
        self._log = settings.logger
        self._channel: grpc.aio.Channel | None = None
        self._calls: dict[Signal, grpc.aio.UnaryUnaryMultiCallable] = {}
        self._metadata = tuple((k.lower(), v) for k, v in config.headers.items())

    async def start(self) -> None:
        config = self._config
        target, scheme_insecure = _strip_scheme(config.endpoint)
        insecure = config.tls.insecure if scheme_insecure is None else scheme_insecure
        compression = grpc.Compression.Gzip if config.compression == "gzip" else grpc.Compression.NoCompression
        options = reconnect_options(config.retry_on_failure, config.timeout)
        if config.tls.server_name_override:
            options.append(("grpc.ssl_target_name_override", config.tls.server_name_override))
        if insecure:
            self._channel = grpc.aio.insecure_channel(target, options=options, compression=compression)
        else:
            ca, key, cert = client_ssl_files(config.tls)
            credentials = grpc.ssl_channel_credentials(ca, key, cert)
            self._channel = grpc.aio.secure_channel(target, credentials, options=options,
                                                    compression=compression)
        # No serializers: requests go out as bytes, responses come back as bytes.
        self._calls = {s: self._channel.unary_unary(s.grpc_method) for s in Signal}

    async def push(self, batch: Batch) -> int:
        try:
            reply = await self._calls[batch.signal](batch.wire(), metadata=self._metadata,
                                                    timeout=self._config.timeout)
        except grpc.aio.AioRpcError as exc:
            raise _export_error(exc) from None
        response = batch.signal.response_type()
        response.ParseFromString(reply)
        return partial_success(self._log, batch, response)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


def _export_error(exc: grpc.aio.AioRpcError) -> ExportError:
    code = exc.code()
    retry_after = _retry_delay(exc.trailing_metadata())
    retryable = code in RETRYABLE_CODES or (
        code is grpc.StatusCode.RESOURCE_EXHAUSTED and retry_after is not None)
    return ExportError(f"{code.name}: {exc.details()}", retryable, retry_after)


def _retry_delay(metadata) -> float | None:
    """The delay of a google.rpc.RetryInfo in the trailing status details, if any."""
    for key, value in metadata or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                return info.retry_delay.ToTimedelta().total_seconds()
    return None


def _create(config: OtlpExporterConfig, settings: Settings) -> QueuedExporter:
    return QueuedExporter(OtlpGrpcSender(config, settings), settings, config.timeout,
                          config.retry_on_failure, config.sending_queue)


FACTORY = Factory(
    kind=Kind.EXPORTER,
    type="otlp",
    config_model=OtlpExporterConfig,
    create=_create,
    signals=frozenset(Signal),
    description="OTLP over gRPC, with a sending queue and retries",
)
