"""What agent/_otlpscan.c reads OTLP bytes by: field numbers from the protobuf descriptors, names and
the string cut from agent/ml/vocabulary.py.

The C module calls `layout()` once, when it is imported, and keeps the numbers in
a table, so that no field number, attribute name or limit is written in C.
Per-signal entries are lists indexed traces, logs, metrics.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agent.ml.vocabulary import EXCEPTION_EVENT, EXCEPTION_TYPE, MAX_STRING_LENGTH, SERVICE_NAME

# Per signal: the request type and its path down to the items.
_PATHS = (
    (ExportTraceServiceRequest, "resource_spans", "scope_spans", "spans"),
    (ExportLogsServiceRequest, "resource_logs", "scope_logs", "log_records"),
    (ExportMetricsServiceRequest, "resource_metrics", "scope_metrics", "metrics"),
)


def _number(descriptor: Descriptor, name: str) -> int:
    return descriptor.fields_by_name[name].number


def layout() -> dict[str, Any]:
    requests, resources, scopes, scope_field, items = [], [], [], [], []
    for request, resource_list, scope_list, item_list in _PATHS:
        resource_type = request.DESCRIPTOR.fields_by_name[resource_list].message_type
        scope_type = resource_type.fields_by_name[scope_list].message_type
        requests.append(_number(request.DESCRIPTOR, resource_list))
        resources.append(_number(resource_type, "resource"))
        scopes.append(_number(resource_type, scope_list))
        scope_field.append(_number(scope_type, "scope"))
        items.append(_number(scope_type, item_list))
    span, event, value = Span.DESCRIPTOR, Span.Event.DESCRIPTOR, AnyValue.DESCRIPTOR
    return {
        "request_resources": requests, "resource_resource": resources, "resource_scopes": scopes,
        "scope_scope": scope_field, "scope_items": items,
        "item_attributes": [_number(span, "attributes"), _number(LogRecord.DESCRIPTOR, "attributes"), 0],
        "item_trace_id": [_number(span, "trace_id"), _number(LogRecord.DESCRIPTOR, "trace_id"), 0],
        "item_span_id": [_number(span, "span_id"), _number(LogRecord.DESCRIPTOR, "span_id"), 0],
        "resource_attributes": _number(Resource.DESCRIPTOR, "attributes"),
        "scope_name": _number(InstrumentationScope.DESCRIPTOR, "name"),
        "span_start": _number(span, "start_time_unix_nano"), "span_end": _number(span, "end_time_unix_nano"),
        "span_events": _number(span, "events"), "span_status": _number(span, "status"),
        "status_code": _number(Status.DESCRIPTOR, "code"),
        "event_name": _number(event, "name"), "event_attributes": _number(event, "attributes"),
        "key_value_key": _number(KeyValue.DESCRIPTOR, "key"), "key_value_value": _number(KeyValue.DESCRIPTOR, "value"),
        # In the scanner's kind order: string, bool, int, double, array, kvlist, bytes.
        "any_value": [_number(value, name) for name in ("string_value", "bool_value", "int_value", "double_value",
                                                        "array_value", "kvlist_value", "bytes_value")],
        "array_values": _number(ArrayValue.DESCRIPTOR, "values"),
        # Per member of Metric's `data` oneof: its field number and its data points' (gauge, sum, ...).
        "metric_data": [(member.number, _number(member.message_type, "data_points"))
                        for member in Metric.DESCRIPTOR.oneofs_by_name["data"].fields],
        "service_name": SERVICE_NAME.encode(), "exception_event": EXCEPTION_EVENT.encode(),
        "exception_type": EXCEPTION_TYPE.encode(),
        "max_string_length": MAX_STRING_LENGTH,
    }
