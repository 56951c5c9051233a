"""The legacy-app example, run as its README says (`examples/legacy_app/demo.py --quick`): a
prometheus_client service writing rotated JSON prediction logs, watched through the `predictionlog`
and `prometheus` receivers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent import config

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "examples"))

import _demo  # noqa: E402

pytest.importorskip("sklearn", reason="the examples extra (scikit-learn) is not installed")


def test_the_example_config_validates():
    assert config.load(REPO / "examples" / "legacy_app" / "vigil.yaml").warnings == []


@pytest.mark.timeout(180)
def test_the_demo_reads_every_line_through_rotations_sees_the_drift_and_scrapes_metrics(tmp_path):
    data = tmp_path / "legacy"
    run = subprocess.run([sys.executable, str(REPO / "examples" / "legacy_app" / "demo.py"), "--quick",
                          "--data-dir", str(data)], capture_output=True, text=True, timeout=160, cwd=REPO)
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((data / "logs").glob("*.log")))
    assert run.returncode == 0, run.stdout + run.stderr + logs
    assert list((data / "app").glob("predictions.jsonl.*")), "the app's log never rotated"

    records = [r for r in _demo.log_records(data / "logs.json") if "ml.model.name" in r["attributes"]]
    # Every line exactly once, across the rotations.
    ids = [r["attributes"]["ml.prediction.id"] for r in records]
    assert len(ids) == 1200 and len(set(ids)) == 1200
    first = records[0]["attributes"]
    assert first["ml.model.name"] == "iris" and first["ml.model.version"] == "v1.0"
    assert {"ml.feature.sepal_length", "ml.feature.petal_width", "ml.prediction.label",
            "ml.prediction.confidence", "ml.prediction.duration"} <= set(first)

    drifted = {a["ml.feature.name"] for a, p in _demo.metric_points(data / "metrics.json", "ml.feature.drifted")
               if float(p.get("asDouble", p.get("asInt", 0))) == 1.0}
    assert {"petal_length", "petal_width"} <= drifted
    assert not {"sepal_length", "sepal_width"} & drifted

    up = [float(p["asDouble"]) for _, p in _demo.metric_points(data / "metrics.json", "up")]
    # Vigil starts before the app and stops after it, so a scrape at either end may find nothing (up = 0).
    assert up.count(1.0) >= 2 and 0.0 not in up[1:-1], up
    last = {}
    for attributes, point in _demo.metric_points(data / "metrics.json", "iris_predictions_total"):
        last[attributes["predicted_class"]] = float(point["asDouble"])
    assert sum(last.values()) == 1200
    assert _demo.metric_points(data / "metrics.json", "iris_prediction_latency_seconds")
    assert "Vigil read 1200 prediction records" in run.stdout
