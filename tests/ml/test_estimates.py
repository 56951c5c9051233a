"""Label-free estimates against the realised values, on data generated here with a known truth and a
covariate shift (the inputs move, P(label | inputs) does not): multiclass macro precision, recall and
F1 (`agent.ml.performance`, realised by scikit-learn), and a regression model's MAE and RMSE by direct
loss estimation (`agent.ml.estimates`). The comparison with NannyML's own estimates on its data is
bench/estimates_vs_nannyml.py (NannyML is no test dependency)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from agent.ml import estimates, performance, profile as profiles
from agent.ml.columns import RawColumn

CLASSES = np.array(["bronze", "silver", "gold"], dtype=object)
WEIGHTS = np.array([[1.5, 0.0], [0.0, 1.5], [-1.0, -1.0]])


def cards(seed: int, n: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, predicted class, top-class confidence) of a calibrated 3-class model whose inputs move
    by `shift` along the first axis."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)) + [shift, 0.0]
    logits = x @ WEIGHTS.T
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    labels = CLASSES[(rng.random(n)[:, None] > np.cumsum(probabilities, axis=1)).sum(axis=1)]
    top = probabilities.argmax(axis=1)
    return labels, CLASSES[top], probabilities.max(axis=1)


def multiclass_profile() -> performance.PerformanceProfile:
    labels, predicted, confidence = cards(0, 20_000)
    return performance.build(RawColumn.from_values(labels.tolist()),
                             performance.Outputs(predicted, None, confidence, None))


def test_multiclass_macro_estimates_follow_the_realised_values_under_covariate_shift():
    perf = multiclass_profile()
    errors = {m: [] for m in ("precision", "recall", "f1")}
    moved = []
    for w, shift in enumerate(np.linspace(-1.5, 1.5, 12)):
        labels, predicted, confidence = cards(100 + w, 3000, shift)
        found = performance.estimate(perf, performance.Outputs(predicted, None, confidence, None))
        realized = {"precision": precision_score(labels, predicted, average="macro", zero_division=np.nan),
                    "recall": recall_score(labels, predicted, average="macro", zero_division=np.nan),
                    "f1": f1_score(labels, predicted, average="macro", zero_division=np.nan)}
        for m in errors:
            errors[m].append(abs(found[m] - realized[m]))
        moved.append(abs(realized["f1"] - perf.reference["f1"]))
    # The shift moves the realised F1 by up to ~0.1; the estimates stay within 0.03 of it on average
    # (NannyML's CBPE, with every class's probability, is 0.037 off on its own data).
    assert max(moved) > 0.05
    assert {m: float(np.mean(e)) for m, e in errors.items()} == {m: pytest.approx(0, abs=0.03) for m in errors}


def test_the_reference_estimate_is_the_realised_one():
    perf = multiclass_profile()
    for m in ("accuracy", "precision", "recall", "f1"):
        assert perf.estimated[m] == pytest.approx(perf.reference[m], abs=0.01), m
    assert perf.error_confusion.shape == (3, 3)
    np.testing.assert_allclose(np.diag(perf.error_confusion), 0)
    np.testing.assert_allclose(perf.error_confusion.sum(axis=1), 1)


def test_the_profile_keeps_the_error_structure(tmp_path):
    perf = multiclass_profile()
    profiles.save(profiles.Profile("cards", "1", 20_000, {}, performance=perf), tmp_path / "p.vigilprofile")
    loaded = profiles.load(tmp_path / "p.vigilprofile").performance
    np.testing.assert_array_equal(loaded.error_confusion, perf.error_confusion)
    labels, predicted, confidence = cards(7, 2000, 1.0)
    outputs = performance.Outputs(predicted, None, confidence, None)
    assert performance.estimate(loaded, outputs) == performance.estimate(perf, outputs)
    message = profiles.to_proto(profiles.Profile("cards", "1", 20_000, {}, performance=perf))
    del message.performance.error_confusion[-1]
    with pytest.raises(ValueError, match="error_confusion has 8 values, not 3 x 3 classes"):
        profiles.from_proto(message)


def test_without_predicted_classes_only_accuracy_is_estimated():
    perf = multiclass_profile()
    _, _, confidence = cards(8, 500)
    found = performance.estimate(perf, performance.Outputs(None, None, confidence, None))
    assert set(found) == {"accuracy", "rows"}


# --- regression: direct loss estimation -------------------------------------------------------------

def prices(seed: int, n: int, shift: float = 0.0) -> tuple[dict[str, RawColumn], np.ndarray, np.ndarray]:
    """(features, prediction, truth): the model predicts the mean exactly; the noise grows with age.
    Ages lie within the reference's 0 to 10 years, older the larger `shift` (the trees cannot
    extrapolate beyond the reference; neither can NannyML's)."""
    rng = np.random.default_rng(seed)
    age = 10 * rng.power(1 + shift, n)
    fuel = rng.choice(["diesel", "petrol", "electric"], n)
    mean = 20_000 - 1_200 * age + np.where(fuel == "electric", 3_000, 0)
    truth = mean + rng.normal(size=n) * (200 + 150 * age) * np.where(fuel == "diesel", 1.5, 1.0)
    features = {"age": RawColumn.from_values(age.tolist()), "fuel": RawColumn.from_values(fuel.tolist())}
    return features, mean, truth


def test_regression_errors_are_estimated_where_older_cars_make_them_grow():
    model = estimates.fit_loss(*prices(0, 10_000))
    reference_mae = None
    for w, shift in enumerate((0.0, 1.0, 3.0, 6.0)):
        features, predicted, truth = prices(10 + w, 5000, shift)
        found = estimates.estimate_loss(model, features, predicted)
        mae, rmse = np.abs(truth - predicted).mean(), np.sqrt(((truth - predicted) ** 2).mean())
        reference_mae = reference_mae or mae
        assert found["mae"] == pytest.approx(mae, rel=0.05), shift
        assert found["rmse"] == pytest.approx(rmse, rel=0.05), shift
        assert found["rows"] == 5000
    assert mae > 1.3 * reference_mae  # the windows' error did move: holding the reference's would miss it


def test_direct_loss_estimation_refuses_too_few_rows_and_skips_rows_without_a_prediction():
    features, predicted, truth = prices(1, 40)
    with pytest.raises(ValueError, match="needs 50 labelled rows with a prediction, got 40"):
        estimates.fit_loss(features, predicted, truth)
    model = estimates.fit_loss(*prices(2, 2000))
    features, predicted, _ = prices(3, 100)
    predicted[:10] = np.nan
    assert estimates.estimate_loss(model, features, predicted)["rows"] == 90
    assert estimates.estimate_loss(model, features, np.full(100, np.nan)) == {}


def test_vigil_analyze_estimates_a_regression_model_error_without_labels(tmp_path):
    def write(name: str, seed: int, n: int, shift: float, labelled: bool) -> tuple:
        features, predicted, truth = prices(seed, n, shift)
        with open(tmp_path / name, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["age", "fuel", "price_pred"] + (["price"] if labelled else []))
            for i in range(n):
                out.writerow([repr(float(features["age"].numbers[i])), features["fuel"].strings[i],
                              repr(float(predicted[i]))] + ([repr(float(truth[i]))] if labelled else []))
        return tmp_path / name, np.abs(truth - predicted).mean()

    reference, _ = write("reference.csv", 20, 8000, 0.0, True)
    # The current file has its labels too, so the report's realised MAE checks the estimate (which
    # reads the features and predictions only).
    current, realized = write("current.csv", 21, 3000, 4.0, True)
    result = subprocess.run([sys.executable, "-m", "agent", "analyze", "--reference", str(reference), "--current",
                             str(current), "--prediction", "price_pred", "--label", "price", "--format", "json"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    p = json.loads(result.stdout)["chunks"][0]["performance"]
    assert p["problem"] == "regression" and p["realized_mae"] == pytest.approx(realized)
    assert p["estimated_mae"] == pytest.approx(realized, rel=0.05) and p["estimated_rmse"] > p["estimated_mae"]
    assert p["realized_mae"] > 1.3 * np.abs(np.subtract(*prices(20, 8000)[2:0:-1])).mean()  # the error moved
