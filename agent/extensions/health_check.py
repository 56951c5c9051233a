"""`health_check`: the Collector's health endpoint, with its answer.

GET on `path` answers 200 `{"status": "Server available", "upSince": ..., "uptime": ...}`
once every pipeline runs, and 503 `{"status": "Server not available", ...}` before
that and from the moment shutdown begins (as the Collector's healthcheckextension).
Where `endpoint` is the admin endpoint's port (the Collector's default
`localhost:13133` is Vigil's admin default too), the admin endpoint serves it
instead of a second listener; at `/` it then answers requests that do not ask for
HTML, and browsers still get the status page.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from pydantic import Field, field_validator

from agent.component import Factory, Kind, Settings
from agent.configmodel import StrictModel
from agent.netconfig import ListenEndpoint, split_host_port

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_WILDCARD = {"", "0.0.0.0", "::"}


class ResponseBodyConfig(StrictModel):
    # Replace the JSON answer with these texts (the Collector's response_body).
    healthy: str = ""
    unhealthy: str = ""


class CheckCollectorPipelineConfig(StrictModel):
    # Accepted as the Collector has it; Vigil's answer follows readiness, not exporter failures.
    enabled: bool = False
    interval: str = "5m"
    exporter_failure_threshold: int = Field(5, gt=0)


class HealthCheckConfig(StrictModel):
    # The Collector's default; it is Vigil's admin endpoint's port, which then serves it.
    endpoint: ListenEndpoint = "localhost:13133"
    path: str = "/"
    response_body: ResponseBodyConfig | None = None
    check_collector_pipeline: CheckCollectorPipelineConfig = CheckCollectorPipelineConfig()

    @field_validator("path")
    @classmethod
    def _slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value

    def warnings(self) -> list[str]:
        if self.check_collector_pipeline.enabled:
            return ["check_collector_pipeline is ignored: the answer is 200 while every pipeline runs "
                    "and 503 otherwise (exporter failures show in vigil_exporter_send_failed_* instead)"]
        return []


def shares_port(endpoint: str, other: str | None) -> bool:
    """True when listening on both `endpoint` and `other` would clash (same port, overlapping hosts)."""
    if other is None:
        return False
    (host, port), (other_host, other_port) = split_host_port(endpoint), split_host_port(other)
    if port == 0 or port != other_port:
        return False
    return (host == other_host or host in _WILDCARD or other_host in _WILDCARD
            or (host in _LOOPBACK and other_host in _LOOPBACK))


def listens_beside(endpoint: str, admin: str | None) -> bool:
    """True when a health check on `endpoint` shares the admin endpoint's port but on every interface while
    the admin endpoint keeps to its own address (loopback, usually): it then listens beside it on that port
    (SO_REUSEPORT on both), answering what comes to the host's other addresses, and the admin endpoint
    answers it on its own address."""
    if admin is None or not shares_port(endpoint, admin):
        return False
    return split_host_port(endpoint)[0] in _WILDCARD and split_host_port(admin)[0] not in _WILDCARD


def go_duration(seconds: float) -> str:
    """A duration as Go's time.Duration.String() writes it: 1h2m3.5s, 3.25s, 12ms."""
    if seconds < 1:
        return f"{seconds * 1000:.6g}ms" if seconds >= 0.001 else f"{seconds * 1e6:.6g}µs"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    return f"{int(minutes)}m{text}" if minutes else text


class HealthCheck:
    """Answers the health check; listens itself, or is served by the admin endpoint (`on_admin`)."""

    def __init__(self, config: HealthCheckConfig, settings: Settings) -> None:
        self.config = config
        self.path = config.path
        self.on_admin = False  # set by the service when the endpoint is the admin endpoint's
        self.beside_admin = False  # and listens beside it on every interface (`listens_beside`)
        self._log = settings.logger
        self._up_since: float | None = None
        self._runner = None
        self.port: int | None = None

    def ready(self) -> None:
        if self._up_since is None:
            self._up_since = time.time()

    def not_ready(self) -> None:
        self._up_since = None

    def answer(self) -> tuple[int, str, str]:
        """(status code, content type, body) of the health check now."""
        custom = self.config.response_body
        if self._up_since is None:
            if custom is not None and custom.unhealthy:
                return 503, "text/plain", custom.unhealthy
            body = {"status": "Server not available", "upSince": "0001-01-01T00:00:00Z", "uptime": ""}
            return 503, "application/json", json.dumps(body, separators=(",", ":"))
        if custom is not None and custom.healthy:
            return 200, "text/plain", custom.healthy
        since = datetime.fromtimestamp(self._up_since, timezone.utc).isoformat().replace("+00:00", "Z")
        body = {"status": "Server available", "upSince": since, "uptime": go_duration(time.time() - self._up_since)}
        return 200, "application/json", json.dumps(body, separators=(",", ":"))

    async def handle(self, _request):
        from aiohttp import web

        status, content_type, body = self.answer()
        return web.Response(status=status, text=body, content_type=content_type)

    async def start(self) -> None:
        if self.on_admin and not self.beside_admin:
            self._log.info("health check served by the admin endpoint at %s", self.path)
            return
        from aiohttp import web

        from agent.listen import listen

        app = web.Application()
        app.router.add_get(self.path, self.handle)
        self._runner, self.port = await listen(app, self.config.endpoint, reuse_port=self.beside_admin)
        self._log.info("health check on %s:%d%s", split_host_port(self.config.endpoint)[0], self.port, self.path)

    async def shutdown(self) -> None:
        self.not_ready()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


FACTORY = Factory(Kind.EXTENSION, "health_check", HealthCheckConfig, HealthCheck, frozenset(),
                  "answers the Collector's health check over HTTP (200 while every pipeline runs, else 503)")
