"""The `kserve` receiver's config: where KServe's inference logger posts, and how long a half pair waits."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from agent.configmodel import Duration, StrictModel
from agent.netconfig import ListenEndpoint
from agent.receivers.payloads import PayloadConfig
from agent.receivers.security import TlsServerConfig

_MIB = 1024 * 1024


class KServeReceiverConfig(StrictModel):
    endpoint: ListenEndpoint = "127.0.0.1:8088"  # the InferenceService's `logger.url` points here
    tls: TlsServerConfig | None = None  # for an https `logger.url` (the logger trusts the CA it is given)
    # `auto`: a body with `inputs` is the Open Inference Protocol (V2), one with `instances` V1.
    protocol: Literal["auto", "v2", "v1"] = "auto"
    # A request waits this long for its response (and a response for its request); then it is
    # counted expired and dropped. The logger sends each as soon as it has it.
    pair_timeout: Annotated[Duration, Field(gt=0)] = 30.0
    # A request whose response never came (`logger.mode: request`, or a call that failed): `features`
    # delivers it once `pair_timeout` passes as a prediction with its features only, in a span of no
    # length (its duration is not known).
    unpaired_requests: Literal["drop", "features"] = "drop"
    max_pending: int = Field(10_000, gt=0)  # half pairs held; past it the oldest is dropped, counted
    max_pending_bytes: int = Field(64 * _MIB, gt=0)  # their bodies together
    max_request_body_size: int = Field(4 * _MIB, gt=0)  # a larger event is 413
    read_timeout: Annotated[Duration, Field(gt=0)] = 10.0  # a body not in by then is 408
    model_name: str | None = None  # instead of the event's inferenceservicename
    model_version: str | None = None  # for responses that name no model_version
    payloads: PayloadConfig = PayloadConfig()
