"""The `otlp` receiver's config: its gRPC and HTTP endpoints and the limits they share."""

from __future__ import annotations

from pydantic import Field, model_validator

from agent.configmodel import Duration, OptionalPartsModel, StrictModel
from agent.netconfig import ListenEndpoint
from agent.receivers.limits import AttributeLimitsConfig
from agent.receivers.security import BearerAuthConfig, TlsServerConfig

_MIB = 1024 * 1024


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
