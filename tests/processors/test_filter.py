"""The `filter` processor with the Collector's own config, as written; error_mode at run time; refusals.

The `filter/ottl` block is copied from opentelemetry-collector-contrib's processor/filterprocessor
README.md (commit ba96fac1; the same example and context table as the README of v0.135.0).
"""

from __future__ import annotations

import logging

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent.errors import InvalidDataError
from agent.signals import Batch, Signal
from tests.conftest import otlp_receiver_config, running_vigil
from tests.otlp_data import send_grpc
from tests.processors.collector_docs import load, make, problems, run, set_attributes
from tests.sink import InMemorySink
from tests.vigil_cli import run_cli

README_EXAMPLE = """
processors:
  filter/ottl:
    error_mode: ignore
    traces:
      span:
        - 'attributes["container.name"] == "app_container_1"'
        - 'resource.attributes["host.name"] == "localhost"'
        - 'name == "app_3"'
      spanevent:
        - 'attributes["grpc"] == true'
        - 'IsMatch(name, ".*grpc.*")'
    metrics:
      metric:
          - 'name == "my.metric" and resource.attributes["my_label"] == "abc123"'
          - 'type == METRIC_DATA_TYPE_HISTOGRAM'
      datapoint:
          - 'metric.type == METRIC_DATA_TYPE_SUMMARY'
          - 'resource.attributes["service.name"] == "my_service_name"'
    logs:
      log_record:
        - 'IsMatch(body, ".*password.*")'
        - 'severity_number < SEVERITY_NUMBER_WARN'
"""


def _names(message, signal: Signal) -> list[list[str]]:
    """Per resource, its items' names (log records: their bodies)."""
    if signal is Signal.TRACES:
        return [[s.name for ss in rs.scope_spans for s in ss.spans] for rs in message.resource_spans]
    if signal is Signal.METRICS:
        return [[m.name for sm in rm.scope_metrics for m in sm.metrics] for rm in message.resource_metrics]
    return [[r.body.string_value for sl in rl.scope_logs for r in sl.log_records] for rl in message.resource_logs]


def readme_spans() -> ExportTraceServiceRequest:
    """Spans each of the README example's conditions is about, and some none is."""
    request = ExportTraceServiceRequest()
    web = request.resource_spans.add()
    set_attributes(web.resource.attributes, {"host.name": "web-1"})
    spans = web.scope_spans.add().spans
    spans.add(name="app_3")
    kept = spans.add(name="checkout")
    set_attributes(kept.events.add(name="sent").attributes, {"grpc": True})
    kept.events.add(name="my.grpc.call")
    kept.events.add(name="cache.miss")
    set_attributes(spans.add(name="in-container").attributes, {"container.name": "app_container_1"})
    local = request.resource_spans.add()
    set_attributes(local.resource.attributes, {"host.name": "localhost"})
    local.scope_spans.add().spans.add(name="local")
    return request


async def test_the_readme_example_drops_spans_and_span_events():
    request = readme_spans()

    out = await run(load(README_EXAMPLE), "filter/ottl", Signal.TRACES, request)
    assert _names(out, Signal.TRACES) == [["checkout"]]  # the localhost resource went with its only span
    assert [e.name for e in out.resource_spans[0].scope_spans[0].spans[0].events] == ["cache.miss"]


async def test_the_readme_example_drops_metrics_and_data_points():
    request = ExportMetricsServiceRequest()
    labelled = request.resource_metrics.add()
    set_attributes(labelled.resource.attributes, {"my_label": "abc123", "service.name": "other"})
    metrics = labelled.scope_metrics.add().metrics
    metrics.add(name="my.metric").gauge.data_points.add(as_int=1)
    metrics.add(name="latency").histogram.data_points.add(count=1)
    metrics.add(name="rpc.summary").summary.data_points.add(count=1)  # every point goes, so the metric goes
    gauge = metrics.add(name="queue.depth").gauge
    gauge.data_points.add(as_int=1)
    gauge.data_points.add(as_int=2)
    mine = request.resource_metrics.add()
    set_attributes(mine.resource.attributes, {"service.name": "my_service_name"})
    mine.scope_metrics.add().metrics.add(name="queue.depth").gauge.data_points.add(as_int=3)

    out = await run(load(README_EXAMPLE), "filter/ottl", Signal.METRICS, request)
    assert _names(out, Signal.METRICS) == [["queue.depth"]]
    assert [p.as_int for p in out.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points] == [1, 2]


async def test_the_readme_example_drops_log_records():
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for body, severity in (("login ok", 13), ("password=hunter2", 17), ("cache warm", 9), ("disk full", 17),
                           ("no severity", 0)):
        records.add(severity_number=severity).body.string_value = body
    out = await run(load(README_EXAMPLE), "filter/ottl", Signal.LOGS, request)
    # An unspecified severity (0) is below WARN too, as in the Collector.
    assert _names(out, Signal.LOGS) == [["login ok", "disk full"]]


# The basic form of v0.146.0 and later, as the OpenTelemetry blog ("OTTL context inference comes to the
# Filter Processor", 2026) writes it: each condition's context inferred from its paths' prefixes.
INFERRED = """
  filter:
    trace_conditions:
      - resource.attributes["host.name"] == "localhost" # inferred as resource context
      - span.attributes["container.name"] == "app_container_1" # inferred as span context
      - span.name == "app_3" # inferred as span context
      - spanevent.attributes["grpc"] == true # inferred as spanevent context
      - IsMatch(spanevent.name, ".*grpc.*") # inferred as spanevent context
"""


async def test_the_inferred_context_form_drops_what_the_context_blocks_do():
    legacy, inferred = load(README_EXAMPLE, (Signal.TRACES,)), load(INFERRED, (Signal.TRACES,))
    request = readme_spans()
    by_blocks = await run(legacy, "filter/ottl", Signal.TRACES, request)
    by_inference = await run(inferred, "filter", Signal.TRACES, request)
    assert by_inference == by_blocks
    assert _names(by_inference, Signal.TRACES) == [["checkout"]]


async def test_the_advanced_form_names_the_context_and_its_own_error_mode(caplog):
    # The structured example of the Collector's config.go (commit 03832199), with an error_mode of its own.
    config = load("""
  filter:
    error_mode: propagate
    log_conditions:
      - context: "resource"
        conditions:
          - attributes["key1"] == "value"
          - attributes["key2"] == "value"
      - context: log
        error_mode: silent
        conditions:
          - attributes["user"]["id"] == "42"
          - severity_number < SEVERITY_NUMBER_WARN
""", (Signal.LOGS,))
    request = ExportLogsServiceRequest()
    for key1, body, severity in (("value", "dropped with its resource", 17), ("other", "debug", 5),
                                 ("other", "error", 17)):
        resource_logs = request.resource_logs.add()
        set_attributes(resource_logs.resource.attributes, {"key1": key1})
        record = resource_logs.scope_logs.add().log_records.add(severity_number=severity)
        record.body.string_value = body
        set_attributes(record.attributes, {"user": "ann"})  # indexing it fails: silent, counted false
    out = await run(config, "filter", Signal.LOGS, request)
    assert _names(out, Signal.LOGS) == [["error"]]


async def test_a_group_without_a_context_has_it_inferred_from_its_conditions():
    # The advanced form as the OpenTelemetry blog writes it (2026-02-17): a group with an error_mode of its
    # own and no context, which the conditions' paths give.
    config = load("""
  filter:
    error_mode: ignore
    log_conditions:
      - error_mode: propagate
        conditions:
          - log.severity_number < SEVERITY_NUMBER_WARN
          - resource.attributes["service.name"] == "noisy"
""", (Signal.LOGS,))
    request = ExportLogsServiceRequest()
    for service, body, severity in (("noisy", "noise", 17), ("api", "debug", 5), ("api", "error", 17)):
        resource_logs = request.resource_logs.add()
        set_attributes(resource_logs.resource.attributes, {"service.name": service})
        resource_logs.scope_logs.add().log_records.add(severity_number=severity).body.string_value = body
    assert _names(await run(config, "filter", Signal.LOGS, request), Signal.LOGS) == [["error"]]

    # The group's own error_mode: a condition that fails refuses the batch, though the processor's is ignore.
    failing = load("""
  filter:
    error_mode: ignore
    log_conditions:
      - error_mode: propagate
        conditions: ['log.attributes["user"]["id"] == "42"']
""", (Signal.LOGS,))
    record = request.resource_logs[0].scope_logs[0].log_records[0]
    set_attributes(record.attributes, {"user": "ann"})
    with pytest.raises(InvalidDataError, match="type string does not support string indexing"):
        await make(failing, "filter", Signal.LOGS, InMemorySink()).consume(Batch(Signal.LOGS, request))


async def test_a_group_without_a_context_runs_all_its_conditions_in_the_lowest_one_named():
    # As the Collector's ParseConditions: one context for the group, so a span condition next to a
    # spanevent one is read for each event of the span (its events go, the span stays).
    config = load("""
  filter:
    trace_conditions:
      - conditions: ['span.name == "checkout"', 'spanevent.name == "cache.miss"']
""", (Signal.TRACES,))
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    checkout = spans.add(name="checkout")
    checkout.events.add(name="sent")
    other = spans.add(name="other")
    other.events.add(name="cache.miss")
    other.events.add(name="cache.hit")
    out = await run(config, "filter", Signal.TRACES, request)
    assert [(s.name, [e.name for e in s.events]) for s in out.resource_spans[0].scope_spans[0].spans] == [
        ("checkout", []), ("other", ["cache.hit"])]


def test_a_group_without_a_context_is_refused_where_none_can_be_inferred():
    assert problems("""
  filter:
    trace_conditions:
      - conditions: ['span.name == "a"', 'name == "b"']
    metric_conditions:
      - error_mode: silent
        conditions: []
""") == [
        "processors.filter.trace_conditions[0]: conditions[1]: path 'name' does not start with a context of "
        "traces: write spanevent., span., resource. before it, or name the context ({context: ..., conditions: "
        "[...]})",
        "processors.filter.metric_conditions[0]: conditions: name at least one, or the context",
    ]


def test_the_inferred_form_is_refused_where_no_context_can_be_inferred():
    assert problems("""
  filter:
    trace_conditions:
      - span.name == "ok"
      - context: spanevent
        conditions: ['name == "x"']
""", (Signal.TRACES,)) == [
        "processors.filter.trace_conditions: conditions and {context, conditions} groups in one list: use one form "
        "or the other"]
    assert problems("""
  filter:
    trace_conditions:
      - span.name == "ok"
      - name == "app_3"
      - IsRootSpan()
      - instrumentation_scope.name == "grpc"
      - log.body == "x"
    metric_conditions:
      - context: span
        conditions: ['name == "x"']
      - context: datapoint
        conditions: ['metric.name == "m"', 'XYZ(attributes["a"])']
""", (Signal.TRACES,)) == [
        "processors.filter.trace_conditions[1]: path 'name' does not start with a context of traces: write "
        "spanevent., span., resource. before it, or name the context ({context: ..., conditions: [...]})",
        "processors.filter.trace_conditions[2]: no path names a context to infer: name the context ({context: ..., "
        "conditions: [...]})",
        "processors.filter.trace_conditions[3]: the scope context is not supported: name a lower context's paths",
        "processors.filter.trace_conditions[4]: path 'log' does not start with a context of traces: write "
        "spanevent., span., resource. before it, or name the context ({context: ..., conditions: [...]})",
        "processors.filter.metric_conditions[0]: context 'span': not one of datapoint, metric, resource",
        "processors.filter.metric_conditions[1]: conditions[1]: unknown function 'XYZ' in the datapoint context",
    ]


async def test_a_batch_with_nothing_left_goes_no_further():
    config = load("""
  filter/health:
    error_mode: ignore
    traces:
      span:
        - 'attributes["url.path"] == "/healthz"'
""", (Signal.TRACES,))
    request = ExportTraceServiceRequest()
    set_attributes(request.resource_spans.add().scope_spans.add().spans.add(name="GET").attributes,
                   {"url.path": "/healthz"})
    assert await run(config, "filter/health", Signal.TRACES, request) is None


FAILING = """
  filter/strict:
    {mode}
    traces:
      span:
        - 'attributes["user"]["id"] == "42"'
        - 'name == "drop-me"'
"""


def _failing_request() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for name in ("keep", "drop-me"):
        set_attributes(spans.add(name=name).attributes, {"user": "ann"})  # a string: no ["id"] in it
    return request


@pytest.mark.parametrize("mode", ["error_mode: ignore", "error_mode: silent"])
async def test_ignore_and_silent_count_a_failing_condition_false_and_go_on(mode, caplog):
    config = load(FAILING.format(mode=mode), (Signal.TRACES,))
    with caplog.at_level(logging.WARNING, logger="vigil.filter/strict"):
        out = await run(config, "filter/strict", Signal.TRACES, _failing_request())
    assert _names(out, Signal.TRACES) == [["keep"]]
    logged = [r.getMessage() for r in caplog.records if r.name == "vigil.filter/strict"]
    if mode == "error_mode: ignore":
        assert logged == ["filter condition 'attributes[\"user\"][\"id\"] == \"42\"' failed, counted as false: "
                          "type string does not support string indexing"] * 2
    else:
        assert logged == []


async def test_propagate_is_the_default_and_refuses_the_batch_as_invalid():
    config = load(FAILING.format(mode=""), (Signal.TRACES,))
    with pytest.raises(InvalidDataError, match="type string does not support string indexing"):
        await run(config, "filter/strict", Signal.TRACES, _failing_request())


async def test_propagate_answers_the_sender_that_the_data_is_invalid():
    sink_config = {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "processors": {"filter": {"traces": {"span": ['attributes["user"]["id"] == "42"']}}},
        "exporters": {"debug": {}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["filter"],
                                             "exporters": ["debug"]}}},
    }
    async with running_vigil(sink_config) as vigil:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, _failing_request())
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "does not support string indexing" in refused.value.details()


def test_conditions_outside_the_subset_are_refused_by_vigil_validate_with_field_and_reason(tmp_path):
    path = tmp_path / "vigil.yaml"
    path.write_text("""
receivers:
  otlp:
    protocols: {grpc: {endpoint: "127.0.0.1:0"}}
processors:
  filter/ottl:
    traces:
      span:
        - 'name == "ok"'
        - 'XYZ(name) == true'
      spanevent:
        - 'attributes[grpc] == true'
        - 'IsString(attributes["grpc"])'
    logs:
      log_record:
        - 'severity_number < SEVERITY_NUMBER_WARNING'
        - 'Len(body) > 10'
        - 'attributes["a"] == "b'
    metrics:
      datapoint:
        - 'time_unix_nano - start_time_unix_nano < 1000000'
exporters:
  debug: {}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [filter/ottl], exporters: [debug]}
    logs: {receivers: [otlp], processors: [filter/ottl], exporters: [debug]}
    metrics: {receivers: [otlp], processors: [filter/ottl], exporters: [debug]}
""")
    result = run_cli("validate", "-c", str(path))
    not_run = ("is an OTTL function Vigil does not run "
               "(the subset: IsMatch, IsRootSpan, HasAttrKeyOnDatapoint, HasAttrOnDatapoint)")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}: processors.filter/ottl.traces.span[1]: unknown function 'XYZ' in the span context",
        f"{path}: processors.filter/ottl.traces.spanevent[0]: unexpected 'grpc' at column 12 "
        "(outside the OTTL subset Vigil runs)",
        f"{path}: processors.filter/ottl.traces.spanevent[1]: 'IsString' {not_run}",
        f"{path}: processors.filter/ottl.metrics.datapoint[0]: arithmetic (+ - * /) is outside the OTTL subset "
        "Vigil runs: '-' at column 16",
        f"{path}: processors.filter/ottl.logs.log_record[0]: unknown enum 'SEVERITY_NUMBER_WARNING' in the log "
        "context",
        f"{path}: processors.filter/ottl.logs.log_record[1]: 'Len' {not_run}",
        f"{path}: processors.filter/ottl.logs.log_record[2]: unterminated string starting at column 20",
    ]


def test_other_forms_are_refused_with_the_way_to_write_them():
    assert problems("""
  filter/1:
    metrics:
      include:
        match_type: regexp
        metric_names:
          - prefix/.*
""") == ["processors.filter/1: metrics.include: the Collector's deprecated match form is not supported; write "
         "OTTL conditions under metrics: {metric, datapoint}"]
    assert problems("""
  filter/spans:
    spans:
      include:
        match_type: strict
        services:
          - app_3
""") == ["processors.filter/spans: spans: the Collector's deprecated include/exclude form is not supported; "
         "write OTTL conditions under traces: {span, spanevent}"]
    assert problems("""
  filter:
    error_mode: drop
""") == ["processors.filter.error_mode: Input should be 'ignore', 'silent' or 'propagate' (got 'drop')"]


async def test_resource_conditions_drop_whole_resources():
    config = load("""
  filter/by_env:
    logs:
      resource:
        - 'attributes["deployment.environment"] == "dev"'
""", (Signal.LOGS,))
    request = ExportLogsServiceRequest()
    for env in ("dev", "prod"):
        resource_logs = request.resource_logs.add()
        set_attributes(resource_logs.resource.attributes, {"deployment.environment": env})
        resource_logs.scope_logs.add().log_records.add().body.string_value = env
    out = await run(config, "filter/by_env", Signal.LOGS, request)
    assert _names(out, Signal.LOGS) == [["prod"]]


async def test_a_batch_that_loses_nothing_goes_on_as_the_bytes_it_came_with():
    config = load(README_EXAMPLE)
    request = ExportTraceServiceRequest()
    set_attributes(request.resource_spans.add().scope_spans.add().spans.add(name="checkout").attributes, {"a": 1})
    wire = request.SerializeToString()
    down = InMemorySink()
    await make(config, "filter/ottl", Signal.TRACES, down).consume(Batch(Signal.TRACES, wire=wire))
    assert down.batches[0].wire() is wire


async def test_the_ml_processor_sees_what_the_processors_before_it_left():
    # The same spans reach two pipelines: a filter before ml/after_filter, and after ml/before_filter.
    config = {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "processors": {"filter": {"traces": {"span": ['attributes["ml.model.version"] == "canary"']}},
                       "ml/after_filter": {}, "ml/before_filter": {}},
        "exporters": {"debug": {}},
        "service": {"pipelines": {
            "traces/a": {"receivers": ["otlp"], "processors": ["filter", "ml/after_filter"], "exporters": ["debug"]},
            "traces/b": {"receivers": ["otlp"], "processors": ["ml/before_filter", "filter"], "exporters": ["debug"]},
            "metrics": {"receivers": ["ml/after_filter", "ml/before_filter"], "exporters": ["debug"]}}},
    }
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for i in range(15):
        set_attributes(spans.add(name="predict").attributes, {
            "ml.model.name": "fraud", "ml.model.version": "canary" if i % 3 == 0 else "v3", "ml.feature.age": i})
    async with running_vigil(config) as vigil:
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, request)
        seen = {name: await vigil.counter_when(expected, "vigil_ml_predictions", processor=name)
                for name, expected in (("ml/after_filter", 10), ("ml/before_filter", 15))}
    assert seen == {"ml/after_filter": 10, "ml/before_filter": 15}
