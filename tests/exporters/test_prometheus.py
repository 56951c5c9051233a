"""The `prometheus` exporter: OTel -> Prometheus names and types as the compatibility spec says,
delta to cumulative, expiry, and a real Prometheus server (Debian's package) scraping Vigil."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2
from prometheus_client.parser import text_string_to_metric_families

from agent.attributes import set_any_value
from agent.exporters.prometheus import label_name, metric_name
from agent.signals import Signal
from tests.conftest import debian_binary, free_port, otlp_receiver_config, running_vigil, stop_process
from tests.otlp_data import send_grpc

DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
T0 = 1_700_000_000_000_000_000
SECOND = 1_000_000_000


@pytest.mark.parametrize("name, unit, kind, expected", [
    ("http.server.duration", "ms", "histogram", "http_server_duration_milliseconds"),
    ("system.memory.usage", "By", "gauge", "system_memory_usage_bytes"),
    ("hw.gpu.utilization", "1", "gauge", "hw_gpu_utilization_ratio"),
    ("ml.feature.value", "1", "histogram", "ml_feature_value"),
    ("requests", "{request}", "counter", "requests"),
    ("requests_total", "1", "counter", "requests"),
    ("network.io", "By/s", "gauge", "network_io_bytes_per_second"),
    ("process.cpu.time", "s", "counter", "process_cpu_time_seconds"),
    ("duration_seconds", "s", "gauge", "duration_seconds"),
    ("2xx..responses", "", "gauge", "_2xx_responses"),
    ("weird-name/with spaces", "", "gauge", "weird_name_with_spaces"),
])
def test_metric_names(name, unit, kind, expected):
    assert metric_name(name, unit, kind) == expected


def test_names_with_namespace_and_without_suffixes():
    assert metric_name("cpu.time", "s", "counter", namespace="host") == "host_cpu_time_seconds"
    assert metric_name("cpu.time", "s", "counter", suffixes=False) == "cpu_time"


@pytest.mark.parametrize("key, expected", [
    ("http.method", "http_method"), ("2fa", "key_2fa"), ("_private", "key_private"), ("__x", "__x"),
])
def test_label_names(key, expected):
    assert label_name(key) == expected


# --- the request the tests send ----------------------------------------------------------------------------


def _attrs(target: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        set_any_value(target.add(key=key).value, value)


def request(step: int) -> ExportMetricsServiceRequest:
    """Step `step` (0, 1, ...) of an app's metrics: every kind of point, deltas one second apart."""
    out = ExportMetricsServiceRequest()
    rm = out.resource_metrics.add()
    _attrs(rm.resource.attributes, {"service.name": "fraud-api", "service.namespace": "shop",
                                    "service.instance.id": "pod-7", "host.name": "gpu-01"})
    sm = rm.scope_metrics.add()
    sm.scope.name, sm.scope.version = "fraud.instrumentation", "1.2"
    start, now = T0 + step * SECOND, T0 + (step + 1) * SECOND

    m = sm.metrics.add(name="http.server.request.duration", unit="ms", description="Request latency")
    m.histogram.aggregation_temporality = DELTA
    p = m.histogram.data_points.add(start_time_unix_nano=start, time_unix_nano=now, count=3, sum=60.0)
    p.explicit_bounds.extend([10.0, 50.0])
    p.bucket_counts.extend([1, 1, 1])
    _attrs(p.attributes, {"http.route": "/predict"})

    m = sm.metrics.add(name="predictions", unit="{prediction}", description="Predictions made")
    m.sum.aggregation_temporality, m.sum.is_monotonic = DELTA, True
    p = m.sum.data_points.add(start_time_unix_nano=start, time_unix_nano=now, as_int=5)
    _attrs(p.attributes, {"model": "fraud", "2fa": True})

    m = sm.metrics.add(name="gpu.memory.used", unit="By", description="GPU memory in use")
    m.sum.aggregation_temporality, m.sum.is_monotonic = CUMULATIVE, False
    m.sum.data_points.add(start_time_unix_nano=T0, time_unix_nano=now, as_int=1000 + step)

    m = sm.metrics.add(name="batch.fill", unit="1", description="How full batches are")
    m.gauge.data_points.add(time_unix_nano=now, as_double=0.25 * (step + 1))

    m = sm.metrics.add(name="tokens", unit="{token}", description="Tokens, cumulative")
    m.sum.aggregation_temporality, m.sum.is_monotonic = CUMULATIVE, True
    m.sum.data_points.add(start_time_unix_nano=T0, time_unix_nano=now, as_double=100.0 * (step + 1))

    m = sm.metrics.add(name="latency.summary", unit="s")
    p = m.summary.data_points.add(start_time_unix_nano=T0, time_unix_nano=now, count=10, sum=2.5)
    p.quantile_values.add(quantile=0.5, value=0.2)
    p.quantile_values.add(quantile=0.99, value=0.9)

    m = sm.metrics.add(name="exp.histogram", unit="s")
    m.exponential_histogram.data_points.add(count=1)
    return out


def vigil_config(port: int, **exporter: Any) -> dict[str, Any]:
    return {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "exporters": {"prometheus": {"endpoint": f"127.0.0.1:{port}", **exporter}},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["prometheus"]}}},
    }


def scrape(url: str, accept: str | None = None) -> tuple[str, str]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=5) as response:
        return response.read().decode(), response.headers["Content-Type"]


def samples(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


SCOPE = (("instance", "pod-7"), ("job", "shop/fraud-api"), ("otel_scope_name", "fraud.instrumentation"),
         ("otel_scope_version", "1.2"))


def with_scope(*labels: tuple[str, str]) -> tuple:
    return tuple(sorted(SCOPE + labels))


async def test_every_kind_of_point_as_the_spec_maps_it():
    port = free_port()
    async with running_vigil(vigil_config(port)) as vigil:
        for step in range(3):
            await send_grpc(vigil.grpc_endpoint(), Signal.METRICS, request(step))
        text, content_type = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics")
        exporter = vigil.service.graph.exporters[next(iter(vigil.service.graph.exporters))]
        assert exporter.status()["series"] == 6
        om_text, om_type = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics",
                                                   "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("text/plain; version=0.0.4")
    assert om_type.startswith("application/openmetrics-text") and om_text.endswith("# EOF\n")
    got = samples(text)
    route = ("http_route", "/predict")
    # Three deltas of [1, 1, 1] added up, as cumulative buckets.
    name = "http_server_request_duration_milliseconds"
    assert got[(f"{name}_bucket", with_scope(route, ("le", "10.0")))] == 3
    assert got[(f"{name}_bucket", with_scope(route, ("le", "50.0")))] == 6
    assert got[(f"{name}_bucket", with_scope(route, ("le", "+Inf")))] == 9
    assert got[(f"{name}_count", with_scope(route))] == 9
    assert got[(f"{name}_sum", with_scope(route))] == 180
    assert got[("predictions_total", with_scope(("key_2fa", "true"), ("model", "fraud")))] == 15
    assert got[("gpu_memory_used_bytes", with_scope())] == 1002  # a non-monotonic sum is a gauge
    assert got[("batch_fill_ratio", with_scope())] == 0.75
    assert got[("tokens_total", with_scope())] == 300  # cumulative: the last value
    assert got[("latency_summary_seconds", with_scope(("quantile", "0.99")))] == 0.9
    assert got[("latency_summary_seconds_count", with_scope())] == 10
    assert got[("target_info", (("host_name", "gpu-01"), ("instance", "pod-7"), ("job", "shop/fraud-api")))] == 1
    assert not any(name.startswith("exp_histogram") for name, _ in got)
    assert "# HELP http_server_request_duration_milliseconds Request latency" in text
    assert "# TYPE predictions_total counter" in text


async def test_a_repeated_delta_is_not_counted_twice_and_stale_series_expire():
    port = free_port()
    async with running_vigil(vigil_config(port, metric_expiration="1s")) as vigil:
        await send_grpc(vigil.grpc_endpoint(), Signal.METRICS, request(0))
        await send_grpc(vigil.grpc_endpoint(), Signal.METRICS, request(0))  # a retry of the same request
        text, _ = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics")
        assert samples(text)[("predictions_total", with_scope(("key_2fa", "true"), ("model", "fraud")))] == 5
        await asyncio.sleep(1.2)
        text, _ = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics")
    assert samples(text) == {}


async def test_resource_to_telemetry_conversion_and_const_labels():
    port = free_port()
    config = vigil_config(port, resource_to_telemetry_conversion={"enabled": True}, const_labels={"dc": "eu-1"},
                          namespace="app")
    async with running_vigil(config) as vigil:
        await send_grpc(vigil.grpc_endpoint(), Signal.METRICS, request(0))
        text, _ = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics")
    labels = dict(next(labels for (name, labels) in samples(text) if name == "app_batch_fill_ratio"))
    assert labels["dc"] == "eu-1" and labels["host_name"] == "gpu-01" and labels["service_name"] == "fraud-api"


# --- a real Prometheus server -------------------------------------------------------------------------------


def prometheus_binary() -> str:
    return debian_binary("prometheus")


def query(base: str, promql: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


async def test_a_real_prometheus_scrapes_the_exporter_and_the_admin_endpoint(tmp_path: Path):
    binary = prometheus_binary()
    exporter_port, prometheus_port, admin_port = free_port(), free_port(), free_port()
    config = vigil_config(exporter_port)
    config["service"]["admin"] = {"endpoint": f"127.0.0.1:{admin_port}"}
    (tmp_path / "prometheus.yml").write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            # honor_labels: the job and instance Vigil derives from the resource are kept.
            {"job_name": "vigil-exporter", "honor_labels": True,
             "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]},
            {"job_name": "vigil-self", "static_configs": [{"targets": [f"127.0.0.1:{admin_port}"]}]},
        ]}))
    base = f"http://127.0.0.1:{prometheus_port}"
    log = open(tmp_path / "prometheus.log", "wb")
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prometheus_port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        async with running_vigil(config) as vigil:
            for step in range(3):
                await send_grpc(vigil.grpc_endpoint(), Signal.METRICS, request(step))

            async def has(promql: str) -> list[dict[str, Any]]:
                try:
                    return await asyncio.to_thread(query, base, promql)
                except OSError:
                    return []

            async def wait_result(promql: str, timeout: float = 60) -> list[dict[str, Any]]:
                found: list = []

                async def check() -> bool:
                    found[:] = await has(promql)
                    return bool(found)

                loop = asyncio.get_running_loop()
                deadline = loop.time() + timeout
                while loop.time() < deadline and not await check():
                    await asyncio.sleep(0.5)
                assert found, f"{promql}: nothing after {timeout}s\n{(tmp_path / 'prometheus.log').read_text()[-3000:]}"
                return found

            result = await wait_result('predictions_total{job="shop/fraud-api"}')
            assert result[0]["metric"]["instance"] == "pod-7"
            assert float(result[0]["value"][1]) == 15
            result = await wait_result('http_server_request_duration_milliseconds_bucket{le="50.0"}')
            assert float(result[0]["value"][1]) == 6
            result = await wait_result("histogram_quantile(0.5, http_server_request_duration_milliseconds_bucket)")
            assert 10 <= float(result[0]["value"][1]) <= 50
            result = await wait_result('target_info{job="shop/fraud-api"}')
            assert result[0]["metric"]["host_name"] == "gpu-01"
            # Vigil's own telemetry, from the admin endpoint.
            result = await wait_result('vigil_receiver_accepted_metric_points_total{job="vigil-self"}')
            assert sum(float(r["value"][1]) for r in result) == 3 * 7  # points in the three requests
            assert await wait_result('vigil_process_memory_rss_bytes{job="vigil-self"}')
            up = await wait_result("up")
            assert {r["metric"]["job"]: r["value"][1] for r in up} == {"vigil-exporter": "1", "vigil-self": "1"}
    finally:
        stop_process(proc)
        log.close()
