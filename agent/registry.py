"""Every component type Vigil knows, by kind and type name (the Collector's names)."""

from __future__ import annotations

from agent.alerts import processor as alerts
from agent.component import Factory, Kind
from agent.exporters import debug, file, otlp as otlp_exporter, otlphttp, prometheus as prometheus_exporter
from agent.processors import batch, memory_limiter, ml, resource
from agent.receivers import hostmetrics, nvml, otlp as otlp_receiver, predictionlog
from agent.receivers import prometheus as prometheus_receiver

_FACTORIES: dict[Kind, dict[str, Factory]] = {kind: {} for kind in Kind}


def register(factory: Factory) -> None:
    known = _FACTORIES[factory.kind]
    if factory.type in known:
        raise ValueError(f"{factory.kind.value} type {factory.type!r} is registered twice")
    known[factory.type] = factory


for _factory in (
    otlp_receiver.FACTORY,
    hostmetrics.FACTORY,
    nvml.FACTORY,
    predictionlog.FACTORY,
    prometheus_receiver.FACTORY,
    memory_limiter.FACTORY,
    batch.FACTORY,
    resource.FACTORY,
    ml.FACTORY,
    alerts.FACTORY,
    otlp_exporter.FACTORY,
    otlphttp.FACTORY,
    file.FACTORY,
    debug.FACTORY,
    prometheus_exporter.FACTORY,
):
    register(_factory)


def factories(kind: Kind) -> dict[str, Factory]:
    return dict(_FACTORIES[kind])


def lookup(kind: Kind, type_: str) -> Factory | None:
    return _FACTORIES[kind].get(type_)
