"""Every component type Vigil knows, by kind and type name (the Collector's names).

A component's module is imported only when a config uses its type (or `vigil
components` lists them all): the agent then loads grpc, numpy or aiohttp's
client only for the pipelines that need them, which keeps an agent that only
watches the host small.
"""

from __future__ import annotations

import importlib

from agent.component import Factory, Kind

# kind -> type name -> the module whose FACTORY makes it.
_MODULES: dict[Kind, dict[str, str]] = {
    Kind.RECEIVER: {
        "otlp": "agent.receivers.otlp",
        "hostmetrics": "agent.receivers.hostmetrics",
        "inference_proxy": "agent.receivers.inference_proxy",
        "nvml": "agent.receivers.nvml",
        "predictionlog": "agent.receivers.predictionlog",
        "prometheus": "agent.receivers.prometheus",
        "kserve": "agent.receivers.kserve",
        "inference": "agent.receivers.inference",
    },
    Kind.PROCESSOR: {
        "memory_limiter": "agent.processors.memory_limiter",
        "batch": "agent.processors.batch",
        "resource": "agent.processors.resource",
        "attributes": "agent.processors.attributes",
        "filter": "agent.processors.filter",
        "redaction": "agent.processors.redaction",
        "ml": "agent.processors.ml",
        "alerts": "agent.alerts.processor",
    },
    Kind.EXPORTER: {
        "otlp": "agent.exporters.otlp",
        "otlphttp": "agent.exporters.otlphttp",
        "file": "agent.exporters.file",
        "debug": "agent.exporters.debug",
        "prometheus": "agent.exporters.prometheus",
    },
    Kind.EXTENSION: {
        "health_check": "agent.extensions.health_check",
        "file_storage": "agent.extensions.file_storage",
        "pprof": "agent.extensions.pprof",
        "zpages": "agent.extensions.zpages",
        "memory_ballast": "agent.extensions.memory_ballast",
    },
}

_FACTORIES: dict[Kind, dict[str, Factory]] = {kind: {} for kind in Kind}


def register(factory: Factory) -> None:
    known = _FACTORIES[factory.kind]
    if factory.type in known:
        raise ValueError(f"{factory.kind.value} type {factory.type!r} is registered twice")
    known[factory.type] = factory


def types(kind: Kind) -> list[str]:
    """The type names of `kind`, without importing their modules."""
    return sorted(_MODULES[kind].keys() | _FACTORIES[kind].keys())


def factories(kind: Kind) -> dict[str, Factory]:
    """Every factory of `kind` (imports every component module of that kind)."""
    known = {type_: lookup(kind, type_) for type_ in _MODULES[kind]}  # in a fixed order
    return known | _FACTORIES[kind]


def lookup(kind: Kind, type_: str) -> Factory | None:
    factory = _FACTORIES[kind].get(type_)
    if factory is None and type_ in _MODULES[kind]:
        factory = importlib.import_module(_MODULES[kind][type_]).FACTORY
        if factory.kind is not kind or factory.type != type_:
            raise ValueError(f"{_MODULES[kind][type_]} makes {factory.kind.value} {factory.type!r}, "
                             f"not {kind.value} {type_!r}")
        register(factory)
    return factory
