"""The `file` exporter end to end: OTLP into Vigil, OTLP/JSON lines out to a file."""

from __future__ import annotations

import json

from agent import otlp_json
from agent.signals import Signal
from tests.conftest import otlp_receiver_config, read_json_lines, running_vigil
from tests.otlp_data import item_names, logs, send_grpc, span_id, trace_id, traces


def vigil_config(file_config: dict, signals=(Signal.TRACES,)) -> dict:
    return {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "exporters": {"file": file_config},
        "service": {"pipelines": {s.value: {"receivers": ["otlp"], "exporters": ["file"]} for s in signals}},
    }


async def test_one_otlp_json_line_per_batch_with_hex_ids(tmp_path):
    out = tmp_path / "out" / "telemetry.json"  # the directory is made on start
    sent_traces = [traces(2, resources=2, start=0), traces(3, start=10)]
    sent_logs = logs(2)
    async with running_vigil(vigil_config({"path": str(out)}, [Signal.TRACES, Signal.LOGS])) as vigil:
        for message in sent_traces:
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, message)
        await send_grpc(vigil.grpc_endpoint(), Signal.LOGS, sent_logs)
        assert vigil.counter("vigil_exporter_sent_spans", exporter="file") == 7
        assert vigil.counter("vigil_exporter_sent_log_records", exporter="file") == 2
    lines = out.read_text().splitlines()
    assert len(lines) == 3
    assert [otlp_json.decode(Signal.TRACES, line) for line in lines[:2]] == sent_traces
    assert otlp_json.decode(Signal.LOGS, lines[2]) == sent_logs

    span = json.loads(lines[0])["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == trace_id(0).hex()
    assert span["spanId"] == span_id(0).hex()
    assert span["parentSpanId"] == span_id(1000).hex()
    assert span["kind"] == 2  # enums as integers, as OTLP/JSON wants
    record = json.loads(lines[2])["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert record["traceId"] == trace_id(0).hex() and record["spanId"] == span_id(0).hex()


async def _send_big_lines(vigil, count: int) -> None:
    # Each line is a little over 400 kB, so two fit in 1 MiB and a third starts a new file.
    for k in range(count):
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(1, start=k, payload="x" * 400_000))


def _names(path) -> list[str]:
    return [n for line in path.read_text().splitlines()
            for n in item_names(Signal.TRACES, otlp_json.decode(Signal.TRACES, line))]


async def test_rotation_by_size_keeps_max_backups(tmp_path):
    out = tmp_path / "traces.json"
    config = vigil_config({"path": str(out), "rotation": {"max_megabytes": 1, "max_backups": 2}})
    async with running_vigil(config) as vigil:
        await _send_big_lines(vigil, 10)
    backups = sorted(tmp_path.glob("traces-*.json"))
    assert len(backups) == 2
    assert out.stat().st_size <= 1024 * 1024
    # The newest backups are kept, and the names sort in the order they were written.
    assert [_names(b) for b in backups] == [["span-4", "span-5"], ["span-6", "span-7"]]
    assert _names(out) == ["span-8", "span-9"]


async def test_rotation_with_max_backups_0_keeps_every_line(tmp_path):
    out = tmp_path / "traces.json"
    config = vigil_config({"path": str(out), "rotation": {"max_megabytes": 1, "max_backups": 0}})
    async with running_vigil(config) as vigil:
        await _send_big_lines(vigil, 7)
    files = sorted(tmp_path.glob("traces-*.json")) + [out]
    assert len(files) == 4
    assert [n for f in files for n in _names(f)] == [f"span-{k}" for k in range(7)]


async def test_appends_across_restarts(tmp_path):
    out = tmp_path / "traces.json"
    for run in range(2):
        async with running_vigil(vigil_config({"path": str(out)})) as vigil:
            for i in range(2):
                await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(1, start=2 * run + i))
    lines = read_json_lines(out)
    assert [line["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] for line in lines] == [
        "span-0", "span-1", "span-2", "span-3"]


async def test_rotation_counts_what_an_earlier_run_wrote(tmp_path):
    out = tmp_path / "traces.json"
    config = vigil_config({"path": str(out), "rotation": {"max_megabytes": 1, "max_backups": 5}})
    async with running_vigil(config) as vigil:
        await _send_big_lines(vigil, 2)
    async with running_vigil(config) as vigil:
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(1, start=2, payload="x" * 400_000))
    (backup,) = tmp_path.glob("traces-*.json")
    assert _names(backup) == ["span-0", "span-1"]
    assert _names(out) == ["span-2"]


async def test_rotation_never_deletes_other_files_beside_it(tmp_path):
    out = tmp_path / "traces.json"
    mine = tmp_path / "traces-notes.json"  # the user's own file, named much like a backup
    mine.write_text("keep me\n")
    config = vigil_config({"path": str(out), "rotation": {"max_megabytes": 1, "max_backups": 1}})
    async with running_vigil(config) as vigil:
        await _send_big_lines(vigil, 8)
    assert mine.read_text() == "keep me\n"
    assert len([p for p in tmp_path.glob("traces-*.json") if p != mine]) == 1


def test_the_otlp_json_encoder_writes_what_protobufs_json_printer_writes():
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from agent.attributes import set_any_value
    from tests.otlp_data import metrics

    odd = ExportMetricsServiceRequest()
    rm = odd.resource_metrics.add()
    for key, value in (("bytes", b"\x00\xff"), ("list", [1, "a", True, 2.5]), ("map", {"k": -1}),
                       ("big", 2**62), ("empty", "")):
        set_any_value(rm.resource.attributes.add(key=key).value, value)
    metric = rm.scope_metrics.add().metrics.add(name="m")
    for value in (float("nan"), float("inf"), float("-inf"), -0.0, 0.1, 0):
        metric.gauge.data_points.add(as_double=value, time_unix_nano=2**63 + 1)
    metric.gauge.data_points.add(as_int=0)  # a set oneof member at its default is still written
    point = metric.gauge.data_points[0]
    point.exemplars.add(span_id=span_id(1), trace_id=trace_id(1), as_double=1.0, filtered_attributes=[])
    histogram = rm.scope_metrics[0].metrics.add(name="h").histogram
    histogram.aggregation_temporality = 1
    histogram.data_points.add(count=3, bucket_counts=[1, 2], explicit_bounds=[0.5], min=0.0, max=7.0)

    for message in (traces(4, resources=2, scopes=2), metrics(3, points=2), logs(3), odd):
        assert otlp_json.encode(message) == otlp_json.encode_with_json_format(message)
