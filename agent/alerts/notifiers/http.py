"""Notifiers that POST JSON: `webhook` (Alertmanager's body), `slack` (incoming webhook), `pagerduty`
(Events API v2)."""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from typing import Any, Literal

import aiohttp
from pydantic import Field, field_validator

from agent import __version__
from agent.alerts.engine import FIRING, Alert
from agent.alerts.notifiers.base import DeliveryError, Notification, NotifierConfig, rfc3339
from agent.ml.vocabulary import MODEL_NAME, SERVICE_NAME

_USER_AGENT = f"Vigil/{__version__}"


def _http_url(value: str) -> str:
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError("must be an http:// or https:// URL")
    return value


class WebhookConfig(NotifierConfig):
    url: str
    headers: dict[str, str] = {}  # e.g. Authorization: "Bearer ${env:RETRAIN_TOKEN}"
    max_alerts: int = Field(0, ge=0)  # at most this many alerts per body (0: all); the rest are counted

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _http_url(value)


class SlackConfig(NotifierConfig):
    url: str  # the incoming webhook's URL (it holds the token: keep it in ${env:...})
    channel: str = ""
    username: str = ""
    icon_emoji: str = ""

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _http_url(value)


PagerDutySeverity = Literal["critical", "error", "warning", "info"]


class PagerDutyConfig(NotifierConfig):
    routing_key: str = Field(min_length=1)  # the integration key of a PagerDuty service (Events API v2)
    url: str = "https://events.pagerduty.com/v2/enqueue"
    source: str = ""  # the affected system (default: the alert's host.name, else this host)
    client: str = "Vigil"
    client_url: str = ""  # default: the processor's external_url
    severity_map: dict[str, PagerDutySeverity] = {"critical": "critical", "warning": "warning", "info": "info"}

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _http_url(value)


# --- bodies ------------------------------------------------------------------------------------


def _alert_json(alert: Alert, external_url: str) -> dict[str, Any]:
    return {
        "status": FIRING if alert.state == FIRING else "resolved",
        "labels": dict(sorted(alert.labels.items())),
        "annotations": dict(sorted(alert.annotations.items())),
        "startsAt": rfc3339(alert.fired_at if alert.fired_at is not None else alert.active_since),
        "endsAt": rfc3339(alert.resolved_at),
        "generatorURL": external_url,
        "fingerprint": alert.fingerprint,
    }


def webhook_body(n: Notification, max_alerts: int = 0) -> dict[str, Any]:
    """Alertmanager's webhook body (version 4), so receivers written for Alertmanager work unchanged."""
    alerts = list(n.alerts)
    truncated = max(len(alerts) - max_alerts, 0) if max_alerts else 0
    if truncated:
        alerts = alerts[:max_alerts]
    return {
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": truncated,
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": dict(sorted(n.group_labels.items())),
        "commonLabels": n.common_labels(),
        "commonAnnotations": n.common_annotations(),
        "externalURL": n.external_url,
        "alerts": [_alert_json(a, n.external_url) for a in alerts],
    }


_SLACK_COLORS = {"critical": "danger", "warning": "warning", "info": "#439FE0"}


def slack_body(n: Notification, config: SlackConfig) -> dict[str, Any]:
    """An incoming-webhook message: the title as text (what notifications show) and one attachment
    listing the alerts, coloured by severity (green once all resolved)."""
    title = n.title()
    attachment: dict[str, Any] = {
        "color": _SLACK_COLORS.get(n.severity(), "warning") if n.firing else "good",
        "title": title,
        "text": "\n".join(n.line(a) for a in n.alerts),
        "footer": f"Vigil {n.processor}",
        "mrkdwn_in": ["text"],
    }
    if n.external_url:
        attachment["title_link"] = n.external_url
    body: dict[str, Any] = {"text": title, "attachments": [attachment]}
    for key in ("channel", "username", "icon_emoji"):
        value = getattr(config, key)
        if value:
            body[key] = value
    return body


def dedup_key(n: Notification) -> str:
    """Stable for a group (the same across notifications and restarts): its trigger and resolve pair up."""
    return hashlib.sha256(f"{n.processor}|{n.group_key}".encode()).hexdigest()


def pagerduty_body(n: Notification, config: PagerDutyConfig, host: str) -> dict[str, Any]:
    """One Events API v2 event per group: `trigger` while any alert fires, `resolve` once none does."""
    key = dedup_key(n)
    if not n.firing:
        return {"routing_key": config.routing_key, "event_action": "resolve", "dedup_key": key}
    common = n.common_labels()
    payload: dict[str, Any] = {
        "summary": n.title()[:1024],
        "source": config.source or common.get("host.name") or host,
        "severity": config.severity_map.get(n.severity(), "warning"),
        "timestamp": rfc3339(min(a.fired_at or a.active_since for a in n.firing)),
        "class": common.get("alertname", ""),
        "custom_details": {
            "firing": [n.line(a) for a in n.firing],
            "resolved": [n.line(a) for a in n.resolved],
            "num_firing": len(n.firing),
            "num_resolved": len(n.resolved),
            "group_labels": dict(sorted(n.group_labels.items())),
            "common_labels": common,
        },
    }
    for field, label in (("component", MODEL_NAME), ("group", SERVICE_NAME)):
        if common.get(label):
            payload[field] = common[label]
    body: dict[str, Any] = {"routing_key": config.routing_key, "event_action": "trigger", "dedup_key": key,
                            "payload": payload, "client": config.client}
    client_url = config.client_url or n.external_url
    if client_url:
        body["client_url"] = client_url
    return body


# --- sending ---------------------------------------------------------------------------------------


async def post_json(session: aiohttp.ClientSession, url: str, body: dict[str, Any],
                    headers: dict[str, str] | None = None) -> None:
    """POST `body`; DeliveryError for an answer other than 2xx (retryable: 408, 429, 5xx)."""
    data = json.dumps(body, separators=(",", ":")).encode()
    sent_headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT, **(headers or {})}
    async with session.post(url, data=data, headers=sent_headers) as response:
        if 200 <= response.status < 300:
            await response.read()
            return
        text = (await response.text(errors="replace"))[:200].strip()
        retryable = response.status in (408, 429) or response.status >= 500
        retry_after = _retry_after(response.headers.get("Retry-After"))
        raise DeliveryError(f"HTTP {response.status}" + (f": {text}" if text else ""), retryable, retry_after)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


class _HttpNotifier:
    def __init__(self, id: str, config: Any) -> None:
        self.id = id
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # Timeouts are the delivery's (one per attempt); no cookies kept between notifications.
        self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def secrets(self) -> list[str]:
        return [self.config.url]

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "notifier not started"
        return self._session


class WebhookNotifier(_HttpNotifier):
    config: WebhookConfig

    async def send(self, notification: Notification) -> None:
        await post_json(self.session, self.config.url, webhook_body(notification, self.config.max_alerts),
                        self.config.headers)

    def secrets(self) -> list[str]:
        return [self.config.url, *self.config.headers.values()]


class SlackNotifier(_HttpNotifier):
    config: SlackConfig

    async def send(self, notification: Notification) -> None:
        await post_json(self.session, self.config.url, slack_body(notification, self.config))


class PagerDutyNotifier(_HttpNotifier):
    config: PagerDutyConfig

    def __init__(self, id: str, config: PagerDutyConfig, host: str) -> None:
        super().__init__(id, config)
        self._host = host

    async def send(self, notification: Notification) -> None:
        await post_json(self.session, self.config.url, pagerduty_body(notification, self.config, self._host))

    def secrets(self) -> list[str]:
        return [self.config.url, self.config.routing_key]
