"""Running a processor block copied from the Collector's documentation, as written, through Vigil.

`load(block)` puts the YAML block under `processors:` of a config with an otlp receiver and a debug
exporter, every processor in every pipeline, and reads it with Vigil's config loader (so a refused
key fails as `vigil validate` would say it). `run(config, id, signal, message)` passes one request
through the processor made by its factory and returns what came out (None when nothing did).
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
import yaml

from agent import attributes
from agent import config as config_module
from agent.component import ComponentId, Kind, Settings
from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry
from tests.sink import InMemorySink


def load(block: str, signals: tuple[Signal, ...] = tuple(Signal)) -> config_module.VigilConfig:
    processors = yaml.safe_load(textwrap.dedent(block))
    if "processors" in processors:
        processors = processors["processors"]
    ids = list(processors)
    text = yaml.safe_dump({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "processors": processors,
        "exporters": {"debug": {}},
        "service": {"pipelines": {s.value: {"receivers": ["otlp"], "processors": ids, "exporters": ["debug"]}
                                  for s in signals}},
    })
    return config_module.parse(text, "<collector docs>")


def problems(block: str, signals: tuple[Signal, ...] = tuple(Signal)) -> list[str]:
    """The problems the loader names for `block` (it must have some)."""
    with pytest.raises(config_module.ConfigError) as refused:
        load(block, signals)
    return refused.value.problems


def make(config: config_module.VigilConfig, id: str, signal: Signal, down: InMemorySink):
    cid = ComponentId.parse(id)
    component = config.component(Kind.PROCESSOR, cid)
    return component.factory.create(component.config, Settings(cid, SelfTelemetry()), signal, down)


async def run(config: config_module.VigilConfig, id: str, signal: Signal, message) -> Any:
    """`message` through processor `id`, coming in as wire bytes as a receiver hands it on; what goes out,
    parsed from its wire bytes, or None when the processor passed nothing on."""
    down = InMemorySink()
    processor = make(config, id, signal, down)
    await processor.consume(Batch(signal, wire=message.SerializeToString()))
    if not down.batches:
        return None
    (after,) = down.batches
    out = signal.request_type.FromString(after.wire())
    assert after.items == Batch(signal, out).items
    return out


def set_attributes(target, values: dict[str, Any]) -> None:
    for key, value in values.items():
        attributes.set_any_value(target.add(key=key).value, value)


def typed(kvs) -> dict[str, tuple[str, Any]]:
    """Attributes with the AnyValue field that holds each value: {'n': ('int_value', 1)}."""
    return {kv.key: (kv.value.WhichOneof("value"), attributes.any_value(kv.value)) for kv in kvs}
