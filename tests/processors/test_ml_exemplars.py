"""From a metric to the trace: an app (the OpenTelemetry SDK) sends one slow, one unsure, one
out-of-range, one incomplete and one failed prediction among ordinary ones; their trace ids come out as OTLP
exemplars on the ml processor's points (read from a `file` exporter's OTLP/JSON), as OpenMetrics
exemplars on the `prometheus` exporter, among the ml processor's status exemplars with their
trace view links (through the admin API), as links on the status page, and in the annotations of the
alert its failure raises (the webhook's body)."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from agent.component import ComponentId
from tests.alerts.servers import http_endpoint
from tests.conftest import async_wait_for, free_port, otlp_receiver_config, read_json_lines, running_vigil
from tests.exporters.test_prometheus import scrape
from tests.exporters.test_prometheus_exemplars import OPENMETRICS, samples_by_name
from tests.otlp_json_reading import attributes_of, items
from tests.sdk_apps import send_predictions

TRACE_VIEW = "http://127.0.0.1:16686/trace/{trace_id}?uiFind={span_id}"
WARMUP, WINDOW = 300, 200
SLOW, UNSURE, OUT, INCOMPLETE, FAILED = WARMUP + 37, WARMUP + 88, WARMUP + 120, WARMUP + 150, WARMUP + 160


def predictions() -> list[tuple[float, dict[str, Any]]]:
    rng = np.random.default_rng(7)
    rows = []
    for i in range(WARMUP + WINDOW):
        seconds, confidence, amount = rng.uniform(0.01, 0.03), rng.uniform(0.8, 0.99), rng.uniform(10, 20)
        if i == SLOW:
            seconds = 2.5
        elif i == UNSURE:
            confidence = 0.2
        elif i == OUT:
            amount = 500.0
        attributes = {"ml.model.name": "fraud", "ml.model.version": "v1", "ml.prediction.confidence": confidence,
                      "ml.feature.country": ["de", "fr"][i % 2]}
        if i != INCOMPLETE:
            attributes["ml.feature.amount"] = amount
        if i == FAILED:
            attributes["error.type"] = "timeout"
        rows.append((seconds, attributes))
    return rows


def vigil_config(tmp: Path, prometheus_port: int, webhook: str = "http://127.0.0.1:9", **ml: Any) -> dict[str, Any]:
    alerts = {
        "evaluation_interval": "100ms",
        "rules": [{"name": "PredictionsFailing", "metric": "ml.prediction.errors", "op": ">", "threshold": 0,
                   "severity": "warning", "summary": "{model} predictions fail"}],
        "notifiers": {"webhook/oncall": {"url": f"{webhook}/oncall"}},
        "route": {"notifiers": ["webhook/oncall"], "group_wait": "0s", "repeat_interval": "1h"},
    }
    return {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "processors": {"ml": {"reference": {"warmup": WARMUP},
                              "window": {"size": WINDOW, "min_size": 50, "max_age": "1h"},
                              "interval": "5s", **ml},
                       "alerts": alerts},
        "exporters": {"file/traces": {"path": str(tmp / "traces.json")},
                      "file/metrics": {"path": str(tmp / "metrics.json")},
                      "file/logs": {"path": str(tmp / "logs.json")},
                      "prometheus": {"endpoint": f"127.0.0.1:{prometheus_port}"}},
        "service": {"state_dir": str(tmp / "state"), "trace_view_url": TRACE_VIEW, "pipelines": {
            "traces": {"receivers": ["otlp"], "processors": ["ml"], "exporters": ["file/traces"]},
            "metrics": {"receivers": ["ml"], "processors": ["alerts"], "exporters": ["file/metrics", "prometheus"]},
            "logs": {"receivers": ["alerts"], "exporters": ["file/logs"]}}},
    }


async def eventually(check, timeout: float) -> bool:
    """Poll `check` (blocking; run in a thread) until it is true or `timeout` passes."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(check):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


def ml_status(admin_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{admin_url}/api/v1/status", timeout=5) as response:
        return json.load(response)["components"]["processors"]["ml"]["status"]


def status_page(admin_url: str) -> str:
    request = urllib.request.Request(f"{admin_url}/", headers={"Accept": "text/html"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()


def exemplars_of(status: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for m in status["models"] for e in m.get("exemplars", [])]


def points(path: Path) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(metric name, point attributes, point) of every point the file holds."""
    out = []
    for _, _, metric in items(read_json_lines(path), "metrics"):
        kind = next(k for k in ("gauge", "sum", "histogram") if k in metric)
        out.extend((metric["name"], attributes_of(p.get("attributes")), p) for p in metric[kind]["dataPoints"])
    return out


def traced(found, name: str, **attrs: Any) -> dict[str, float]:
    """The trace ids of `name`'s exemplars (on points with `attrs`) and their values."""
    return {e["traceId"]: e["asDouble"] for metric, a, p in found if metric == name
            and all(a.get(k) == v for k, v in attrs.items()) for e in p.get("exemplars", [])}


async def test_a_slow_prediction_leads_from_its_metrics_to_its_trace(tmp_path: Path):
    prometheus_port = free_port()
    rows = predictions()
    async with http_endpoint() as webhook, running_vigil(vigil_config(tmp_path, prometheus_port, webhook.url)) as vigil:
        ids = await asyncio.to_thread(send_predictions, vigil.grpc_endpoint(), rows)
        slow, unsure, out, incomplete, failed = (ids[i] for i in (SLOW, UNSURE, OUT, INCOMPLETE, FAILED))
        status: dict[str, Any] = {}

        def window_seen() -> bool:
            status.update(ml_status(vigil.admin_url()))
            kinds = {e["kind"] for e in exemplars_of(status)}
            return {"slowest", "out_of_range", "data_health"} <= kinds

        assert await eventually(window_seen, timeout=30), status
        text = ""

        def slow_exposed() -> bool:
            nonlocal text
            text = scrape(f"http://127.0.0.1:{prometheus_port}/metrics", OPENMETRICS)[0]
            return slow[0] in text

        assert await eventually(slow_exposed, timeout=20), text
        page = await asyncio.to_thread(status_page, vigil.admin_url())
        assert await async_wait_for(lambda: webhook.bodies("/oncall"), timeout=30)
        (notice,) = webhook.bodies("/oncall")

    by_kind: dict[str, list[dict[str, Any]]] = {}
    for e in exemplars_of(status):
        by_kind.setdefault(e["kind"], []).append(e)
    top = by_kind["slowest"][0]
    assert (top["trace_id"], top["span_id"]) == slow and abs(top["value"] - 2.5) < 1e-6
    assert top["trace_url"] == f"http://127.0.0.1:16686/trace/{slow[0]}?uiFind={slow[1]}"
    assert top["feature"] is None and top["time_unix_nano"] > 0
    assert by_kind["lowest_confidence"][0]["trace_id"] == unsure[0]
    assert by_kind["lowest_confidence"][0]["value"] == 0.2
    furthest = by_kind["out_of_range"][0]
    assert (furthest["trace_id"], furthest["feature"], furthest["value"]) == (out[0], "amount", 500.0)
    missing = [e for e in by_kind["data_health"] if e.get("check") == "missing"]
    assert [(e["trace_id"], e["feature"]) for e in missing] == [(incomplete[0], "amount")]
    assert all(len(v) <= 4 for v in by_kind.values())  # exemplars.max_per_point
    assert all(e["trace_url"].startswith("http://127.0.0.1:16686/trace/") for e in exemplars_of(status))

    # The status page links the telling predictions' traces; the alert the failure raised names its trace.
    links = re.findall(r"href=['\"]([^'\"]*)['\"]", page)
    assert f"http://127.0.0.1:16686/trace/{slow[0]}?uiFind={slow[1]}" in links, links
    (alert,) = notice["alerts"]
    assert (alert["annotations"]["trace_id"], alert["annotations"]["span_id"]) == failed
    assert alert["annotations"]["trace_url"] == f"http://127.0.0.1:16686/trace/{failed[0]}?uiFind={failed[1]}"

    # OpenMetrics: the slow one on the bucket its 2.5 s falls in.
    buckets = [s for s in samples_by_name(text)["ml_prediction_duration_seconds_bucket"] if s.exemplar]
    (bucket,) = [s for s in buckets if s.exemplar.labels["trace_id"] == slow[0]]
    assert bucket.exemplar.labels["span_id"] == slow[1] and bucket.exemplar.value == 2.5
    bounds = [float(s.labels["le"]) for s in samples_by_name(text)["ml_prediction_duration_seconds_bucket"]]
    assert float(bucket.labels["le"]) == min(b for b in bounds if b >= 2.5)
    (errors,) = samples_by_name(text)["ml_prediction_errors_total"]
    assert errors.labels["error_type"] == "timeout" and errors.exemplar.labels["trace_id"] == failed[0]

    # OTLP: the exported points carry them, bounded.
    found = points(tmp_path / "metrics.json")
    assert traced(found, "ml.prediction.duration")[slow[0]] == 2.5
    assert traced(found, "ml.prediction.confidence")[unsure[0]] == 0.2
    assert unsure[0] in traced(found, "ml.prediction.low_confidence.ratio")
    feature = {"ml.feature.name": "amount"}
    assert traced(found, "ml.feature.value", **feature)[out[0]] == 500.0
    assert traced(found, "ml.feature.out_of_range.ratio", **feature)[out[0]] == 500.0
    assert out[0] in traced(found, "ml.feature.drift.score", **feature)
    assert incomplete[0] in traced(found, "ml.feature.missing.ratio", **feature)
    assert not traced(found, "ml.feature.missing.ratio", **{"ml.feature.name": "country"})
    assert traced(found, "ml.prediction.errors", **{"error.type": "timeout"}) == {failed[0]: 1.0}
    for name, _, point in found:
        exemplars = point.get("exemplars", [])
        assert len(exemplars) <= 4, name
        if "explicitBounds" in point:  # at most one per bucket
            bounds = point["explicitBounds"]
            assert len({np.searchsorted(bounds, e["asDouble"], side="left") for e in exemplars}) == len(exemplars)
        for e in exemplars:
            assert len(bytes.fromhex(e["traceId"])) == 16 and len(bytes.fromhex(e["spanId"])) == 8


async def test_with_exemplars_off_no_point_or_status_carries_any(tmp_path: Path):
    prometheus_port = free_port()
    async with running_vigil(vigil_config(tmp_path, prometheus_port, exemplars={"enabled": False})) as vigil:
        await asyncio.to_thread(send_predictions, vigil.grpc_endpoint(), predictions())
        engine = vigil.service.graph.shared[ComponentId("ml")]
        assert await async_wait_for(lambda: engine.status()["models"]
                                    and engine.status()["models"][0]["windows_evaluated"] == 1, timeout=30)
        status = await asyncio.to_thread(ml_status, vigil.admin_url())
        text = await asyncio.to_thread(scrape, f"http://127.0.0.1:{prometheus_port}/metrics", OPENMETRICS)
    assert exemplars_of(status) == [] and all(m["exemplars"] == [] for m in status["models"])
    assert " # {" not in text[0]
    assert all(not p.get("exemplars") for _, _, p in points(tmp_path / "metrics.json"))
