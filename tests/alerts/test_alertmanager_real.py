"""Vigil's alerts into Debian's real Alertmanager (`prometheus-alertmanager`): an OpenTelemetry SDK app's
gauge crosses a rule's threshold → Vigil's `alertmanager` notifier posts the alert → Alertmanager's own API
lists it active, with the trace the gauge's exemplar named, and its webhook notifies firing → the gauge
comes back → Alertmanager notifies resolved and lists it no more. And two Alertmanagers, one down: the
live one gets every alert, the failure is counted and shown in the status."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from agent.component import ComponentId
from tests.alerts.servers import HttpEndpoint, http_endpoint
from tests.conftest import (async_wait_for, debian_binary, free_port, otlp_receiver_config, running_vigil,
                            stop_process)


def alertmanager_binary() -> str:
    return debian_binary("prometheus-alertmanager")


@dataclass
class Alertmanager:
    url: str

    def alerts(self) -> list[dict[str, Any]]:
        """What Alertmanager's own API v2 lists (active, silenced and inhibited alerts; not resolved ones)."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as response:
            return json.load(response)

    async def active(self, alertname: str) -> list[dict[str, Any]]:
        try:
            alerts = await asyncio.to_thread(self.alerts)
        except OSError:
            return []
        return [a for a in alerts if a["labels"].get("alertname") == alertname and a["status"]["state"] == "active"]


@contextlib.asynccontextmanager
async def alertmanager(tmp: Path, webhook: str) -> AsyncIterator[Alertmanager]:
    """A real Alertmanager on a free port (it cannot take port 0), clustering off, its storage in `tmp`; its
    one receiver a webhook to `webhook`, notifying at once and on resolution."""
    binary = alertmanager_binary()
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "alertmanager.yml").write_text(json.dumps({
        "route": {"receiver": "hook", "group_by": ["alertname"], "group_wait": "0s", "group_interval": "1s",
                  "repeat_interval": "1h"},
        "receivers": [{"name": "hook", "webhook_configs": [{"url": webhook, "send_resolved": True}]}],
    }))
    port = free_port()
    am = Alertmanager(f"http://127.0.0.1:{port}")
    log = open(tmp / "alertmanager.log", "wb")
    proc = subprocess.Popen([binary, f"--config.file={tmp / 'alertmanager.yml'}", f"--storage.path={tmp / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{am.url}/-/ready", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        async def up() -> bool:
            return proc.poll() is None and await asyncio.to_thread(ready)

        for _ in range(300):
            if await up() or proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        assert proc.poll() is None and await up(), (tmp / "alertmanager.log").read_text()
        yield am
    finally:
        stop_process(proc)
        log.close()


class App:
    """An inference app's queue depth as an OpenTelemetry SDK gauge, exported over OTLP/gRPC on flush, set
    inside a request's span (so the point carries that trace as its exemplar). Blocking: call through
    asyncio.to_thread."""

    def __init__(self, endpoint: str) -> None:
        self.reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True, timeout=10),
                                                    export_interval_millis=3_600_000)
        resource = Resource.create({"service.name": "fraud-api"})
        self.provider = MeterProvider(resource=resource, metric_readers=[self.reader])
        self.depth = self.provider.get_meter("inference-app").create_gauge("app.queue.depth")
        self.tracer = TracerProvider(resource=resource).get_tracer("inference-app")

    def report(self, depth: int) -> str:
        """Set the depth and export it; the trace id (hex) of the span it was set in."""
        with self.tracer.start_as_current_span("enqueue") as span:
            self.depth.set(depth, {"ml.model.name": "fraud"})
        assert self.provider.force_flush(30_000)
        return format(span.get_span_context().trace_id, "032x")

    def close(self) -> None:
        self.provider.shutdown()


def vigil_config(tmp: Path, *urls: str) -> dict[str, Any]:
    return {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "processors": {"alerts": {
            "evaluation_interval": "200ms",
            "rules": [{"name": "QueueBacklog", "metric": "app.queue.depth", "group_by": ["ml.model.name"],
                       "op": ">", "threshold": 100, "severity": "critical",
                       "summary": "{model}: {value} requests queued"}],
            "notifiers": {"alertmanager": {"urls": list(urls), "resend_interval": "1s"}},
            "route": {"notifiers": ["alertmanager"]},
            "delivery": {"retry_on_failure": {"initial_interval": "100ms", "max_interval": "500ms"}},
        }},
        "exporters": {"file": {"path": str(tmp / "metrics.json")}},
        "service": {"state_dir": str(tmp / "state"), "trace_view_url": "http://jaeger:16686/trace/{trace_id}",
                    "pipelines": {"metrics": {"receivers": ["otlp"], "processors": ["alerts"],
                                              "exporters": ["file"]}}},
    }


def notified(hook: HttpEndpoint) -> list[tuple[str, list[str]]]:
    """Alertmanager's webhook notifications: (status, the alerts' model names)."""
    return [(body["status"], [a["labels"]["ml_model_name"] for a in body["alerts"]]) for body in hook.bodies()]


async def test_an_alert_fires_then_resolves_in_a_real_alertmanager(tmp_path: Path):
    admin_port = free_port()
    async with http_endpoint() as hook, alertmanager(tmp_path / "am", f"{hook.url}/am-hook") as am:
        config = vigil_config(tmp_path, am.url)
        config["service"]["admin"] = {"endpoint": f"127.0.0.1:{admin_port}"}
        async with running_vigil(config) as vigil:
            app = App(vigil.grpc_endpoint())
            try:
                trace_id = await asyncio.to_thread(app.report, 500)
                found: list[dict[str, Any]] = []

                async def listed() -> bool:
                    found[:] = await am.active("QueueBacklog")
                    return bool(found)

                assert await _eventually(listed)
                (alert,) = found
                assert alert["labels"] == {"alertname": "QueueBacklog", "severity": "critical",
                                           "ml_model_name": "fraud"}
                assert alert["annotations"]["summary"] == "fraud: 500 requests queued"
                assert alert["annotations"]["priority"] == "P0"
                # The trace the point's exemplar named, and the link to it in the trace view.
                assert alert["annotations"]["trace_id"] == trace_id
                assert alert["annotations"]["trace_url"] == f"http://jaeger:16686/trace/{trace_id}"
                assert alert["generatorURL"] == f"http://127.0.0.1:{admin_port}/"  # Vigil's status page
                assert await async_wait_for(lambda: ("firing", ["fraud"]) in notified(hook), timeout=30)

                # Resent while it fires: Alertmanager keeps one alert, its lease renewed.
                ends = alert["endsAt"]
                assert await _eventually(lambda: _renewed(am, ends))
                assert len(await am.active("QueueBacklog")) == 1

                await asyncio.to_thread(app.report, 3)

                async def gone() -> bool:
                    return not await am.active("QueueBacklog")

                assert await _eventually(gone)
                assert await async_wait_for(lambda: ("resolved", ["fraud"]) in notified(hook), timeout=30)
                assert [s for s, _ in notified(hook)] == ["firing", "resolved"]
                status = _notifier_status(vigil)
            finally:
                await asyncio.to_thread(app.close)
    (am_status,) = status["alertmanagers"].values()
    assert am_status["up"] and am_status["failed"] == 0 and am_status["sent"] >= 3


async def test_two_alertmanagers_one_down_the_other_gets_every_alert(tmp_path: Path, caplog):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with http_endpoint() as hook, alertmanager(tmp_path / "am", f"{hook.url}/am-hook") as am:
        async with running_vigil(vigil_config(tmp_path, dead, am.url)) as vigil:
            app = App(vigil.grpc_endpoint())
            try:
                await asyncio.to_thread(app.report, 500)
                assert await _eventually(lambda: am.active("QueueBacklog"))
                assert await async_wait_for(lambda: vigil.counter("vigil_alertmanager_alerts_failed",
                                                                  alertmanager=dead) >= 2, timeout=30)
                await asyncio.to_thread(app.report, 3)

                async def gone() -> bool:
                    return not await am.active("QueueBacklog")

                assert await _eventually(gone)
                assert await async_wait_for(lambda: ("resolved", ["fraud"]) in notified(hook), timeout=30)
                status = _notifier_status(vigil)
            finally:
                await asyncio.to_thread(app.close)
    assert status["alertmanagers"][dead]["up"] is False and status["alertmanagers"][dead]["queued"] >= 1
    assert status["alertmanagers"][am.url]["up"] is True
    assert vigil.counter("vigil_alertmanager_alerts_sent", alertmanager=am.url) >= 2
    assert any(f"{dead} failed" in r.getMessage() for r in caplog.records)


async def _renewed(am: Alertmanager, ends: str) -> bool:
    alerts = await am.active("QueueBacklog")
    return bool(alerts) and alerts[0]["endsAt"] > ends


async def _eventually(check, timeout: float = 30.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.2)
    return bool(await check())


def _notifier_status(vigil: Any) -> dict[str, Any]:
    """The alertmanager notifier's part of the alerts processor's status (what /api/v1/status shows)."""
    return vigil.service.graph.shared[ComponentId.parse("alerts")].status()["notifiers"]["alertmanager"]
