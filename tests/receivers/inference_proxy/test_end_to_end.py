"""The proxy as users run it: a config `vigil validate` checks, and a graph (proxy → ml processor → metrics).

The V2 upstream is the local stand-in (tests/receivers/inference_proxy/upstreams.py): Triton and
MLServer's own runs are tests/receivers/inference/test_real_servers.py's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from agent.component import Kind
from agent.config import from_dict
from tests.conftest import async_wait_for, read_json_lines, running_vigil
from tests.otlp_json_reading import attributes_of, items
from tests.receivers.inference_proxy.upstreams import started
from tests.vigil_cli import run_cli


def config(tmp_path: Path, proxy: dict[str, Any]) -> dict[str, Any]:
    return {
        "receivers": {"inference_proxy/triton": proxy},
        "processors": {"ml": {"interval": "1h"}},  # the interval's metrics are written at shutdown
        "exporters": {"file/traces": {"path": str(tmp_path / "traces.json")},
                      "file/metrics": {"path": str(tmp_path / "metrics.json")}},
        "service": {"state_dir": str(tmp_path / "state"), "pipelines": {
            "traces": {"receivers": ["inference_proxy/triton"], "processors": ["ml"],
                       "exporters": ["file/traces"]},
            "metrics": {"receivers": ["ml"], "exporters": ["file/metrics"]}}},
    }


def test_vigil_validate_names_each_bad_field(tmp_path: Path) -> None:
    bad = config(tmp_path, {"endpoint": "127.0.0.1:99999", "upstream": "triton:8000", "protocol": "grpc",
                            "queue_size": 0, "colour": "blue"})
    bad["service"]["pipelines"]["traces"]["exporters"] = ["file/metrics"]
    path = tmp_path / "vigil.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = run_cli("validate", "-c", str(path))
    assert result.returncode != 0
    for field in ("endpoint", "upstream", "protocol", "queue_size", "colour"):
        assert f"receivers.inference_proxy/triton.{field}" in result.stderr + result.stdout, field
    assert "'triton:8000' is not an http:// or https:// URL" in result.stderr + result.stdout


@pytest.fixture
async def upstream():
    server = await started()
    yield server
    await server.stop()


async def test_v2_calls_through_the_proxy_are_the_models_predictions_in_the_ml_metrics(tmp_path: Path,
                                                                                       upstream) -> None:
    proxy = {"endpoint": "127.0.0.1:0", "upstream": upstream.url, "protocol": "v2"}
    async with running_vigil(config(tmp_path, proxy)) as vigil:
        url = f"http://127.0.0.1:{vigil.receiver('inference_proxy/triton').port}"
        async with aiohttp.ClientSession() as client:
            for rows in (1, 2, 3):
                body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [rows, 2], "data": [0.5] * 2 * rows}]}
                async with client.post(f"{url}/v2/models/fraud/versions/3/infer", json=body) as response:
                    assert response.status == 200
            async with client.post(f"{url}/v2/models/missing/infer",
                                   json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2],
                                                     "data": [1, 2]}]}) as response:
                assert response.status == 400
        # Wait until the observer has handed the spans on: the ml processor sees 7 rows.
        assert await async_wait_for(lambda: vigil.counter("vigil_receiver_accepted_spans") == 7)
    assert counts(tmp_path, "ml.predictions")[("fraud", "3")] == 6
    assert counts(tmp_path, "ml.prediction.errors") == {("missing", ""): 1}


def counts(tmp_path: Path, name: str) -> dict[tuple[str, str], float]:
    """The sum `name` per (model, version) in the metrics file."""
    points: dict[tuple[str, str], float] = {}
    for _, _, metric in items(read_json_lines(tmp_path / "metrics.json"), "metrics"):
        if metric["name"] != name:
            continue
        for point in metric["sum"]["dataPoints"]:
            attrs = attributes_of(point.get("attributes"))
            key = (attrs["ml.model.name"], attrs.get("ml.model.version", ""))
            points[key] = points.get(key, 0) + float(point.get("asInt", point.get("asDouble", 0)))
    return points


def test_the_user_docs_config_loads() -> None:
    text = (Path(__file__).resolve().parents[3] / "docs" / "inference-servers.md").read_text()
    section = text[text.index("## Predictions without app changes: the `inference_proxy` receiver"):]
    (snippet, *_) = re.findall(r"```yaml\n(.*?)```", section, re.S)
    config = from_dict(yaml.safe_load(snippet), "docs/inference-servers.md")
    receivers = {str(id) for kind, id in config.components if kind is Kind.RECEIVER}
    assert receivers == {"inference_proxy/triton", "inference_proxy/vllm"}
