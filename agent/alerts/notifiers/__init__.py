"""Notifier types by name, their config models, and how to make one.

    log        a structured line per alert in Vigil's log
    webhook    Alertmanager's JSON body, to any URL (drives automation: see examples/retraining_webhook/)
    slack      a Slack incoming webhook
    pagerduty  PagerDuty Events API v2
    email      SMTP with STARTTLS and auth
    alertmanager  Prometheus Alertmanager's API v2: the alerts themselves, re-sent as Prometheus does
                  (Alertmanager groups and notifies; the processor hands it alerts, not notifications)

(The `otlp` output is not a notifier here: every alert state change goes, as
an OTLP log record, to the logs pipelines that list the processor among their
receivers.)
"""

from __future__ import annotations

import importlib
import logging

from agent.alerts.notifiers.base import NotifierConfig

# type -> (module, config model, notifier class); a module is imported when a config names its type.
_TYPES: dict[str, tuple[str, str, str]] = {
    "log": ("agent.alerts.notifiers.log", "LogConfig", "LogNotifier"),
    "webhook": ("agent.alerts.notifiers.http", "WebhookConfig", "WebhookNotifier"),
    "slack": ("agent.alerts.notifiers.http", "SlackConfig", "SlackNotifier"),
    "pagerduty": ("agent.alerts.notifiers.http", "PagerDutyConfig", "PagerDutyNotifier"),
    "email": ("agent.alerts.notifiers.email", "EmailConfig", "EmailNotifier"),
    "alertmanager": ("agent.alerts.notifiers.alertmanager", "AlertmanagerConfig", "AlertmanagerNotifier"),
}
TYPES = tuple(_TYPES)


def config_model(kind: str) -> type[NotifierConfig] | None:
    if kind not in _TYPES:
        return None
    module, model, _ = _TYPES[kind]
    return getattr(importlib.import_module(module), model)


def create(id: str, config: NotifierConfig, *, logger: logging.Logger, host: str, timeout: float):
    kind = id.partition("/")[0]
    if kind not in _TYPES:
        raise ValueError(f"unknown notifier type {kind!r}")
    module, _, notifier = _TYPES[kind]
    cls = getattr(importlib.import_module(module), notifier)
    if kind == "log":
        return cls(id, config, logger)
    if kind == "pagerduty":
        return cls(id, config, host)
    if kind == "email":
        return cls(id, config, timeout)
    if kind == "alertmanager":
        return cls(id, config, log=logger, timeout=timeout)
    return cls(id, config)
