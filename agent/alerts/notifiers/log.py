"""The `log` notifier: one structured line per alert in each notification, in Vigil's own log."""

from __future__ import annotations

import json
import logging
from typing import Literal

from agent.alerts.engine import FIRING
from agent.alerts.notifiers.base import Notification, NotifierConfig

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class LogConfig(NotifierConfig):
    level: Literal["info", "warning", "error"] = "warning"  # resolved alerts are logged at info


def log_line(n: Notification, alert) -> str:
    """`alert=FeatureDrift status=firing severity=warning priority=P1 value=1 group=... labels={...}
    summary="..."`: key=value pairs, values with spaces JSON-quoted."""
    fields = {
        "alert": alert.labels.get("alertname", alert.rule),
        "status": FIRING if alert.state == FIRING else "resolved",
        "severity": alert.severity,
        "priority": alert.annotations.get("priority", ""),
        "value": alert.annotations.get("value", ""),
        "fingerprint": alert.fingerprint,
        "group": n.group_key,
        "labels": json.dumps(dict(sorted(alert.labels.items())), separators=(",", ":")),
        "summary": alert.annotations.get("summary", ""),
    }
    return " ".join(f"{k}={_quote(v)}" for k, v in fields.items() if v != "")


def _quote(value: str) -> str:
    return json.dumps(value) if (not value or any(c in value for c in ' "=')) and not value.startswith("{") \
        else value


class LogNotifier:
    def __init__(self, id: str, config: LogConfig, logger: logging.Logger) -> None:
        self.id = id
        self.config = config
        self._log = logger

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def secrets(self) -> list[str]:
        return []

    async def send(self, notification: Notification) -> None:
        for alert in notification.alerts:
            level = _LEVELS[self.config.level] if alert.state == FIRING else logging.INFO
            self._log.log(level, "%s", log_line(notification, alert))
