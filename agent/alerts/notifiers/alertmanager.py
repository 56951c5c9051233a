"""The `alertmanager` notifier: alerts into Prometheus Alertmanager's API v2, sent as Prometheus sends them.

Alertmanager groups, waits and silences by itself, so this notifier is handed alerts (`update`), not
notifications: each goes to every URL when it fires, again every `resend_interval` as a lease (`endsAt`),
and resolved for 15 minutes. Each URL has its own queue (the latest body per alert) and worker, so a dead
Alertmanager delays only itself. What users see: docs/user-guide.md, "Into Alertmanager".
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import random
import re
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Callable

import aiohttp
from pydantic import Field, field_validator

from agent import __version__
from agent.alerts.engine import Alert
from agent.alerts.notifiers.base import DeliveryError, Notification, NotifierConfig, RetryPolicy, redact, rfc3339
from agent.configmodel import Duration, StrictModel
from agent.netconfig import TlsClientConfig, client_ssl_context
from agent.telemetry import SelfTelemetry

RESOLVED_RETENTION = 900.0  # seconds a resolved alert is re-sent, as Prometheus's rule manager keeps them
MAX_BATCH = 64  # alerts per post, Prometheus's notifier's batch size
_USER_AGENT = f"Vigil/{__version__}"
_INVALID = re.compile(r"[^A-Za-z0-9_]")


class BasicAuth(StrictModel):
    username: str = Field(min_length=1)
    password: str = ""


class AlertmanagerConfig(NotifierConfig):
    # Alertmanagers' base URLs (a path prefix is kept: `/api/v2/alerts` is added to it). Each gets every
    # alert, as Alertmanager's HA clustering expects; they deduplicate notifications among themselves.
    urls: list[str] = Field(min_length=1)
    resend_interval: Duration = Field(60.0, gt=0)  # a firing alert is sent again after this long
    # The alert's link back (`generatorURL`): the processor's external_url, else the status page.
    generator_url: str = ""
    basic_auth: BasicAuth | None = None
    headers: dict[str, str] = {}
    tls: TlsClientConfig = TlsClientConfig()
    queue_size: int = Field(10_000, ge=1)  # alerts waiting per Alertmanager; beyond, the oldest are dropped

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            parsed = urllib.parse.urlsplit(url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ValueError(f"{url!r} must be an http:// or https:// URL")
        if len(set(value)) != len(value):
            raise ValueError("a URL is listed twice")
        return value


def label_name(name: str) -> str:
    """A label or annotation name Alertmanager accepts (`[A-Za-z_][A-Za-z0-9_]*`): `ml.model.name` becomes
    `ml_model_name`, as the Prometheus exporter names it."""
    name = _INVALID.sub("_", name)
    return f"_{name}" if not name or name[0].isdigit() else name


def _label_set(values: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in sorted(values.items()):
        if value != "":
            out.setdefault(label_name(key), value)  # two names that sanitize alike: the first keeps it
    return out


def alert_body(alert: Alert, ends_at: float, generator_url: str) -> dict[str, Any]:
    """One alert as Alertmanager's API v2 takes it (a `postableAlert`); its annotations include the trace
    behind its value (trace_id, span_id, trace_url) when its metric had an exemplar."""
    body: dict[str, Any] = {
        "labels": _label_set(alert.labels),
        "annotations": _label_set(alert.annotations),
        "startsAt": rfc3339(alert.fired_at if alert.fired_at is not None else alert.active_since),
        "endsAt": rfc3339(ends_at),
    }
    if generator_url:
        body["generatorURL"] = generator_url
    return body


@dataclass
class _Tracked:
    """An alert this notifier sent (or is about to): when, and whether it resolved."""

    alert: Alert
    last_sent: float = -math.inf
    resolved_at: float | None = None
    sent_resolved: bool = False


@dataclass
class _Target:
    """One Alertmanager: its queue of alert bodies (by fingerprint, latest wins) and its counts."""

    url: str  # .../api/v2/alerts
    name: str  # scheme://host:port, for logs and metrics (no credentials, no path)
    pending: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # set while nothing is queued or in flight
    task: asyncio.Task | None = None
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    last_error: str = ""
    failing: bool = False

    def status(self) -> dict[str, Any]:
        return {"sent": self.sent, "failed": self.failed, "dropped": self.dropped, "queued": len(self.pending),
                "last_error": self.last_error, "up": not self.failing}


class AlertmanagerNotifier:
    """Sends the alerts routed to it to every configured Alertmanager; its own delivery (no `Delivery`)."""

    sends_alerts = True  # the processor calls update() with alerts, not offer() with notifications

    def __init__(self, id: str, config: AlertmanagerConfig, *, processor: str = "alerts",
                 telemetry: SelfTelemetry | None = None, log: logging.Logger | None = None,
                 timeout: float = 10.0, retry: RetryPolicy | None = None, evaluation_interval: float = 15.0,
                 generator_url: str = "") -> None:
        self.id = id
        self.config = config
        self._log = log or logging.getLogger(f"vigil.alerts.notify.{id}")
        self._timeout = config.timeout or timeout
        self._retry = retry or RetryPolicy()
        self._lease = 4 * max(config.resend_interval, evaluation_interval)
        self._generator_url = config.generator_url or generator_url
        self._tracked: dict[str, _Tracked] = {}
        self._targets = [_Target(_api_url(url), _display(url)) for url in config.urls]
        for target in self._targets:
            target.idle.set()
        self._headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT, **config.headers}
        if config.basic_auth is not None:
            token = f"{config.basic_auth.username}:{config.basic_auth.password}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
        self._session: aiohttp.ClientSession | None = None
        telemetry = telemetry or SelfTelemetry()
        self._attrs = {"processor": processor, "notifier": id}
        self._sent = telemetry.counter("vigil_alertmanager_alerts_sent", "alerts an Alertmanager accepted")
        self._failed = telemetry.counter("vigil_alertmanager_alerts_failed",
                                         "alerts in posts to an Alertmanager that failed (retried), by reason")
        self._dropped = telemetry.counter("vigil_alertmanager_alerts_dropped",
                                          "alerts never delivered to an Alertmanager: the queue was full, or "
                                          "it refused them")

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        ssl_context = client_ssl_context(self.config.tls) if any(
            t.url.startswith("https:") for t in self._targets) else None
        # Timeouts are per attempt (asyncio.timeout below); no cookies kept between posts.
        self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                              connector=aiohttp.TCPConnector(ssl=ssl_context) if ssl_context
                                              else None)
        for target in self._targets:
            target.task = asyncio.create_task(self._work(target), name=f"notifier-{self.id}-{target.name}")

    async def drain(self, timeout: float) -> None:
        """Give what is queued up to `timeout` to go out, then stop the workers."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(t.pending and not t.failing for t in self._targets) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        left = sum(len(t.pending) for t in self._targets)
        if left:
            self._log.warning("notifier %s: %d alerts not delivered before shutdown", self.id, left)
        tasks = [t.task for t in self._targets if t.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for target in self._targets:
            target.task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def close(self) -> None:
        await self.drain(0.0)

    def offer(self, notification: Notification) -> bool:
        """Notifications are not used: Alertmanager groups alerts itself (see update)."""
        return True

    # --- what to send ---------------------------------------------------------------------

    def update(self, firing: list[Alert], resolved: list[Alert], now: float,
               silenced: Callable[[Alert], bool] = lambda alert: False) -> None:
        """After an evaluation at `now`: the firing alerts routed here and those that just resolved."""
        seen: set[str] = set()
        for alert in firing:
            seen.add(alert.fingerprint)
            tracked = self._tracked.get(alert.fingerprint)
            if tracked is None or tracked.resolved_at is not None:
                if silenced(alert):
                    continue  # not in Alertmanager yet: the silence holds it back
                tracked = self._tracked[alert.fingerprint] = _Tracked(alert)
            tracked.alert = alert
        for alert in resolved:
            # Sent even when this process never sent it firing: a Vigil restarted meanwhile may have. To an
            # Alertmanager that never had it firing, a resolved alert is news of nothing.
            tracked = self._tracked.setdefault(alert.fingerprint, _Tracked(alert))
            if tracked.resolved_at is None:
                tracked.alert, tracked.resolved_at = alert, alert.resolved_at or now
        # Gone without a resolution (its rule or route went in a reload): resolved now.
        for fp, tracked in self._tracked.items():
            if fp not in seen and tracked.resolved_at is None:
                tracked.resolved_at = now
        due: list[tuple[str, dict[str, Any]]] = []
        for fp, tracked in list(self._tracked.items()):
            if tracked.resolved_at is not None:
                if now - tracked.resolved_at > RESOLVED_RETENTION or not self.config.send_resolved:
                    del self._tracked[fp]
                    continue
                if tracked.sent_resolved and tracked.last_sent + self.config.resend_interval >= now:
                    continue
                tracked.sent_resolved = True
                ends_at = tracked.resolved_at
            elif tracked.last_sent + self.config.resend_interval < now:
                ends_at = now + self._lease
            else:
                continue
            tracked.last_sent = now
            due.append((fp, alert_body(tracked.alert, ends_at, self._generator_url)))
        if due:
            self._enqueue(due)

    def _enqueue(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        for target in self._targets:
            for fp, body in items:
                target.pending.pop(fp, None)  # the newer body goes to the back
                target.pending[fp] = body
            over = len(target.pending) - self.config.queue_size
            if over > 0:
                for _ in range(over):
                    target.pending.popitem(last=False)
                self._drop(target, over, "queue_full", "the queue is full (the Alertmanager is slow or down)")
            target.idle.clear()
            target.wake.set()

    # --- delivery ---------------------------------------------------------------------------

    async def _work(self, target: _Target) -> None:
        failures = 0
        while True:
            if not target.pending:
                target.idle.set()
            await target.wake.wait()
            target.wake.clear()
            while target.pending:
                batch = dict(islice(target.pending.items(), MAX_BATCH))
                try:
                    async with asyncio.timeout(self._timeout):  # not wait_for, which can swallow a cancellation
                        await self._post(target, list(batch.values()))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    if not await self._failed_post(target, batch, exc, failures):
                        failures = 0
                    continue
                for fp, body in batch.items():
                    if target.pending.get(fp) is body:  # not replaced by a newer body meanwhile
                        del target.pending[fp]
                target.sent += len(batch)
                self._sent.add(len(batch), {**self._attrs, "alertmanager": target.name})
                if target.failing:
                    self._log.info("notifier %s: %s accepts alerts again", self.id, target.name)
                target.failing, failures = False, 0

    async def _post(self, target: _Target, bodies: list[dict[str, Any]]) -> None:
        assert self._session is not None, "notifier not started"
        data = json.dumps(bodies, separators=(",", ":")).encode()
        async with self._session.post(target.url, data=data, headers=self._headers) as response:
            if 200 <= response.status < 300:
                await response.read()
                return
            text = (await response.text(errors="replace"))[:200].strip()
            retryable = response.status in (408, 429) or response.status >= 500
            raise DeliveryError(f"HTTP {response.status}" + (f": {text}" if text else ""), retryable,
                                _retry_after(response.headers.get("Retry-After")))

    async def _failed_post(self, target: _Target, batch: dict[str, dict[str, Any]], exc: Exception,
                           failures: int) -> bool:
        """Count and log a failed post, then wait before the next try; False when it is not retried."""
        if isinstance(exc, DeliveryError):
            error, retryable, wait = str(exc), exc.retryable, exc.retry_after
        elif isinstance(exc, TimeoutError):
            error, retryable, wait = f"no answer within {self._timeout:g}s", True, None
        else:  # connection refused, reset, DNS: aiohttp's client errors and OSError
            error, retryable, wait = f"{type(exc).__name__}: {exc}", True, None
        error = redact(error, self.secrets())
        target.failed += len(batch)
        target.last_error = error
        reason = "refused" if not retryable else "error"
        self._failed.add(len(batch), {**self._attrs, "alertmanager": target.name, "reason": reason})
        if not retryable:
            for fp, body in batch.items():
                if target.pending.get(fp) is body:
                    del target.pending[fp]
            self._drop(target, len(batch), "refused", error)
            return False
        if not target.failing:
            self._log.warning("notifier %s: %s failed (%s); retrying with backoff, %d alerts waiting", self.id,
                              target.name, error, len(target.pending))
        target.failing = True
        backoff = min(self._retry.initial_interval * 2 ** (failures - 1), self._retry.max_interval)
        backoff *= random.uniform(0.8, 1.2)
        if wait is not None:
            backoff = max(backoff, min(wait, self._retry.max_interval))
        await asyncio.sleep(backoff)
        return True

    def _drop(self, target: _Target, count: int, reason: str, error: str) -> None:
        target.dropped += count
        target.last_error = error
        self._dropped.add(count, {**self._attrs, "alertmanager": target.name, "reason": reason})
        self._log.warning("notifier %s: %d alerts for %s dropped: %s", self.id, count, target.name, error)

    # --- what others see ----------------------------------------------------------------------

    def secrets(self) -> list[str]:
        out = [*self.config.urls, *self.config.headers.values()]
        if self.config.basic_auth is not None:
            out += [self.config.basic_auth.password, self._headers["Authorization"]]
        return out

    async def idle(self) -> None:
        """Return once every Alertmanager's queue is empty and no post is in flight: what was handed over
        by update() has been delivered or dropped (a failing Alertmanager keeps this waiting)."""
        while not all(t.idle.is_set() for t in self._targets):
            await next(t.idle for t in self._targets if not t.idle.is_set()).wait()

    @property
    def queued(self) -> int:
        return sum(len(t.pending) for t in self._targets)

    def problem(self) -> str | None:
        """Which Alertmanagers are not getting the alerts, else None."""
        down = [t for t in self._targets if t.failing]
        if not down:
            return None
        which = ", ".join(f"{t.name} ({len(t.pending)} alerts waiting: {t.last_error})" for t in down)
        return f"notifier {self.id}: {len(down)} of {len(self._targets)} Alertmanagers unreachable: {which}"

    def status(self) -> dict[str, Any]:
        targets = {t.name: t.status() for t in self._targets}
        return {"sent": sum(t.sent for t in self._targets), "failed": sum(t.failed for t in self._targets),
                "queued": self.queued,
                "last_error": next((t.last_error for t in self._targets if t.failing), ""),
                "alertmanagers": targets}


def _api_url(base: str) -> str:
    return base.rstrip("/") + "/api/v2/alerts"


def _display(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    return f"{parsed.scheme}://{parsed.netloc.rpartition('@')[2]}"


def _retry_after(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None
