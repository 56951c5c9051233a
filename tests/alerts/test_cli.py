"""`vigil alerts` as a user runs it, against the alerts processor's admin routes served on a local port."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.alerts.helpers import Clock, gauge
from tests.alerts.test_processor import config, make
from tests.sink import InMemorySink
from agent.alerts.processor import AlertsStage

REPO = Path(__file__).resolve().parents[2]


def vigil(*args: str) -> subprocess.CompletedProcess:
    """`python -m agent ARGS` from the repository (the code under test), as a subprocess."""
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=60,
                          cwd=REPO)


async def test_list_silence_and_expire(tmp_path):
    clock = Clock()
    engine = await make(config("http://127.0.0.1:9"), clock, tmp_path)
    app = web.Application()
    for method, path, handler in engine.admin_routes():
        app.router.add_route(method, path, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    endpoint = f"127.0.0.1:{server.port}"
    try:
        listed = await asyncio.to_thread(vigil, "alerts", "--endpoint", endpoint)
        assert listed.returncode == 0 and listed.stdout.strip() == "no firing or pending alerts"

        stage = AlertsStage(engine, InMemorySink(), engine._log)
        await stage.consume(gauge("ml.feature.drifted", [(1.0, {"ml.model.name": "fraud", "ml.model.version": "v3",
                                                               "ml.feature.name": f}) for f in ("age", "amount")]))
        await engine.tick()  # pending
        clock.advance(45)
        await engine.tick()  # firing

        listed = await asyncio.to_thread(vigil, "alerts", "--endpoint", endpoint)
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0].split() == ["STATE", "SEVERITY", "ALERT", "SINCE", "VALUE", "LABELS"]
        assert len(lines) == 3
        assert lines[1].split()[:5] == ["firing", "warning", "FeatureDrift", "0s", "ago"]
        assert "ml.feature.name=age" in lines[1] + lines[2] and "team=ml" in lines[1]

        made = await asyncio.to_thread(vigil, "alerts", "silence", 'ml.feature.name="age"', "--duration", "2h",
                                       "--comment", "retraining", "--author", "ana", "--endpoint", endpoint)
        assert made.returncode == 0, made.stderr
        silence_id = made.stdout.split()[1]
        assert made.stdout.startswith(f"silence {silence_id} until ")

        as_json = json.loads((await asyncio.to_thread(vigil, "alerts", "--format", "json", "--endpoint",
                                                      endpoint)).stdout)
        silenced = {a["labels"]["ml.feature.name"]: a["silenced_by"] for a in as_json["alerts"]}
        assert silenced == {"age": [silence_id], "amount": []}
        table = (await asyncio.to_thread(vigil, "alerts", "--endpoint", endpoint)).stdout
        assert "[silenced]" in next(line for line in table.splitlines() if "age" in line)

        silences = await asyncio.to_thread(vigil, "alerts", "--endpoint", endpoint, "silences")
        assert silences.returncode == 0
        row = silences.stdout.splitlines()[1].split()
        assert row[0] == silence_id and row[1] == "active" and 'ml.feature.name="age"' in row and "ana" in row

        expired = await asyncio.to_thread(vigil, "alerts", "expire", silence_id, "--endpoint", endpoint)
        assert expired.returncode == 0 and expired.stdout.strip() == f"silence {silence_id} expired"
        again = await asyncio.to_thread(vigil, "alerts", "expire", silence_id, "--endpoint", endpoint)
        assert again.returncode == 1 and "HTTP 404" in again.stderr

        bad = await asyncio.to_thread(vigil, "alerts", "silence", "not a matcher", "--endpoint", endpoint)
        assert bad.returncode == 1 and "invalid matcher" in bad.stderr

        other = await asyncio.to_thread(vigil, "alerts", "--processor", "alerts/other", "--endpoint", endpoint)
        assert other.returncode == 1 and "no alerts processor 'alerts/other'" in other.stderr
    finally:
        await server.close()
        await engine.shutdown()


def test_no_agent_running():
    result = vigil("alerts", "--endpoint", "127.0.0.1:1")
    assert result.returncode == 1
    assert "cannot reach the agent's admin endpoint at http://127.0.0.1:1" in result.stderr


def send_gauge(endpoint: str, value: float) -> None:
    """An app's gauge `gpu.queue.depth`, sent once over OTLP/gRPC by the OpenTelemetry SDK (blocking)."""
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.metrics import Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True, timeout=10),
                                           export_interval_millis=3_600_000)
    provider = MeterProvider(resource=Resource.create({"service.name": "fraud-api"}), metric_readers=[reader])
    provider.get_meter("app").create_observable_gauge(
        "queue.depth", [lambda _: [Observation(value, {"ml.model.name": "fraud"})]])
    provider.force_flush(10_000)
    provider.shutdown()


async def test_vigil_alerts_against_a_running_agent(tmp_path):
    """The whole path: an app's metric through Vigil's pipeline, the rule fires, and `vigil alerts` asks the
    agent's real admin endpoint."""
    from tests.conftest import async_wait_for, otlp_receiver_config, running_vigil

    config = {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "processors": {"alerts": {"evaluation_interval": "100ms", "rules": [
            {"name": "QueueTooDeep", "metric": "queue.depth", "group_by": ["ml.model.name"], "threshold": 100,
             "severity": "critical", "summary": "{model}: {value:.0f} requests waiting"}]}},
        "exporters": {"file": {"path": str(tmp_path / "metrics.json")}},
        "service": {"state_dir": str(tmp_path / "state"), "admin": {"endpoint": "127.0.0.1:0"},
                    "pipelines": {"metrics": {"receivers": ["otlp"], "processors": ["alerts"],
                                              "exporters": ["file"]}}},
    }
    async with running_vigil(config) as agent:
        endpoint = f"127.0.0.1:{agent.service.admin.port}"
        await asyncio.to_thread(send_gauge, agent.grpc_endpoint(), 250.0)
        firing = lambda: agent.service.graph.shared  # noqa: E731
        assert await async_wait_for(lambda: any(s.status()["firing"] for s in firing().values()), timeout=15)
        listed = await asyncio.to_thread(vigil, "alerts", "--endpoint", endpoint)
        assert listed.returncode == 0, listed.stderr
        row = listed.stdout.splitlines()[1].split()
        assert row[:3] == ["firing", "critical", "QueueTooDeep"] and "ml.model.name=fraud" in row and "250" in row
        made = await asyncio.to_thread(vigil, "alerts", "silence", 'alertname="QueueTooDeep"', "--duration", "10m",
                                       "--endpoint", endpoint)
        assert made.returncode == 0, made.stderr
        listed = await asyncio.to_thread(vigil, "alerts", "--endpoint", endpoint, "--state", "firing")
        assert "[silenced]" in listed.stdout
