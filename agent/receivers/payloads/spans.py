"""Prediction rows → OTLP spans carrying their `ml.*` attributes."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def prediction_spans(rows: Iterable[Mapping[str, Any]], *, start_ns: int, end_ns: int, service_name: str,
                     error_type: str | None = None,
                     resource: Mapping[str, Any] | None = None) -> ExportTraceServiceRequest:
    """One SERVER span per row, all under one resource (`service.name` and `resource`), timed `start_ns`..`end_ns`.

    `error_type` marks every span failed (status ERROR, `error.type`), as a failed call is.
    """
    raise NotImplementedError
