"""The live `ml` processor and `vigil analyze` run one engine: the same data gives the same numbers."""

from __future__ import annotations

import asyncio
import csv
import json
import subprocess
import sys

import numpy as np
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.conftest import async_wait_for, otlp_receiver_config, read_json_lines, running_vigil


def write_csv(path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})


def rows(rng: np.random.Generator, n: int, shift: float) -> list[dict]:
    amounts = rng.normal(shift, 1.0, n)
    countries = rng.choice(["de", "fr", "us"], n, p=[0.2, 0.3, 0.5] if shift == 0 else [0.4, 0.3, 0.3])
    return [{"amount": float(a), "country": str(c)} for a, c in zip(amounts, countries)]


def send(endpoint: str, window: list[dict]) -> None:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True),
                                                   max_export_batch_size=256))
    tracer = provider.get_tracer("app")
    for row in window:
        with tracer.start_as_current_span("predict", attributes={
                "ml.model.name": "fraud", "ml.model.version": "3",
                "ml.feature.amount": row["amount"], "ml.feature.country": row["country"]}):
            pass
    provider.shutdown()


def gauges(path, name: str) -> dict[str, float]:
    out = {}
    for request in read_json_lines(path):
        for rm in request["resourceMetrics"]:
            for sm in rm["scopeMetrics"]:
                for metric in sm["metrics"]:
                    if metric["name"] == name:
                        for p in metric["gauge"]["dataPoints"]:
                            attrs = {a["key"]: a["value"].get("stringValue") for a in p["attributes"]}
                            out[attrs["ml.feature.name"]] = float(p["asDouble"] if "asDouble" in p else p["asInt"])
    return out


async def test_same_window_same_statistics(tmp_path):
    rng = np.random.default_rng(11)
    write_csv(tmp_path / "train.csv", rows(rng, 3000, 0.0))
    window = rows(rng, 600, 0.4)
    write_csv(tmp_path / "window.csv", window)
    profile = tmp_path / "fraud-3.vigilprofile"
    subprocess.run([sys.executable, "-m", "agent", "profile", "build", str(tmp_path / "train.csv"),
                    "--model", "fraud", "--version", "3", "-o", str(profile)], check=True,
                   capture_output=True)
    report = subprocess.run([sys.executable, "-m", "agent", "analyze", "--reference", str(profile),
                             "--current", str(tmp_path / "window.csv"), "--format", "json"],
                            check=True, capture_output=True, text=True)
    offline = json.loads(report.stdout)["chunks"][0]["drift"]["features"]

    metrics = tmp_path / "metrics.json"
    config = {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "processors": {"ml": {"reference": {"profiles": [str(profile)]},
                              "window": {"size": 600, "min_size": 100}}},
        "exporters": {"file/traces": {"path": str(tmp_path / "traces.json")},
                      "file/metrics": {"path": str(metrics)}},
        "service": {"state_dir": str(tmp_path / "state"), "pipelines": {
            "traces": {"receivers": ["otlp"], "processors": ["ml"], "exporters": ["file/traces"]},
            "metrics": {"receivers": ["ml"], "exporters": ["file/metrics"]}}},
    }
    async with running_vigil(config) as vigil:
        await asyncio.to_thread(send, vigil.grpc_endpoint(), window)
        assert await async_wait_for(lambda: gauges(metrics, "ml.feature.drift.p_value"), timeout=20)
    scores = gauges(metrics, "ml.feature.drift.score")
    p_values = gauges(metrics, "ml.feature.drift.p_value")
    drifted = gauges(metrics, "ml.feature.drifted")

    assert set(scores) == set(offline) == {"amount", "country"}
    assert abs(scores["amount"] - offline["amount"]["statistics"]["wasserstein_normed"]) < 1e-12
    assert abs(scores["country"] - offline["country"]["statistics"]["jensen_shannon"]) < 1e-12
    for name in ("amount", "country"):
        assert abs(p_values[name] - offline[name]["p_value"]) <= 1e-12 * max(1.0, offline[name]["p_value"])
        assert bool(drifted[name]) == offline[name]["drifted"]
    assert offline["amount"]["drifted"] and offline["country"]["drifted"]
