"""An instrumented app made of the real OpenTelemetry SDK, and readers for what a `file` exporter wrote.

`send_telemetry` sends spans, metrics and log records the way an inference app
would (OTLP over gRPC or HTTP) and returns what it sent, in the same plain form
that `spans_in`, `metric_totals_in` and `logs_in` read back from the OTLP/JSON
lines of a `file` exporter, so a test compares the two directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.otlp_json_reading import any_value, attributes_of, items


@dataclass
class Sent:
    """What `send_telemetry` sent, in the form the readers below return."""

    service: str
    spans: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    logs: list[dict[str, Any]] = field(default_factory=list)


def _exporters(grpc_endpoint: str | None, http_url: str | None):
    if grpc_endpoint is not None:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return (OTLPSpanExporter(endpoint=grpc_endpoint, insecure=True, timeout=10),
                OTLPMetricExporter(endpoint=grpc_endpoint, insecure=True, timeout=10),
                OTLPLogExporter(endpoint=grpc_endpoint, insecure=True, timeout=10))
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return (OTLPSpanExporter(endpoint=f"{http_url}/v1/traces", timeout=10),
            OTLPMetricExporter(endpoint=f"{http_url}/v1/metrics", timeout=10),
            OTLPLogExporter(endpoint=f"{http_url}/v1/logs", timeout=10))


def send_telemetry(grpc_endpoint: str | None = None, http_url: str | None = None, *,
                   service: str = "fraud-model", predictions: int = 4,
                   signals: tuple[str, ...] = ("traces", "metrics", "logs")) -> Sent:
    """Send one trace (a request span with `predictions` child prediction spans), two metrics and
    one log record per prediction, over OTLP/gRPC to `grpc_endpoint` or OTLP/HTTP to `http_url`.

    Blocking: each signal's provider is shut down (so flushed) before this returns.
    """
    assert (grpc_endpoint is None) != (http_url is None)
    span_exporter, metric_exporter, log_exporter = _exporters(grpc_endpoint, http_url)
    resource = Resource.create({"service.name": service, "deployment.environment": "test"})
    sent = Sent(service)
    labels = ["fraud", "ok"]

    tracer_provider = TracerProvider(resource=resource)
    recorded = InMemorySpanExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(recorded))
    if "traces" in signals:
        tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    tracer = tracer_provider.get_tracer("inference-app", "1.2.3")

    logger_provider = LoggerProvider(resource=resource)
    if "logs" in signals:
        logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    logger = logger_provider.get_logger("inference-app.predictions")

    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader] if "metrics" in signals else [])
    meter = meter_provider.get_meter("inference-app", "1.2.3")
    counter = meter.create_counter("predictions", unit="1", description="predictions made")
    histogram = meter.create_histogram("prediction.latency", unit="ms")

    with tracer.start_as_current_span("POST /predict", kind=trace.SpanKind.SERVER,
                                      attributes={"http.request.method": "POST", "http.response.status_code": 200}):
        for i in range(predictions):
            attributes = {
                "ml.model.name": "fraud", "ml.model.version": "v3",
                "ml.prediction.id": f"p-{i}", "ml.prediction.label": labels[i % 2],
                "ml.prediction.confidence": 0.5 + i / 100, "ml.feature.amount": 10 * i,
                "ml.feature.is_weekend": i % 2 == 0, "ml.prediction.probabilities": [0.25, 0.75],
            }
            with tracer.start_as_current_span(f"predict-{i}", attributes=attributes) as span:
                counter.add(1, {"label": labels[i % 2]})
                histogram.record(5.0 + i)
                logger.emit(body=f"prediction p-{i}", severity_number=SeverityNumber.INFO,
                            timestamp=time.time_ns(), attributes={"ml.prediction.id": f"p-{i}", "row": i},
                            context=trace.set_span_in_context(span))
                context = span.get_span_context()
                sent.logs.append({"body": f"prediction p-{i}", "severity": SeverityNumber.INFO.value,
                                  "attributes": {"ml.prediction.id": f"p-{i}", "row": i},
                                  "traceId": f"{context.trace_id:032x}", "spanId": f"{context.span_id:016x}"})
    tracer_provider.shutdown()
    logger_provider.shutdown()
    meter_provider.shutdown()

    for span in recorded.get_finished_spans():
        sent.spans.append({
            "name": span.name,
            "traceId": f"{span.context.trace_id:032x}",
            "spanId": f"{span.context.span_id:016x}",
            "parentSpanId": f"{span.parent.span_id:016x}" if span.parent else "",
            "attributes": {k: list(v) if isinstance(v, tuple) else v for k, v in span.attributes.items()},
        })
    sent.metrics = {"predictions": {"fraud": (predictions + 1) // 2, "ok": predictions // 2},
                    "prediction.latency": {"count": predictions,
                                           "sum": sum(5.0 + i for i in range(predictions))}}
    if "traces" not in signals:
        sent.spans = []
    if "logs" not in signals:
        sent.logs = []
    if "metrics" not in signals:
        sent.metrics = {}
    return sent


# --- reading OTLP/JSON lines back -------------------------------------------------------------------


def spans_in(lines: list[dict[str, Any]], service: str | None = None) -> list[dict[str, Any]]:
    """The spans in `lines` (of `service` only, if given), in the form of `Sent.spans`."""
    return [{"name": span["name"], "traceId": span["traceId"], "spanId": span["spanId"],
             "parentSpanId": span.get("parentSpanId", ""), "attributes": attributes_of(span.get("attributes", []))}
            for resource, _, span in items(lines, "traces")
            if service is None or resource.get("service.name") == service]


def logs_in(lines: list[dict[str, Any]], service: str | None = None) -> list[dict[str, Any]]:
    """The log records in `lines`, in the form of `Sent.logs`."""
    return [{"body": any_value(record.get("body", {})), "severity": record.get("severityNumber"),
             "attributes": attributes_of(record.get("attributes", [])),
             "traceId": record.get("traceId", ""), "spanId": record.get("spanId", "")}
            for resource, _, record in items(lines, "logs")
            if service is None or resource.get("service.name") == service]


def metric_totals_in(lines: list[dict[str, Any]], service: str | None = None) -> dict[str, Any]:
    """The `predictions` counter by label and the latency histogram's count and sum, in the form of
    `Sent.metrics`. Cumulative points: the last point of each series wins."""
    totals: dict[str, Any] = {}
    for resource, _, metric in items(lines, "metrics"):
        if service is not None and resource.get("service.name") != service:
            continue
        if metric["name"] == "predictions":
            series = totals.setdefault("predictions", {})
            for point in metric["sum"]["dataPoints"]:
                series[attributes_of(point["attributes"])["label"]] = int(point["asInt"])
        elif metric["name"] == "prediction.latency":
            for point in metric["histogram"]["dataPoints"]:
                totals["prediction.latency"] = {"count": int(point["count"]), "sum": point["sum"]}
    return totals


def by_span_id(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda item: item["spanId"])


def send_predictions(grpc_endpoint: str, rows: list[tuple[float, dict[str, Any]]], *,
                     service: str = "fraud-api") -> list[tuple[str, str]]:
    """One prediction span per row, each its own trace, as an inference app sends them over OTLP/gRPC:
    a row is (its latency in seconds, its `ml.*` attributes). Returns each span's (trace id, span id) as
    hex, in the rows' order. Blocking: flushed before it returns."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=grpc_endpoint, insecure=True, timeout=10),
                                                   max_queue_size=10_000, max_export_batch_size=100))
    tracer = provider.get_tracer("inference-app", "1.2.3")
    ids = []
    start = time.time_ns()
    for k, (seconds, attributes) in enumerate(rows):
        begin = start + k * 1_000_000
        span = tracer.start_span("predict", kind=trace.SpanKind.SERVER, attributes=attributes, start_time=begin)
        span.end(end_time=begin + round(seconds * 1e9))
        context = span.get_span_context()
        ids.append((f"{context.trace_id:032x}", f"{context.span_id:016x}"))
    assert provider.force_flush(30_000)
    provider.shutdown()
    return ids
