"""OTLP requests for tests, and a plain gRPC sender into Vigil's receiver.

Items are named in order (`<prefix>-0`, `<prefix>-1`, ...) so a test can check
that they arrive complete, once and in order: `item_names(signal, message)`.
"""

from __future__ import annotations

from typing import Any

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


def trace_id(k: int) -> bytes:
    return (0xA0 << 120 | k).to_bytes(16, "big")


def span_id(k: int) -> bytes:
    return (0xB0 << 56 | k).to_bytes(8, "big")


def traces(spans: int = 3, *, resources: int = 1, scopes: int = 1, prefix: str = "span",
           start: int = 0, payload: str = "") -> ExportTraceServiceRequest:
    """`spans` spans in every scope of every resource, named `<prefix>-<k>` in order from `start`."""
    request = ExportTraceServiceRequest()
    k = start
    for r in range(resources):
        rs = request.resource_spans.add()
        _resource(rs, r)
        for s in range(scopes):
            ss = rs.scope_spans.add()
            _scope(ss, s)
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
    for r in range(resources):
        rm = request.resource_metrics.add()
        _resource(rm, r)
        for s in range(scopes):
            sm = rm.scope_metrics.add()
            _scope(sm, s)
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
    for r in range(resources):
        rl = request.resource_logs.add()
        _resource(rl, r)
        for s in range(scopes):
            sl = rl.scope_logs.add()
            _scope(sl, s)
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
    out = []
    if signal is Signal.TRACES:
        for rs in message.resource_spans:
            for ss in rs.scope_spans:
                out += [span.name for span in ss.spans]
    elif signal is Signal.METRICS:
        for rm in message.resource_metrics:
            for sm in rm.scope_metrics:
                out += [metric.name for metric in sm.metrics]
    else:
        for rl in message.resource_logs:
            for sl in rl.scope_logs:
                out += [record.body.string_value for record in sl.log_records]
    return out


async def send_grpc(endpoint: str, signal: Signal, payload: Message | bytes, timeout: float = 5.0,
                    metadata: tuple = ()) -> bytes:
    """One OTLP/gRPC export to `endpoint` (host:port) with a plain channel; raises AioRpcError."""
    body = payload if isinstance(payload, bytes) else payload.SerializeToString()
    async with grpc.aio.insecure_channel(endpoint) as channel:
        return await channel.unary_unary(signal.grpc_method)(body, timeout=timeout, metadata=metadata)
