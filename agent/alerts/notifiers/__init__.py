"""Notifier types by name, their config models, and how to make one.

    log        a structured line per alert in Vigil's log
    webhook    Alertmanager's JSON body, to any URL (drives automation: see examples/retraining_webhook/)
    slack      a Slack incoming webhook
    pagerduty  PagerDuty Events API v2
    email      SMTP with STARTTLS and auth

(The `otlp` output is not a notifier here: every alert state change goes, as
an OTLP log record, to the logs pipelines that list the processor among their
receivers.)
"""

from __future__ import annotations

import logging

from agent.alerts.notifiers.base import NotifierConfig
from agent.alerts.notifiers.email import EmailConfig, EmailNotifier
from agent.alerts.notifiers.http import (PagerDutyConfig, PagerDutyNotifier, SlackConfig, SlackNotifier,
                                         WebhookConfig, WebhookNotifier)
from agent.alerts.notifiers.log import LogConfig, LogNotifier

CONFIG_MODELS: dict[str, type[NotifierConfig]] = {
    "log": LogConfig,
    "webhook": WebhookConfig,
    "slack": SlackConfig,
    "pagerduty": PagerDutyConfig,
    "email": EmailConfig,
}


def create(id: str, config: NotifierConfig, *, logger: logging.Logger, host: str, timeout: float):
    kind = id.partition("/")[0]
    if kind == "log":
        return LogNotifier(id, config, logger)  # type: ignore[arg-type]
    if kind == "webhook":
        return WebhookNotifier(id, config)
    if kind == "slack":
        return SlackNotifier(id, config)
    if kind == "pagerduty":
        return PagerDutyNotifier(id, config, host)  # type: ignore[arg-type]
    if kind == "email":
        return EmailNotifier(id, config, timeout)  # type: ignore[arg-type]
    raise ValueError(f"unknown notifier type {kind!r}")
