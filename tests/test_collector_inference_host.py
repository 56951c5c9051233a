"""config/examples/collector-inference-host.yaml, a Collector user's config, run as written by `vigil run`.

The real CLI in a subprocess, free ports given through the config's own ${env:...} references; an
OpenTelemetry SDK app sends its spans, metrics and logs; real OTLP/gRPC and OTLP/HTTP backends
(tests/exporters/backends.py) receive them. The file_storage queue keeps what the gRPC backend could
not take across a restart of the agent.
"""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.error
import urllib.request

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

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
            expected = sorted([s["name"] for s in sent.spans] + [s["name"] for s in late.spans])
            assert await async_wait_for(lambda: len(_span_names(traces_backend)) >= len(expected), 15), vigil.stderr()
            await _stop(vigil)
        assert before == len(sent.spans)
        assert _span_names(traces_backend) == expected
