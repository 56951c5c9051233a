"""What every notifier shares: the notification, delivery with retries, and keeping secrets out of logs.

A notification is one alert group's news: the alerts of the group that fire
and those that resolved since its last notification. Each notifier has its
own bounded queue and worker, so a slow or dead endpoint delays only itself:
evaluation and the pipelines never wait on delivery. An attempt has a timeout;
retryable failures (connection errors, timeouts, 408, 429 and 5xx answers,
SMTP 4xx replies) are tried again with exponential backoff (honouring
Retry-After) until `max_elapsed_time`; then, or at once for a permanent
failure, the notification is dropped, counted in `vigil_notifier_failed` and
logged, without URLs, keys or passwords.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import Field

from agent.alerts.engine import FIRING, Alert
from agent.alerts.rules import PRIORITY, SEVERITY_ORDER
from agent.configmodel import Duration, StrictModel
from agent.telemetry import SelfTelemetry


class NotifierConfig(StrictModel):
    send_resolved: bool = True  # also tell when the group's alerts resolve
    timeout: Duration | None = Field(None, gt=0)  # one attempt (delivery.timeout when unset)


@dataclass(frozen=True)
class Notification:
    processor: str  # the alerts processor id
    receiver: str  # the notifier id
    group_key: str
    group_labels: dict[str, str]
    firing: tuple[Alert, ...]
    resolved: tuple[Alert, ...]
    external_url: str = ""
    created: float = field(default_factory=time.time)

    @property
    def status(self) -> str:
        return FIRING if self.firing else "resolved"

    @property
    def alerts(self) -> tuple[Alert, ...]:
        return self.firing + self.resolved

    def common_labels(self) -> dict[str, str]:
        return _common([a.labels for a in self.alerts])

    def common_annotations(self) -> dict[str, str]:
        return _common([a.annotations for a in self.alerts])

    def severity(self) -> str:
        """The highest severity among the firing alerts (else among all)."""
        alerts = self.firing or self.resolved
        return min((a.severity for a in alerts), key=lambda s: SEVERITY_ORDER.get(s, 9), default="info")

    def title(self) -> str:
        """`[FIRING:2] FeatureDrift (fraud v3)`: status, count, then the group's label values."""
        status = f"FIRING:{len(self.firing)}" if self.firing else "RESOLVED"
        names = self.group_labels.get("alertname") or self.common_labels().get("alertname", "")
        others = [v for k, v in sorted(self.group_labels.items()) if k != "alertname"]
        text = f"[{status}] {names}".rstrip()
        return f"{text} ({' '.join(others)})" if others else text

    def line(self, alert: Alert) -> str:
        """One alert as one line for people: `[P0] summary (value 0.93)`."""
        state = "FIRING" if alert.state == FIRING else "RESOLVED"
        text = alert.annotations.get("summary") or _describe_labels(alert.labels)
        priority = PRIORITY.get(alert.severity, "")
        value = alert.annotations.get("value")
        return f"{state} [{priority}] {alert.labels.get('alertname', alert.rule)}: {text}" + (
            f" (value {value})" if value is not None else "")

    def without_resolved(self) -> Notification | None:
        if not self.firing:
            return None
        return Notification(self.processor, self.receiver, self.group_key, self.group_labels, self.firing, (),
                            self.external_url, self.created)


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in sorted(first.items()) if all(m.get(k) == v for m in maps[1:])}


def _describe_labels(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity"))


def rfc3339(seconds: float | None) -> str:
    if seconds is None:
        return "0001-01-01T00:00:00Z"  # Alertmanager's "no end" for firing alerts
    moment = dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- errors -------------------------------------------------------------------------------------


class DeliveryError(Exception):
    """A failed attempt. `retryable` ones are tried again; `retry_after` is the server's wish, in seconds."""

    def __init__(self, message: str, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Notifier(Protocol):
    id: str
    config: NotifierConfig

    async def start(self) -> None: ...

    async def send(self, notification: Notification) -> None:
        """Deliver once or raise DeliveryError (any other exception counts as retryable)."""

    async def close(self) -> None: ...

    def secrets(self) -> list[str]:
        """Strings that must never appear in a log line (URLs with tokens, keys, passwords)."""


_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)([^/\s'\"]+)[^\s'\"]*")


def redact(text: str, secrets: list[str]) -> str:
    """`text` with every secret replaced and every URL cut to its scheme and host."""
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "<redacted>")
    return _URL.sub(lambda m: f"{m.group(1)}{m.group(2).rpartition('@')[2]}/…", text)


# --- delivery -----------------------------------------------------------------------------------


@dataclass
class RetryPolicy:
    initial_interval: float = 1.0
    max_interval: float = 30.0
    max_elapsed_time: float = 300.0


class Delivery:
    """One notifier's queue and worker."""

    def __init__(self, notifier: Notifier, *, processor: str, telemetry: SelfTelemetry, log: logging.Logger,
                 timeout: float, retry: RetryPolicy, queue_size: int) -> None:
        self.notifier = notifier
        self._timeout = notifier.config.timeout or timeout
        self._retry = retry
        self._queue: asyncio.Queue[Notification] = asyncio.Queue(maxsize=queue_size)
        self._log = log
        self._attrs = {"processor": processor, "notifier": notifier.id}
        self._sent = telemetry.counter("vigil_notifier_sent", "notifications delivered, by notifier")
        self._failed = telemetry.counter("vigil_notifier_failed",
                                         "notifications given up on (after retries, or a full queue), by notifier")
        self._task: asyncio.Task | None = None
        self.sent = 0
        self.failed = 0
        self.last_error = ""
        self.failing = False  # the latest attempt failed: what it carries is not getting through

    async def start(self) -> None:
        await self.notifier.start()
        self._task = asyncio.create_task(self._work(), name=f"notifier-{self.notifier.id}")

    def offer(self, notification: Notification) -> bool:
        """Queue `notification` without waiting; False (and counted) when the queue is full."""
        if not self.notifier.config.send_resolved:
            notification = notification.without_resolved()  # type: ignore[assignment]
            if notification is None:
                return True
        try:
            self._queue.put_nowait(notification)
            return True
        except asyncio.QueueFull:
            self._fail("queue_full", "the queue is full (the endpoint is slow or down)")
            return False

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` for what is queued to go out, then stop the worker."""
        if self._task is not None:
            try:
                await asyncio.wait_for(self._queue.join(), timeout)
            except TimeoutError:
                self._log.warning("notifier %s: %d notifications not delivered before shutdown",
                                  self.notifier.id, self._queue.qsize())
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.notifier.close()

    async def _work(self) -> None:
        while True:
            notification = await self._queue.get()
            try:
                await self._deliver(notification)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in a notifier must not end its worker
                self._fail("error", "unexpected error")
                self._log.exception("notifier %s failed unexpectedly", self.notifier.id)
            finally:
                self._queue.task_done()

    async def _deliver(self, notification: Notification) -> None:
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                async with asyncio.timeout(self._timeout):  # not wait_for, which can swallow a cancellation
                    await self.notifier.send(notification)
                self.sent += 1
                self.failing = False
                self._sent.add(1, self._attrs)
                return
            except DeliveryError as exc:
                error, retryable, wait = str(exc), exc.retryable, exc.retry_after
            except TimeoutError:
                error, retryable, wait = f"no answer within {self._timeout:g}s", True, None
            except (OSError, ConnectionError) as exc:
                error, retryable, wait = f"{type(exc).__name__}: {exc}", True, None
            except Exception as exc:  # aiohttp's client errors and the like
                error, retryable, wait = f"{type(exc).__name__}: {exc}", True, None
            error = redact(error, self.notifier.secrets())
            self.failing, self.last_error = True, error
            backoff = min(self._retry.initial_interval * 2 ** (attempt - 1), self._retry.max_interval)
            backoff *= random.uniform(0.8, 1.2)
            if wait is not None:
                backoff = max(backoff, min(wait, self._retry.max_interval))
            elapsed = time.monotonic() - started
            if not retryable or elapsed + backoff > self._retry.max_elapsed_time:
                why = "permanent" if not retryable else "retries_exhausted"
                self._fail(why, error, notification, attempt)
                return
            self._log.info("notifier %s: attempt %d failed (%s); retrying in %.1fs", self.notifier.id, attempt,
                           error, backoff)
            await asyncio.sleep(backoff)

    def _fail(self, reason: str, error: str, notification: Notification | None = None, attempts: int = 0) -> None:
        self.failed += 1
        self.last_error = error
        self._failed.add(1, {**self._attrs, "reason": reason})
        what = f" {notification.title()}" if notification is not None else ""
        tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}" if attempts else ""
        self._log.warning("notifier %s: dropped notification%s%s: %s", self.notifier.id, what, tries, error)

    def status(self) -> dict[str, Any]:
        return {"sent": self.sent, "failed": self.failed, "queued": self.queued, "last_error": self.last_error,
                "up": not self.failing}

    def problem(self) -> str | None:
        """What an on-call should know while notifications are not getting through, else None."""
        if not self.failing:
            return None
        return (f"notifier {self.notifier.id} cannot deliver: {self.last_error} (retrying; {self.failed} "
                f"dropped so far, {self.queued} more waiting)")
