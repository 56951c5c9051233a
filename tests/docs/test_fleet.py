"""docs/fleet.md's configs work: host → gateway → backend, with an SDK app on the host and the
backend a Vigil standing in for SigNoz's OTLP port."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from agent import config
from agent.service import Service
from tests.conftest import async_wait_for, read_json_lines, running_vigil
from tests.sdk_apps import send_telemetry

FLEET = Path(__file__).resolve().parent.parent.parent / "examples" / "fleet"


@pytest.mark.parametrize("name", ["host.yaml", "gateway.yaml"])
def test_the_fleet_configs_validate(name):
    loaded = config.parse((FLEET / name).read_text(), name, environ={"VIGIL_GATEWAY_TOKEN": "t"})
    assert loaded.warnings == []


def test_a_gateway_without_its_token_set_does_not_start_open():
    with pytest.raises(config.ConfigError, match="bearer token is empty"):
        config.parse((FLEET / "gateway.yaml").read_text(), "gateway.yaml", environ={})


async def _start(path: Path, environ: dict[str, str]) -> Service:
    service = Service(config.parse(path.read_text(), str(path), environ={**os.environ, **environ}))
    await service.start()
    return service


async def test_a_host_reaches_the_backend_through_a_gateway(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    out = tmp_path / "backend"
    backend = {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
               "exporters": {f"file/{s}": {"path": str(out / f"{s}.json")} for s in ("traces", "metrics")},
               "service": {"state_dir": str(tmp_path / "backend-state"), "pipelines": {
                   s: {"receivers": ["otlp"], "exporters": [f"file/{s}"]} for s in ("traces", "metrics")}}}
    async with running_vigil(backend) as signoz:
        gateway = await _start(FLEET / "gateway.yaml", {
            "GATEWAY_LISTEN": "127.0.0.1:0", "GATEWAY_LISTEN_HTTP": "127.0.0.1:0", "GATEWAY_NAME": "gw-test",
            "SIGNOZ_ENDPOINT": f"http://{signoz.grpc_endpoint()}", "VIGIL_GATEWAY_TOKEN": "fleet-secret"})
        try:
            from agent.component import ComponentId

            gateway_port = gateway.graph.receivers[ComponentId("otlp")].grpc_port
            monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "host"))
            host = await _start(FLEET / "host.yaml", {
                "VIGIL_OTLP_GRPC": "127.0.0.1:0", "VIGIL_OTLP_HTTP": "127.0.0.1:0",
                "VIGIL_GATEWAY": f"http://127.0.0.1:{gateway_port}", "VIGIL_GATEWAY_TOKEN": "fleet-secret"})
            try:
                port = host.graph.receivers[ComponentId("otlp")].grpc_port
                await asyncio.to_thread(send_telemetry, f"127.0.0.1:{port}", signals=("traces",))

                def spans():
                    return [(rs["resource"], s) for r in read_json_lines(out / "traces.json")
                            for rs in r["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]

                assert await async_wait_for(lambda: len(spans()) == 5, timeout=20)
            finally:
                await host.shutdown()
        finally:
            await gateway.shutdown()
    resource = {a["key"]: a["value"].get("stringValue") for a in spans()[0][0]["attributes"]}
    assert resource["vigil.gateway"] == "gw-test" and resource["service.name"] == "fraud-model"


async def test_the_gateway_refuses_a_host_without_the_token(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    from agent.component import ComponentId

    gateway = await _start(FLEET / "gateway.yaml", {
        "GATEWAY_LISTEN": "127.0.0.1:0", "GATEWAY_LISTEN_HTTP": "127.0.0.1:0",
        "SIGNOZ_ENDPOINT": "http://127.0.0.1:9", "VIGIL_GATEWAY_TOKEN": "fleet-secret"})
    try:
        port = gateway.graph.receivers[ComponentId("otlp")].grpc_port
        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Export(trace_service_pb2.ExportTraceServiceRequest(),
                                  metadata=(("authorization", "Bearer wrong"),))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await gateway.shutdown()
