"""The `prometheus` receiver's config: the Collector's `config.scrape_configs`, a subset of Prometheus's.

Unsupported Prometheus keys are errors rather than silently ignored, so a
Collector config reads the same or fails to load.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from agent.configmodel import Duration, StrictModel

_MIB = 1024 * 1024


class StaticConfig(StrictModel):
    targets: list[str] = Field(min_length=1)  # host:port
    labels: dict[str, str] = {}  # added to each target's resource


class ScrapeJobConfig(StrictModel):
    job_name: str = Field(min_length=1)
    # Prometheus's default is 1m; inference hosts want latency and GPU numbers sooner.
    scrape_interval: Annotated[Duration, Field(gt=0)] = 15.0
    scrape_timeout: Annotated[Duration, Field(gt=0)] = 10.0
    metrics_path: str = "/metrics"
    scheme: Literal["http", "https"] = "http"
    honor_timestamps: bool = True  # use the timestamps a target gives its samples
    # A page larger than this fails the scrape (up = 0) rather than taking the agent's memory.
    body_size_limit: int = Field(64 * _MIB, gt=0)
    static_configs: list[StaticConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> ScrapeJobConfig:
        if self.scrape_timeout > self.scrape_interval:
            raise ValueError("scrape_timeout must not exceed scrape_interval")
        if not self.metrics_path.startswith("/"):
            raise ValueError("metrics_path must start with /")
        for static in self.static_configs:
            for target in static.targets:
                split_target(target)
        return self


class PrometheusConfig(StrictModel):
    scrape_configs: list[ScrapeJobConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_jobs(self) -> PrometheusConfig:
        names = [job.job_name for job in self.scrape_configs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"job_name must be unique: {', '.join(twice)} appears more than once")
        return self


class PrometheusReceiverConfig(StrictModel):
    config: PrometheusConfig


def split_target(target: str) -> tuple[str, int]:
    """`host:port` as its host and port; raises ValueError for anything else."""
    parts = urlsplit("//" + target)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.path or parts.query:
        raise ValueError(f"target {target!r} must be host:port")
    return parts.hostname, port
