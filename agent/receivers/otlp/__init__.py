"""The `otlp` receiver: OTLP over gRPC and over HTTP (protobuf and JSON), all three signals.

Status codes follow the OTLP spec: a body that does not parse is
INVALID_ARGUMENT / 400 with a message; a pipeline refusing for load is
UNAVAILABLE / 503, which SDKs retry. A request takes one of
`max_concurrent_requests` only once its body is in, as nginx hands a request
upstream only once it has buffered it, so senders that stall mid-upload hold
a connection, never the pipeline's capacity; past the limit a request is
refused (UNAVAILABLE / 429 with Retry-After). Attribute limits cut what
exceeds them and count it (`agent.receivers.limits`); TLS, mTLS and bearer
tokens come from `agent.receivers.security` (UNAUTHENTICATED / 401).

`config` is the config model, `export` what both front ends do with a
request once its body is in, `grpc_server` and `http_server` the front ends,
`receiver` starts and stops them; this module is the factory.
"""

from __future__ import annotations

from agent.component import Consumer, Factory, Kind, Settings
from agent.receivers.otlp.config import OtlpReceiverConfig
from agent.receivers.otlp.receiver import OtlpReceiver
from agent.signals import Signal


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
