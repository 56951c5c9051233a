"""The `inference_proxy` receiver's config: where it listens, the server it forwards to, and its bounds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from yarl import URL

from agent.configmodel import Duration, StrictModel
from agent.netconfig import ListenEndpoint
from agent.receivers.payloads import PayloadConfig

_MIB = 1024 * 1024


class InferenceProxyConfig(StrictModel):
    endpoint: ListenEndpoint  # where clients now send their requests
    upstream: str  # the inference server's base URL: http://127.0.0.1:8000
    # The API whose calls are observed: v2 (Open Inference Protocol: Triton, KServe, MLServer) or openai
    # (vLLM, SGLang, TGI, llama.cpp). Every other request is forwarded and not observed.
    protocol: Literal["v2", "openai"]
    # A request or response body longer than this is streamed through whole but not observed (counted); a
    # stream longer than this keeps its first chunks and its last ones (where the usage is). A body up to
    # this is read whole before it is forwarded, so this is also what one call may hold in memory.
    max_observed_body_size: int = Field(1 * _MIB, gt=0)
    # Observations waiting for the pipelines; past it new ones are dropped (counted), never the requests.
    queue_size: int = Field(1000, gt=0)
    max_queued_bytes: int = Field(64 * _MIB, gt=0)  # the bodies those queued observations hold, at most
    # The longest wait for the upstream's next bytes (its response headers, or the stream's next chunk);
    # past it the client gets 504 (or, mid-stream, its connection closed). Generations can be long.
    upstream_timeout: Duration = Field(600.0, gt=0)
    # How long connecting to the upstream may take before the client gets 502.
    connect_timeout: Duration = Field(5.0, gt=0)
    # The spans' service.name; unset: the receiver's id (`inference_proxy/vllm`).
    service_name: str | None = None
    # How a V2 call's inputs and outputs are read (protocol v2).
    payloads: PayloadConfig = PayloadConfig()

    @field_validator("upstream")
    @classmethod
    def _check_upstream(cls, value: str) -> str:
        url = URL(value)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"{value!r} is not an http:// or https:// URL with a host")
        if url.query_string or url.fragment:
            raise ValueError(f"{value!r}: the upstream is a base URL, without a query or fragment")
        return value.rstrip("/")
