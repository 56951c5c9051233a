"""The inference-app example, run as the README says (`make demo`, which installs the `examples` extra
and runs `examples/inference_app/demo.py --quick`): Vigil, the app and the game day of
examples/traffic.py as real processes, then what Vigil exported."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from agent import config

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "examples"))

import _demo  # noqa: E402

pytest.importorskip("sklearn", reason="the examples extra (scikit-learn) is not installed")


def test_the_example_config_validates():
    loaded = config.load(REPO / "examples" / "inference_app" / "vigil.yaml")
    assert loaded.warnings == []


def readme_alerts() -> set[str]:
    """The rules the example's README says the game day fires (its table's last column)."""
    text = (REPO / "examples" / "inference_app" / "README.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    return {name for row in rows for name in re.findall(r"`(\w+)`", row.rstrip(" |").rsplit("|", 1)[-1])}


@pytest.mark.timeout(240)
def test_the_demo_shows_spans_drift_data_health_alerts_and_labels(tmp_path):
    data = tmp_path / "demo"
    # As a user runs it with --keep: the report, then Vigil serving its status page until Ctrl-C.
    proc = subprocess.Popen(["make", "-s", "demo", f"DEMO_ARGS=--keep --data-dir {data}"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=REPO, start_new_session=True)
    try:
        lines = []
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Vigil keeps running for a look:"):
                break
        stdout = "".join(lines)
        assert proc.poll() is None, stdout + _logs(data)
        page_url = re.search(r"Vigil's status page: (http://127\.0\.0\.1:(\d+)/)", stdout)
        assert page_url and page_url.group(2) != "13133", stdout  # a free port, not the default one
        assert f"Vigil keeps running for a look: {page_url.group(1)} (Ctrl-C stops it)" in stdout
        with urllib.request.urlopen(page_url.group(1), timeout=10) as response:
            page = response.read().decode()
        assert "wine-classifier" in page
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal: make, the demo and Vigil all get it
        rest, _ = proc.communicate(timeout=60)
        assert "Traceback" not in rest, rest
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for phase in ("normal", "shift", "missing", "strings", "malformed", "burst", "labels"):
        assert f"\n{phase} " in stdout, stdout
    # Every alert the README promises fired within the quick run, as the demo itself printed.
    promised = readme_alerts()
    assert promised == {"FeatureDrift", "MissingValues", "TypeMismatch", "PredictionErrors",
                        "PredictionLatencyP95"}
    printed = set(re.findall(r"^  (\w+) x\d+, e\.g\. ", stdout, re.MULTILINE))
    assert promised <= printed, stdout

    # Prediction spans with the ml.* attributes, errors as span status ERROR.
    predictions = [s for s in _demo.spans(data / "traces.json") if "ml.model.name" in s["attributes"]]
    assert len(predictions) >= 1900
    ok = [s for s in predictions if s["status"] != 2]
    assert {"ml.prediction.id", "ml.prediction.label", "ml.prediction.confidence", "ml.feature.alcohol",
            "ml.prediction.probabilities", "ml.model.classes"} <= set(ok[0]["attributes"])
    failed = [s for s in predictions if s["status"] == 2]
    assert len(failed) >= 80  # a third of the strings phase, and every malformed request
    # A missing value is left out of the span; a string stays a string.
    assert any(isinstance(s["attributes"].get("ml.feature.magnesium"), str) for s in failed)

    # The shifted features drifted.
    drifted = {a["ml.feature.name"] for a, p in _demo.metric_points(data / "metrics.json", "ml.feature.drifted")
               if float(p.get("asDouble", p.get("asInt", 0))) == 1.0}
    assert {"alcohol", "color_intensity", "proline"} <= drifted, drifted

    # An alert fired for each game-day cause, with the model's words.
    fired = _demo.firing(data / "alerts.json")
    assert promised <= {rule for rule, _ in fired}, fired
    assert any(s == "Feature alcohol of wine-classifier 1.0 drifted" for r, s in fired if r == "FeatureDrift")
    mismatched = {s.split(" of ")[1].split(" has")[0] for r, s in fired if r == "TypeMismatch"}
    assert {"magnesium", "hue"} <= mismatched, fired
    assert "alert notifications" in stdout

    # Ground truth arrived later as log records joined on the prediction id.
    labels = [r for r in _demo.log_records(data / "logs.json") if "ml.label" in r["attributes"]]
    assert len(labels) >= 800
    assert all(r["attributes"]["ml.model.name"] == "wine-classifier" for r in labels)
    ids = {s["attributes"].get("ml.prediction.id") for s in predictions}
    assert {r["attributes"]["ml.prediction.id"] for r in labels} <= ids


def _logs(data: Path) -> str:
    return "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((data / "logs").glob("*.log")))
