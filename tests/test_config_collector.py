"""Collector configs read as written: the distributions' defaults, service.telemetry, components Vigil lacks."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import aiohttp
import pytest
import yaml

from agent import config as config_module, logs
from tests.conftest import free_port, otlp_receiver_config, running_vigil
from tests.otlp_data import send_span_batches
from tests.vigil_cli import run_cli

COLLECTOR = Path(__file__).parent / "testdata" / "collector"
DISTRIBUTIONS = ["otelcol.yaml", "otelcol-contrib.yaml"]
RECEIVERS = "hostmetrics, inference, inference_proxy, kserve, nvml, otlp, predictionlog, prometheus"


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_a_distributions_default_config_names_exactly_the_receivers_vigil_lacks(name):
    path = COLLECTOR / name
    result = run_cli("validate", "-c", str(path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}: receivers.jaeger: unknown receiver type 'jaeger' (available: {RECEIVERS})",
        f"{path}: receivers.zipkin: unknown receiver type 'zipkin' (available: {RECEIVERS})",
    ]


def _runnable(name: str) -> tuple[dict, dict[str, int]]:
    """The distribution's config without the receivers Vigil lacks, every port a free one, and the
    health check at its default host on the admin endpoint's port, as it is by default."""
    text = (COLLECTOR / name).read_text()
    ports: dict[str, int] = {}

    def free(match: re.Match) -> str:
        ports[match.group(1)] = free_port()
        return f"127.0.0.1:{ports[match.group(1)]}"

    raw = yaml.safe_load(re.sub(r"0\.0\.0\.0:(\d+)", free, text))
    del raw["receivers"]["jaeger"], raw["receivers"]["zipkin"]
    raw["service"]["pipelines"]["traces"]["receivers"] = ["otlp"]
    ports["admin"] = free_port()
    raw["service"]["admin"] = {"endpoint": f"127.0.0.1:{ports['admin']}"}
    raw["extensions"]["health_check"] = {"endpoint": f"localhost:{ports['admin']}"}
    return raw, ports


@pytest.mark.parametrize("name", DISTRIBUTIONS)
async def test_a_distributions_default_config_runs_as_written_where_vigil_has_the_components(name, caplog):
    raw, ports = _runnable(name)
    config = config_module.from_dict(raw)
    assert sorted(config.warnings) == sorted([
        f"extensions.health_check: endpoint localhost:{ports['admin']} is the admin endpoint's "
        f"(127.0.0.1:{ports['admin']}), which serves the health check at /",
        "extensions.pprof: accepted but does nothing in Vigil: it profiles Go programs; profile Vigil with "
        "py-spy (py-spy top --pid PID)",
        "extensions.zpages: accepted but does nothing in Vigil: the status page and /api/v1/status on Vigil's "
        "admin endpoint show its pipelines and components",
    ])
    async with running_vigil(raw) as vigil:
        await send_span_batches(f"127.0.0.1:{ports['4317']}", batches=2, spans=3)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{ports['admin']}/") as response:
                assert response.status == 200
                assert (await response.json())["status"] == "Server available"
            # service.telemetry.metrics.address: Vigil's own metrics, where Collectors publish theirs.
            async with session.get(f"http://127.0.0.1:{ports['8888']}/metrics") as response:
                metrics = await response.text()
        assert vigil.counter("vigil_receiver_accepted_spans") == 6
    assert re.search(r'^vigil_receiver_accepted_spans_total\{.*receiver="otlp".*\} 6\.0$', metrics, re.M)
    started = [r.getMessage() for r in caplog.records if "accepted but does nothing" in r.getMessage()]
    assert [m.split(":")[0] for m in started] == ["extensions.pprof", "extensions.zpages"]


def test_a_collector_config_with_components_vigil_lacks_names_exactly_those(tmp_path):
    path = tmp_path / "contrib.yaml"
    path.write_text("""
extensions:
  health_check:
  k8s_observer:
receivers:
  otlp:
    protocols:
      grpc:
  k8s_cluster:
processors:
  batch:
  k8sattributes:
connectors:
  spanmetrics:
exporters:
  otlp:
    endpoint: backend:4317
  loki:
    endpoint: http://loki:3100/loki/api/v1/push
service:
  extensions: [health_check, k8s_observer]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [k8sattributes, batch]
      exporters: [otlp, spanmetrics]
    metrics:
      receivers: [spanmetrics, k8s_cluster]
      processors: [batch]
      exporters: [otlp]
    logs:
      receivers: [otlp]
      exporters: [loki]
""")
    result = run_cli("validate", "-c", str(path))
    assert result.returncode == 1
    lines = [line.removeprefix(f"{path}: ") for line in result.stderr.splitlines()]
    assert [line.split(" (available")[0] for line in lines] == [
        "receivers.k8s_cluster: unknown receiver type 'k8s_cluster'",
        "processors.k8sattributes: unknown processor type 'k8sattributes'",
        "exporters.loki: unknown exporter type 'loki'",
        "extensions.k8s_observer: unknown extension type 'k8s_observer'",
        "connectors.spanmetrics: Vigil has no connectors (a processor that derives data, like ml, is listed "
        "among a pipeline's receivers instead)",
    ]


# --- service.telemetry ---------------------------------------------------------------------------


def _doc(telemetry: dict) -> dict:
    return {"receivers": {"otlp": otlp_receiver_config(http=False)}, "exporters": {"debug": {}},
            "service": {"telemetry": telemetry,
                        "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}}}}


async def test_a_pull_reader_serves_vigils_own_metrics_on_its_host_and_port():
    port = free_port()
    readers = [{"pull": {"exporter": {"prometheus": {"host": "127.0.0.1", "port": port}}}}]
    async with running_vigil(_doc({"metrics": {"level": "detailed", "readers": readers}})):
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
            assert "vigil_process_memory_rss_bytes" in await response.text()


async def test_level_none_serves_nothing_and_says_so():
    port = free_port()
    raw = _doc({"metrics": {"level": "none", "address": f"127.0.0.1:{port}"}})
    assert "service.telemetry.metrics.level: none turns Vigil's own metrics off here: address and readers are " \
           "not served" in config_module.from_dict(raw).warnings
    async with running_vigil(raw) as vigil:
        assert vigil.service.extensions.metrics_endpoints == []
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectionError):
                await session.get(f"http://127.0.0.1:{port}/metrics")


def test_a_periodic_reader_is_refused_with_the_reason():
    raw = _doc({"metrics": {"readers": [{"periodic": {"exporter": {"otlp": {"endpoint": "x:4317"}}}}]}})
    with pytest.raises(config_module.ConfigError) as info:
        config_module.from_dict(raw)
    assert info.value.problems == [
        "service.telemetry.metrics.readers[0]: periodic readers (pushing Vigil's own metrics) are not supported: "
        "use a pull reader, or scrape the admin endpoint's /metrics with a prometheus receiver"]


def test_the_collectors_log_keys_are_accepted_and_the_ignored_ones_warned():
    raw = _doc({"logs": {"level": "debug", "encoding": "json", "development": True,
                         "sampling": {"enabled": True, "tick": "10s", "initial": 10, "thereafter": 100},
                         "disable_caller": True, "error_output_paths": ["stdout"]},
                "traces": {"processors": []}})
    assert [w for w in config_module.from_dict(raw).warnings if w.startswith("service.telemetry")] == [
        "service.telemetry.logs.development is ignored",
        "service.telemetry.logs.disable_caller is ignored",
        "service.telemetry.logs.error_output_paths (errors go where output_paths says) is ignored",
        "service.telemetry.logs.sampling (Vigil summarises its repeated log lines itself) is ignored",
        "service.telemetry.traces is ignored: Vigil does not trace itself",
    ]


def test_logs_initial_fields_and_output_paths_reach_the_log_file(tmp_path):
    log_file = tmp_path / "vigil.log"
    config_path = tmp_path / "vigil.yaml"
    config_path.write_text(yaml.safe_dump(_doc({"logs": {
        "encoding": "json", "initial_fields": {"host.role": "inference"}, "output_paths": [str(log_file)]}})))
    result = run_cli("validate", "-c", str(config_path))
    assert result.returncode == 0, result.stderr
    logs.setup(config_module.load(config_path).service.telemetry.logs)
    try:
        logging.getLogger("vigil.test").warning("hello")
    finally:
        logs.setup(config_module.LogsTelemetryConfig())
    line = json.loads(log_file.read_text().splitlines()[-1])
    assert (line["msg"], line["host.role"], line["level"]) == ("hello", "inference", "warning")
