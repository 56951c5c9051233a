"""Vigil and a real collector (rotel, in Rust) exchanging OTLP over gRPC, in both directions.

    SDK ─▶ Vigil A (otlp ─▶ batch ─▶ otlp exporter) ─▶ rotel ─▶ Vigil B (otlp ─▶ file)
    SDK ─▶ rotel ─▶ Vigil (otlp ─▶ file)

What arrives at the end must be what the SDK sent: the same spans (names, ids,
parents, attributes), metric values and log records, each exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from tests.conftest import async_wait_for, otlp_receiver_config, read_json_lines, rotel_process, running_vigil
from tests.sdk_apps import Sent, by_span_id, logs_in, metric_totals_in, send_telemetry, spans_in

SIGNALS = ("traces", "metrics", "logs")


@contextlib.asynccontextmanager
async def rotel(binary: str, tmp_path: Path, exporter_endpoint: str):
    """`rotel_process`, started and stopped off the event loop: rotel flushes into an in-process
    Vigil while it stops, so the loop must keep serving meanwhile."""
    workdir = tmp_path / "rotel"
    workdir.mkdir()
    manager = rotel_process(binary, workdir, exporter_endpoint)
    endpoint = await asyncio.to_thread(manager.__enter__)
    try:
        yield endpoint
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


def file_sink_config(out: Path) -> dict:
    """An OTLP/gRPC receiver on port 0 writing each signal to its own file under `out`."""
    return {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "exporters": {f"file/{s}": {"path": str(out / f"{s}.json")} for s in SIGNALS},
        "service": {"pipelines": {s: {"receivers": ["otlp"], "exporters": [f"file/{s}"]} for s in SIGNALS}},
    }


class Sink:
    def __init__(self, out: Path) -> None:
        self.out = out

    def lines(self, signal: str) -> list[dict]:
        return read_json_lines(self.out / f"{signal}.json")

    def has(self, sent: Sent) -> bool:
        return (len(spans_in(self.lines("traces"), sent.service)) >= len(sent.spans)
                and len(logs_in(self.lines("logs"), sent.service)) >= len(sent.logs)
                and metric_totals_in(self.lines("metrics"), sent.service).keys() >= sent.metrics.keys())

    def assert_exactly(self, sent: Sent) -> None:
        assert by_span_id(spans_in(self.lines("traces"), sent.service)) == by_span_id(sent.spans)
        assert metric_totals_in(self.lines("metrics"), sent.service) == sent.metrics
        assert by_span_id(logs_in(self.lines("logs"), sent.service)) == by_span_id(sent.logs)


async def test_vigil_exports_through_rotel_to_vigil(rotel_binary, tmp_path):
    sink = Sink(tmp_path / "b")
    async with running_vigil(file_sink_config(sink.out)) as vigil_b:
        async with rotel(rotel_binary, tmp_path, f"http://{vigil_b.grpc_endpoint()}") as rotel_endpoint:
            config_a = {
                "receivers": {"otlp": otlp_receiver_config(http=False)},
                "processors": {"batch": {"timeout": "100ms"}},
                "exporters": {"otlp": {"endpoint": rotel_endpoint, "tls": {"insecure": True},
                                       "retry_on_failure": {"initial_interval": "100ms"}}},
                "service": {"pipelines": {s: {"receivers": ["otlp"], "processors": ["batch"],
                                              "exporters": ["otlp"]} for s in SIGNALS}},
            }
            async with running_vigil(config_a) as vigil_a:
                sent = await asyncio.to_thread(send_telemetry, grpc_endpoint=vigil_a.grpc_endpoint(),
                                               service="via-rotel", predictions=6)
                arrived = await async_wait_for(lambda: sink.has(sent), timeout=20, interval=0.1)
                assert arrived, (f"not everything reached Vigil B through rotel; rotel said:\n"
                                 f"{(tmp_path / 'rotel' / 'rotel.log').read_text()}")
                # Vigil A sent every item to rotel, and rotel accepted them.
                assert vigil_a.counter("vigil_exporter_sent_spans") == len(sent.spans) == 7
                assert vigil_a.counter("vigil_exporter_sent_log_records") == len(sent.logs) == 6
                assert vigil_a.counter("vigil_exporter_send_failed_spans") == 0
        # rotel has stopped (and flushed): nothing more and nothing twice.
        sink.assert_exactly(sent)
        assert vigil_b.counter("vigil_receiver_accepted_spans", transport="grpc") == 7
        assert vigil_b.counter("vigil_receiver_accepted_log_records", transport="grpc") == 6
        assert vigil_b.counter("vigil_receiver_refused_spans") == 0

    # The span tree and ids survived both hops.
    spans = {s["name"]: s for s in spans_in(sink.lines("traces"))}
    root = spans["POST /predict"]
    assert root["parentSpanId"] == ""
    assert {spans[f"predict-{i}"]["parentSpanId"] for i in range(6)} == {root["spanId"]}
    assert {s["traceId"] for s in spans.values()} == {root["traceId"]}
    assert spans["predict-3"]["attributes"]["ml.prediction.probabilities"] == [0.25, 0.75]
    # The resource came through as the app set it.
    resource = sink.lines("traces")[0]["resourceSpans"][0]["resource"]["attributes"]
    assert {"key": "service.name", "value": {"stringValue": "via-rotel"}} in resource


async def test_rotel_as_a_sender_into_vigil(rotel_binary, tmp_path):
    sink = Sink(tmp_path / "vigil")
    async with running_vigil(file_sink_config(sink.out)) as vigil:
        async with rotel(rotel_binary, tmp_path, f"http://{vigil.grpc_endpoint()}") as rotel_endpoint:
            first = await asyncio.to_thread(send_telemetry, grpc_endpoint=rotel_endpoint, service="app-1")
            second = await asyncio.to_thread(send_telemetry, grpc_endpoint=rotel_endpoint, service="app-2",
                                             predictions=9)
            arrived = await async_wait_for(lambda: sink.has(first) and sink.has(second), timeout=20, interval=0.1)
            assert arrived, f"rotel did not deliver to Vigil; rotel said:\n" \
                            f"{(tmp_path / 'rotel' / 'rotel.log').read_text()}"
        sink.assert_exactly(first)
        sink.assert_exactly(second)
        # rotel compresses with gzip by default: Vigil accepted every request it sent, refused none.
        assert vigil.counter("vigil_receiver_accepted_spans", transport="grpc") == 5 + 10
        assert vigil.counter("vigil_receiver_accepted_log_records", transport="grpc") == 4 + 9
        assert vigil.counter("vigil_receiver_refused_spans") == 0
        assert vigil.counter("vigil_receiver_refused_metric_points") == 0
        assert vigil.counter("vigil_receiver_refused_log_records") == 0
