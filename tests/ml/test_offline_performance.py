"""`vigil profile build --label` and `vigil analyze`'s performance object, through the command line.

Files are written as a user has them: a labelled training CSV, a day of
predictions without labels, and the labels in a file of their own that
arrived later (some ids repeated, some for rows that are not there).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from agent.ml import profile as profiles


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def write(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def fraud(n: int, seed: int, shift: float = 0.0, sharpness: float = 2.5, concept: float = 0.0):
    """(ids, x, over-confident scores, predicted, truth) of a binary model; truth P = sigmoid(2x - concept)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    score = sigmoid(2 * sharpness * x)
    truth = np.where(rng.random(n) < sigmoid(2 * x - concept), "fraud", "ok")
    predicted = np.where(score >= 0.5, "fraud", "ok")
    ids = [f"r{seed}-{i}" for i in range(n)]
    return ids, x, score, predicted, truth


def labelled_rows(ids, x, score, predicted, truth) -> list[list]:
    return [[i, repr(float(a)), repr(float(s)), p, t] for i, a, s, p, t in zip(ids, x, score, predicted, truth)]


def main(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("performance")
    out = {}
    ids, x, score, predicted, truth = fraud(20_000, seed=1)
    out["train"] = write(tmp / "train.csv", ["id", "x", "score", "pred", "label"],
                         labelled_rows(ids, x, score, predicted, truth))
    ids, x, score, predicted, truth = fraud(20_000, seed=2, shift=0.6)
    out["today"] = write(tmp / "today.csv", ["id", "x", "score", "pred"],
                         [[i, repr(float(a)), repr(float(s)), p] for i, a, s, p in zip(ids, x, score, predicted)])
    # Labels for every other row, in another order; two ids twice (the first label counts), three unknown.
    rows = [[ids[i], truth[i]] for i in range(0, 20_000, 2)][::-1]
    rows += [[ids[0], "ok" if truth[0] == "fraud" else "fraud"], [ids[2], truth[2]]]
    rows += [["nobody-1", "ok"], ["nobody-2", "fraud"], ["nobody-3", "ok"]]
    out["labels"] = write(tmp / "labels.csv", ["id", "label"], rows)
    out["truth"] = {i: t for i, t in zip(ids, truth)}
    out["predicted"] = dict(zip(ids, predicted))
    out["score"] = dict(zip(ids, score))
    ids, x, score, predicted, truth = fraud(10_000, seed=3, concept=2.0)
    out["drifted"] = write(tmp / "drifted.csv", ["id", "x", "score", "pred", "label"],
                           labelled_rows(ids, x, score, predicted, truth))
    profile = tmp / "fraud.vigilprofile"
    built = main("profile", "build", out["train"], "--model", "fraud", "--score", "score", "--prediction", "pred",
                 "--label", "label", "--id-column", "id", "--window-rows", "5000", "-o", profile)
    assert built.returncode == 0, built.stderr
    assert "isotonic calibration applied" in built.stderr
    out["profile"] = profile
    return out


def test_the_profile_keeps_calibration_and_bounds(data):
    perf = profiles.load(data["profile"]).performance
    assert (perf.problem, perf.positive_class, perf.window_rows, perf.labeled_rows) == ("binary", "fraud", 5000,
                                                                                         20_000)
    assert perf.calibration.method == "isotonic" and perf.calibration.applied
    assert set(perf.reference) == set(perf.estimated) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    shown = json.loads(main("profile", "show", data["profile"], "--format", "json").stdout)["performance"]
    assert shown["calibration"]["applied"] is True and shown["window_rows"] == 5000


def test_current_labels_are_joined_on_the_id_and_the_estimate_tracks_them(data):
    result = main("analyze", "--reference", data["profile"], "--current", data["today"], "--score", "score",
                  "--prediction", "pred", "--label", "label", "--id-column", "id", "--current-labels",
                  data["labels"], "--chunk-size", "10000", "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["labels"] == {"file": str(data["labels"]), "rows": 10_005, "ids": 10_003, "duplicates": 2,
                                "matched": 10_000}
    ids = list(data["truth"])
    for k, chunk in enumerate(report["chunks"]):
        p = chunk["performance"]
        rows = ids[k * 10_000:(k + 1) * 10_000]
        labelled = rows[::2]  # the ids with a label
        truth = [data["truth"][i] for i in labelled]
        predicted = [data["predicted"][i] for i in labelled]
        assert p["labeled_rows"] == 5000 and p["rows"] == 10_000
        assert p["realized_accuracy"] == pytest.approx(skm.accuracy_score(truth, predicted), abs=1e-12)
        assert p["realized_roc_auc"] == pytest.approx(
            skm.roc_auc_score([t == "fraud" for t in truth], [data["score"][i] for i in labelled]), abs=1e-12)
        assert p["classes"]["fraud"]["support"] == truth.count("fraud")
        # The estimate (on all 10,000 rows) against the realised accuracy of the labelled half.
        assert abs(p["estimated_accuracy"] - p["realized_accuracy"]) < 0.015
        assert p["degraded"] is False and p["degraded_metrics"] == []
        assert set(p["bounds"]) == {"estimated_accuracy", "estimated_roc_auc", "realized_accuracy",
                                    "realized_roc_auc"}


def test_concept_drift_is_caught_by_labels_not_by_the_estimate(data):
    result = main("analyze", "--reference", data["profile"], "--current", data["drifted"], "--score", "score",
                  "--prediction", "pred", "--label", "label", "--id-column", "id", "--chunk-size", "5000",
                  "--format", "json")
    assert result.returncode == 0, result.stderr
    for chunk in json.loads(result.stdout)["chunks"]:
        p = chunk["performance"]
        assert p["realized_accuracy"] < p["estimated_accuracy"] - 0.05
        assert "realized_accuracy" in p["degraded_metrics"] and "estimated_accuracy" not in p["degraded_metrics"]
    table = main("analyze", "--reference", data["profile"], "--current", data["drifted"], "--score", "score",
                 "--prediction", "pred", "--label", "label", "--id-column", "id", "--chunk-size", "5000")
    assert "DEGRADED: realized_accuracy" in table.stdout


def test_without_labels_only_the_estimate(data):
    result = main("analyze", "--reference", data["profile"], "--current", data["today"], "--score", "score",
                  "--prediction", "pred", "--format", "json")
    p = json.loads(result.stdout)["chunks"][0]["performance"]
    assert p["labeled_rows"] == 0 and p["realized_accuracy"] is None and 0.5 < p["estimated_accuracy"] < 1
    assert "classes" not in p and set(p["bounds"]) == {"estimated_accuracy", "estimated_roc_auc"}


def test_regression_reports_errors(tmp_path):
    rng = np.random.default_rng(4)
    truth = rng.normal(100, 20, 4000)
    pred = truth + rng.normal(0, 5, 4000)
    train = write(tmp_path / "t.csv", ["y", "yhat"], [[repr(float(a)), repr(float(b))] for a, b in zip(truth, pred)])
    result = main("analyze", "--reference", train, "--current", train, "--prediction", "yhat", "--label", "y",
                  "--format", "json")
    assert result.returncode == 0, result.stderr
    p = json.loads(result.stdout)["chunks"][0]["performance"]
    assert p["problem"] == "regression"
    assert p["realized_mae"] == pytest.approx(skm.mean_absolute_error(truth, pred))
    assert p["realized_rmse"] == pytest.approx(skm.root_mean_squared_error(truth, pred))
    assert p["realized_mape"] == pytest.approx(skm.mean_absolute_percentage_error(truth, pred))
    assert not p["degraded"] and set(p["bounds"]) == {"realized_mae"}
    # A labelled data reference also gives the label-free estimate (direct loss estimation), unbounded.
    assert {k for k in p if k.startswith("estimated_")} == {"estimated_mae", "estimated_rmse"}
    assert p["estimated_mae"] == pytest.approx(p["realized_mae"], rel=0.05)


@pytest.mark.parametrize("args, message", [
    (["--current-labels", "LABELS"], "--current-labels needs --label (its label column) and --id-column"),
    (["--current-labels", "LABELS", "--label", "label"], "--current-labels needs --label"),
    (["--current-labels", "LABELS", "--label", "truth", "--id-column", "id"],
     "unknown column 'truth' in --label: LABELS (--current-labels) has columns id, label"),
    (["--label", "label"], "unknown column 'label' in --label: TODAY has columns id, x, score, pred"),
])
def test_label_options_are_checked(data, args, message):
    args = [str(data["labels"]) if a == "LABELS" else a for a in args]
    result = main("analyze", "--reference", data["profile"], "--current", data["today"], "--score", "score",
                  "--prediction", "pred", *args)
    assert result.returncode == 1
    expected = message.replace("LABELS", str(data["labels"])).replace("TODAY", str(data["today"]))
    assert expected in result.stderr, result.stderr
