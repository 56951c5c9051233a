"""config/examples/collector-inference-host.yaml, a Collector user's config, run as written by `vigil run`.

The real CLI in a subprocess, free ports given through the config's own ${env:...} references; an
OpenTelemetry SDK app sends its spans, metrics and logs; real OTLP/gRPC and OTLP/HTTP backends
(tests/exporters/backends.py) receive them. The filter, attributes and redaction processors screen
what leaves; the file_storage queue keeps what the gRPC backend could not take across a restart of
the agent.
"""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.error
import urllib.request

import hashlib

import grpc
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from agent import attributes
from agent.signals import Signal
from tests.conftest import async_wait_for, free_port
from tests.exporters.backends import GrpcReply, grpc_backend, http_backend
from tests.otlp_data import item_names
from tests.sdk_apps import send_telemetry
from tests.vigil_cli import REPO, clean_env, vigil_run

CONFIG = REPO / "config" / "examples" / "collector-inference-host.yaml"


def _get(url: str, accept: str = "*/*") -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _metric_names(backend) -> set[str]:
    names = set()
    for request in backend.ok_requests():
        if request.path == "/v1/metrics":
            message = metrics_service_pb2.ExportMetricsServiceRequest.FromString(request.body)
            names |= {m.name for rm in message.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    return names


def _span_names(backend) -> list[str]:
    return sorted(n for c in backend.ok_calls(Signal.TRACES) for n in item_names(Signal.TRACES, c.message))


def _send_screened(endpoint: str) -> None:
    """What the filter, attributes and redaction processors are there for: a health check's span, a debug
    log record, a user id, an authorization header, an e-mail address and a card number."""
    resource = Resource.create({"service.name": "support-api"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    tracer = tracer_provider.get_tracer("support-api")
    with tracer.start_as_current_span("GET /healthz", attributes={"url.path": "/healthz"}):
        pass
    with tracer.start_as_current_span("POST /support", attributes={
            "url.path": "/support", "enduser.id": "u-123", "http.request.header.authorization": "Bearer abc",
            "support.note": "reach me at ann@example.com, card 4111 1111 1111 1111"}):
        pass
    tracer_provider.shutdown()
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=endpoint,
                                                                                      insecure=True)))
    logger = logger_provider.get_logger("support-api")
    logger.emit(body="cache probe", severity_number=SeverityNumber.DEBUG)
    logger.emit(body="ticket opened by ann@example.com", severity_number=SeverityNumber.INFO)
    logger_provider.shutdown()


def _spans(backend, name: str) -> list[dict]:
    return [attributes.as_dict(span.attributes) for call in backend.ok_calls(Signal.TRACES)
            for rs in call.message.resource_spans for ss in rs.scope_spans for span in ss.spans if span.name == name]


def _log_bodies(backend) -> list[str]:
    return [record.body.string_value for call in backend.ok_calls(Signal.LOGS) for rl in call.message.resource_logs
            for sl in rl.scope_logs for record in sl.log_records]


async def _stop(vigil) -> None:
    vigil.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(vigil.proc.wait, 30) == 0, vigil.stderr()


async def test_the_collector_users_inference_host_config_runs_as_written(tmp_path):
    grpc_port, admin_port, telemetry_port = free_port(), free_port(), free_port()
    async with grpc_backend() as traces_backend, http_backend() as metrics_backend:
        env = clean_env(
            OTLP_GRPC_ENDPOINT=f"127.0.0.1:{grpc_port}", OTLP_HTTP_ENDPOINT="127.0.0.1:0",
            OTLP_BACKEND=traces_backend.endpoint, OTLPHTTP_BACKEND=metrics_backend.url(),
            VIGIL_ADMIN_ENDPOINT=f"127.0.0.1:{admin_port}",
            # The Collector's default host on the admin endpoint's port: the admin endpoint answers it.
            HEALTH_CHECK_ENDPOINT=f"localhost:{admin_port}",
            QUEUE_DIRECTORY=str(tmp_path / "queues"), TELEMETRY_PORT=str(telemetry_port),
            HOSTMETRICS_INTERVAL="1s")
        with vigil_run(["-c", str(CONFIG)], tmp_path, env) as vigil:
            await asyncio.to_thread(vigil.wait_running)
            status, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{admin_port}/")
            assert (status, json.loads(body)["status"]) == (200, "Server available")

            sent = await asyncio.to_thread(send_telemetry, f"127.0.0.1:{grpc_port}", predictions=4)
            assert await async_wait_for(lambda: len(_span_names(traces_backend)) >= len(sent.spans), 15)
            assert _span_names(traces_backend) == sorted(s["name"] for s in sent.spans)
            assert await async_wait_for(lambda: {"predictions", "system.cpu.time"} <= _metric_names(metrics_backend),
                                        15), _metric_names(metrics_backend)
            assert await async_wait_for(lambda: traces_backend.ok_calls(Signal.LOGS), 15)

            status, metrics = await asyncio.to_thread(_get, f"http://localhost:{telemetry_port}/metrics")
            assert status == 200 and "vigil_receiver_accepted_spans_total" in metrics

            # filter drops the health check and the debug record; attributes deletes the header and hashes
            # the user id; redaction masks the e-mail address and the card number.
            await asyncio.to_thread(_send_screened, f"127.0.0.1:{grpc_port}")
            assert await async_wait_for(lambda: _spans(traces_backend, "POST /support")
                                        and "ticket opened by ****" in _log_bodies(traces_backend), 15)
            assert _span_names(traces_backend) == sorted([s["name"] for s in sent.spans] + ["POST /support"])
            assert _spans(traces_backend, "POST /support") == [{
                "url.path": "/support", "enduser.id": hashlib.sha256(b"u-123").hexdigest(),
                "support.note": "reach me at ****, card ****"}]
            assert "cache probe" not in _log_bodies(traces_backend)

            # The backend goes down: what the agent accepts waits in the file_storage queue...
            traces_backend.default = GrpcReply(code=grpc.StatusCode.UNAVAILABLE, message="down")
            before = len(_span_names(traces_backend))
            late = await asyncio.to_thread(send_telemetry, f"127.0.0.1:{grpc_port}", service="late-app",
                                           predictions=2, signals=("traces",))
            assert await async_wait_for(lambda: traces_backend.attempts(Signal.TRACES) > len(traces_backend.ok_calls(
                Signal.TRACES)), 15)
            await _stop(vigil)
        assert (tmp_path / "queues" / "exporter_otlp").is_dir()
        log_lines = [json.loads(line) for line in vigil.stderr().splitlines() if line.startswith("{")]
        assert log_lines and all(line["host.role"] == "inference" for line in log_lines)

        # ...and reaches it after the agent's restart, once.
        traces_backend.default = GrpcReply()
        with vigil_run(["-c", str(CONFIG)], tmp_path, env) as vigil:
            await asyncio.to_thread(vigil.wait_running)
            expected = sorted([s["name"] for s in sent.spans] + ["POST /support"] + [s["name"] for s in late.spans])
            assert await async_wait_for(lambda: len(_span_names(traces_backend)) >= len(expected), 15), vigil.stderr()
            await _stop(vigil)
        assert before == len(sent.spans) + 1
        assert _span_names(traces_backend) == expected
