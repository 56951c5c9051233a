"""Prediction rows → OTLP spans carrying their `ml.*` attributes, as an instrumented app would send them."""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from agent import __version__
from agent.attributes import set_any_value
from agent.ml import vocabulary as v

SCOPE_NAME = "vigil.payloads"


def prediction_spans(rows: Iterable[Mapping[str, Any]], *, start_ns: int, end_ns: int, service_name: str,
                     error_type: str | None = None,
                     resource: Mapping[str, Any] | None = None) -> ExportTraceServiceRequest:
    """One SERVER span per row, all under one resource (`service.name` and `resource`), timed `start_ns`..`end_ns`.

    The rows of one call share a trace. `error_type` marks every span failed (status ERROR,
    `error.type`), as a failed call is.
    """
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    set_any_value(resource_spans.resource.attributes.add(key=v.SERVICE_NAME).value, service_name)
    for key, value in (resource or {}).items():
        if key != v.SERVICE_NAME:
            set_any_value(resource_spans.resource.attributes.add(key=key).value, value)
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name, scope_spans.scope.version = SCOPE_NAME, __version__
    trace_id = os.urandom(16)
    for row in rows:
        span = scope_spans.spans.add(trace_id=trace_id, span_id=os.urandom(8),
                                     name=f"predict {row.get(v.MODEL_NAME, '')}".rstrip(),
                                     kind=trace_pb2.Span.SPAN_KIND_SERVER,
                                     start_time_unix_nano=start_ns, end_time_unix_nano=max(start_ns, end_ns))
        attributes = span.attributes
        for key, value in row.items():
            kind = type(value)  # the common scalars set directly: a row has hundreds of them
            if kind is float:
                attributes.add(key=key).value.double_value = value
            elif kind is str:
                attributes.add(key=key).value.string_value = value
            elif kind is int:
                attributes.add(key=key).value.int_value = value
            else:
                set_any_value(attributes.add(key=key).value, value)
        if error_type:
            span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
            set_any_value(span.attributes.add(key=v.ERROR_TYPE).value, error_type[:v.MAX_STRING_LENGTH])
    return request
