"""The three OTLP signals and the unit that flows through pipelines: `Batch`.

A batch is one OTLP export request of one signal (`ExportTraceServiceRequest`,
...). It holds the parsed message, its wire bytes, or both, and produces the
other lazily: a batch nobody edits is forwarded as the bytes it arrived with,
and two batches are merged by concatenating their bytes (protobuf appends
repeated fields when messages are concatenated).
"""

from __future__ import annotations

import enum
from typing import Any

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from agent.wirecheck import WireCheck

try:  # agent/_otlpscan.c, where it was built; without it metric points are counted on parsed messages
    from agent._otlpscan import metric_point_count as _wire_point_count
except ImportError:
    _wire_point_count = None


class Signal(enum.Enum):
    TRACES = "traces"
    METRICS = "metrics"
    LOGS = "logs"

    @property
    def request_type(self) -> type[Message]:
        return _REQUEST_TYPES[self]

    @property
    def response_type(self) -> type[Message]:
        return _RESPONSE_TYPES[self]

    @property
    def item_name(self) -> str:
        """What one item of this signal is called in counters and messages."""
        return _ITEM_NAMES[self]

    @property
    def grpc_method(self) -> str:
        """The full gRPC method path of the OTLP collector service."""
        return _GRPC_METHODS[self]


_REQUEST_TYPES = {
    Signal.TRACES: trace_service_pb2.ExportTraceServiceRequest,
    Signal.METRICS: metrics_service_pb2.ExportMetricsServiceRequest,
    Signal.LOGS: logs_service_pb2.ExportLogsServiceRequest,
}
_RESPONSE_TYPES = {
    Signal.TRACES: trace_service_pb2.ExportTraceServiceResponse,
    Signal.METRICS: metrics_service_pb2.ExportMetricsServiceResponse,
    Signal.LOGS: logs_service_pb2.ExportLogsServiceResponse,
}
_ITEM_NAMES = {Signal.TRACES: "spans", Signal.METRICS: "metric_points", Signal.LOGS: "log_records"}
_GRPC_METHODS = {
    Signal.TRACES: "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    Signal.METRICS: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    Signal.LOGS: "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}

# The repeated fields from a request down to its items: request -> resource -> scope -> item.
_LEVELS = {
    Signal.TRACES: ("resource_spans", "scope_spans", "spans"),
    Signal.METRICS: ("resource_metrics", "scope_metrics", "metrics"),
    Signal.LOGS: ("resource_logs", "scope_logs", "log_records"),
}

def metric_point_count(metric: Any) -> int:
    kind = metric.WhichOneof("data")
    return len(getattr(metric, kind).data_points) if kind else 0


def _item_weight(signal: Signal, item: Any) -> int:
    # A metric counts by its data points, as the Collector's batch processor does.
    return metric_point_count(item) if signal is Signal.METRICS else 1


class Batch:
    """One OTLP export request, as a message, as wire bytes, or both."""

    __slots__ = ("signal", "_message", "_wire", "_items")

    def __init__(self, signal: Signal, message: Message | None = None, wire: bytes | None = None,
                 items: int | None = None) -> None:
        if message is None and wire is None:
            raise ValueError("a batch needs a message or wire bytes")
        self.signal = signal
        self._message = message
        self._wire = wire
        self._items = items

    @classmethod
    def from_wire(cls, signal: Signal, wire: bytes) -> Batch:
        """Check `wire`; raises `DecodeError` if it is not a valid request.

        Where the compiled check can vouch for the bytes (agent/wirecheck.py), the batch holds them
        and their item count, and is parsed only if something reads its message; else it is parsed now.
        """
        items = _checked_items(signal, wire)
        if items is not None:
            return cls(signal, wire=wire, items=items)
        message = signal.request_type()
        message.ParseFromString(wire)
        return cls(signal, message, wire)

    @property
    def message(self) -> Message:
        """The request, for reading. Use `edit()` to change it."""
        if self._message is None:
            message = self.signal.request_type()
            message.ParseFromString(self._wire)
            self._message = message
        return self._message

    def edit(self, same_items: bool = False) -> Message:
        """The request, for changing in place: its cached wire bytes are dropped.

        Pass `same_items=True` when the change adds or removes no items, so the count is kept.
        """
        message = self.message
        self._wire = None
        if not same_items:
            self._items = None
        return message

    def wire(self) -> bytes:
        if self._wire is None:
            self._wire = self._message.SerializeToString()
        return self._wire

    @property
    def items(self) -> int:
        """Spans, metric data points or log records in the batch."""
        if self._items is None:
            top, middle, bottom = _LEVELS[self.signal]
            if self.signal is Signal.METRICS:
                self._items = _points_on_wire(self._wire) if self._wire is not None else None
                if self._items is None:
                    self._items = sum(metric_point_count(item) for _, _, item in self._walk_items())
            else:  # spans and log records count one each: no need to visit them
                self._items = sum(len(getattr(scope, bottom)) for resource in getattr(self.message, top)
                                  for scope in getattr(resource, middle))
        return self._items

    def copy(self) -> Batch:
        """An independent batch with the same content, for a consumer that edits."""
        return Batch(self.signal, wire=self.wire(), items=self._items)

    def _walk_items(self):
        top, middle, bottom = _LEVELS[self.signal]
        for resource in getattr(self.message, top):
            for scope in getattr(resource, middle):
                for item in getattr(scope, bottom):
                    yield resource, scope, item

    def resources(self) -> Any:
        """The repeated resource-level field (`resource_spans`, ...)."""
        return getattr(self.message, _LEVELS[self.signal][0])

    def __repr__(self) -> str:
        return f"Batch({self.signal.value}, items={self.items})"


_WIRE_CHECKS = {signal: WireCheck(_REQUEST_TYPES[signal], _LEVELS[signal]) for signal in Signal}


def _checked_items(signal: Signal, wire: bytes) -> int | None:
    """The items of `wire` when the compiled check vouches for it as a request of `signal`, else None."""
    items = _WIRE_CHECKS[signal].items(wire)
    if items is None or signal is not Signal.METRICS:
        return items
    # A metric counts by its data points, with protobuf's reading of the `data` oneof: a walk of its own
    # (the check counts messages, not what a oneof leaves of them).
    return _points_on_wire(wire)


def _points_on_wire(wire: bytes) -> int | None:
    """Metric points counted on the wire bytes where the compiled reader is built: the same count as on
    the parsed message, without visiting every metric. None where the reader leaves the bytes to protobuf."""
    if _wire_point_count is None:
        return None
    try:
        return _wire_point_count(wire)
    except ValueError:
        return None


def merge(batches: list[Batch]) -> Batch:
    """One batch holding every item of `batches`, in order (all of one signal)."""
    if len(batches) == 1:
        return batches[0]
    signal = batches[0].signal
    items = sum(b.items for b in batches)
    return Batch(signal, wire=b"".join(b.wire() for b in batches), items=items)


def split(batch: Batch, max_items: int) -> list[Batch]:
    """Split `batch` into batches of at most `max_items` items each, keeping order.

    Resources and scopes are repeated in every part that holds some of their
    items. A single metric is never split, so a metric with more points than
    `max_items` travels alone in a larger part.
    """
    if batch.items <= max_items:
        return [batch]
    signal = batch.signal
    top, middle, bottom = _LEVELS[signal]
    parts: list[Batch] = []
    current = signal.request_type()
    count = 0
    last_resource = last_scope = None
    resource_out = scope_out = None

    def flush() -> None:
        nonlocal current, count, last_resource, last_scope
        if count:
            parts.append(Batch(signal, current, items=count))
        current = signal.request_type()
        count = 0
        last_resource = last_scope = None

    for resource, scope, item in batch._walk_items():
        weight = _item_weight(signal, item)
        if count and count + weight > max_items:
            flush()
        if resource is not last_resource:
            resource_out = getattr(current, top).add()
            resource_out.resource.CopyFrom(resource.resource)
            resource_out.schema_url = resource.schema_url
            last_resource, last_scope = resource, None
        if scope is not last_scope:
            scope_out = getattr(resource_out, middle).add()
            scope_out.scope.CopyFrom(scope.scope)
            scope_out.schema_url = scope.schema_url
            last_scope = scope
        getattr(scope_out, bottom).add().CopyFrom(item)
        count += weight
    flush()
    return parts


__all__ = ["Batch", "DecodeError", "Signal", "merge", "split", "metric_point_count"]
