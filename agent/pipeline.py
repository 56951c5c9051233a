"""Turns a checked config into the graph of running components, and fans data out.

    receiver ─▶ fan-out ─▶ pipeline A: processor ─▶ processor ─▶ fan-out ─▶ exporter x
                       └─▶ pipeline B: processor ─────────────▶ fan-out ─▶ exporter x
                                                                        └─▶ exporter y

One receiver instance per receiver id (it may feed pipelines of several
signals), one processor instance per pipeline and processor id (as in the
Collector: a `batch` in two pipelines is two batchers), one exporter instance
per exporter id. This module is the only place that connects components.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from agent.component import ComponentId, Consumer, Exporter, Kind, Processor, Receiver, Settings
from agent.config import VigilConfig
from agent.errors import ConsumerError, RefusedError
from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry


class FanOut:
    """Gives each batch to every consumer; a consumer that edits data gets its own copy."""

    def __init__(self, consumers: list[tuple[Consumer, bool]]) -> None:
        self._consumers = consumers

    async def consume(self, batch: Batch) -> None:
        if len(self._consumers) == 1:
            await self._consumers[0][0].consume(batch)
            return
        errors: list[Exception] = []
        for consumer, mutates in self._consumers:
            try:
                await consumer.consume(batch.copy() if mutates else batch)
            except ConsumerError as exc:
                errors.append(exc)
        if errors:
            # Some consumers may have taken the batch; a retry duplicates it there (at-least-once).
            raise next((e for e in errors if isinstance(e, RefusedError)), errors[0])


@dataclass
class PipelineChain:
    """A built pipeline: its entry consumer and its processors in order."""

    id: ComponentId
    entry: Consumer
    processors: list[tuple[ComponentId, Processor]]
    mutates_data: bool


@dataclass
class Graph:
    receivers: dict[ComponentId, Receiver] = field(default_factory=dict)
    pipelines: dict[ComponentId, PipelineChain] = field(default_factory=dict)
    exporters: dict[ComponentId, Exporter] = field(default_factory=dict)

    def startup_order(self) -> list[tuple[str, object]]:
        """Exporters first, then each pipeline's processors from last to first, receivers last."""
        order: list[tuple[str, object]] = [(f"exporters.{i}", e) for i, e in self.exporters.items()]
        for chain in self.pipelines.values():
            order += [(f"processors.{i} ({chain.id})", p) for i, p in reversed(chain.processors)]
        order += [(f"receivers.{i}", r) for i, r in self.receivers.items()]
        return order

    def shutdown_order(self) -> list[tuple[str, object]]:
        """The reverse: receivers stop taking data, processors flush downstream, exporters drain."""
        return list(reversed(self.startup_order()))


def _settings(kind: Kind, cid: ComponentId, telemetry: SelfTelemetry) -> Settings:
    return Settings(cid, telemetry, logging.getLogger(f"vigil.{kind.section}.{cid}"))


def build(config: VigilConfig, telemetry: SelfTelemetry) -> Graph:
    graph = Graph()
    used_exporters = {e for p in config.pipelines.values() for e in p.exporters}
    for cid in sorted(used_exporters):
        component = config.component(Kind.EXPORTER, cid)
        graph.exporters[cid] = component.factory.create(component.config, _settings(Kind.EXPORTER, cid, telemetry))

    for pid, pipeline in config.pipelines.items():
        consumer: Consumer = FanOut([(graph.exporters[e], False) for e in pipeline.exporters])
        processors: list[tuple[ComponentId, Processor]] = []
        for cid in reversed(pipeline.processors):
            component = config.component(Kind.PROCESSOR, cid)
            processor = component.factory.create(component.config, _settings(Kind.PROCESSOR, cid, telemetry),
                                                 pipeline.signal, consumer)
            processors.insert(0, (cid, processor))
            consumer = processor
        mutates = any(getattr(p, "mutates_data", False) for _, p in processors)
        graph.pipelines[pid] = PipelineChain(pid, consumer, processors, mutates)

    receiver_ids = sorted({r for p in config.pipelines.values() for r in p.receivers})
    for cid in receiver_ids:
        consumers: dict[Signal, Consumer] = {}
        for signal in Signal:
            chains = [graph.pipelines[pid] for pid, p in config.pipelines.items()
                      if p.signal is signal and cid in p.receivers]
            if chains:
                consumers[signal] = FanOut([(c.entry, c.mutates_data) for c in chains])
        component = config.component(Kind.RECEIVER, cid)
        graph.receivers[cid] = component.factory.create(component.config, _settings(Kind.RECEIVER, cid, telemetry),
                                                        consumers)
    return graph
