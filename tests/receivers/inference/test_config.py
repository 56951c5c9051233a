"""The `inference` receiver's config: the issue's one-line config loads, every default is in the model,
and each mistake is refused by `vigil validate` with its path and what to write instead."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from agent.component import ComponentId, Kind
from agent.config import ConfigError, from_dict
from agent.receivers.inference.config import InferenceReceiverConfig, server_url
from agent.receivers.inference.kinds import KIND_NAMES, kind
from tests.vigil_cli import run_cli


def _document(receiver: dict) -> dict:
    return {"receivers": {"inference": receiver}, "exporters": {"debug": {}},
            "service": {"pipelines": {"metrics": {"receivers": ["inference"], "exporters": ["debug"]}}}}


def test_the_issues_config_loads_with_its_defaults():
    config = from_dict(_document({"collection_interval": "10s", "servers": [
        {"kind": "triton", "endpoint": "127.0.0.1:8002"}, {"kind": "vllm", "endpoint": "127.0.0.1:8000"}],
        "discovery": {"enabled": True}}), "<test>")
    receiver = config.component(Kind.RECEIVER, ComponentId("inference")).config
    assert receiver.collection_interval == 10 and receiver.timeout == 5
    assert [s.metrics_path for s in receiver.servers] == ["/metrics", "/metrics"]
    assert receiver.discovery.enabled and receiver.discovery.interval == 60
    assert receiver.gpu.enabled
    assert (receiver.health.max_error_rate, receiver.health.failing_error_rate) == (0.05, 0.20)
    assert (receiver.health.max_latency_p95, receiver.health.max_ttft_p95) == (1.0, 2.0)


def test_every_kind_named_in_the_config_has_a_module():
    assert KIND_NAMES == ("triton", "vllm", "sglang", "tgi", "mlserver", "llamacpp")
    assert [kind(name).name for name in KIND_NAMES] == list(KIND_NAMES)


@pytest.mark.parametrize("receiver, message", [
    ({"servers": [{"kind": "tritonserver", "endpoint": "127.0.0.1:8002"}]},
     "receivers.inference.servers[0].kind: unknown kind 'tritonserver': the known kinds are triton, vllm, "
     "sglang, tgi, mlserver, llamacpp"),
    ({"servers": [{"kind": "vllm", "endpoint": "127.0.0.1"}]},
     "receivers.inference.servers[0].endpoint: endpoint '127.0.0.1' must be host:port (the server's metrics port)"),
    ({"servers": [{"kind": "vllm", "endpoint": "ftp://127.0.0.1:21"}]},
     "receivers.inference.servers[0].endpoint: endpoint 'ftp://127.0.0.1:21': the scheme must be http or https"),
    ({"servers": [{"kind": "vllm", "endpoint": "127.0.0.1:8000", "metrics_path": "metrics"}]},
     "receivers.inference.servers[0].metrics_path: metrics_path must start with /"),
    ({"servers": [{"kind": "vllm", "endpoint": "127.0.0.1:8000", "modle": "x"}]},
     "receivers.inference.servers[0].modle: unknown key"),
    ({}, "nothing to scrape: list servers, or turn discovery on (discovery: {enabled: true})"),
    ({"servers": [{"kind": "vllm", "endpoint": "127.0.0.1:8000"}], "timeout": "20s"},
     "timeout must not exceed collection_interval"),
    ({"servers": [{"kind": "vllm", "endpoint": "127.0.0.1:8000"}, {"kind": "sglang", "endpoint": "127.0.0.1:8000"}]},
     "each server once: http://127.0.0.1:8000/metrics is listed more than once"),
    ({"discovery": {"enabled": True}, "health": {"max_error_rate": 0.3}},
     "receivers.inference.health: failing_error_rate must not be below max_error_rate"),
    ({"discovery": {"enabled": True}, "health": {"max_error_rate": 2}},
     "receivers.inference.health.max_error_rate: Input should be less than or equal to 1"),
])
def test_a_mistake_is_refused_with_its_path(receiver, message):
    with pytest.raises(ConfigError) as error:
        from_dict(_document(receiver), "<test>")
    assert message in str(error.value)


def test_vigil_validate_names_the_known_kinds(tmp_path):
    path = tmp_path / "vigil.yaml"
    path.write_text(textwrap.dedent("""\
        receivers:
          inference:
            servers:
              - {kind: torchserve, endpoint: 127.0.0.1:8082}
        exporters:
          debug: {}
        service:
          pipelines:
            metrics: {receivers: [inference], exporters: [debug]}
        """))
    result = run_cli("validate", "-c", str(path))
    assert result.returncode != 0
    assert ("receivers.inference.servers[0].kind: unknown kind 'torchserve': the known kinds are triton, vllm, "
            "sglang, tgi, mlserver, llamacpp") in result.stderr + result.stdout


def test_vigil_components_lists_the_receiver():
    result = run_cli("components")
    line = next(line for line in result.stdout.splitlines() if line.strip().startswith("inference "))
    assert "Triton, vLLM, SGLang, TGI, MLServer, llama.cpp" in line and "[metrics]" in line


def test_server_urls_from_endpoints():
    assert server_url("127.0.0.1:8002", "/metrics") == "http://127.0.0.1:8002/metrics"
    assert server_url("https://gpu-box:9000", "/m") == "https://gpu-box:9000/m"
    assert server_url("[::1]:8000", "/metrics") == "http://[::1]:8000/metrics"
    assert InferenceReceiverConfig.model_validate({"discovery": {"enabled": True}}).servers == []


DOC = Path(__file__).resolve().parents[3] / "docs" / "inference-servers.md"


def test_the_user_doc_has_a_section_per_kind_lists_every_metric_and_its_configs_load():
    from agent.receivers.inference.metrics import SPECS, UP

    text = DOC.read_text()
    for name in KIND_NAMES:
        assert kind(name).name in text
    headings = re.findall(r"^## (.+)$", text, re.M)
    for title in ("NVIDIA Triton", "vLLM", "SGLang", "Hugging Face TGI", "MLServer (Seldon)",
                  "llama.cpp (`llama-server`)"):
        assert title in headings
    missing = [n for n in [*SPECS, UP.name] if f"`{n}`" not in text]
    assert missing == []
    # The first snippet is a whole config; each one-line server entry is a valid server.
    first = yaml.safe_load(re.findall(r"```yaml\n(.*?)```", text, re.S)[0])
    first["exporters"] = {"otlp": {"endpoint": "127.0.0.1:4317"}}
    first["receivers"]["hostmetrics"] = {"scrapers": {"cpu": {}}}
    from_dict(first, "docs/inference-servers.md")
    for entry in re.findall(r"```yaml\n(- \{kind.*?)```", text, re.S):
        (server,) = yaml.safe_load(entry)
        InferenceReceiverConfig.model_validate({"servers": [server]})
