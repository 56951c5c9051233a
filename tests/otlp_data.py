"""OTLP requests for tests, and a plain gRPC sender into Vigil's receiver.

Items are named in order (`<prefix>-0`, `<prefix>-1`, ...) so a test can check
that they arrive complete, once and in order: `item_names(signal, message)`.
"""

from __future__ import annotations

from typing import Any, Iterator

import grpc
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent import attributes
from agent.signals import Signal


def _resource(target: Any, index: int) -> None:
    attributes.set_any_value(target.resource.attributes.add(key="service.name").value, f"svc-{index}")
    attributes.set_any_value(target.resource.attributes.add(key="host.id").value, index)
    target.schema_url = f"https://opentelemetry.io/schemas/1.{index}.0"


def _scope(target: Any, index: int) -> None:
    target.scope.name = f"scope-{index}"
    target.scope.version = "1.0"
    target.schema_url = f"https://example.com/scope/{index}"


# Per signal: the repeated fields from a request down to its items, and what names an item.
_LEVELS = {
    Signal.TRACES: ("resource_spans", "scope_spans", "spans", lambda span: span.name),
    Signal.METRICS: ("resource_metrics", "scope_metrics", "metrics", lambda metric: metric.name),
    Signal.LOGS: ("resource_logs", "scope_logs", "log_records", lambda record: record.body.string_value),
}


def _scopes(request: Message, signal: Signal, resources: int, scopes: int) -> Iterator[Any]:
    """`scopes` new scopes in each of `resources` new resources added to `request`, in order."""
    resources_field, scopes_field, _, _ = _LEVELS[signal]
    for r in range(resources):
        resource = getattr(request, resources_field).add()
        _resource(resource, r)
        for s in range(scopes):
            scope = getattr(resource, scopes_field).add()
            _scope(scope, s)
            yield scope


def trace_id(k: int) -> bytes:
    return (0xA0 << 120 | k).to_bytes(16, "big")


def span_id(k: int) -> bytes:
    return (0xB0 << 56 | k).to_bytes(8, "big")


def traces(spans: int = 3, *, resources: int = 1, scopes: int = 1, prefix: str = "span",
           start: int = 0, payload: str = "") -> ExportTraceServiceRequest:
    """`spans` spans in every scope of every resource, named `<prefix>-<k>` in order from `start`."""
    request = ExportTraceServiceRequest()
    k = start
    for ss in _scopes(request, Signal.TRACES, resources, scopes):
        for _ in range(spans):
            span = ss.spans.add(name=f"{prefix}-{k}", trace_id=trace_id(k), span_id=span_id(k),
                                parent_span_id=span_id(k + 1000), kind=2,
                                start_time_unix_nano=1_700_000_000_000_000_000 + k,
                                end_time_unix_nano=1_700_000_000_500_000_000 + k)
            attributes.set_any_value(span.attributes.add(key="ml.model.name").value, "churn")
            attributes.set_any_value(span.attributes.add(key="ml.prediction.confidence").value, 0.75)
            if payload:
                attributes.set_any_value(span.attributes.add(key="payload").value, payload)
            span.status.code = 2 if k % 2 else 1
            k += 1
    return request


def metrics(count: int = 3, *, points: int = 1, resources: int = 1, scopes: int = 1,
            prefix: str = "metric", start: int = 0) -> ExportMetricsServiceRequest:
    """`count` gauges of `points` data points in every scope, named `<prefix>-<k>` from `start`."""
    request = ExportMetricsServiceRequest()
    k = start
    for sm in _scopes(request, Signal.METRICS, resources, scopes):
        for _ in range(count):
            metric = sm.metrics.add(name=f"{prefix}-{k}", unit="1")
            for p in range(points):
                point = metric.gauge.data_points.add(time_unix_nano=1_700_000_000_000_000_000 + p,
                                                     as_double=k + p / 10)
                attributes.set_any_value(point.attributes.add(key="p").value, p)
            k += 1
    return request


def logs(records: int = 3, *, resources: int = 1, scopes: int = 1, prefix: str = "log",
         start: int = 0) -> ExportLogsServiceRequest:
    """`records` log records in every scope, with bodies `<prefix>-<k>` from `start`."""
    request = ExportLogsServiceRequest()
    k = start
    for sl in _scopes(request, Signal.LOGS, resources, scopes):
        for _ in range(records):
            record = sl.log_records.add(time_unix_nano=1_700_000_000_000_000_000 + k,
                                        severity_number=9, severity_text="INFO",
                                        trace_id=trace_id(k), span_id=span_id(k))
            record.body.string_value = f"{prefix}-{k}"
            k += 1
    return request


def request(signal: Signal, items: int = 3, *, prefix: str | None = None, start: int = 0) -> Message:
    """A request of `signal` holding `items` items (metrics: one point each)."""
    prefix = prefix or signal.value
    if signal is Signal.TRACES:
        return traces(items, prefix=prefix, start=start)
    if signal is Signal.METRICS:
        return metrics(items, prefix=prefix, start=start)
    return logs(items, prefix=prefix, start=start)


def item_names(signal: Signal, message: Message) -> list[str]:
    """The names of the items in `message`, in order (span name, metric name, log body)."""
    resources_field, scopes_field, items_field, name_of = _LEVELS[signal]
    return [name_of(item) for resource in getattr(message, resources_field)
            for scope in getattr(resource, scopes_field) for item in getattr(scope, items_field)]


async def send_grpc(endpoint: str, signal: Signal, payload: Message | bytes, timeout: float = 5.0,
                    metadata: tuple = ()) -> bytes:
    """One OTLP/gRPC export to `endpoint` (host:port) with a plain channel; raises AioRpcError."""
    body = payload if isinstance(payload, bytes) else payload.SerializeToString()
    async with grpc.aio.insecure_channel(endpoint) as channel:
        return await channel.unary_unary(signal.grpc_method)(body, timeout=timeout, metadata=metadata)


async def send_span_batches(endpoint: str, batches: int, spans: int = 2) -> None:
    """`batches` trace requests of `spans` spans each, one after another, named `span-0`, `span-1`, ...
    across them all."""
    for i in range(batches):
        await send_grpc(endpoint, Signal.TRACES, traces(spans, start=spans * i))
