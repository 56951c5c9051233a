"""examples/signoz/ and examples/jaeger/: the configs validate, and the self-hosted SigNoz and Jaeger
ones deliver an SDK app's prediction spans to an OTLP backend (a second Vigil standing in for the
backend's OTLP gRPC port, as both take OTLP on 4317)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from agent import config
from agent.component import ComponentId, Kind
from agent.service import Service
from tests.conftest import async_wait_for, read_json_lines, running_vigil
from tests.sdk_apps import send_telemetry

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


@pytest.mark.parametrize("path", ["signoz/vigil.yaml", "signoz/vigil-cloud.yaml", "jaeger/vigil.yaml"])
def test_the_backend_examples_validate(path):
    loaded = config.parse((EXAMPLES / path).read_text(), path, environ={"SIGNOZ_INGESTION_KEY": "k"})
    assert loaded.warnings == []


def test_signoz_cloud_takes_the_region_and_the_key_from_the_environment():
    loaded = config.parse((EXAMPLES / "signoz/vigil-cloud.yaml").read_text(), "cloud",
                          environ={"SIGNOZ_REGION": "eu", "SIGNOZ_INGESTION_KEY": "secret"})
    exporter = loaded.component(Kind.EXPORTER, ComponentId("otlp", "signoz")).config
    assert exporter.endpoint == "ingest.eu.signoz.cloud:443"
    assert exporter.headers == {"signoz-ingestion-key": "secret"}


@pytest.mark.parametrize("path, variable", [("signoz/vigil.yaml", "SIGNOZ_ENDPOINT"),
                                            ("jaeger/vigil.yaml", "JAEGER_ENDPOINT")])
async def test_prediction_spans_reach_the_backend(tmp_path, monkeypatch, path, variable):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))  # the configs leave state_dir to systemd
    backend_file = tmp_path / "backend.json"
    backend = {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
               "exporters": {"file": {"path": str(backend_file)}},
               "service": {"state_dir": str(tmp_path / "backend-state"),
                           "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}}}}
    async with running_vigil(backend) as peer:
        environ = {**os.environ, variable: f"http://{peer.grpc_endpoint()}", "VIGIL_OTLP_GRPC": "127.0.0.1:0",
                   "VIGIL_OTLP_HTTP": "127.0.0.1:0", "VIGIL_DATA": str(tmp_path / "data")}
        loaded = config.parse((EXAMPLES / path).read_text(), path, environ=environ)
        agent = Service(loaded)
        await agent.start()
        try:
            port = agent.graph.receivers[ComponentId("otlp")].grpc_port
            await asyncio.to_thread(send_telemetry, f"127.0.0.1:{port}", signals=("traces",))
            spans = lambda: [s for r in read_json_lines(backend_file) for rs in r["resourceSpans"]  # noqa: E731
                             for ss in rs["scopeSpans"] for s in ss["spans"]]
            assert await async_wait_for(lambda: len(spans()) == 5, timeout=15)
        finally:
            await agent.shutdown()
    predictions = [s for s in spans() if any(a["key"] == "ml.model.name" for a in s.get("attributes", []))]
    assert len(predictions) == 4
