"""The `prometheus` exporter's exemplars: on histogram buckets and counters in OpenMetrics (checked with
prometheus-client's OpenMetrics parser), none in the text format, and stored by a real Prometheus
(Debian's package, `--enable-feature=exemplar-storage`) for its `/api/v1/query_exemplars`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from agent.attributes import set_any_value
from agent.signals import Signal
from tests.conftest import free_port, running_vigil, stop_process
from tests.exporters.test_prometheus import prometheus_binary, scrape, vigil_config
from tests.otlp_data import send_grpc

DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
T0 = 1_700_000_000_000_000_000
SECOND = 1_000_000_000
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
# A trace id ending in a zero byte: what is exposed must keep all 16 bytes.
SLOW_TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4700")
SLOW_SPAN = bytes.fromhex("00f067aa0ba902b7")
FAST_TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
FAST_SPAN = bytes.fromhex("b7ad6b7169203331")
COUNTER_TRACE = bytes.fromhex("11111111111111111111111111111111")


def request(step: int) -> ExportMetricsServiceRequest:
    """A latency histogram (buckets 0.1, 1) whose slow request and fast request carry exemplars, a
    counter with one, and a gauge with one (which OpenMetrics cannot carry)."""
    out = ExportMetricsServiceRequest()
    rm = out.resource_metrics.add()
    set_any_value(rm.resource.attributes.add(key="service.name").value, "fraud-api")
    sm = rm.scope_metrics.add()
    start, now = T0 + step * SECOND, T0 + (step + 1) * SECOND
    m = sm.metrics.add(name="ml.prediction.duration", unit="s", description="Prediction latency")
    m.histogram.aggregation_temporality = DELTA
    p = m.histogram.data_points.add(start_time_unix_nano=start, time_unix_nano=now, count=3, sum=2.6)
    p.explicit_bounds.extend([0.1, 1.0])
    p.bucket_counts.extend([2, 0, 1])
    p.exemplars.add(time_unix_nano=now - 10, as_double=0.05, trace_id=FAST_TRACE, span_id=FAST_SPAN)
    slow = p.exemplars.add(time_unix_nano=now - 5, as_double=2.5, trace_id=SLOW_TRACE, span_id=SLOW_SPAN)
    set_any_value(slow.filtered_attributes.add(key="ml.feature.name").value, "amount")
    m = sm.metrics.add(name="ml.predictions", unit="{prediction}")
    m.sum.aggregation_temporality, m.sum.is_monotonic = DELTA, True
    c = m.sum.data_points.add(start_time_unix_nano=start, time_unix_nano=now, as_int=3)
    c.exemplars.add(time_unix_nano=now, as_int=1, trace_id=COUNTER_TRACE, span_id=FAST_SPAN)
    m = sm.metrics.add(name="ml.feature.missing.ratio", unit="1")
    g = m.gauge.data_points.add(time_unix_nano=now, as_double=0.5)
    g.exemplars.add(time_unix_nano=now, as_double=0.5, trace_id=FAST_TRACE, span_id=FAST_SPAN)
    return out


def samples_by_name(text: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for family in openmetrics_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


async def test_exemplars_in_openmetrics_only_and_on_the_bucket_their_value_falls_in():
    port = free_port()
    async with running_vigil(vigil_config(port)) as vigil:
        await send_grpc(vigil.grpc_endpoint(), Signal.METRICS, request(0))
        url = f"http://127.0.0.1:{port}/metrics"
        text, content_type = await asyncio.to_thread(scrape, url)
        om_text, om_type = await asyncio.to_thread(scrape, url, OPENMETRICS)
        # Prometheus's own Accept header (2.x) picks OpenMetrics 1.0.0 too.
        prom_text, prom_type = await asyncio.to_thread(
            scrape, url, "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
            "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
    assert content_type.startswith("text/plain; version=0.0.4") and " # {" not in text
    list(text_string_to_metric_families(text))  # the text format still parses
    assert om_type.startswith("application/openmetrics-text; version=1.0.0") and om_text.endswith("# EOF\n")
    assert prom_type == om_type and " # {" in prom_text
    got = samples_by_name(om_text)  # the parser rejects exemplars where OpenMetrics allows none
    buckets = {s.labels["le"]: s for s in got["ml_prediction_duration_seconds_bucket"]}
    fast, slow = buckets["0.1"].exemplar, buckets["+Inf"].exemplar
    assert buckets["1.0"].exemplar is None  # no exemplar fell in (0.1, 1]
    assert fast.labels == {"trace_id": FAST_TRACE.hex(), "span_id": FAST_SPAN.hex()} and fast.value == 0.05
    assert slow.labels == {"trace_id": SLOW_TRACE.hex(), "span_id": SLOW_SPAN.hex(), "ml_feature_name": "amount"}
    assert slow.value == 2.5 and abs(float(slow.timestamp) - (T0 + SECOND - 5) / 1e9) < 1e-3
    counter = got["ml_predictions_total"][0]
    assert counter.exemplar.labels["trace_id"] == COUNTER_TRACE.hex() and counter.value == 3
    assert got["ml_feature_missing_ratio"][0].exemplar is None  # a gauge's stay in OTLP


async def test_a_later_exemplar_replaces_its_bucket_and_new_bounds_drop_the_old_ones():
    port = free_port()
    async with running_vigil(vigil_config(port)) as vigil:
        await send_grpc(vigil.grpc_endpoint(), Signal.METRICS, request(0))
        later = request(1)
        point = later.resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points[0]
        del point.exemplars[1]
        point.exemplars[0].trace_id = COUNTER_TRACE  # a new fast one
        await send_grpc(vigil.grpc_endpoint(), Signal.METRICS, later)
        om_text, _ = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics", OPENMETRICS)
        buckets = {s.labels["le"]: s for s in samples_by_name(om_text)["ml_prediction_duration_seconds_bucket"]}
        assert buckets["0.1"].exemplar.labels["trace_id"] == COUNTER_TRACE.hex()
        assert buckets["+Inf"].exemplar.labels["trace_id"] == SLOW_TRACE.hex()  # kept: nothing newer there
        assert buckets["+Inf"].value == 6
        rebinned = request(2)
        point = rebinned.resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points[0]
        point.explicit_bounds[:] = [0.5, 5.0]
        del point.exemplars[:]
        await send_grpc(vigil.grpc_endpoint(), Signal.METRICS, rebinned)
        om_text, _ = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics", OPENMETRICS)
    buckets = samples_by_name(om_text)["ml_prediction_duration_seconds_bucket"]
    assert [s.labels["le"] for s in buckets] == ["0.5", "5.0", "+Inf"]
    assert all(s.exemplar is None for s in buckets)


def query_exemplars(base: str, promql: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query_exemplars?" + urllib.parse.urlencode(
        {"query": promql, "start": "0", "end": "4102444800"})
    with urllib.request.urlopen(url, timeout=5) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return answer["data"]


async def test_a_real_prometheus_stores_the_exemplars(tmp_path: Path):
    binary = prometheus_binary()
    exporter_port, prometheus_port = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text(json.dumps({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "vigil", "honor_labels": True,
                            "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}]}))
    base = f"http://127.0.0.1:{prometheus_port}"
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", "--enable-feature=exemplar-storage",
                             f"--web.listen-address=127.0.0.1:{prometheus_port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        async with running_vigil(vigil_config(exporter_port)) as vigil:
            await send_grpc(vigil.grpc_endpoint(), Signal.METRICS, request(0))
            found: list[dict[str, Any]] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while loop.time() < deadline:
                try:
                    found = await asyncio.to_thread(query_exemplars, base, "ml_prediction_duration_seconds_bucket")
                except OSError:
                    found = []
                if found:
                    break
                await asyncio.sleep(0.5)
    finally:
        stop_process(proc)
        log.close()
    assert found, (tmp_path / "prometheus.log").read_text()[-3000:]
    by_bucket = {series["seriesLabels"]["le"]: series["exemplars"] for series in found}
    slow = by_bucket["+Inf"][0]
    assert slow["labels"]["trace_id"] == SLOW_TRACE.hex() and slow["labels"]["span_id"] == SLOW_SPAN.hex()
    assert float(slow["value"]) == 2.5
    assert by_bucket["0.1"][0]["labels"]["trace_id"] == FAST_TRACE.hex()
