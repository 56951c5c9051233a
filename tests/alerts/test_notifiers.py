"""Real delivery: webhook, Slack and PagerDuty bodies as a local HTTP server receives them, mail as a local
SMTP server (STARTTLS, AUTH) receives it; retries, timeouts, a dead endpoint, and no secrets in logs."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent.alerts.config import AlertsConfig
from agent.alerts.engine import FIRING, RESOLVED, Alert, fingerprint
from agent.alerts.notifiers import create
from agent.alerts.notifiers.base import Delivery, Notification, RetryPolicy, redact
from agent.alerts.notifiers.http import dedup_key
from agent.telemetry import SelfTelemetry
from tests.alerts.servers import CERT, http_endpoint, smtp_server
from tests.conftest import async_wait_for

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
LABELS = {"alertname": "FeatureDrift", "severity": "warning", "ml.model.name": "fraud", "ml.model.version": "v3"}


def alert(feature: str, state: str = FIRING, severity: str = "warning") -> Alert:
    labels = {**LABELS, "severity": severity, "ml.feature.name": feature}
    return Alert("FeatureDrift", labels, fingerprint(labels), state, T0 - 60, T0, 0.42, fired_at=T0,
                 resolved_at=T0 + 600 if state == RESOLVED else None,
                 annotations={"summary": f"Feature {feature} of fraud v3 drifted", "value": "0.42",
                              "priority": "P1"})


def notification(receiver: str, firing=("a",), resolved=(), severity="warning") -> Notification:
    return Notification("alerts", receiver, '0:{"alertname":"FeatureDrift","ml.model.name":"fraud"}',
                        {"alertname": "FeatureDrift", "ml.model.name": "fraud"},
                        tuple(alert(f, severity=severity) for f in firing),
                        tuple(alert(f, RESOLVED, severity) for f in resolved), "http://vigil.example/alerts",
                        created=T0)


def delivery(nid: str, settings: dict, telemetry: SelfTelemetry | None = None, *, timeout: float = 5.0,
             retry: RetryPolicy | None = None, queue_size: int = 10) -> Delivery:
    config = AlertsConfig.model_validate({"notifiers": {nid: settings}}).notifiers[nid]
    notifier = create(nid, config, logger=logging.getLogger("vigil.test.notify"), host="gpu-host-1",
                      timeout=timeout)
    return Delivery(notifier, processor="alerts", telemetry=telemetry or SelfTelemetry(),
                    log=logging.getLogger("vigil.processors.alerts"), timeout=timeout,
                    retry=retry or RetryPolicy(0.05, 0.2, 5.0), queue_size=queue_size)


async def deliver(d: Delivery, *notifications: Notification) -> None:
    await d.start()
    try:
        for n in notifications:
            assert d.offer(n)
        assert await async_wait_for(lambda: d.sent + d.failed >= len(notifications), timeout=20)
    finally:
        await d.drain(5.0)


ALERT_A_JSON = {
    "status": "firing",
    "labels": {"alertname": "FeatureDrift", "ml.feature.name": "a", "ml.model.name": "fraud",
               "ml.model.version": "v3", "severity": "warning"},
    "annotations": {"priority": "P1", "summary": "Feature a of fraud v3 drifted", "value": "0.42"},
    "startsAt": "2023-11-14T22:13:20.000Z",
    "endsAt": "0001-01-01T00:00:00Z",
    "generatorURL": "http://vigil.example/alerts",
    "fingerprint": alert("a").fingerprint,
}


async def test_webhook_sends_alertmanagers_body():
    async with http_endpoint() as server:
        d = delivery("webhook/retrain", {"url": f"{server.url}/hooks/retrain",
                                         "headers": {"Authorization": "Bearer t0ken-123"}})
        await deliver(d, notification("webhook/retrain", firing=("a",), resolved=("b",)))
    (received,) = server.received
    assert received.path == "/hooks/retrain"
    assert received.headers["Authorization"] == "Bearer t0ken-123"
    assert received.headers["Content-Type"] == "application/json"
    assert received.body == {
        "version": "4",
        "groupKey": '0:{"alertname":"FeatureDrift","ml.model.name":"fraud"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "webhook/retrain",
        "groupLabels": {"alertname": "FeatureDrift", "ml.model.name": "fraud"},
        "commonLabels": {"alertname": "FeatureDrift", "ml.model.name": "fraud", "ml.model.version": "v3",
                         "severity": "warning"},
        "commonAnnotations": {"priority": "P1", "value": "0.42"},
        "externalURL": "http://vigil.example/alerts",
        "alerts": [
            ALERT_A_JSON,
            {**ALERT_A_JSON, "status": "resolved", "endsAt": "2023-11-14T22:23:20.000Z",
             "labels": {**ALERT_A_JSON["labels"], "ml.feature.name": "b"},
             "annotations": {**ALERT_A_JSON["annotations"], "summary": "Feature b of fraud v3 drifted"},
             "fingerprint": alert("b").fingerprint},
        ],
    }
    assert d.sent == 1 and d.failed == 0


async def test_webhook_max_alerts_truncates():
    async with http_endpoint() as server:
        d = delivery("webhook", {"url": server.url, "max_alerts": 2})
        await deliver(d, notification("webhook", firing=("a", "b", "c")))
    body = server.bodies()[0]
    assert body["truncatedAlerts"] == 1 and len(body["alerts"]) == 2


async def test_slack_incoming_webhook_payload():
    async with http_endpoint() as server:
        d = delivery("slack", {"url": f"{server.url}/services/T000/B000/XXXX", "channel": "#ml-alerts"})
        await deliver(d, notification("slack", firing=("a", "b"), severity="critical"),
                      notification("slack", firing=(), resolved=("a", "b"), severity="critical"))
    firing, resolved = server.bodies()
    assert firing == {
        "text": "[FIRING:2] FeatureDrift (fraud)",
        "channel": "#ml-alerts",
        "attachments": [{
            "color": "danger",
            "title": "[FIRING:2] FeatureDrift (fraud)",
            "title_link": "http://vigil.example/alerts",
            "text": "FIRING [P0] FeatureDrift: Feature a of fraud v3 drifted (value 0.42)\n"
                    "FIRING [P0] FeatureDrift: Feature b of fraud v3 drifted (value 0.42)",
            "footer": "Vigil alerts",
            "mrkdwn_in": ["text"],
        }],
    }
    assert resolved["text"] == "[RESOLVED] FeatureDrift (fraud)"
    assert resolved["attachments"][0]["color"] == "good"
    assert resolved["attachments"][0]["text"].startswith("RESOLVED [P0] FeatureDrift: Feature a")


async def test_pagerduty_trigger_then_resolve_with_one_dedup_key():
    async with http_endpoint() as server:
        server.answers = [(202, {})]
        d = delivery("pagerduty", {"routing_key": "R0UTINGKEY0123456789", "url": f"{server.url}/v2/enqueue"})
        first = notification("pagerduty", firing=("a",), severity="critical")
        await deliver(d, first, notification("pagerduty", firing=(), resolved=("a",), severity="critical"))
    trigger, resolve = server.bodies("/v2/enqueue")
    key = dedup_key(first)
    assert len(key) == 64
    assert trigger == {
        "routing_key": "R0UTINGKEY0123456789",
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": "[FIRING:1] FeatureDrift (fraud)",
            "source": "gpu-host-1",
            "severity": "critical",
            "timestamp": "2023-11-14T22:13:20.000Z",
            "class": "FeatureDrift",
            "component": "fraud",
            "custom_details": {
                "firing": ["FIRING [P0] FeatureDrift: Feature a of fraud v3 drifted (value 0.42)"],
                "resolved": [],
                "num_firing": 1,
                "num_resolved": 0,
                "group_labels": {"alertname": "FeatureDrift", "ml.model.name": "fraud"},
                "common_labels": {**LABELS, "severity": "critical", "ml.feature.name": "a"},
            },
        },
        "client": "Vigil",
        "client_url": "http://vigil.example/alerts",
    }
    assert resolve == {"routing_key": "R0UTINGKEY0123456789", "event_action": "resolve", "dedup_key": key}


@pytest.mark.parametrize("severity, expected", [("critical", "critical"), ("warning", "warning"), ("info", "info")])
def test_pagerduty_severity_mapping(severity, expected):
    from agent.alerts.notifiers.http import PagerDutyConfig, pagerduty_body

    config = PagerDutyConfig(routing_key="k")
    assert pagerduty_body(notification("pagerduty", severity=severity), config, "h")["payload"]["severity"] == expected
    mapped = PagerDutyConfig(routing_key="k", severity_map={"warning": "error"})
    assert pagerduty_body(notification("pagerduty"), mapped, "h")["payload"]["severity"] == "error"


async def test_retryable_answers_are_retried_honouring_retry_after():
    telemetry = SelfTelemetry()
    async with http_endpoint() as server:
        server.answers = [(503, {"Retry-After": "0"}), (429, {}), (200, {})]
        d = delivery("webhook", {"url": server.url}, telemetry)
        await deliver(d, notification("webhook"))
    assert len(server.received) == 3
    assert d.sent == 1 and d.failed == 0
    assert telemetry.total("vigil_notifier_sent", notifier="webhook") == 1


async def test_permanent_failure_is_counted_once_and_logged_without_secrets(caplog):
    telemetry = SelfTelemetry()
    async with http_endpoint() as server:
        server.answers = [(400, {})]
        url = f"{server.url}/services/T0/B0/supersecrettoken"
        d = delivery("slack", {"url": url}, telemetry)
        with caplog.at_level(logging.INFO):
            await deliver(d, notification("slack"))
    assert len(server.received) == 1  # not retried
    assert telemetry.total("vigil_notifier_failed", notifier="slack", reason="permanent") == 1
    text = caplog.text
    assert "dropped notification" in text and "HTTP 400" in text
    assert "supersecrettoken" not in text and "/services/" not in text


async def test_a_dead_endpoint_fails_after_retries_without_blocking(caplog):
    telemetry = SelfTelemetry()
    async with http_endpoint() as server:
        dead = server.url  # closed below: connection refused
    d = delivery("pagerduty", {"routing_key": "K3Y-very-secret", "url": f"{dead}/v2/enqueue"}, telemetry,
                 retry=RetryPolicy(0.05, 0.1, 0.5))
    await d.start()
    loop = asyncio.get_running_loop()
    began = loop.time()
    for _ in range(3):
        d.offer(notification("pagerduty"))
    assert loop.time() - began < 0.05  # offering never waits for delivery
    with caplog.at_level(logging.INFO):
        assert await async_wait_for(lambda: d.failed == 3, timeout=20)
    await d.drain(1.0)
    assert telemetry.total("vigil_notifier_failed", notifier="pagerduty", reason="retries_exhausted") == 3
    assert "K3Y-very-secret" not in caplog.text and "/v2/enqueue" not in caplog.text


async def test_a_hanging_endpoint_times_out_and_a_full_queue_drops():
    telemetry = SelfTelemetry()
    async with http_endpoint() as server:
        server.delay = 1.0  # past the 200ms timeout
        d = delivery("webhook", {"url": server.url}, telemetry, timeout=0.2, retry=RetryPolicy(0.05, 0.1, 0.3),
                     queue_size=2)
        await d.start()
        accepted = [d.offer(notification("webhook")) for _ in range(5)]
        # one in the worker's hands at most, two queued; the rest are refused at once
        assert accepted.count(False) >= 2
        assert await async_wait_for(lambda: d.failed == 5, timeout=20)
        await d.drain(1.0)
    assert telemetry.total("vigil_notifier_failed", notifier="webhook", reason="queue_full") == accepted.count(False)
    assert telemetry.total("vigil_notifier_failed", notifier="webhook", reason="retries_exhausted") == \
        accepted.count(True)


async def test_send_resolved_false_leaves_resolved_alerts_out():
    async with http_endpoint() as server:
        d = delivery("webhook", {"url": server.url, "send_resolved": False})
        await d.start()
        d.offer(notification("webhook", firing=("a",), resolved=("b",)))
        d.offer(notification("webhook", firing=(), resolved=("a",)))  # nothing left: not sent at all
        assert await async_wait_for(lambda: d.sent == 1)
        await d.drain(1.0)
    (body,) = server.bodies()
    assert [a["status"] for a in body["alerts"]] == ["firing"]


async def test_email_over_starttls_with_auth():
    with smtp_server(user="vigil", password="s3cret-pass") as smtp:
        d = delivery("email/oncall", {"smarthost": f"127.0.0.1:{smtp.port}", "from": "vigil@example.com",
                                      "to": ["ml-oncall@example.com", "lead@example.com"], "username": "vigil",
                                      "password": "s3cret-pass", "ca_file": str(CERT), "hello": "gpu-host-1"})
        await deliver(d, notification("email/oncall", firing=("a",), resolved=("b",)))
    assert d.sent == 1, d.last_error
    (mail,) = smtp.mails
    assert mail.tls and mail.login == "vigil"
    assert mail.mail_from == "vigil@example.com"
    assert mail.rcpt_tos == ["ml-oncall@example.com", "lead@example.com"]
    message = mail.message
    assert message["Subject"] == "[FIRING:1] FeatureDrift (fraud)"
    assert message["To"] == "ml-oncall@example.com, lead@example.com"
    body = message.get_content()
    assert "FIRING [P1] FeatureDrift: Feature a of fraud v3 drifted (value 0.42)" in body
    assert "RESOLVED [P1] FeatureDrift: Feature b of fraud v3 drifted" in body
    assert "ml.feature.name: a" in body and "http://vigil.example/alerts" in body


async def test_email_with_a_wrong_password_fails_permanently_without_logging_it(caplog):
    with smtp_server(user="vigil", password="right-pass") as smtp:
        d = delivery("email", {"smarthost": f"127.0.0.1:{smtp.port}", "from": "vigil@example.com",
                               "to": ["a@example.com"], "username": "vigil", "password": "wr0ng-pass",
                               "ca_file": str(CERT)})
        with caplog.at_level(logging.INFO):
            await deliver(d, notification("email"))
    assert d.failed == 1 and smtp.mails == []
    # smtplib tries each mechanism the server offers (PLAIN, LOGIN) in its one attempt; no retry follows
    assert smtp.logins and all(login == ("vigil", False) for login in smtp.logins) and len(smtp.logins) <= 2
    assert "after 1 attempt:" in caplog.text
    assert "authentication failed" in d.last_error, d.last_error
    assert "dropped notification" in caplog.text and "wr0ng-pass" not in caplog.text


async def test_email_refuses_an_untrusted_certificate():
    with smtp_server() as smtp:
        d = delivery("email", {"smarthost": f"127.0.0.1:{smtp.port}", "from": "vigil@example.com",
                               "to": ["a@example.com"], "username": "vigil", "password": "s3cret-pass"})
        await deliver(d, notification("email"))
    assert d.failed == 1 and "certificate" in d.last_error and smtp.logins == []


def test_email_config_refuses_credentials_in_the_clear():
    with pytest.raises(Exception, match="in the clear"):
        AlertsConfig.model_validate({"notifiers": {"email": {
            "smarthost": "localhost:25", "from": "a@b.c", "to": ["x@y.z"], "security": "none",
            "username": "u", "password": "p"}}})


def test_redact_cuts_urls_and_secrets():
    text = "POST https://hooks.slack.com/services/T/B/tok failed; key abcd1234 in http://user:pw@host:99/x?y=1"
    assert redact(text, ["abcd1234"]) == \
        "POST https://hooks.slack.com/… failed; key <redacted> in http://host:99/…"
