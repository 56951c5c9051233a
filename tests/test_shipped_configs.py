"""The configs users get watch their models: `make run`'s config/vigil.yaml, the built-in default of
`vigil run` with no -c, and (installed, in tests/test_systemd_unit.py) systemd/vigil.yaml. And where a
config leaves predictions with no `ml` processor, Vigil says so, once."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import yaml

from agent import config as config_module
from agent.alerts.rules import load_rule_file
from agent.component import ComponentId, Kind
from agent.default_config import RULE_PACK, default_config
from agent.signals import Signal
from tests.admin.test_admin import get
from tests.admin.traffic import MODEL, prediction_spans
from tests.conftest import free_port, otlp_receiver_config, read_json_lines, running_vigil, wait_for
from tests.otlp_data import send_grpc, traces
from tests.vigil_cli import REPO, run_cli, vigil_run

PACK = REPO / "agent" / "alerts" / "inference-rules.yaml"


def fetch(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def test_make_run_config_watches_predictions_and_runs_the_rule_pack(tmp_path):
    # config/vigil.yaml as `make run` runs it (from the checkout, so config/alerts/ is where it says),
    # moved to free ports and to a working directory of its own.
    grpc_port, admin_port = free_port(), free_port()
    text = (REPO / "config" / "vigil.yaml").read_text()
    text = text.replace("127.0.0.1:4317", f"127.0.0.1:{grpc_port}").replace("127.0.0.1:4318", "127.0.0.1:0")
    config = yaml.safe_load(text)
    config["service"]["admin"] = {"endpoint": f"127.0.0.1:{admin_port}"}
    (tmp_path / "vigil.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "config").symlink_to(REPO / "config")
    admin = f"http://127.0.0.1:{admin_port}"
    with vigil_run(["-c", "vigil.yaml"], tmp_path) as vigil:
        vigil.wait_running()
        alerts = fetch(f"{admin}/api/v1/alerts")  # the alerts processor serves its routes
        assert alerts["processor"] == "alerts" and alerts["alerts"] == [], alerts
        # 1000 predictions teach the reference (warmup: 1000), 1000 more make a window, a feature missing
        # on a few of them (so the window's KS test compares samples of unequal sizes).
        window = prediction_spans(1000, seed=2, start=1000)
        for span in window.resource_spans[0].scope_spans[0].spans[::33]:
            kept = [a for a in span.attributes if a.key != "ml.feature.age"]
            del span.attributes[:]
            span.attributes.extend(kept)
        for request in (prediction_spans(1000, seed=1, start=0), window):
            asyncio.run(send_grpc(f"127.0.0.1:{grpc_port}", Signal.TRACES, request))
        assert wait_for(lambda: any(m["model"] == MODEL for m in fetch(f"{admin}/api/v1/models")["models"]), 20)
        assert wait_for(lambda: "ml.feature.drift.score" in (tmp_path / "vigil-data" / "metrics.json")
                        .read_text(errors="replace") if (tmp_path / "vigil-data" / "metrics.json").exists()
                        else False, 30), vigil.stderr()
        status = run_cli("status", "--endpoint", f"127.0.0.1:{admin_port}")
        assert status.returncode == 0, status.stderr
        assert any(line.split()[:2] == [MODEL, "3"] for line in status.stdout.splitlines()), status.stdout
        assert "no ml processor" not in vigil.stderr()
        # The window's p-values load scipy's compiled routine for unequal sizes alone: importing the
        # scipy.stats package would keep every distribution (~45 MiB) resident in the agent, and
        # scipy.special another 26 MiB.
        mapped = Path(f"/proc/{vigil.proc.pid}/maps").read_text().splitlines()
        assert {Path(line.split()[-1]).name.split(".")[0] for line in mapped if "/scipy/stats/" in line} \
            == {"_stats_pythran"}
        assert not [line for line in mapped if "/scipy/special/" in line]


def test_the_built_in_default_runs_ml_and_the_rule_pack():
    config = config_module.from_dict(default_config({}), "<built-in default>")
    assert config.warnings == []
    by_id = {str(pid): p for pid, p in config.pipelines.items()}
    for signal in ("traces", "logs"):
        assert ComponentId("ml") in by_id[signal].processors
    assert ComponentId("ml") in by_id["metrics"].derived_from
    assert ComponentId("alerts") in by_id["metrics"].processors
    assert ComponentId("alerts") in by_id["logs/alerts"].derived_from
    # The pack ships inside the package (a pip install has no config/), and is the one install.sh copies.
    assert Path(RULE_PACK).read_text() == PACK.read_text()
    assert (REPO / "config" / "alerts" / "inference-rules.yaml").resolve() == PACK
    alerts = config.component(Kind.PROCESSOR, ComponentId("alerts")).config
    assert [r.name for r in alerts.all_rules()] == [r.name for r in load_rule_file(str(PACK))]
    # Still no backend needed: files only, unless OTEL_EXPORTER_OTLP_ENDPOINT says otherwise.
    assert {str(e) for p in config.pipelines.values() for e in p.exporters} == \
        {"file/traces", "file/metrics", "file/logs"}


def plain_spans(n: int):
    """Spans as any SDK sends them: no ml.* attribute."""
    request = traces(n)
    for span in request.resource_spans[0].scope_spans[0].spans:
        del span.attributes[:]
    return request


def no_ml_config(tmp_path: Path) -> dict:
    return {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "processors": {"batch": {"timeout": "10ms"}},
        "exporters": {"file": {"path": str(tmp_path / "traces.json")}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                             "exporters": ["file"]}}},
    }


async def test_predictions_no_ml_processor_sees_are_said_once_in_the_log_status_and_page(tmp_path, caplog):
    async with running_vigil(no_ml_config(tmp_path)) as vigil:
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, plain_spans(5))  # nothing to say
        status, body, _ = await get(vigil.admin_url("/api/v1/status"))
        assert body["notices"] == []
        for seed in (1, 2, 3):
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, prediction_spans(50, seed=seed, start=seed * 50))
        notice = ("spans with ml.model.name ('fraud') come through receiver otlp into traces, where no ml "
                  "processor sees them: no model monitoring for them (add ml to the processors of traces)")
        assert [r.getMessage() for r in caplog.records if "no ml processor" in r.getMessage()] == [notice]
        status, body, _ = await get(vigil.admin_url("/api/v1/status"))
        assert body["notices"] == [notice]
        _, page, _ = await get(vigil.admin_url("/"))
        assert "<section id=notices" in page and "no ml processor sees them" in page
        report = await asyncio.to_thread(run_cli, "status", "--endpoint", vigil.admin_url()[len("http://"):])
        assert "note: spans with ml.model.name ('fraud') come through receiver otlp" in report.stdout
        # Everything still flows: the notice changes nothing about the data.
        assert len([s for r in read_json_lines(tmp_path / "traces.json") for rs in r["resourceSpans"]
                    for ss in rs["scopeSpans"] for s in ss["spans"]]) == 155


async def test_predictions_an_ml_processor_sees_are_not_noticed(tmp_path):
    config = no_ml_config(tmp_path)
    config["processors"]["ml"] = {}
    config["service"]["pipelines"]["traces"]["processors"] = ["ml", "batch"]
    async with running_vigil(config) as vigil:
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, prediction_spans(50, seed=1))
        assert await asyncio.to_thread(wait_for, lambda: vigil.counter("vigil_ml_predictions") == 50, 10)
        _, body, _ = await get(vigil.admin_url("/api/v1/status"))
        assert body["notices"] == []


def triton_model_spans(n: int):
    """Spans shaped like Triton's OpenTelemetry trace mode's model span (the span named after the model, with
    triton.model_name / triton.model_version, as the v2.71.0 tracer writes them): no ml.* attribute at all."""
    request = plain_spans(n)
    for span in request.resource_spans[0].scope_spans[0].spans:
        span.name = "resnet50"
        span.attributes.add(key="triton.model_name").value.string_value = "resnet50"
        span.attributes.add(key="triton.model_version").value.int_value = 1
    return request


async def test_triton_model_spans_no_ml_processor_sees_are_said_once(tmp_path, caplog):
    async with running_vigil(no_ml_config(tmp_path)) as vigil:
        for _ in range(2):
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, triton_model_spans(5))
        notice = ("spans with triton.model_name ('resnet50') come through receiver otlp into traces, where no ml "
                  "processor sees them: no model monitoring for them (add ml to the processors of traces)")
        assert [r.getMessage() for r in caplog.records if "no ml processor" in r.getMessage()] == [notice]
        _, body, _ = await get(vigil.admin_url("/api/v1/status"))
        assert body["notices"] == [notice]
