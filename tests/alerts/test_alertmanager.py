"""The `alertmanager` notifier inside the alerts processor, against local HTTP endpoints that answer as told:
the API v2 body, resends and leases on the test's clock, resolution, retries, a refused post, a dead
Alertmanager beside a live one, the queue's bound, silences, and config errors.

(tests/alerts/test_alertmanager_real.py sends to Debian's real Alertmanager.)"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from agent.alerts.config import AlertsConfig
from agent.alerts.matchers import Matcher
from agent.alerts.notifiers.alertmanager import AlertmanagerNotifier, label_name
from agent.alerts.processor import AlertsEngine, AlertsStage
from agent.component import ComponentId, Settings
from agent.telemetry import SelfTelemetry
from tests.alerts.helpers import Clock, gauge
from tests.alerts.servers import CERT, KEY, HttpEndpoint, http_endpoint
from tests.conftest import async_wait_for, free_port
from tests.sink import InMemorySink

DRIFT = {"ml.model.name": "fraud", "ml.model.version": "v3"}
API = "/api/v2/alerts"


def config(*urls: str, notifier: dict[str, Any] | None = None, **more: Any) -> AlertsConfig:
    return AlertsConfig.model_validate({
        "evaluation_interval": "15s",
        "rules": [{"name": "FeatureDrift", "metric": "ml.feature.drifted", "aggregation": "max",
                   "group_by": ["ml.model.name", "ml.model.version", "ml.feature.name"], "op": ">",
                   "threshold": 0, "severity": "warning", "labels": {"team": "ml"},
                   "summary": "Feature {feature} of {model} {version} drifted"}],
        "notifiers": {"alertmanager": {"urls": list(urls), **(notifier or {})}},
        # Vigil's own grouping timings are long: alerts to Alertmanager must not wait for them.
        "route": {"notifiers": ["alertmanager"], "group_wait": "10m", "repeat_interval": "4h"},
        "delivery": {"retry_on_failure": {"initial_interval": "50ms", "max_interval": "200ms"}},
        **more,
    })


async def make(cfg: AlertsConfig, clock: Clock, state_dir: Path, telemetry: SelfTelemetry | None = None,
               admin_url: str | None = "http://gpu-host-1:8888",
               trace_view_url: str | None = None) -> AlertsEngine:
    settings = Settings(ComponentId("alerts"), telemetry or SelfTelemetry(), state_dir=state_dir,
                        admin_url=admin_url, trace_view_url=trace_view_url)
    engine = AlertsEngine(cfg, settings, {}, clock=clock)
    await engine.start(run=False)
    return engine


async def drifted(engine: AlertsEngine, clock: Clock, **features: float) -> None:
    stage = AlertsStage(engine, InMemorySink(), engine._log)
    await stage.consume(gauge("ml.feature.drifted",
                              [(v, {**DRIFT, "ml.feature.name": f}) for f, v in features.items()], time_s=clock()))


async def evaluate(engine: AlertsEngine, clock: Clock, seconds: float, step: float = 15.0) -> None:
    """Evaluations every `step` seconds of the test's clock for `seconds`."""
    end = clock() + seconds
    while clock() < end:
        clock.advance(step)
        await engine.tick()


async def delivered(engine: AlertsEngine) -> None:
    """Until the alertmanager notifier has posted (or dropped) all it was handed: what an endpoint has
    then is all it gets until the next evaluation."""
    notifier = engine.deliveries["alertmanager"]
    assert isinstance(notifier, AlertmanagerNotifier)
    await asyncio.wait_for(notifier.idle(), 10)


def posted(server: HttpEndpoint) -> list[dict[str, Any]]:
    """Every alert posted to the endpoint, in order."""
    return [alert for body in server.bodies(API) for alert in body]


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_a_firing_alert_goes_out_at_once_in_the_api_v2_body(tmp_path):
    clock = Clock()
    async with http_endpoint() as server:
        cfg = config(server.url + "/am", notifier={"basic_auth": {"username": "vigil", "password": "s3cret-pw"},
                                                   "headers": {"X-Scope-OrgID": "ml"}})
        engine = await make(cfg, clock, tmp_path, trace_view_url="http://jaeger:16686/trace/{trace_id}")
        await drifted(engine, clock, a=1.0)
        await engine.tick()
        assert await async_wait_for(lambda: len(server.received) == 1)
        await engine.shutdown()
    (received,) = server.received
    assert received.path == "/am" + API
    assert received.headers["Authorization"] == "Basic " + base64.b64encode(b"vigil:s3cret-pw").decode()
    assert received.headers["X-Scope-OrgID"] == "ml" and received.headers["Content-Type"] == "application/json"
    (alert,) = received.body
    # Alertmanager 0.25 takes label names of [A-Za-z0-9_] only: dots become underscores.
    assert alert["labels"] == {"alertname": "FeatureDrift", "severity": "warning", "team": "ml",
                               "ml_model_name": "fraud", "ml_model_version": "v3", "ml_feature_name": "a"}
    assert alert["annotations"]["summary"] == "Feature a of fraud v3 drifted"
    assert alert["annotations"]["priority"] == "P1" and alert["annotations"]["value"] == "1"
    assert at(alert["startsAt"]) == pytest.approx(clock())
    # A lease of 4 x max(resend_interval 1m, evaluation_interval 15s).
    assert at(alert["endsAt"]) == pytest.approx(clock() + 240)
    assert alert["generatorURL"] == "http://gpu-host-1:8888/"  # the status page


async def test_resent_after_the_resend_interval_with_a_renewed_lease_then_resolved(tmp_path):
    clock = Clock()
    async with http_endpoint() as server:
        engine = await make(config(server.url), clock, tmp_path)
        await drifted(engine, clock, a=1.0)
        await engine.tick()
        first_sent = clock()
        assert await async_wait_for(lambda: len(posted(server)) == 1)
        await evaluate(engine, clock, 60)  # 15, 30, 45, 60 s: none is past the resend interval
        await delivered(engine)
        assert len(posted(server)) == 1
        await evaluate(engine, clock, 15)  # 75 s: the first evaluation after 1 minute
        assert await async_wait_for(lambda: len(posted(server)) == 2)
        resent = posted(server)[1]
        assert at(resent["endsAt"]) == pytest.approx(first_sent + 75 + 240)
        assert at(resent["startsAt"]) == pytest.approx(first_sent)  # the same alert, still firing
        await evaluate(engine, clock, 150)
        assert await async_wait_for(lambda: len(posted(server)) == 4)  # at 150 s and 225 s
        await drifted(engine, clock, a=0.0)
        await evaluate(engine, clock, 15)
        resolved_at = clock()
        assert await async_wait_for(lambda: len(posted(server)) == 5)
        # Resolved: endsAt is the time it resolved, sent at once (not at the next resend).
        assert at(posted(server)[4]["endsAt"]) == pytest.approx(resolved_at)
        # Resolutions are re-sent for 15 minutes (an Alertmanager that missed one learns of it), then not.
        await evaluate(engine, clock, 1800)
        await delivered(engine)
        resends = posted(server)[5:]
        assert len(resends) == 12  # every 75 s (the first evaluation after each minute) up to 900 s
        assert all(at(a["endsAt"]) == pytest.approx(resolved_at) for a in resends)
        await engine.shutdown()


async def test_idle_waits_for_a_post_in_flight_and_for_its_retries(tmp_path):
    clock = Clock()
    async with http_endpoint() as server:
        server.answers, server.delay = [(503, {}), (200, {})], 0.2  # slow to answer, and fails once
        engine = await make(config(server.url), clock, tmp_path)
        await drifted(engine, clock, a=1.0)
        await engine.tick()
        await delivered(engine)
        assert len(server.received) == 2
        assert engine.status()["notifiers"]["alertmanager"]["sent"] == 1
        await engine.shutdown()


async def test_a_failing_alertmanager_is_retried_and_gets_the_latest_state(tmp_path):
    clock, telemetry = Clock(), SelfTelemetry()
    async with http_endpoint() as server:
        server.answers = [(503, {}), (500, {}), (200, {})]
        engine = await make(config(server.url), clock, tmp_path, telemetry)
        await drifted(engine, clock, a=1.0)
        await engine.tick()
        assert await async_wait_for(lambda: len(server.received) == 3)
        status = engine.status()["notifiers"]["alertmanager"]
        assert status["sent"] == 1 and status["failed"] == 2 and status["queued"] == 0
        (am,) = status["alertmanagers"].values()
        assert am["up"] is True and am["last_error"].startswith("HTTP 500")
        # Three posts of the same alert: a retry sends what is current, never a duplicate queue entry.
        assert [len(r.body) for r in server.received] == [1, 1, 1]
        await engine.shutdown()
    assert _counter(telemetry, "vigil_alertmanager_alerts_failed") == 2
    assert _counter(telemetry, "vigil_alertmanager_alerts_sent") == 1


async def test_a_refused_post_is_dropped_not_retried(tmp_path, caplog):
    clock, telemetry = Clock(), SelfTelemetry()
    async with http_endpoint() as server:
        server.answers = [(400, {}), (200, {})]
        engine = await make(config(server.url), clock, tmp_path, telemetry)
        await drifted(engine, clock, a=1.0)
        with caplog.at_level(logging.WARNING):
            await engine.tick()
            await delivered(engine)
        assert len(server.received) == 1  # not retried
        assert engine.status()["notifiers"]["alertmanager"]["failed"] == 1
        (am,) = engine.status()["notifiers"]["alertmanager"]["alertmanagers"].values()
        assert am["dropped"] == 1 and am["queued"] == 0
        assert "1 alerts for http://127.0.0.1" in caplog.text and "HTTP 400" in caplog.text
        await engine.shutdown()
    assert _counter(telemetry, "vigil_alertmanager_alerts_dropped") == 1


async def test_two_alertmanagers_one_down_the_other_gets_every_alert(tmp_path, caplog):
    clock, telemetry = Clock(), SelfTelemetry()
    dead = f"http://vigil:t0ken-xyz@127.0.0.1:{free_port()}"  # nothing listens there
    async with http_endpoint() as live:
        engine = await make(config(dead, live.url), clock, tmp_path, telemetry)
        with caplog.at_level(logging.INFO):
            await drifted(engine, clock, a=1.0, b=1.0)
            await engine.tick()
            assert await async_wait_for(lambda: len(posted(live)) == 2)
            await drifted(engine, clock, a=1.0, b=0.0)
            await evaluate(engine, clock, 15)
            assert await async_wait_for(lambda: len(posted(live)) == 3)  # b's resolution
            dead_name = f"http://127.0.0.1:{dead.rsplit(':', 1)[1]}"

            def status() -> dict[str, Any]:
                return engine.status()["notifiers"]["alertmanager"]

            assert await async_wait_for(lambda: status()["alertmanagers"][dead_name]["failed"] >= 2)
            down = status()["alertmanagers"][dead_name]
            assert down["up"] is False and down["queued"] == 2  # a's firing and b's resolution, latest each
            assert "ConnectionRefused" in down["last_error"] or "Cannot connect" in down["last_error"]
            assert status()["alertmanagers"][live.url]["up"] is True
            # On call sees it among the service's notices (the status page, vigil status), the secret left out.
            (notice,) = engine.status()["notices"]
            assert notice.startswith(f"notifier alertmanager: 1 of 2 Alertmanagers unreachable: {dead_name} (2 alerts")
            assert live.url not in notice and "t0ken-xyz" not in notice
            await engine.shutdown()
    assert [a["labels"]["ml_feature_name"] for a in posted(live)] == ["a", "b", "b"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("failed" in w and "retrying with backoff" in w for w in warnings)
    assert "t0ken-xyz" not in caplog.text
    assert _counter(telemetry, "vigil_alertmanager_alerts_failed") >= 2


async def test_the_queue_of_a_dead_alertmanager_is_bounded(tmp_path):
    clock = Clock()
    dead = f"http://127.0.0.1:{free_port()}"
    engine = await make(config(dead, notifier={"queue_size": 3}), clock, tmp_path)
    await drifted(engine, clock, **{f"f{i}": 1.0 for i in range(5)})
    await engine.tick()
    (am,) = engine.status()["notifiers"]["alertmanager"]["alertmanagers"].values()
    assert am["queued"] == 3 and am["dropped"] == 2
    await engine.shutdown()


async def test_an_alert_silenced_before_it_is_sent_stays_out(tmp_path):
    clock = Clock()
    async with http_endpoint() as server:
        engine = await make(config(server.url), clock, tmp_path)
        await engine.add_silence((Matcher.parse('ml.feature.name="a"'),), clock() + 3600)
        await drifted(engine, clock, a=1.0, b=1.0)
        await engine.tick()
        await delivered(engine)
        await engine.shutdown()
    assert [a["labels"]["ml_feature_name"] for a in posted(server)] == ["b"]


async def test_only_alerts_routed_to_it_go_to_alertmanager(tmp_path):
    clock = Clock()
    async with http_endpoint() as server:
        cfg = config(server.url, notifiers={"alertmanager": {"urls": [server.url]}, "log": {}},
                     route={"notifiers": ["log"],
                            "routes": [{"matchers": ['ml.feature.name="a"'], "notifiers": ["alertmanager"]}]})
        engine = await make(cfg, clock, tmp_path)
        await drifted(engine, clock, a=1.0, b=1.0)
        await engine.tick()
        await delivered(engine)
        await engine.shutdown()
    assert [a["labels"]["ml_feature_name"] for a in posted(server)] == ["a"]


def test_label_names_alertmanager_accepts():
    assert label_name("ml.model.name") == "ml_model_name"
    assert label_name("gen_ai.request.model") == "gen_ai_request_model"
    assert label_name("9lives") == "_9lives"
    assert label_name("") == "_"


@pytest.mark.parametrize("settings, message", [
    ({}, "urls"),
    ({"urls": []}, "urls"),
    ({"urls": ["alertmanager:9093"]}, "http:// or https://"),
    ({"urls": ["http://a:9093", "http://a:9093"]}, "listed twice"),
    ({"urls": ["http://a:9093"], "resend_interval": "0s"}, "resend_interval"),
    ({"urls": ["http://a:9093"], "basic_auth": {"password": "x"}}, "username"),
])
def test_config_errors(settings, message):
    with pytest.raises(ValidationError) as info:
        AlertsConfig.model_validate({"notifiers": {"alertmanager": settings}})
    assert message in str(info.value)


def test_secrets_cover_urls_passwords_and_headers():
    cfg = AlertsConfig.model_validate({"notifiers": {"alertmanager": {
        "urls": ["https://u:p4ss@am:9093"], "basic_auth": {"username": "vigil", "password": "s3cret-pw"},
        "headers": {"Authorization-Extra": "t0ken-abc"}}}}).notifiers["alertmanager"]
    secrets = AlertmanagerNotifier("alertmanager", cfg).secrets()
    assert {"https://u:p4ss@am:9093", "s3cret-pw", "t0ken-abc"} <= set(secrets)


def _counter(telemetry: SelfTelemetry, name: str) -> float:
    return telemetry.total(name, notifier="alertmanager")


async def test_an_alert_carries_the_trace_of_its_metrics_latest_exemplar(tmp_path):
    clock = Clock()
    trace_id, span_id = bytes(range(1, 17)), bytes(range(1, 9))
    async with http_endpoint() as server:
        engine = await make(config(server.url), clock, tmp_path, trace_view_url=None)
        batch = gauge("ml.feature.drifted", [(1.0, {**DRIFT, "ml.feature.name": "a"})], time_s=clock())
        point = batch.message.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
        point.exemplars.add(trace_id=trace_id, span_id=span_id, as_double=9.5)
        await AlertsStage(engine, InMemorySink(), engine._log).consume(batch)
        await drifted(engine, clock, b=1.0)  # no exemplar: no trace
        await engine.tick()
        assert await async_wait_for(lambda: len(posted(server)) == 2)
        await engine.shutdown()
    by_feature = {a["labels"]["ml_feature_name"]: a["annotations"] for a in posted(server)}
    assert by_feature["a"]["trace_id"] == trace_id.hex() and by_feature["a"]["span_id"] == span_id.hex()
    assert "trace_url" not in by_feature["a"]  # no service.trace_view_url: ids, no link
    assert "trace_id" not in by_feature["b"]


async def test_https_with_the_configured_ca_and_refused_without_it(tmp_path):
    received: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post(API, handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(CERT, KEY)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    url = f"https://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        clock = Clock()
        trusted = await make(config(url, notifier={"tls": {"ca_file": str(CERT)}}), clock, tmp_path / "a")
        await drifted(trusted, clock, a=1.0)
        await trusted.tick()
        assert await async_wait_for(lambda: len(received) == 1)
        await trusted.shutdown()
        untrusted = await make(config(url), clock, tmp_path / "b")  # the system's CAs do not know it
        await drifted(untrusted, clock, a=1.0)
        await untrusted.tick()
        assert await async_wait_for(lambda: untrusted.status()["notifiers"]["alertmanager"]["failed"] >= 1)
        (am,) = untrusted.status()["notifiers"]["alertmanager"]["alertmanagers"].values()
        assert "certificate verify failed" in am["last_error"] and am["up"] is False
        await untrusted.shutdown()
    finally:
        await runner.cleanup()
    assert len(received) == 1


async def test_an_alert_that_resolves_after_a_restart_is_resolved_in_alertmanager(tmp_path):
    clock = Clock()
    async with http_endpoint() as server:
        first = await make(config(server.url), clock, tmp_path)
        await drifted(first, clock, a=1.0)
        await first.tick()
        assert await async_wait_for(lambda: len(posted(server)) == 1)
        await first.shutdown()
        clock.advance(30)
        second = await make(config(server.url), clock, tmp_path)  # the firing alert restored
        await drifted(second, clock, a=0.0)
        await second.tick()
        assert await async_wait_for(lambda: len(posted(server)) == 2)
        await second.shutdown()
    resolution = posted(server)[1]
    assert resolution["labels"]["ml_feature_name"] == "a" and at(resolution["endsAt"]) == pytest.approx(clock())
