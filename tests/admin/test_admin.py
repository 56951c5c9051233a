"""The admin endpoint (agent/admin/): health, readiness, /metrics, the JSON API, reload, model health,
routes components offer."""

from __future__ import annotations

import copy
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from agent import registry
from agent.component import ComponentId, Factory, Kind
from agent.configmodel import StrictModel
from agent.signals import Signal
from tests.admin.traffic import MODEL, ml_vigil_config, prediction_spans
from tests.conftest import async_wait_for, otlp_receiver_config, running_vigil
from tests.otlp_data import send_grpc, traces


def simple_config(tmp_path, **extra_exporters: Any) -> dict:
    exporters = {"file": {"path": str(tmp_path / "out.json")}, **extra_exporters}
    return {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "processors": {"batch": {"timeout": "10ms"}},
        "exporters": exporters,
        # The otlp exporters here never reach their backend: they are not waited for at shutdown.
        "service": {"admin": {"endpoint": "127.0.0.1:0"}, "shutdown_timeout": "1s",
                    "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                             "exporters": list(exporters)}}},
    }


async def get(url: str) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
        body = await response.json(content_type=None) if response.content_type == "application/json" else text
        return response.status, body, response.headers.get("Content-Type", "")


async def test_healthy_and_ready(tmp_path):
    async with running_vigil(simple_config(tmp_path)) as vigil:
        assert (await get(vigil.admin_url("/-/healthy")))[:2] == (200, {"status": "ok", "state": "running"})
        assert (await get(vigil.admin_url("/-/ready")))[:2] == (200, {"status": "ready"})
        vigil.service.problems.append("receivers.otlp: cannot listen")
        status, body, _ = await get(vigil.admin_url("/-/ready"))
        assert status == 503 and body == {"status": "not ready", "reasons": ["receivers.otlp: cannot listen"]}
        vigil.service.problems.clear()


async def test_metrics_speak_prometheus_with_the_collector_names(tmp_path):
    # An otlp exporter to a closed port: it queues and retries, so its queue gauges exist.
    backend = {"endpoint": "http://127.0.0.1:1", "retry_on_failure": {"initial_interval": "10s"}}
    async with running_vigil(simple_config(tmp_path, otlp=backend)) as vigil:
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(3))
        assert await async_wait_for(lambda: vigil.counter("vigil_exporter_sent_spans", exporter="file") == 3)
        status, text, content_type = await get(vigil.admin_url("/metrics"))
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    samples = {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if not k.startswith("otel_scope")))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("vigil_receiver_accepted_spans_total", (("receiver", "otlp"), ("transport", "grpc")))] == 3
    assert samples[("vigil_exporter_sent_spans_total", (("exporter", "file"),))] == 3
    common = (("otel_signal", "traces"), ("pipeline", "traces"), ("processor", "batch"))
    assert samples[("vigil_processor_incoming_items_total", common)] == 3
    assert samples[("vigil_processor_outgoing_items_total", common)] == 3
    assert samples[("vigil_exporter_queue_capacity", (("exporter", "otlp"),))] == 1000
    assert ("vigil_exporter_queue_size", (("exporter", "otlp"),)) in samples
    assert samples[("vigil_process_cpu_seconds_total", ())] > 0
    assert samples[("vigil_process_memory_rss_bytes", ())] > 10 * 2**20
    assert samples[("vigil_process_uptime_seconds_total", ())] >= 0
    names = {name for name, _ in samples}
    assert "target_info" in names


async def test_status_reports_pipelines_components_counters_and_status(tmp_path):
    backend = {"endpoint": "http://127.0.0.1:1", "retry_on_failure": {"initial_interval": "10s"}}
    async with running_vigil(simple_config(tmp_path, otlp=backend)) as vigil:
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(4))
        assert await async_wait_for(lambda: vigil.counter("vigil_exporter_sent_spans", exporter="file") == 4)
        status, body, _ = await get(vigil.admin_url("/api/v1/status"))
    assert status == 200
    assert body["state"] == "running" and body["ready"] is True and body["problems"] == []
    assert body["pipelines"] == {"traces": {"signal": "traces", "receivers": ["otlp"], "processors": ["batch"],
                                            "exporters": ["file", "otlp"]}}
    components = body["components"]
    assert components["receivers"]["otlp"]["items"] == {"spans": {"accepted": 4, "refused": 0}}
    assert components["processors"]["batch"]["items"] == {"traces": {"incoming": 4, "outgoing": 4}}
    assert components["exporters"]["file"]["items"]["spans"]["sent"] == 4
    assert components["exporters"]["file"]["state"] == "running"
    assert components["exporters"]["otlp"]["queue"]["capacity"] == 1000
    assert body["process"]["memory_rss_bytes"] > 0
    assert any(t["name"] == "vigil_receiver_accepted_spans" for t in body["telemetry"])


async def test_post_reload_applies_a_valid_config_and_refuses_an_invalid_one(tmp_path):
    path = tmp_path / "vigil.yaml"
    config = simple_config(tmp_path)
    async with running_vigil(config) as vigil:
        vigil.service.config.source = str(path)
        changed = copy.deepcopy(config)
        changed["exporters"]["file"]["path"] = str(tmp_path / "other.json")
        path.write_text(yaml.safe_dump(changed))
        async with aiohttp.ClientSession() as session:
            async with session.post(vigil.admin_url("/-/reload")) as response:
                assert response.status == 200
                assert (await response.json())["status"] == "reloaded"
            path.write_text("service: {pipelines: {}}\n")
            async with session.post(vigil.admin_url("/-/reload")) as response:
                assert response.status == 400
                answer = await response.json()
        assert answer["status"] == "invalid"
        assert "service.pipelines: Dictionary should have at least 1 item" in answer["problems"][0]
        assert vigil.service.last_reload["status"] == "invalid"
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(1))
    assert (tmp_path / "other.json").exists()


async def test_model_health_for_a_circuit_breaker(tmp_path):
    async with running_vigil(ml_vigil_config(tmp_path)) as vigil:
        endpoint = vigil.grpc_endpoint()
        status, body, _ = await get(vigil.admin_url("/api/v1/models/unknown/health"))
        assert status == 404
        await send_grpc(endpoint, Signal.TRACES, prediction_spans(200, seed=1))
        status, body, _ = await get(vigil.admin_url(f"/api/v1/models/{MODEL}/health"))
        assert status == 200 and body["status"] == "ok"
        assert body["reasons"] == ["learning the reference (200 of 400 predictions); no drift verdict yet"]

        engine = vigil.service.graph.shared[ComponentId("ml")]
        await send_grpc(endpoint, Signal.TRACES, prediction_spans(200, seed=2, start=200))
        assert await async_wait_for(lambda: engine.status()["models"][0]["phase"] == "monitoring")
        await send_grpc(endpoint, Signal.TRACES, prediction_spans(400, seed=3, start=400))
        assert await async_wait_for(lambda: engine.status()["models"][0]["windows_evaluated"] == 1)
        status, body, _ = await get(vigil.admin_url(f"/api/v1/models/{MODEL}/health"))
        assert body["status"] == "ok", body

        # Ages 25 years older: age drifts, and with it the predicted label.
        await send_grpc(endpoint, Signal.TRACES, prediction_spans(400, seed=4, start=800, shift=25))
        assert await async_wait_for(lambda: engine.status()["models"][0]["windows_evaluated"] == 2)
        status, body, _ = await get(vigil.admin_url(f"/api/v1/models/{MODEL}/health"))
        assert status == 200
        assert body["status"] == "failing", body
        assert any("ml.feature.age" in r or "age" in r for r in body["reasons"])
        status, listing, _ = await get(vigil.admin_url("/api/v1/models"))
        assert listing["models"] == [{"model": MODEL, "version": "3", "processor": "ml", "requests": 1200,
                                      "errors": 0, "health": "failing", "source": "spans"}]


async def test_model_health_names_the_features_that_moved_with_the_predictions(tmp_path):
    config = ml_vigil_config(tmp_path)
    config["processors"]["ml"]["drift"] = {"drift_share": 0.75}  # 2 of 3 columns: not dataset drift
    async with running_vigil(config) as vigil:
        engine = vigil.service.graph.shared[ComponentId("ml")]
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, prediction_spans(400, seed=1))
        assert await async_wait_for(lambda: engine.status()["models"][0]["phase"] == "monitoring")
        # Ages 25 years older: the predicted label follows the age, which is the cause to name.
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, prediction_spans(400, seed=2, start=400, shift=25))
        assert await async_wait_for(lambda: engine.status()["models"][0]["windows_evaluated"] == 1)
        status, body, _ = await get(vigil.admin_url(f"/api/v1/models/{MODEL}/health"))
        assert status == 200 and body["status"] == "failing", body
        assert body["reasons"] == ["prediction drift: ml.prediction.label; feature drift: age (2 of 3 columns)"]


# --- routes a component offers ----------------------------------------------------------------------


class _EchoConfig(StrictModel):
    greeting: str = "hello"


class _EchoExporter:
    """An exporter with admin routes and a status, as a component of another team would have."""

    mutates_data = False

    def __init__(self, config: _EchoConfig) -> None:
        self._greeting = config.greeting

    async def start(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def consume(self, batch) -> None:
        pass

    def status(self) -> dict:
        return {"greeting": self._greeting}

    def admin_routes(self):
        async def hello(request: web.Request) -> web.Response:
            return web.json_response({"greeting": self._greeting, "name": request.match_info["name"]})

        return [("GET", "/api/v1/echo/{name}", hello)]


@pytest.fixture
def echo_exporter():
    factory = Factory(Kind.EXPORTER, "echo", _EchoConfig, lambda config, settings: _EchoExporter(config),
                      frozenset(Signal), "answers on the admin endpoint")
    registry.register(factory)
    yield
    registry._FACTORIES[Kind.EXPORTER].pop("echo")


async def test_component_routes_are_mounted_and_follow_reloads(tmp_path, echo_exporter):
    config = simple_config(tmp_path, echo={"greeting": "hi"})
    async with running_vigil(config) as vigil:
        assert (await get(vigil.admin_url("/api/v1/echo/ann")))[:2] == (200, {"greeting": "hi", "name": "ann"})
        status, body, _ = await get(vigil.admin_url("/api/v1/status"))
        assert body["components"]["exporters"]["echo"]["status"] == {"greeting": "hi"}
        changed = copy.deepcopy(config)
        changed["exporters"]["echo"]["greeting"] = "salut"
        from agent import config as config_module

        await vigil.service.reload(config_module.from_dict(changed, "<test>"))
        assert (await get(vigil.admin_url("/api/v1/echo/bo")))[:2] == (200, {"greeting": "salut", "name": "bo"})
        del changed["exporters"]["echo"]
        changed["service"]["pipelines"]["traces"]["exporters"] = ["file"]
        await vigil.service.reload(config_module.from_dict(changed, "<test>"))
        assert (await get(vigil.admin_url("/api/v1/echo/bo")))[0] == 404


async def test_an_admin_port_in_use_is_reported_not_fatal(tmp_path):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        config = simple_config(tmp_path)
        config["service"]["admin"]["endpoint"] = f"127.0.0.1:{holder.getsockname()[1]}"
        async with running_vigil(config) as vigil:
            assert vigil.service.admin is None and not vigil.service.ready
            assert vigil.service.problems[0].startswith("admin endpoint: ")
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(1))  # the data still flows


@pytest.mark.parametrize("entry, status, reason", [
    ({"recent": {"requests": 50, "error_rate": 0.3}, "error_rate": 0.01}, "failing", "error rate 30.0%"),
    ({"recent": {"requests": 5, "error_rate": 0.3}, "error_rate": 0.06}, "degraded", "error rate 6.0%"),
    ({"performance": {"degraded": {"estimated": True}}, "estimated_accuracy": 0.8}, "degraded",
     "estimated performance degraded (accuracy 80.0%)"),
    ({"performance": {"degraded": {"estimated": False, "realized": True}}}, "failing",
     "realized performance degraded"),
    ({"error_rate": 0.0}, "ok", None),
])
def test_model_health_from_errors_and_performance(entry, status, reason):
    from agent.admin.models import version_health

    verdict = version_health({"phase": "monitoring", "drift": {"features": {}, "drifted_features": []}, **entry},
                             {"drift_share_threshold": 0.5})
    assert verdict["status"] == status
    assert verdict["reasons"] == ([reason] if reason else [])
