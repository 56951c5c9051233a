"""The `alerts` processor: rules over the metrics flowing through, and notifications when they fire.

    processors:
      alerts:
        evaluation_interval: 15s
        rule_files: [config/alerts/inference-rules.yaml]
        notifiers:
          slack: {url: "${env:SLACK_WEBHOOK_URL}"}
          pagerduty: {routing_key: "${env:PAGERDUTY_ROUTING_KEY}"}
        route:
          notifiers: [slack]
          routes:
            - {matchers: ['severity="critical"'], notifiers: [pagerduty, slack]}
    service:
      pipelines:
        metrics: {receivers: [otlp, hostmetrics, nvml, ml], processors: [alerts, batch], exporters: [otlp]}
        logs:    {receivers: [otlp, alerts], processors: [batch], exporters: [otlp]}

In a metrics pipeline it passes data through unchanged and keeps, of the
metrics its rules name, what the rules need (`store`). Every
`evaluation_interval` it evaluates the rules (`engine`), routes and groups
what fires and resolves into notifications (`dispatch`), and hands those to
each notifier's own queue (`notifiers`). Every alert state change also goes,
as an OTLP log record, to the logs pipelines that list its id among their
receivers. Alerts, notification groups and silences are kept under
`state_dir`, so a restart neither forgets nor repeats them.

One `alerts` id is one engine: every metrics pipeline that lists it feeds the
same series. Its admin routes (`/api/v1/alerts`, `/api/v1/alerts/silences`)
serve `vigil alerts`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1 import logs_pb2

from agent import __version__
from agent.alerts import admin, notifiers as notifier_types
from agent.alerts.config import AlertsConfig
from agent.alerts.dispatch import Dispatcher, build_routes
from agent.alerts.engine import FIRING, PENDING, RESOLVED, Alert, RuleEngine, Transition
from agent.alerts.matchers import Matcher
from agent.alerts.notifiers.alertmanager import AlertmanagerConfig, AlertmanagerNotifier
from agent.alerts.notifiers.base import Delivery, Notification, RetryPolicy, rfc3339
from agent.alerts.rules import SEVERITY_ORDER
from agent.alerts.silences import Silence, Silences
from agent.alerts.state import StateFile
from agent.attributes import set_any_value
from agent.processors.observing import ObservingStage
from agent.component import Consumer, Factory, Kind, Settings
from agent.errors import ConsumerError
from agent.hostinfo import detect_host_resource
from agent.signals import Batch, Signal
from agent.statefile import safe_name

# Log severities of state changes: a firing critical alert is an ERROR record, and so on.
_SEVERITY_NUMBER = {"critical": logs_pb2.SEVERITY_NUMBER_ERROR, "warning": logs_pb2.SEVERITY_NUMBER_WARN,
                    "info": logs_pb2.SEVERITY_NUMBER_INFO}
_SEVERITY_TEXT = {logs_pb2.SEVERITY_NUMBER_ERROR: "ERROR", logs_pb2.SEVERITY_NUMBER_WARN: "WARN",
                  logs_pb2.SEVERITY_NUMBER_INFO: "INFO"}
_STATE_FILE, _SILENCES_FILE = "alerts.json", "silences.json"


class AlertsEngine:
    """One `alerts` processor id: its series, rules, alerts, silences and notifiers."""

    def __init__(self, config: AlertsConfig, settings: Settings, emit: dict[Signal, Consumer],
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.id = str(settings.id)
        self._name = settings.id.name
        self._log = settings.logger
        self._clock = clock
        self._emit_to = emit  # filled by the pipeline builder once the logs pipelines exist
        self._emit: Consumer | None = None
        limits = config.limits
        self.engine = RuleEngine(config.all_rules(), stale_after=config.stale_after, max_series=limits.max_series,
                                 max_samples=limits.max_samples, max_stored_samples=limits.max_stored_samples,
                                 max_buckets=limits.max_buckets, max_alerts=limits.max_alerts,
                                 trace_url=settings.trace_url)
        self.silences = Silences(limits.max_silences)
        routes, default = build_routes(config)
        self.dispatcher = Dispatcher(routes, default, self.silences)
        self._host = detect_host_resource()
        retry = config.delivery.retry_on_failure
        policy = RetryPolicy(retry.initial_interval, retry.max_interval, retry.max_elapsed_time)
        notify_log = logging.getLogger(f"{self._log.name}.notify")
        self.deliveries: dict[str, Delivery | AlertmanagerNotifier] = {}
        self._senders: dict[str, AlertmanagerNotifier] = {}  # sent alerts, not notifications
        for nid, nconfig in config.notifiers.items():
            if isinstance(nconfig, AlertmanagerConfig):  # Alertmanager groups and times alerts itself
                self.deliveries[nid] = self._senders[nid] = AlertmanagerNotifier(
                    nid, nconfig, processor=self.id, telemetry=settings.telemetry, log=notify_log,
                    timeout=config.delivery.timeout, retry=policy, evaluation_interval=config.evaluation_interval,
                    generator_url=config.external_url or (f"{settings.admin_url}/" if settings.admin_url else ""))
                continue
            notifier = notifier_types.create(nid, nconfig, logger=notify_log, host=self._host.get("host.name", ""),
                                             timeout=config.delivery.timeout)
            self.deliveries[nid] = Delivery(notifier, processor=self.id, telemetry=settings.telemetry,
                                            log=self._log, timeout=config.delivery.timeout, retry=policy,
                                            queue_size=config.delivery.queue_size)
        directory = Path(settings.state_dir) / "alerts" / safe_name(self.id)
        self._state = StateFile(directory / _STATE_FILE, self._log)
        self._silences_file = StateFile(directory / _SILENCES_FILE, self._log)
        self._write_lock = asyncio.Lock()
        self._next_eval = 0.0
        self._task: asyncio.Task | None = None
        self._started = False
        t = settings.telemetry
        self._attrs = {"processor": self.id}
        self._errors = t.counter("vigil_alerts_errors", "errors inside the alerts processor; data still passed on")
        self._dropped = t.counter("vigil_alerts_dropped", "what the limits did not keep, by what: points of "
                                  "new series, unreadable points, samples forgotten early, alerts")
        self._transitions = t.counter("vigil_alerts_transitions", "alert state changes, by state")
        self._refused_logs = t.counter("vigil_alerts_refused_log_records",
                                       "alert state changes the logs pipelines refused")

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self, run: bool = True) -> None:
        """Restore state, start the notifiers and (with `run`) the evaluation loop."""
        self._emit = self._emit_to.get(Signal.LOGS)
        await self._restore()
        for delivery in self.deliveries.values():
            await delivery.start()
        self._started = True
        if not self.engine.rules:
            self._log.warning("%s has no rules: nothing will alert", self.id)
        if run:
            self._task = asyncio.create_task(self._run(), name=f"{self.id}-evaluator")

    async def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._started:
            await self._persist()
        await asyncio.gather(*(d.drain(timeout=5.0) for d in self.deliveries.values()))
        self._started = False

    async def _restore(self) -> None:
        state = await asyncio.to_thread(self._state.load)
        silences = await asyncio.to_thread(self._silences_file.load)
        try:
            if isinstance(silences, list):
                for problem in self.silences.restore(silences):
                    self._log.warning("%s: a saved silence is left out: %s", self.id, problem)
            if isinstance(state, dict):
                restored = self.engine.restore(state.get("alerts", []))
                self.dispatcher.restore(state.get("groups", []))
                if restored:
                    self._log.info("%s: %d pending or firing alerts restored", self.id, restored)
        except (KeyError, TypeError, ValueError) as exc:
            self._log.warning("%s: cannot use the saved alert state (%s); starting without it", self.id, exc)
            self.engine.alerts.clear()
            self.dispatcher.groups.clear()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._errors.add(1, self._attrs)
                self._log.exception("%s: evaluation failed", self.id)
            now = self._clock()
            wake = min(t for t in (self._next_eval, self.dispatcher.next_due()) if t is not None)
            await asyncio.sleep(min(max(wake - now, 0.01), self.config.evaluation_interval))

    # --- the hot path ----------------------------------------------------------------------

    def record_failure(self) -> None:
        self._errors.add(1, self._attrs)

    def observe(self, batch: Batch) -> None:
        store = self.engine.store
        before = store.dropped_series, store.dropped_points, store.forgotten_samples
        store.observe(batch, self._clock())
        after = store.dropped_series, store.dropped_points, store.forgotten_samples
        for what, old, new in zip(("series", "points", "samples"), before, after):
            if new > old:
                self._dropped.add(new - old, {**self._attrs, "what": what})

    # --- evaluation --------------------------------------------------------------------------

    async def tick(self) -> list[Transition]:
        """Evaluate the rules if an evaluation is due, send what is due, keep the state; the changes."""
        now = self._clock()
        changes: list[Transition] = []
        if now >= self._next_eval:
            self._next_eval = now + self.config.evaluation_interval
            dropped = self.engine.dropped_alerts
            self.engine.store.prune(now)
            for rule in self.engine.rules.values():
                changes += self.engine.evaluate_rule(rule, now)
                await asyncio.sleep(0)  # one rule at a time: the pipelines go on between rules
            if self.engine.dropped_alerts > dropped:
                self._dropped.add(self.engine.dropped_alerts - dropped, {**self._attrs, "what": "alerts"})
                self._log.warning("%s: %d alerts not raised: limits.max_alerts (%d) are active", self.id,
                                  self.engine.dropped_alerts - dropped, self.config.limits.max_alerts)
            for change in changes:
                self._transitions.add(1, {**self._attrs, "state": change.state})
                if change.state in (FIRING, RESOLVED):
                    self.dispatcher.update(change.alert, now)
            # Firing alerts carry their latest value into repeats and the next notification.
            for alert in self.engine.alerts.values():
                if alert.state == FIRING:
                    self.dispatcher.update(alert.snapshot(), now)
            if self._senders:
                self._send_alerts(changes, now)
            if changes:
                await self._emit_changes(changes, now)
        for outgoing in self.dispatcher.due(now):
            for nid in outgoing.notifiers:
                delivery = self.deliveries.get(nid)
                if delivery is not None:
                    delivery.offer(Notification(self.id, nid, outgoing.group_key, outgoing.group_labels,
                                                outgoing.firing, outgoing.resolved, self.config.external_url,
                                                created=now))
        if self.silences.prune(now):
            await self._persist_silences()
        await self._persist()
        return changes

    def _send_alerts(self, changes: list[Transition], now: float) -> None:
        """Hand the alert senders (alertmanager) what fires and what just resolved, as routed to each."""
        firing = [a.snapshot() for a in self.engine.alerts.values() if a.state == FIRING]
        resolved = [c.alert for c in changes if c.state == RESOLVED]
        targets = {a.fingerprint: {n for r in self.dispatcher.routes_for(a.labels) for n in r.notifiers}
                   for a in firing + resolved}

        def silenced(alert: Alert) -> bool:
            return bool(self.silences.silencing(alert.labels, now))

        for nid, sender in self._senders.items():
            sender.update([a for a in firing if nid in targets[a.fingerprint]],
                          [a for a in resolved if nid in targets[a.fingerprint]], now, silenced)

    async def _emit_changes(self, changes: list[Transition], now: float) -> None:
        if self._emit is None:
            return
        batch = self.log_records(changes, now)
        try:
            await self._emit.consume(batch)
        except ConsumerError as exc:
            self._refused_logs.add(batch.items, self._attrs)
            self._log.warning("%s: logs pipelines refused %d alert state changes: %s", self.id, batch.items, exc)

    def log_records(self, changes: list[Transition], now: float) -> Batch:
        """The state changes as OTLP log records: body the summary, attributes the labels and the state."""
        request = ExportLogsServiceRequest()
        rl = request.resource_logs.add()
        for key, value in {"service.name": "vigil", "service.version": __version__,
                           **{k: v for k, v in self._host.items() if k == "host.name"}}.items():
            set_any_value(rl.resource.attributes.add(key=key).value, value)
        sl = rl.scope_logs.add()
        sl.scope.name, sl.scope.version = "vigil.alerts", __version__
        for change in changes:
            alert = change.alert
            record = sl.log_records.add(time_unix_nano=int(now * 1e9), observed_time_unix_nano=time.time_ns())
            number = (_SEVERITY_NUMBER.get(alert.severity, logs_pb2.SEVERITY_NUMBER_INFO)
                      if alert.state == FIRING else logs_pb2.SEVERITY_NUMBER_INFO)
            record.severity_number = number
            record.severity_text = _SEVERITY_TEXT[number]
            summary = alert.annotations.get("summary") or alert.rule
            record.body.string_value = f"{alert.state.upper()} {alert.rule}: {summary}"
            attributes: dict[str, Any] = {
                "event.name": "vigil.alert.state_change",
                "vigil.alert.name": alert.rule,
                "vigil.alert.state": alert.state,
                "vigil.alert.previous_state": change.previous,
                "vigil.alert.severity": alert.severity,
                "vigil.alert.priority": alert.annotations.get("priority", ""),
                "vigil.alert.fingerprint": alert.fingerprint,
                "vigil.alert.processor": self.id,
                "vigil.alert.silenced": bool(self.silences.silencing(alert.labels, now)),
            }
            if alert.value is not None and math.isfinite(alert.value):
                attributes["vigil.alert.value"] = float(alert.value)
            for key in ("summary", "description"):
                if alert.annotations.get(key):
                    attributes[f"vigil.alert.{key}"] = alert.annotations[key]
            # The alert's labels as they are (ml.model.name, host.name, ...), so a backend joins them
            # with the traces and metrics that carry the same attributes.
            for key, value in alert.labels.items():
                if key not in ("alertname", "severity"):
                    attributes.setdefault(key, value)
            for key, value in attributes.items():
                set_any_value(record.attributes.add(key=key).value, value)
        return Batch(Signal.LOGS, request, items=len(changes))

    async def _persist(self) -> None:
        data = {"alerts": self.engine.to_json(), "groups": self.dispatcher.to_json()}
        async with self._write_lock:
            try:
                await asyncio.to_thread(self._state.save, data)
            except OSError as exc:
                self._errors.add(1, self._attrs)
                self._log.warning("%s: cannot keep the alert state in %s (%s)", self.id, self._state.path, exc)

    async def _persist_silences(self) -> None:
        data = self.silences.to_json()
        async with self._write_lock:
            try:
                await asyncio.to_thread(self._silences_file.save, data)
            except OSError as exc:
                self._errors.add(1, self._attrs)
                self._log.warning("%s: cannot keep silences in %s (%s)", self.id, self._silences_file.path, exc)

    # --- what `vigil alerts` and the admin API see ------------------------------------------

    def alerts(self, state: str | None = None) -> list[dict[str, Any]]:
        now = self._clock()
        out = []
        for alert in sorted(self.engine.alerts.values(), key=_alert_order):
            if state and alert.state != state:
                continue
            item = alert.to_json()
            item["silenced_by"] = self.silences.silencing(alert.labels, now)
            out.append(item)
        return out

    async def add_silence(self, matchers: tuple[Matcher, ...], ends_at: float, starts_at: float | None = None,
                          created_by: str = "", comment: str = "") -> Silence:
        now = self._clock()
        silence = self.silences.add(matchers, now if starts_at is None else starts_at, ends_at, created_by, comment)
        self._log.info("%s: silence %s added until %s: %s (%s)", self.id, silence.id, rfc3339(ends_at),
                       ", ".join(str(m) for m in matchers), created_by or "anonymous")
        await self._persist_silences()
        return silence

    async def expire_silence(self, silence_id: str) -> bool:
        expired = self.silences.expire(silence_id, self._clock())
        if expired:
            self._log.info("%s: silence %s expired by request", self.id, silence_id)
            await self._persist_silences()
        return expired

    def now(self) -> float:
        return self._clock()

    def status(self) -> dict[str, Any]:
        now = self._clock()
        alerts = list(self.engine.alerts.values())
        return {
            "rules": len(self.engine.rules),
            "series": len(self.engine.store),
            "firing": sum(a.state == FIRING for a in alerts),
            "pending": sum(a.state == PENDING for a in alerts),
            "silences": sum(s.active(now) for s in self.silences.all()),
            "notifiers": {nid: d.status() for nid, d in self.deliveries.items()},
            # The service lists these among its notices (the status page, vigil status).
            "notices": [p for p in (d.problem() for d in self.deliveries.values()) if p],
        }

    def admin_routes(self) -> list[tuple[str, str, Callable[..., Any]]]:
        return admin.routes(self, admin.prefix(self._name))


def _alert_order(alert: Alert) -> tuple:
    return (alert.state != FIRING, SEVERITY_ORDER.get(alert.severity, 9), alert.rule, alert.fingerprint)


# The processor's step in each metrics pipeline: the engine keeps what its rules read, the data goes on.
AlertsStage = ObservingStage


def _create_engine(config: AlertsConfig, settings: Settings, emit: dict[Signal, Consumer]) -> AlertsEngine:
    return AlertsEngine(config, settings, emit)


def _create(config: AlertsConfig, settings: Settings, signal: Signal, next: Consumer,
            shared: AlertsEngine) -> AlertsStage:
    return AlertsStage(shared, next, settings.logger)


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type="alerts",
    config_model=AlertsConfig,
    create=_create,
    signals=frozenset({Signal.METRICS}),
    description="alert rules over metrics; notifications to webhook, Slack, PagerDuty, email, log",
    emits=frozenset({Signal.LOGS}),
    create_shared=_create_engine,
)
