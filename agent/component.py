"""What every component is: the protocols, the settings a factory gets, and the factory.

A receiver produces batches into one consumer per signal; a processor is one
step of one pipeline and passes batches on to its `next` consumer; an exporter
consumes from every pipeline that lists it. Components never hold references
to one another: `agent.pipeline` hands each its consumers.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

from pydantic import BaseModel

from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry


class Kind(enum.Enum):
    RECEIVER = "receiver"
    PROCESSOR = "processor"
    EXPORTER = "exporter"
    EXTENSION = "extension"

    @property
    def section(self) -> str:
        """The top-level config section that defines components of this kind."""
        return self.value + "s"


@dataclass(frozen=True, order=True)
class ComponentId:
    """`type` or `type/name`, as in the Collector: `otlp`, `otlp/signoz`."""

    type: str
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> ComponentId:
        type_, _, name = text.strip().partition("/")
        if not type_ or (_ and not name):
            raise ValueError(f"invalid component id {text!r}: expected 'type' or 'type/name'")
        return cls(type_, name)

    def __str__(self) -> str:
        return f"{self.type}/{self.name}" if self.name else self.type


@runtime_checkable
class Consumer(Protocol):
    async def consume(self, batch: Batch) -> None:
        """Accept `batch` or raise a `ConsumerError`; once this returns, Vigil owns the data."""


@runtime_checkable
class Component(Protocol):
    async def start(self) -> None: ...

    async def shutdown(self) -> None: ...


class Receiver(Component, Protocol):
    pass


class Processor(Component, Consumer, Protocol):
    # A processor that changes batches in place says so; the fan-out then gives it a copy.
    mutates_data: bool


class Exporter(Component, Consumer, Protocol):
    pass


class Extension(Component, Protocol):
    """Outside the pipelines (a health check, a storage): started before them, stopped after."""


@runtime_checkable
class StatusProvider(Protocol):
    """Optional on any component: what it knows, for `vigil status`, the status page and the admin API.

    `status()` returns a JSON-serialisable snapshot and must be cheap (it runs on the event loop).
    """

    def status(self) -> dict[str, Any]: ...


@runtime_checkable
class AdminRoutes(Protocol):
    """Optional on any component: HTTP routes it serves on the admin endpoint.

    Each route is (method, path, handler); a handler is an aiohttp handler
    `async def handler(request) -> web.Response`. Paths live under `/api/v1/`.
    """

    def admin_routes(self) -> list[tuple[str, str, Callable[..., Any]]]: ...


@dataclass
class Settings:
    """What a factory gets besides the component's own config."""

    id: ComponentId
    telemetry: SelfTelemetry
    logger: logging.Logger = field(default=None)  # type: ignore[assignment]
    # Where a component keeps what must survive a restart (learned references, queues, alert state).
    state_dir: Path = Path("vigil-data/state")
    # `service.trace_view_url`: a template with {trace_id} and {span_id}; None when not configured.
    trace_view_url: str | None = None
    # The admin endpoint's base URL (the status page's, for links in alerts); None when it is off.
    admin_url: str | None = None

    def __post_init__(self) -> None:
        if self.logger is None:
            self.logger = logging.getLogger(f"vigil.{self.id}")

    def trace_url(self, trace_id: str, span_id: str = "") -> str | None:
        """The trace view's link for a trace (ids as hex), or None when no `trace_view_url` is set."""
        if self.trace_view_url is None or not trace_id:
            return None
        return self.trace_view_url.replace("{trace_id}", trace_id).replace("{span_id}", span_id)


@dataclass(frozen=True)
class Factory:
    """How to make one type of component: its config model and its constructor.

    `create` is called as:
      receiver:  create(config, settings, consumers: dict[Signal, Consumer])
      processor: create(config, settings, signal, next: Consumer)
                 create(config, settings, signal, next, shared)   with `create_shared`
      exporter:  create(config, settings)
      extension: create(config, settings)

    A processor that derives new data (the Collector calls that a connector) names
    the signals it `emits`; the pipelines of those signals that list its id among
    their receivers get what it derives. `create_shared(config, settings, emit:
    dict[Signal, Consumer])` makes the one component that holds its state, shared
    by its steps in every pipeline.
    """

    kind: Kind
    type: str
    config_model: type[BaseModel]
    create: Callable[..., Any]
    signals: frozenset[Signal]
    description: str
    emits: frozenset[Signal] = frozenset()
    create_shared: Callable[..., Any] | None = None
