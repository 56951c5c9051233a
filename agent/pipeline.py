"""Turns a checked config into the graph of running components, and fans data out.

    receiver ─▶ fan-out ─▶ pipeline A: processor ─▶ processor ─▶ fan-out ─▶ exporter x
                       └─▶ pipeline B: processor ─────────────▶ fan-out ─▶ exporter x
                                                                        └─▶ exporter y

One receiver instance per receiver id (it may feed pipelines of several
signals), one processor instance per pipeline and processor id (as in the
Collector: a `batch` in two pipelines is two batchers), one exporter instance
per exporter id. This module is the only place that connects components.

Every edge leaving a component is a `Switch`: a consumer that can be pointed
elsewhere. A reload builds the new graph next to the running one, reusing each
component whose key (its config, and what it feeds) did not change, and then
points the switches of the reused components at the new downstream in one
step (`Graph.commit`), without a batch in flight being dropped. What only the
old graph holds is then stopped in order, flushing downstream as at shutdown.
"""

from __future__ import annotations

import enum
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable, NamedTuple

from agent.component import Component, ComponentId, Consumer, Exporter, Kind, Processor, Receiver, Settings
from agent.config import VigilConfig
from agent.errors import ConsumerError, RefusedError
from agent.netconfig import split_host_port
from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry
from agent.unwatched import PredictionWatch, UnwatchedPredictions


class NodeKind(enum.StrEnum):
    """What a graph node is; the value, but for `shared`, is its config section (`receivers`, ...)."""

    EXPORTER = "exporters"
    PROCESSOR = "processors"  # one processor in one pipeline
    SHARED = "shared"  # the state of a processor that derives data, one per id for all its pipelines
    RECEIVER = "receivers"


class Node(NamedTuple):
    """A component's place in the graph: what a reload compares to find the components it keeps."""

    kind: NodeKind
    id: ComponentId
    pipeline: ComponentId | None = None  # a processor's pipeline

    @property
    def name(self) -> str:
        """As logs and errors name it: `exporters.file`, `processors.batch (traces)`."""
        section = "processors" if self.kind is NodeKind.SHARED else self.kind.value
        return f"{section}.{self.id}" + (f" ({self.pipeline})" if self.pipeline is not None else "")

    @classmethod
    def exporter(cls, cid: ComponentId) -> Node:
        return cls(NodeKind.EXPORTER, cid)

    @classmethod
    def processor(cls, pipeline: ComponentId, cid: ComponentId) -> Node:
        return cls(NodeKind.PROCESSOR, cid, pipeline)

    @classmethod
    def shared(cls, cid: ComponentId) -> Node:
        return cls(NodeKind.SHARED, cid)

    @classmethod
    def receiver(cls, cid: ComponentId) -> Node:
        return cls(NodeKind.RECEIVER, cid)


class _Group(enum.Enum):
    """What the start order sorts between exporters and receivers."""

    PIPELINE = "pipeline"  # a pipeline's processors
    SHARED = "shared"


log = logging.getLogger("vigil.pipeline")


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
            # Every consumer gets its turn, whatever an earlier one raised.
            try:
                await consumer.consume(batch.copy() if mutates else batch)
            except ConsumerError as exc:
                errors.append(exc)
            except Exception as exc:
                log.exception("a consumer failed on a %s batch; the others still get it", batch.signal.value)
                errors.append(RefusedError(f"internal error: {exc}"))
        if errors:
            # Some consumers may have taken the batch; a retry duplicates it there (at-least-once).
            raise next((e for e in errors if isinstance(e, RefusedError)), errors[0])


class Switch:
    """An edge whose far end can change: what a reload re-points behind a component it keeps.

    With `counter`, items the far end accepted are counted (a processor's outgoing items).
    """

    def __init__(self, target: Consumer, counter: Any = None, attributes: dict | None = None) -> None:
        self.target = target
        self._counter = counter
        self._attributes = attributes

    async def consume(self, batch: Batch) -> None:
        items = batch.items if self._counter is not None else 0
        await self.target.consume(batch)
        if self._counter is not None:
            self._counter.add(items, self._attributes)


class Stage:
    """A processor as its pipeline sees it: counts the items it takes in."""

    def __init__(self, processor: Processor, counter: Any, attributes: dict) -> None:
        self.processor = processor
        self._counter = counter
        self._attributes = attributes

    async def consume(self, batch: Batch) -> None:
        items = batch.items  # before the processor, which may edit the batch
        await self.processor.consume(batch)
        self._counter.add(items, self._attributes)


@dataclass
class PipelineChain:
    """A built pipeline: its entry consumer and its processors in order."""

    id: ComponentId
    entry: Consumer
    processors: list[tuple[ComponentId, Processor]]
    mutates_data: bool
    # Processors whose derived data enters this pipeline (listed among its receivers).
    derived_from: tuple[ComponentId, ...] = ()


@dataclass
class Graph:
    receivers: dict[ComponentId, Receiver] = field(default_factory=dict)
    pipelines: dict[ComponentId, PipelineChain] = field(default_factory=dict)
    exporters: dict[ComponentId, Exporter] = field(default_factory=dict)
    # The state of processors that derive data, one per id, shared by their steps in every pipeline.
    shared: dict[ComponentId, Component] = field(default_factory=dict)
    # Predictions that reach no ml processor, as found by the receivers' watches.
    unwatched: UnwatchedPredictions = field(default_factory=UnwatchedPredictions)
    # What each component was built from; a later build reuses a component whose key is equal.
    keys: dict[Node, Any] = field(default_factory=dict)
    # The edges leaving each component, and the processors' counting wrappers.
    outputs: dict[Node, dict[Any, Switch]] = field(default_factory=dict)
    stages: dict[Node, Stage] = field(default_factory=dict)
    # Whose gauges are whose in the self-telemetry (released when the component goes).
    owners: dict[Node, Hashable] = field(default_factory=dict)
    # Components taken over from the graph this one replaces, and where their edges go now.
    reused: set[Node] = field(default_factory=set)
    _retargets: list[tuple[Switch, Consumer]] = field(default_factory=list)

    def components(self) -> dict[Node, Component]:
        nodes: dict[Node, Component] = {Node.exporter(i): e for i, e in self.exporters.items()}
        for chain in self.pipelines.values():
            nodes.update({Node.processor(chain.id, i): p for i, p in chain.processors})
        nodes.update({Node.shared(i): s for i, s in self.shared.items()})
        nodes.update({Node.receiver(i): r for i, r in self.receivers.items()})
        return nodes

    def startup_order(self) -> list[tuple[str, Node, Component]]:
        """Exporters, then pipelines and shared processor state from downstream up, receivers last.

        A pipeline that gets what a shared processor derives starts before it, and the
        shared processor before the pipelines it sits in; so in the reverse (shutdown)
        order a batch in front of `ml` flushes into a running engine, and the engine's
        last metrics reach running pipelines.
        """
        nodes = [Node.exporter(i) for i in self.exporters]
        for group, key in self._pipelines_and_shared_downstream_first():
            if group is _Group.SHARED:
                nodes.append(Node.shared(key))
            else:
                nodes += [Node.processor(key, i) for i, _ in reversed(self.pipelines[key].processors)]
        nodes += [Node.receiver(i) for i in self.receivers]
        components = self.components()
        return [(node.name, node, components[node]) for node in nodes]

    def _pipelines_and_shared_downstream_first(self) -> list[tuple[_Group, ComponentId]]:
        nodes = [(_Group.PIPELINE, pid) for pid in self.pipelines] + [(_Group.SHARED, sid) for sid in self.shared]
        before: dict[tuple[_Group, ComponentId], set] = {n: set() for n in nodes}  # what must start first
        for pid, chain in self.pipelines.items():
            for sid in chain.derived_from:
                if sid in self.shared:
                    before[(_Group.SHARED, sid)].add((_Group.PIPELINE, pid))
            for sid, _ in chain.processors:
                if sid in self.shared:
                    before[(_Group.PIPELINE, pid)].add((_Group.SHARED, sid))
        order: list[tuple[_Group, ComponentId]] = []
        done: set = set()
        while len(order) < len(nodes):
            ready = [n for n in nodes if n not in done and before[n] <= done]
            if not ready:  # a cycle (ml in logs feeding alerts feeding logs): keep the rest as listed
                ready = [n for n in nodes if n not in done]
            for n in ready:
                order.append(n)
                done.add(n)
        return order

    def shutdown_order(self) -> list[tuple[str, Node, Component]]:
        """The reverse: receivers stop taking data, processors flush downstream, exporters drain."""
        return list(reversed(self.startup_order()))

    def commit(self) -> None:
        """Point the reused components' edges at this graph (one step on the event loop, no await)."""
        for switch, target in self._retargets:
            switch.target = target
        self._retargets = []


@dataclass(frozen=True)
class _Context:
    """What every component's Settings share; part of each reuse key, so a change rebuilds them."""

    state_dir: Path
    trace_view_url: str | None
    # Not compared: the admin endpoint moving is no reason to rebuild every component.
    admin_url: str | None = field(compare=False)

    @classmethod
    def of(cls, config: VigilConfig) -> _Context:
        service = config.service
        return cls(Path(service.state_dir), service.trace_view_url, _admin_url(service.admin.endpoint))


def _admin_url(endpoint: str | None) -> str | None:
    if endpoint is None:
        return None
    host, port = split_host_port(endpoint)
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()  # listening everywhere: the name others reach it by
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _settings(kind: Kind, cid: ComponentId, telemetry: Any, context: _Context) -> Settings:
    return Settings(cid, telemetry, logging.getLogger(f"vigil.{kind.section}.{cid}"), context.state_dir,
                    context.trace_view_url, context.admin_url)


def build(config: VigilConfig, telemetry: SelfTelemetry, previous: Graph | None = None) -> Graph:
    """The graph of `config`. With `previous`, its components whose key is unchanged are reused:
    nothing about them changes until `commit()`, which points their edges at the new graph."""
    graph = Graph()
    old = previous or Graph()
    context = _Context.of(config)
    old_components = old.components()

    def reuse(node: Node, key: Any) -> Any | None:
        graph.keys[node] = key
        if node in old_components and old.keys.get(node) == key:
            graph.reused.add(node)
            graph.owners[node] = old.owners[node]
            return old_components[node]
        graph.owners[node] = object()
        return None

    def settings(kind: Kind, cid: ComponentId, node: Node) -> Settings:
        return _settings(kind, cid, telemetry.scoped(graph.owners[node]), context)

    def point(node: Node, slot: Any, target: Consumer, **counting: Any) -> Switch:
        """The edge `slot` of `node`: the reused one, re-pointed at commit, or a new one."""
        switch = old.outputs.get(node, {}).get(slot) if node in graph.reused else None
        if switch is None:
            switch = Switch(target, **counting)
        else:
            graph._retargets.append((switch, target))
        graph.outputs.setdefault(node, {})[slot] = switch
        return switch

    used_exporters = {e for p in config.pipelines.values() for e in p.exporters}
    for cid in sorted(used_exporters):
        component = config.component(Kind.EXPORTER, cid)
        node = Node.exporter(cid)
        exporter = reuse(node, (component.config, context))
        if exporter is None:
            exporter = component.factory.create(component.config, settings(Kind.EXPORTER, cid, node))
        graph.exporters[cid] = exporter

    # Processors that derive data get their shared state first; each signal it emits gets an edge,
    # pointed below once every pipeline it feeds exists.
    emit_targets: dict[ComponentId, dict[Signal, list[ComponentId]]] = {}
    for cid in sorted({c for p in config.pipelines.values() for c in p.processors}):
        component = config.component(Kind.PROCESSOR, cid)
        if component.factory.create_shared is None:
            continue
        targets = {s: [pid for pid, p in config.pipelines.items() if p.signal is s and cid in p.derived_from]
                   for s in Signal}
        emit_targets[cid] = {s: pids for s, pids in targets.items() if pids}
        node = Node.shared(cid)
        # What it emits to is part of its key: a component learns its consumers only once, when made.
        shared = reuse(node, (component.config, context, frozenset(emit_targets[cid])))
        if shared is None:
            emit: dict[Signal, Consumer] = {s: Switch(_Unwired()) for s in emit_targets[cid]}
            graph.outputs[node] = dict(emit)
            shared = component.factory.create_shared(component.config, settings(Kind.PROCESSOR, cid, node),
                                                     emit)
        else:
            graph.outputs[node] = dict(old.outputs[node])
        graph.shared[cid] = shared

    incoming = telemetry.counter("vigil_processor_incoming_items", "items a processor took in")
    outgoing = telemetry.counter("vigil_processor_outgoing_items", "items a processor passed on")
    for pid, pipeline in config.pipelines.items():
        downstream: Consumer = FanOut([(graph.exporters[e], False) for e in pipeline.exporters])
        processors: list[tuple[ComponentId, Processor]] = []
        for cid in reversed(pipeline.processors):
            component = config.component(Kind.PROCESSOR, cid)
            node = Node.processor(pid, cid)
            extra = (graph.shared[cid],) if cid in graph.shared else ()
            attrs = {"processor": str(cid), "pipeline": str(pid), "otel.signal": pipeline.signal.value}
            processor = reuse(node, (component.config, context, pipeline.signal, tuple(map(id, extra))))
            out = point(node, "next", downstream, counter=outgoing, attributes=attrs)
            if processor is None:
                processor = component.factory.create(component.config, settings(Kind.PROCESSOR, cid, node),
                                                      pipeline.signal, out, *extra)
                stage = Stage(processor, incoming, attrs)
            else:
                stage = old.stages[node]
            graph.stages[node] = stage
            processors.insert(0, (cid, processor))
            downstream = stage
        mutates = any(getattr(p, "mutates_data", False) for _, p in processors)
        graph.pipelines[pid] = PipelineChain(pid, downstream, processors, mutates, pipeline.derived_from)

    def fan_in(pids: list[ComponentId]) -> FanOut:
        chains = [graph.pipelines[pid] for pid in pids]
        return FanOut([(c.entry, c.mutates_data) for c in chains])

    for cid, targets in emit_targets.items():
        node = Node.shared(cid)
        for signal, pids in targets.items():
            switch = graph.outputs[node][signal]
            if node in graph.reused:
                graph._retargets.append((switch, fan_in(pids)))
            else:
                switch.target = fan_in(pids)

    def watched(receiver: ComponentId, signal: Signal, pids: list[ComponentId]) -> Consumer:
        """The receiver's edge into `pids`, watched for predictions where no ml processor sees them."""
        if signal is Signal.METRICS or any(c.type == "ml" for pid in pids for c in config.pipelines[pid].processors):
            return fan_in(pids)
        return PredictionWatch(fan_in(pids), receiver, signal, pids, graph.unwatched)

    for cid in sorted({r for p in config.pipelines.values() for r in p.receivers}):
        feeds = {s: [pid for pid, p in config.pipelines.items() if p.signal is s and cid in p.receivers]
                 for s in Signal}
        feeds = {s: pids for s, pids in feeds.items() if pids}
        component = config.component(Kind.RECEIVER, cid)
        node = Node.receiver(cid)
        # The signals it feeds are part of its key: a receiver serves only those it was given.
        receiver = reuse(node, (component.config, context, frozenset(feeds)))
        consumers = {s: point(node, s, watched(cid, s, pids)) for s, pids in feeds.items()}
        if receiver is None:
            receiver = component.factory.create(component.config, settings(Kind.RECEIVER, cid, node), consumers)
        graph.receivers[cid] = receiver
    return graph


def remake_receiver(graph: Graph, config: VigilConfig, telemetry: SelfTelemetry, cid: ComponentId) -> Receiver:
    """A new instance of `graph`'s receiver `cid` on the same edges, in place of the one there.

    What brings back a receiver that a reload stopped and then could not replace; a stopped
    component is not asked to start twice.
    """
    node = Node.receiver(cid)
    component = config.component(Kind.RECEIVER, cid)
    owner = graph.owners[node]
    telemetry.release(owner)  # the stopped instance's gauges go; the new one registers its own
    settings = _settings(Kind.RECEIVER, cid, telemetry.scoped(owner), _Context.of(config))
    receiver = component.factory.create(component.config, settings, dict(graph.outputs[node]))
    graph.receivers[cid] = receiver
    return receiver


class _Unwired:
    async def consume(self, batch: Batch) -> None:
        raise RefusedError("not connected yet")
