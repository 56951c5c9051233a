"""One POST from KServe's inference logger as a `LoggedEvent`, in CloudEvents binary or structured mode.

The logger (kserve/kserve pkg/logger/worker.go and handler.go, KServe 0.21 / master at 0217bdab;
the same since 0.7) sends each logged request and each 200 response as a CloudEvent in binary mode:
`ce-specversion: 1.0`, `ce-id` (the request's `Ce-Id` header, else a new UUID: the request and
its response share it), `ce-type` `org.kubeflow.serving.inference.request` or `.response`,
`ce-source`, `ce-time`, and the extensions `ce-inferenceservicename`, `ce-namespace`,
`ce-component`, `ce-endpoint` and `ce-metadata`; the body is the payload as served, with the
request's Content-Type. Structured mode (`application/cloudevents+json`) carries the same as one
JSON object with the payload in `data` (or `data_base64`).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
STRUCTURED = "application/cloudevents+json"
_BATCH = "application/cloudevents-batch+json"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EXTENSIONS = ("inferenceservicename", "namespace", "component", "endpoint")


class EventError(ValueError):
    """An event that cannot be read: `field` names what is wrong (a header or a JSON key)."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.status = status


@dataclass(frozen=True)
class LoggedEvent:
    id: str
    is_request: bool
    source: str
    time_ns: int | None  # `time`, when the event has a readable one
    service: str  # inferenceservicename
    namespace: str
    component: str
    endpoint: str
    data: bytes  # the payload as JSON text

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What pairs a request with its response: the same id from the same component of one service."""
        return (self.namespace, self.service, self.component, self.id)


def parse_event(headers: Mapping[str, str], content_type: str, body: bytes) -> LoggedEvent:
    """The event in `body` (structured mode) or in `headers` + `body` (binary mode); raises `EventError`."""
    if content_type == _BATCH:
        raise EventError("Content-Type", f"{_BATCH} is not read: send one event a request", status=415)
    if content_type == STRUCTURED:
        try:
            envelope = json.loads(body)
        except (ValueError, RecursionError) as exc:  # (UnicodeDecodeError is a ValueError)
            raise EventError("body", f"not a JSON CloudEvent ({exc})") from None
        if not isinstance(envelope, dict):
            raise EventError("body", "a structured CloudEvent must be a JSON object")
        return _event({k: v for k, v in envelope.items() if isinstance(v, str)}, _structured_data(envelope), "")
    attributes = {k.lower()[3:]: v for k, v in headers.items() if k.lower().startswith("ce-")}
    return _event(attributes, body, "ce-")


def _structured_data(envelope: dict[str, Any]) -> bytes:
    if "data_base64" in envelope:
        try:
            return base64.b64decode(envelope["data_base64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise EventError("data_base64", "not base64") from None
    if "data" not in envelope:
        raise EventError("data", "missing: the event carries no payload")
    data = envelope["data"]
    return data.encode() if isinstance(data, str) else json.dumps(data).encode()


def _event(attributes: Mapping[str, str], data: bytes, prefix: str) -> LoggedEvent:
    for name in ("specversion", "id", "type", "source"):
        if not attributes.get(name):
            raise EventError(prefix + name, "missing: a CloudEvent needs specversion, id, type and source")
    if attributes["specversion"] != "1.0":
        raise EventError(prefix + "specversion", f"{attributes['specversion'][:20]!r} is not 1.0")
    kind = attributes["type"]
    if kind not in (REQUEST_TYPE, RESPONSE_TYPE):
        raise EventError(prefix + "type", f"{kind[:80]!r} is neither {REQUEST_TYPE} nor {RESPONSE_TYPE}")
    return LoggedEvent(id=attributes["id"], is_request=kind == REQUEST_TYPE, source=attributes["source"],
                       time_ns=_time_ns(attributes.get("time")), data=data,
                       **{name if name != "inferenceservicename" else "service": attributes.get(name, "")
                          for name in _EXTENSIONS})


def _time_ns(text: str | None) -> int | None:
    if not text:
        return None
    try:  # RFC 3339; digits past the microsecond are dropped
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000
