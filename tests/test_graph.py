"""The graph itself (agent/pipeline.py): fan-out, start and stop order, and derived data.

Built from real configs with real components; each exporter here is an
in-memory sink (`tests/sink.py`) registered as the exporter type `memory`, so
a test can see exactly which batch object reached which exporter. Data enters
through the receiver's own edge, as the receiver would hand it on.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from agent import config as config_module, pipeline, registry
from agent.attributes import as_dict
from agent.component import ComponentId, Factory, Kind
from agent.config import ConfigError
from agent.configmodel import StrictModel
from agent.pipeline import Graph, Node, NodeKind
from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry
from tests.alerts.helpers import gauge
from tests.conftest import otlp_receiver_config
from tests.otlp_data import item_names, traces
from tests.sink import InMemorySink


class _MemoryExporterConfig(StrictModel):
    pass


class MemoryExporter(InMemorySink):
    mutates_data = False

    async def start(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


@pytest.fixture
def sinks():
    """The `memory` exporter type; each exporter id's sink, by id (`memory/a` -> sinks["memory/a"])."""
    made: dict[str, MemoryExporter] = {}

    def create(config: _MemoryExporterConfig, settings) -> MemoryExporter:
        made[str(settings.id)] = MemoryExporter()
        return made[str(settings.id)]

    registry.register(Factory(Kind.EXPORTER, "memory", _MemoryExporterConfig, create, frozenset(Signal),
                              "keeps what it is given, in memory"))
    yield made
    registry._FACTORIES[Kind.EXPORTER].pop("memory")


def config(tmp_path: Path, pipelines: dict[str, Any], processors: dict[str, Any] | None = None):
    exporters = {e for p in pipelines.values() for e in p.get("exporters", [])}
    return config_module.from_dict({
        "receivers": {"otlp": otlp_receiver_config()},
        "processors": processors or {},
        "exporters": {e: {} for e in exporters},
        "service": {"state_dir": str(tmp_path / "state"), "pipelines": pipelines},
    }, "<test>")


@contextlib.asynccontextmanager
async def running(config) -> AsyncIterator[Graph]:
    graph = pipeline.build(config, SelfTelemetry())
    graph.commit()
    for _, _, component in graph.startup_order():
        await component.start()
    try:
        yield graph
    finally:
        for _, _, component in graph.shutdown_order():
            await component.shutdown()


def received(graph: Graph, signal: Signal, receiver: str = "otlp"):
    """The edge the receiver hands its batches to."""
    return graph.outputs[Node.receiver(ComponentId.parse(receiver))][signal]


def resource_attributes(batch: Batch) -> list[dict[str, Any]]:
    return [as_dict(r.resource.attributes) for r in batch.message.resource_spans]


ALERTS = {"alerts": {
    "evaluation_interval": "50ms",
    "rules": [{"name": "Hot", "metric": "test.temperature", "op": ">", "threshold": 50, "for": "1h",
               "severity": "warning", "summary": "too hot"}],
    "notifiers": {"log": {}},
    "route": {"notifiers": ["log"], "group_wait": "0s"},
}}


# --- fan-out -------------------------------------------------------------------------------------------


async def test_fan_out_copies_a_batch_only_for_the_pipeline_that_edits_it(tmp_path, sinks):
    cfg = config(tmp_path, {
        "traces/edits": {"receivers": ["otlp"], "processors": ["resource"], "exporters": ["memory/edits"]},
        "traces/reads": {"receivers": ["otlp"], "exporters": ["memory/reads", "memory/also"]},
    }, processors={"resource": {"attributes": [{"key": "edited", "value": "yes", "action": "upsert"}]}})
    async with running(cfg) as graph:
        batch = Batch(Signal.TRACES, wire=traces(2).SerializeToString())
        await received(graph, Signal.TRACES).consume(batch)
    (edited,), (read,) = sinks["memory/edits"].batches, sinks["memory/reads"].batches
    (also,) = sinks["memory/also"].batches
    assert read is batch and also is batch  # neither it nor its exporters edit: no copy
    assert edited is not batch
    assert resource_attributes(edited) == [{"service.name": "svc-0", "host.id": 0, "edited": "yes"}]
    assert resource_attributes(read) == [{"service.name": "svc-0", "host.id": 0}]  # the edit stayed in its copy
    assert item_names(Signal.TRACES, read.message) == item_names(Signal.TRACES, edited.message) == ["span-0", "span-1"]


async def test_one_pipeline_that_edits_gets_the_batch_itself(tmp_path, sinks):
    cfg = config(tmp_path, {
        "traces": {"receivers": ["otlp"], "processors": ["resource"], "exporters": ["memory"]},
    }, processors={"resource": {"attributes": [{"key": "edited", "value": "yes", "action": "upsert"}]}})
    async with running(cfg) as graph:
        batch = Batch(Signal.TRACES, wire=traces(1).SerializeToString())
        await received(graph, Signal.TRACES).consume(batch)
    assert sinks["memory"].batches == [batch]  # nobody else sees it: nothing to copy for


# --- start and stop order ------------------------------------------------------------------------------


def test_exporters_start_first_and_receivers_last_and_stop_in_reverse(tmp_path, sinks):
    cfg = config(tmp_path, {
        "metrics": {"receivers": ["otlp"], "processors": ["alerts", "batch"], "exporters": ["memory/metrics"]},
        "logs": {"receivers": ["otlp", "alerts"], "processors": ["batch"], "exporters": ["memory/logs"]},
    }, processors={**ALERTS, "batch": {}})
    graph = pipeline.build(cfg, SelfTelemetry())
    order = graph.startup_order()
    # The logs pipeline gets what alerts derives, so it starts before the alerts state, and that state
    # before the alerts step in the metrics pipeline; a pipeline's processors start from its end.
    assert [name for name, _, _ in order] == [
        "exporters.memory/logs", "exporters.memory/metrics",
        "processors.batch (logs)", "processors.alerts", "processors.batch (metrics)", "processors.alerts (metrics)",
        "receivers.otlp"]
    assert [node.kind for _, node, _ in order] == [
        NodeKind.EXPORTER, NodeKind.EXPORTER, NodeKind.PROCESSOR, NodeKind.SHARED, NodeKind.PROCESSOR,
        NodeKind.PROCESSOR, NodeKind.RECEIVER]
    components = graph.components()
    assert [component for _, _, component in order] == [components[node] for _, node, _ in order]
    assert len(components) == len(order)  # every component once
    assert graph.shutdown_order() == list(reversed(order))


# --- derived data --------------------------------------------------------------------------------------


async def test_a_pipeline_listing_a_processor_among_its_receivers_gets_what_it_derives(tmp_path, sinks):
    cfg = config(tmp_path, {
        "metrics": {"receivers": ["otlp"], "processors": ["alerts"], "exporters": ["memory/metrics"]},
        "logs": {"receivers": ["alerts"], "exporters": ["memory/logs"]},
    }, processors=ALERTS)
    async with running(cfg) as graph:
        batch = gauge("test.temperature", [(80.0, {"room": "a"})], time_s=time.time())
        await received(graph, Signal.METRICS).consume(batch)
        await sinks["memory/logs"].wait_for_items(1)
    assert sinks["memory/metrics"].batches == [batch]  # the metrics go on as they came
    (_, _, record), = sinks["memory/logs"].log_records()
    attributes = as_dict(record.attributes)
    assert attributes["event.name"] == "vigil.alert.state_change"
    assert (attributes["vigil.alert.name"], attributes["vigil.alert.state"]) == ("Hot", "pending")
    assert attributes["vigil.alert.value"] == 80.0


def test_a_processor_listed_among_its_own_pipelines_receivers_is_refused(tmp_path, sinks):
    with pytest.raises(ConfigError) as error:
        config(tmp_path, {
            "metrics": {"receivers": ["otlp", "alerts"], "processors": ["alerts"], "exporters": ["memory"]},
        }, processors=ALERTS)
    assert error.value.problems == [
        "service.pipelines.metrics.receivers[1]: processor 'alerts' does not produce metrics"]


def test_a_processor_listed_as_a_receiver_but_in_no_pipeline_is_refused(tmp_path, sinks):
    with pytest.raises(ConfigError) as error:
        config(tmp_path, {
            "metrics": {"receivers": ["otlp"], "exporters": ["memory/metrics"]},
            "logs": {"receivers": ["alerts"], "exporters": ["memory/logs"]},
        }, processors=ALERTS)
    assert error.value.problems == [
        "service.pipelines.logs.receivers: processor 'alerts' is listed as a receiver but is in no pipeline's "
        "processors, so it never sees data"]


def test_a_cycle_through_two_deriving_processors_is_built_with_every_component_once(tmp_path, sinks):
    """ml in logs feeds alerts in metrics, whose state changes enter the logs pipeline again: the config
    is accepted (no check refuses such a cycle), and the start order falls back to the order listed."""
    cfg = config(tmp_path, {
        "logs": {"receivers": ["otlp", "alerts"], "processors": ["ml"], "exporters": ["memory/logs"]},
        "metrics": {"receivers": ["ml"], "processors": ["alerts"], "exporters": ["memory/metrics"]},
    }, processors={**ALERTS, "ml": {}})
    graph = pipeline.build(cfg, SelfTelemetry())
    names = [name for name, _, _ in graph.startup_order()]
    assert names[:2] == ["exporters.memory/logs", "exporters.memory/metrics"] and names[-1] == "receivers.otlp"
    assert sorted(names[2:-1]) == ["processors.alerts", "processors.alerts (metrics)", "processors.ml",
                                   "processors.ml (logs)"]


# --- what every component's settings carry -------------------------------------------------------------


def test_every_component_gets_the_trace_view_and_the_admin_url_from_the_service_section(tmp_path, sinks):
    cfg = config_module.from_dict({
        "receivers": {"otlp": otlp_receiver_config()},
        "exporters": {"memory": {}},
        "service": {"state_dir": str(tmp_path / "state"),
                    "trace_view_url": "http://jaeger:16686/trace/{trace_id}?uiFind={span_id}",
                    "admin": {"endpoint": "127.0.0.1:13999"},
                    "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["memory"]}}},
    }, "<test>")
    seen = []
    original = pipeline._settings
    pipeline._settings = lambda *args: seen.append(original(*args)) or seen[-1]
    try:
        pipeline.build(cfg, SelfTelemetry())
    finally:
        pipeline._settings = original
    assert {str(s.id) for s in seen} == {"otlp", "memory"}
    for settings in seen:
        assert settings.admin_url == "http://127.0.0.1:13999"
        assert settings.trace_url("ab" * 16, "cd" * 8) == f"http://jaeger:16686/trace/{'ab' * 16}?uiFind={'cd' * 8}"


def test_a_trace_view_url_without_a_trace_id_placeholder_is_refused_with_its_path(tmp_path):
    with pytest.raises(ConfigError, match=r"service\.trace_view_url.*\{trace_id\}"):
        config_module.from_dict({
            "receivers": {"otlp": otlp_receiver_config()}, "exporters": {"debug": {}},
            "service": {"trace_view_url": "http://jaeger:16686/search",
                        "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}}},
        }, "<test>")
