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
from pathlib import Path

from agent.component import Component, ComponentId, Consumer, Exporter, Kind, Processor, Receiver, Settings
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
    # The state of processors that derive data, one per id, shared by their steps in every pipeline.
    shared: dict[ComponentId, Component] = field(default_factory=dict)

    def startup_order(self) -> list[tuple[str, object]]:
        """Exporters, each pipeline's processors from last to first, shared processor state, receivers."""
        order: list[tuple[str, object]] = [(f"exporters.{i}", e) for i, e in self.exporters.items()]
        for chain in self.pipelines.values():
            order += [(f"processors.{i} ({chain.id})", p) for i, p in reversed(chain.processors)]
        order += [(f"processors.{i}", s) for i, s in self.shared.items()]
        order += [(f"receivers.{i}", r) for i, r in self.receivers.items()]
        return order

    def shutdown_order(self) -> list[tuple[str, object]]:
        """The reverse: receivers stop taking data, processors flush downstream, exporters drain."""
        return list(reversed(self.startup_order()))


def _settings(kind: Kind, cid: ComponentId, telemetry: SelfTelemetry, state_dir: Path) -> Settings:
    return Settings(cid, telemetry, logging.getLogger(f"vigil.{kind.section}.{cid}"), state_dir)


def build(config: VigilConfig, telemetry: SelfTelemetry) -> Graph:
    graph = Graph()
    state_dir = Path(config.service.state_dir)

    def settings(kind: Kind, cid: ComponentId) -> Settings:
        return _settings(kind, cid, telemetry, state_dir)

    used_exporters = {e for p in config.pipelines.values() for e in p.exporters}
    for cid in sorted(used_exporters):
        component = config.component(Kind.EXPORTER, cid)
        graph.exporters[cid] = component.factory.create(component.config, settings(Kind.EXPORTER, cid))

    # Processors that derive data get their shared state first; where it goes is filled in below,
    # once every pipeline it feeds exists.
    emits: dict[ComponentId, dict[Signal, Consumer]] = {}
    for cid in sorted({c for p in config.pipelines.values() for c in p.processors}):
        component = config.component(Kind.PROCESSOR, cid)
        if component.factory.create_shared is not None:
            emits[cid] = {}
            graph.shared[cid] = component.factory.create_shared(
                component.config, settings(Kind.PROCESSOR, cid), emits[cid])

    for pid, pipeline in config.pipelines.items():
        consumer: Consumer = FanOut([(graph.exporters[e], False) for e in pipeline.exporters])
        processors: list[tuple[ComponentId, Processor]] = []
        for cid in reversed(pipeline.processors):
            component = config.component(Kind.PROCESSOR, cid)
            extra = (graph.shared[cid],) if cid in graph.shared else ()
            processor = component.factory.create(component.config, settings(Kind.PROCESSOR, cid),
                                                 pipeline.signal, consumer, *extra)
            processors.insert(0, (cid, processor))
            consumer = processor
        mutates = any(getattr(p, "mutates_data", False) for _, p in processors)
        graph.pipelines[pid] = PipelineChain(pid, consumer, processors, mutates)

    for cid, emit in emits.items():
        for signal in Signal:
            chains = [graph.pipelines[pid] for pid, p in config.pipelines.items()
                      if p.signal is signal and cid in p.derived_from]
            if chains:
                emit[signal] = FanOut([(c.entry, c.mutates_data) for c in chains])

    receiver_ids = sorted({r for p in config.pipelines.values() for r in p.receivers})
    for cid in receiver_ids:
        consumers: dict[Signal, Consumer] = {}
        for signal in Signal:
            chains = [graph.pipelines[pid] for pid, p in config.pipelines.items()
                      if p.signal is signal and cid in p.receivers]
            if chains:
                consumers[signal] = FanOut([(c.entry, c.mutates_data) for c in chains])
        component = config.component(Kind.RECEIVER, cid)
        graph.receivers[cid] = component.factory.create(component.config, settings(Kind.RECEIVER, cid),
                                                        consumers)
    return graph
