"""The `inference` receiver's config: the servers to scrape, discovery, GPU attribution, health thresholds."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from agent.configmodel import Duration, StrictModel
from agent.receivers.inference.kinds import KIND_NAMES

_MIB = 1024 * 1024


class ServerConfig(StrictModel):
    kind: str
    endpoint: str  # the server's metrics endpoint: host:port, or http(s)://host:port
    metrics_path: str = "/metrics"
    # The model of a server whose metrics name none (tgi, llamacpp); asked of the server when left out.
    model: str | None = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in KIND_NAMES:
            raise ValueError(f"unknown kind {kind!r}: the known kinds are {', '.join(KIND_NAMES)}")
        return kind

    @field_validator("endpoint")
    @classmethod
    def _host_port(cls, endpoint: str) -> str:
        split_endpoint(endpoint)
        return endpoint

    @field_validator("metrics_path")
    @classmethod
    def _path(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("metrics_path must start with /")
        return path


class DiscoveryConfig(StrictModel):
    enabled: bool = False
    interval: Annotated[Duration, Field(gt=0)] = 60.0  # how often the host's processes are looked through


class GpuConfig(StrictModel):
    enabled: bool = True  # GPU memory and utilisation per server, where NVML is there


class HealthConfig(StrictModel):
    """Thresholds a served model's health is judged against, over the last interval."""

    max_error_rate: float = Field(0.05, ge=0, le=1)  # above: degraded
    failing_error_rate: float = Field(0.20, ge=0, le=1)  # above: failing
    # p95 latency of a non-generative server's requests (triton, mlserver); an LLM request's latency
    # grows with its output, so generative servers are judged by their time to first token instead.
    max_latency_p95: Annotated[Duration, Field(gt=0)] = 1.0
    max_ttft_p95: Annotated[Duration, Field(gt=0)] = 2.0
    # An interval with fewer requests says too little: its error rate is then the one since Vigil saw the model.
    min_requests: int = Field(20, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> HealthConfig:
        if self.failing_error_rate < self.max_error_rate:
            raise ValueError("failing_error_rate must not be below max_error_rate")
        return self


class InferenceReceiverConfig(StrictModel):
    collection_interval: Annotated[Duration, Field(gt=0)] = 10.0
    timeout: Annotated[Duration, Field(gt=0)] = 5.0  # a server that answers no sooner is down for that scrape
    # A page larger than this fails the scrape (up 0) rather than taking the agent's memory.
    body_size_limit: int = Field(16 * _MIB, gt=0)
    servers: list[ServerConfig] = []
    discovery: DiscoveryConfig = DiscoveryConfig()
    gpu: GpuConfig = GpuConfig()
    health: HealthConfig = HealthConfig()

    @model_validator(mode="after")
    def _check(self) -> InferenceReceiverConfig:
        if self.timeout > self.collection_interval:
            raise ValueError("timeout must not exceed collection_interval")
        if not self.servers and not self.discovery.enabled:
            raise ValueError("nothing to scrape: list servers, or turn discovery on (discovery: {enabled: true})")
        urls = [server_url(s.endpoint, s.metrics_path) for s in self.servers]
        twice = sorted({u for u in urls if urls.count(u) > 1})
        if twice:
            raise ValueError(f"each server once: {', '.join(twice)} is listed more than once")
        return self


def split_endpoint(endpoint: str) -> tuple[str, str, int]:
    """`host:port` or `http(s)://host:port` as (scheme, host, port); raises ValueError for anything else."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        scheme, rest = "http", endpoint
    if scheme not in ("http", "https"):
        raise ValueError(f"endpoint {endpoint!r}: the scheme must be http or https")
    parts = urlsplit("//" + rest)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"endpoint {endpoint!r} must be host:port (the server's metrics port)")
    return scheme, parts.hostname, port


def server_url(endpoint: str, path: str) -> str:
    scheme, host, port = split_endpoint(endpoint)
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}{path}"
