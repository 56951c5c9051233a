"""The `prometheus` receiver against a real prometheus_client app (in a thread, on port 0) and against
misbehaving endpoints (aiohttp servers on port 0)."""

from __future__ import annotations

import asyncio
import math

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary, start_http_server

from agent.attributes import as_dict
from agent.component import ComponentId, Settings
from agent.config import ConfigError, from_dict
from agent.errors import RefusedError
from agent.receivers.prometheus import PrometheusReceiver, PrometheusReceiverConfig
from agent.receivers.prometheus.convert import Target, convert
from agent.signals import Signal
from agent.telemetry import SelfTelemetry
from tests.conftest import async_wait_for, read_json_lines, running_vigil
from tests.sink import InMemorySink


def _metrics(request) -> dict[str, object]:
    return {m.name: m for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def _gauge(request, name: str) -> float:
    return _metrics(request)[name].gauge.data_points[0].as_double


@pytest.fixture
def app():
    """A prometheus_client app: what a legacy inference service exposes, served from a thread."""
    registry = CollectorRegistry()
    metrics = {
        "requests": Counter("predictions", "Predictions served", ["model", "code"], registry=registry),
        "latency": Histogram("prediction_latency_seconds", "Prediction latency", ["model"],
                             buckets=(0.01, 0.1, 1.0), registry=registry),
        "size": Summary("request_size_bytes", "Request body size", registry=registry),
        "queue": Gauge("queue_depth", "Requests waiting", registry=registry),
        "build": Info("model_build", "The model build", registry=registry),
        "state": Enum("model_state", "Model state", states=["loading", "ready"], registry=registry),
    }
    metrics["requests"].labels("iris", "200").inc(3)
    for v in (0.005, 0.05, 0.05, 0.5, 5.0):
        metrics["latency"].labels("iris").observe(v)
    metrics["size"].observe(100)
    metrics["size"].observe(300)
    metrics["queue"].set(7)
    metrics["build"].info({"version": "1.2"})
    metrics["state"].state("ready")
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield server.server_port, metrics
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _receiver(targets: list[str], consumer=None, **job):
    telemetry = SelfTelemetry()
    config = PrometheusReceiverConfig.model_validate({"config": {"scrape_configs": [
        {"job_name": "legacy", "scrape_interval": "1h", "scrape_timeout": job.pop("scrape_timeout", "2s"),
         "static_configs": [{"targets": targets, "labels": {"team": "fraud"}}], **job}]}})
    consumer = consumer or InMemorySink()
    receiver = PrometheusReceiver(config, Settings(ComponentId("prometheus"), telemetry),
                                  {Signal.METRICS: consumer})
    return receiver, consumer, telemetry


async def _scrape(receiver, consumer):
    await receiver.start()
    try:
        for task in receiver._tasks:  # scrapes are driven by hand here
            task.cancel()
        await asyncio.gather(*receiver._tasks, return_exceptions=True)
        consumer.clear()
        await receiver.scrape_once(receiver.targets[0])
        return consumer.batches[-1].message
    finally:
        await receiver.shutdown()


async def test_a_prometheus_client_app_becomes_otlp_metrics(app):
    port, _ = app
    receiver, consumer, telemetry = _receiver([f"127.0.0.1:{port}"])
    request = await _scrape(receiver, consumer)
    assert as_dict(request.resource_metrics[0].resource.attributes) == {
        "service.name": "legacy", "service.instance.id": f"127.0.0.1:{port}", "server.address": "127.0.0.1",
        "server.port": port, "url.scheme": "http", "team": "fraud"}
    metrics = _metrics(request)
    # Counters: cumulative monotonic sums named as exposed, started at their _created time.
    counter = metrics["predictions_total"]
    assert counter.sum.is_monotonic and counter.sum.aggregation_temporality == 2
    [point] = counter.sum.data_points
    assert point.as_double == 3.0 and as_dict(point.attributes) == {"model": "iris", "code": "200"}
    assert 0 < point.start_time_unix_nano <= point.time_unix_nano
    assert counter.description == "Predictions served"
    # _created series are start times, not gauges of their own.
    assert not any(name.endswith("_created") for name in metrics)
    # Histograms: cumulative, bucket counts per bucket (not Prometheus's running totals).
    [h] = metrics["prediction_latency_seconds"].histogram.data_points
    assert metrics["prediction_latency_seconds"].histogram.aggregation_temporality == 2
    assert list(h.explicit_bounds) == [0.01, 0.1, 1.0]
    assert list(h.bucket_counts) == [1, 2, 1, 1] and h.count == 5
    assert h.sum == pytest.approx(5.605) and as_dict(h.attributes) == {"model": "iris"}
    [s] = metrics["request_size_bytes"].summary.data_points
    assert (s.count, s.sum) == (2, 400.0)
    assert _gauge(request, "queue_depth") == 7.0
    info = metrics["model_build_info"].gauge.data_points[0]
    assert info.as_double == 1.0 and as_dict(info.attributes) == {"version": "1.2"}
    states = {as_dict(p.attributes)["model_state"]: p.as_double for p in metrics["model_state"].gauge.data_points}
    assert states == {"loading": 0.0, "ready": 1.0}
    # Per target: up, how long the scrape took, how many samples it held.
    assert _gauge(request, "up") == 1.0
    assert 0 < _gauge(request, "scrape_duration_seconds") < 2
    assert _gauge(request, "scrape_samples_scraped") >= 15
    assert telemetry.total("vigil_receiver_accepted_metric_points", receiver="prometheus") > 0


async def test_counter_start_times_hold_across_scrapes_and_move_on_a_reset():
    target = Target("j", "h:1", "http://h:1/metrics", {}, 15, 10, 1 << 20, True)
    page = "# TYPE hits_total counter\nhits_total{a=\"x\"} {v}\n# TYPE lat histogram\n" \
           "lat_bucket{{le=\"1\"}} {v}\nlat_bucket{{le=\"+Inf\"}} {v}\nlat_count {v}\nlat_sum {v}\n"
    page = page.replace("{v}", "%s").replace("{{", "{").replace("}}", "}")

    def starts(value, now):
        request, _ = convert(target, page % ((value,) * 5), "text/plain", now)
        m = _metrics(request)
        return m["hits_total"].sum.data_points[0].start_time_unix_nano, m["lat"].histogram.data_points[0].start_time_unix_nano

    assert starts(10, 1000) == (1000, 1000)  # first seen: starts now
    assert starts(12, 2000) == (1000, 1000)  # still the same series
    assert starts(3, 3000) == (3000, 3000)  # went down: the app restarted
    assert starts(4, 4000) == (3000, 3000)


def test_sample_timestamps_untyped_series_and_nan():
    target = Target("j", "h:1", "http://h:1/metrics", {}, 15, 10, 1 << 20, True)
    text = 'legacy_thing{k="v"} 4 1700000000000\nweird NaN\n'
    request, samples = convert(target, text, "text/plain; version=0.0.4", 5)
    m = _metrics(request)
    assert samples == 2
    assert m["legacy_thing"].gauge.data_points[0].time_unix_nano == 1700000000 * 10**9
    assert math.isnan(m["weird"].gauge.data_points[0].as_double)
    target.honor_timestamps = False
    request, _ = convert(target, text, "text/plain", 5)
    assert _metrics(request)["legacy_thing"].gauge.data_points[0].time_unix_nano == 5


def test_openmetrics_pages_are_parsed_with_the_openmetrics_parser():
    target = Target("j", "h:1", "http://h:1/metrics", {}, 15, 10, 1 << 20, True)
    text = ("# TYPE reqs counter\n# UNIT reqs \n# HELP reqs Requests.\nreqs_total 3.0\nreqs_created 1.7e9\n"
            "# TYPE lat_seconds histogram\n# UNIT lat_seconds seconds\nlat_seconds_bucket{le=\"0.1\"} 1\n"
            "lat_seconds_bucket{le=\"+Inf\"} 2\nlat_seconds_count 2\nlat_seconds_sum 0.55\n# EOF\n")
    request, _ = convert(target, text, "application/openmetrics-text; version=1.0.0", 5)
    m = _metrics(request)
    assert m["reqs_total"].sum.data_points[0].start_time_unix_nano == 1_700_000_000 * 10**9
    assert m["lat_seconds"].unit == "seconds" and list(m["lat_seconds"].histogram.data_points[0].bucket_counts) == [1, 1]


# --- targets that fail ------------------------------------------------------------------------


@pytest.fixture
async def bad_server():
    async def slow(request):
        await asyncio.sleep(5)
        return web.Response(text="up 1\n")

    async def error(request):
        return web.Response(status=500, text="boom")

    async def garbage(request):
        return web.Response(text="this is { not a metrics page\n")

    async def huge(request):
        return web.Response(text="# TYPE x gauge\n" + "x{i=\"%d\"} 1\n" * 1 + "y 1\n" * 100_000)

    app = web.Application()
    app.add_routes([web.get("/slow", slow), web.get("/error", error), web.get("/garbage", garbage),
                    web.get("/huge", huge)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield port
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("path, job", [
    ("/slow", {"scrape_timeout": "300ms"}),
    ("/error", {}),
    ("/garbage", {}),
    ("/huge", {"body_size_limit": 10_000}),
])
async def test_a_failed_scrape_reports_up_0_and_nothing_else(bad_server, path, job):
    receiver, consumer, telemetry = _receiver([f"127.0.0.1:{bad_server}"], metrics_path=path, **job)
    request = await _scrape(receiver, consumer)
    assert set(_metrics(request)) == {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
    assert _gauge(request, "up") == 0.0
    assert _gauge(request, "scrape_duration_seconds") < 2
    assert telemetry.total("vigil_receiver_scrape_errors", receiver="prometheus") == 1
    assert receiver.status()["targets"][0]["up"] is False


async def test_an_unreachable_target_is_down_not_an_error_of_the_agent():
    from tests.conftest import free_port

    receiver, consumer, _ = _receiver([f"127.0.0.1:{free_port()}"])
    request = await _scrape(receiver, consumer)
    assert _gauge(request, "up") == 0.0


async def test_a_refused_batch_is_counted(app):
    port, _ = app
    consumer = InMemorySink()
    consumer.error = RefusedError("queue full")
    receiver, _, telemetry = _receiver([f"127.0.0.1:{port}"], consumer)
    await receiver.start()
    try:
        assert await async_wait_for(lambda: telemetry.total("vigil_receiver_refused_metric_points") > 0)
    finally:
        await receiver.shutdown()


# --- config ------------------------------------------------------------------------------------


def _config(receiver: dict) -> dict:
    return {"receivers": {"prometheus": receiver}, "exporters": {"debug": {}},
            "service": {"pipelines": {"metrics": {"receivers": ["prometheus"], "exporters": ["debug"]}}}}


@pytest.mark.parametrize("job, message", [
    ({"scrape_timeout": "20s", "scrape_interval": "10s"}, "scrape_timeout must not exceed scrape_interval"),
    ({"static_configs": [{"targets": ["http://x:9090/metrics"]}]}, "must be host:port"),
    ({"static_configs": [{"targets": ["x"]}]}, "must be host:port"),
    ({"metrics_path": "metrics"}, "metrics_path must start with /"),
    ({"relabel_configs": []}, "relabel_configs: unknown key"),
])
def test_config_errors(job, message):
    body = {"job_name": "a", "static_configs": [{"targets": ["127.0.0.1:9100"]}], **job}
    with pytest.raises(ConfigError, match=message) as err:
        from_dict(_config({"config": {"scrape_configs": [body]}}))
    assert "receivers.prometheus.config.scrape_configs[0]" in str(err.value)


def test_job_names_are_unique():
    job = {"job_name": "a", "static_configs": [{"targets": ["127.0.0.1:9100"]}]}
    with pytest.raises(ConfigError, match="job_name must be unique: a"):
        from_dict(_config({"config": {"scrape_configs": [job, job]}}))


# --- end to end ----------------------------------------------------------------------------


async def test_scraped_metrics_flow_through_a_pipeline_to_an_exporter(app, tmp_path):
    port, metrics = app
    config = {
        "receivers": {"prometheus": {"config": {"scrape_configs": [
            {"job_name": "legacy", "scrape_interval": "200ms", "scrape_timeout": "200ms",
             "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]}}},
        "processors": {"batch": {"timeout": "50ms"}},
        "exporters": {"file": {"path": str(tmp_path / "metrics.json")}},
        "service": {"pipelines": {"metrics": {"receivers": ["prometheus"], "processors": ["batch"],
                                              "exporters": ["file"]}}},
    }

    def counter_values() -> list[float]:
        return [float(p["asDouble"]) for req in read_json_lines(tmp_path / "metrics.json")
                for rm in req["resourceMetrics"] for sm in rm["scopeMetrics"] for m in sm["metrics"]
                if m["name"] == "predictions_total" for p in m["sum"]["dataPoints"]]

    async with running_vigil(config):
        assert await async_wait_for(lambda: 3.0 in counter_values())
        metrics["requests"].labels("iris", "200").inc(2)
        assert await async_wait_for(lambda: 5.0 in counter_values())
