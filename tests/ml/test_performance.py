"""Performance: realised metrics against scikit-learn's, and the label-free estimate against realised accuracy.

Synthetic models: an input x ~ N(shift, 1) and a true P(label | x). A model is
*calibrated* when its score is that probability, *miscalibrated* when its
score is a distorted (over-confident) version of it. The reference (with
labels) is x ~ N(0, 1); current windows move x (covariate shift), which
changes accuracy while P(label | x) stays — the case the estimate is for.
Concept drift (P(label | x) itself changes) is the case it cannot see.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from agent.ml import performance, profile as profiles
from agent.ml.columns import RawColumn
from agent.ml.performance import Outputs
from tests.ml.data import numbers, strings

CLASSES = np.array(["fraud", "ok"], dtype=object)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def binary(n: int, seed: int, shift: float = 0.0, sharpness: float = 1.0, concept: float = 0.0,
           scale: float = 1.0) -> tuple[RawColumn, Outputs]:
    """Labels and outputs of a binary fraud model; truth P(fraud | x) = sigmoid(2x - concept)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, scale, n)
    fraud = rng.random(n) < sigmoid(2.0 * x - concept)
    score = sigmoid(2.0 * sharpness * x)
    predicted = np.where(score >= 0.5, "fraud", "ok").astype(object)
    return strings(np.where(fraud, "fraud", "ok")), Outputs(predicted, score, np.maximum(score, 1 - score))


def multiclass(n: int, seed: int, shift: float = 0.0, temperature: float = 1.0) -> tuple[RawColumn, Outputs]:
    """Four classes; the truth is a softmax of linear logits, the model the same at `temperature`."""
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, (n, 2))
    weights = np.array([[2.0, 0.0], [-2.0, 0.5], [0.0, 2.0], [0.5, -2.0]])
    logits = x @ weights.T
    truth_p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(4, p=p) for p in truth_p])
    model = np.exp(logits / temperature) / np.exp(logits / temperature).sum(axis=1, keepdims=True)
    names = np.array(["a", "b", "c", "d"], dtype=object)
    return strings(names[labels]), Outputs(names[model.argmax(axis=1)], None, model.max(axis=1))


# --- realised metrics against scikit-learn -----------------------------------------------------------


def sk_classification(t: np.ndarray, p: np.ndarray) -> dict:
    labels = sorted(set(t) | set(p))
    precision, recall, f1, support = skm.precision_recall_fscore_support(t, p, labels=labels, zero_division=np.nan)
    macro = skm.precision_recall_fscore_support(t, p, average="macro", zero_division=np.nan)
    return {"labels": labels, "precision": precision, "recall": recall, "f1": f1, "support": support,
            "macro": macro[:3], "accuracy": skm.accuracy_score(t, p)}


@pytest.mark.parametrize("seed", range(6))
def test_classification_metrics_match_scikit_learn(seed: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 3000))
    names = ["a", "b", "c", "d", "e"][: int(rng.integers(2, 6))]
    t = rng.choice(names, n)
    p = np.where(rng.random(n) < 0.6, t, rng.choice(names, n))
    if seed % 2:  # a class only predicted, one only labelled: precision or recall divides by zero
        p[:5], t[5:10] = "only-predicted", "only-labelled"
    got = performance.classification(t.astype(object), p.astype(object))
    want = sk_classification(t, p)
    assert got.classes == want["labels"]
    assert got.accuracy == pytest.approx(want["accuracy"], abs=1e-12)
    for metric in ("precision", "recall", "f1"):
        np.testing.assert_allclose(getattr(got, metric), want[metric], atol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(got.support, want["support"])
    for i, metric in enumerate(("precision", "recall", "f1")):
        assert got.macro(metric) == pytest.approx(want["macro"][i], abs=1e-12)


@pytest.mark.parametrize("decimals", [1, 2, 8])
def test_roc_auc_matches_scikit_learn_with_and_without_ties(decimals: int):
    truth, outputs = binary(5000, seed=decimals, sharpness=1.5)
    score = outputs.score.round(decimals)
    t = truth.strings
    got = performance.classification(t, outputs.predicted, score, positive="fraud")
    assert got.roc_auc == pytest.approx(skm.roc_auc_score(t == "fraud", score), abs=1e-12)
    assert performance.roc_auc(score, (t == "fraud").astype(float)) == pytest.approx(got.roc_auc, abs=1e-12)
    assert math.isnan(performance.roc_auc(score, np.ones(score.size)))  # one class only: undefined


def test_missing_labels_and_predictions_are_left_out():
    t = np.array(["a", None, "b", "a", "b"], dtype=object)
    p = np.array(["a", "a", None, "b", "b"], dtype=object)
    got = performance.classification(t, p)
    assert got.rows == 3 and got.accuracy == pytest.approx(skm.accuracy_score(["a", "a", "b"], ["a", "b", "b"]))


def test_regression_metrics_match_scikit_learn():
    rng = np.random.default_rng(7)
    truth = rng.normal(100, 30, 4000)
    truth[:3] = 0.0  # MAPE's epsilon guard
    predicted = truth + rng.normal(0, 10, 4000)
    got = performance.regression(truth, predicted)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(truth, predicted), rel=1e-12)
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(truth, predicted), rel=1e-12)
    assert got["mape"] == pytest.approx(skm.mean_absolute_percentage_error(truth, predicted), rel=1e-12)
    truth[10], predicted[11] = np.nan, np.inf
    assert performance.regression(truth, predicted)["rows"] == 3998


def test_realized_infers_the_binary_positive_class_and_reads_numbered_labels():
    truth, outputs = binary(3000, seed=8)
    by_name = performance.realized(None, truth, outputs)
    t = truth.strings
    assert by_name["accuracy"] == pytest.approx(skm.accuracy_score(t, outputs.predicted))
    assert by_name["precision"] == pytest.approx(skm.precision_score(t, outputs.predicted, pos_label="fraud"))
    assert by_name["roc_auc"] == pytest.approx(skm.roc_auc_score(t == "fraud", outputs.score))
    # Labels 1/0 as numbers and no predicted class: the class comes from the score (>= 0.5 is "1").
    numbered = numbers((t == "fraud").astype(float))
    got = performance.realized(None, numbered, Outputs(None, outputs.score))
    assert got["accuracy"] == pytest.approx(by_name["accuracy"])
    assert got["roc_auc"] == pytest.approx(by_name["roc_auc"])


# --- the estimate against realised accuracy ------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def reference_profile(sharpness: float = 1.0, method: str = "isotonic",
                      window_rows: int = performance.DEFAULT_WINDOW_ROWS) -> performance.PerformanceProfile:
    truth, outputs = binary(50_000, seed=100, sharpness=sharpness)
    perf = performance.build(truth, outputs, method=method, window_rows=window_rows)
    assert perf is not None and perf.problem == performance.BINARY and perf.positive_class == "fraud"
    return perf


@pytest.mark.parametrize("sharpness", [1.0, 2.5], ids=["calibrated", "miscalibrated"])
@pytest.mark.parametrize("shift, scale", [(0.0, 1.0), (0.7, 1.0), (-1.0, 1.0), (0.3, 0.5), (0.0, 1.8)])
def test_the_estimate_tracks_realized_accuracy_within_a_hundredth(sharpness: float, shift: float, scale: float):
    perf = reference_profile(sharpness)
    assert perf.calibration.applied == (sharpness != 1.0)  # a calibrated model keeps its own scores
    truth, outputs = binary(50_000, seed=200 + int(shift * 10), shift=shift, sharpness=sharpness, scale=scale)
    estimated = performance.estimate(perf, outputs)
    realized = performance.realized(perf, truth, outputs)
    assert abs(estimated["accuracy"] - realized["accuracy"]) < 0.01, (estimated, realized)
    for metric in ("precision", "recall", "f1", "roc_auc"):
        assert abs(estimated[metric] - realized[metric]) < 0.02, (metric, estimated, realized)


def test_without_calibration_a_miscalibrated_model_is_misjudged():
    """Why the map exists: the raw scores of an over-confident model overstate its accuracy."""
    perf = reference_profile(2.5)
    truth, outputs = binary(50_000, seed=300, shift=0.5, sharpness=2.5)
    raw = performance.PerformanceProfile(performance.BINARY, "fraud")
    raw.calibration = None
    realized = performance.realized(perf, truth, outputs)["accuracy"]
    raw_p = np.clip(outputs.score, 0, 1)
    raw_estimate = np.mean(np.where(outputs.score >= 0.5, raw_p, 1 - raw_p))
    assert raw_estimate - realized > 0.05
    assert abs(performance.estimate(perf, outputs)["accuracy"] - realized) < 0.01


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_multiclass_estimate_from_top_class_confidence(temperature: float):
    truth, outputs = multiclass(40_000, seed=10, temperature=temperature)
    perf = performance.build(truth, outputs)
    assert perf.problem == performance.MULTICLASS
    for shift in (0.0, 0.8):
        truth, outputs = multiclass(40_000, seed=11, shift=shift, temperature=temperature)
        estimated = performance.estimate(perf, outputs)["accuracy"]
        realized = performance.realized(perf, truth, outputs)["accuracy"]
        assert abs(estimated - realized) < 0.01, (shift, estimated, realized)


def test_concept_drift_is_invisible_to_the_estimate_but_not_to_realized_metrics():
    """The documented limit: the same inputs now mean other labels. The estimate stays where it was;
    the realised accuracy falls, and its bound says so."""
    perf = reference_profile()
    truth, outputs = binary(5_000, seed=400, concept=2.5)
    estimated = performance.estimate(perf, outputs)
    realized = performance.realized(perf, truth, outputs)
    assert realized["accuracy"] < estimated["accuracy"] - 0.05
    bad, _ = performance.degraded(perf, estimated, 5_000, 3.0, ["accuracy", "roc_auc"])
    assert not bad
    bad, bounds = performance.degraded(perf, realized, realized["rows"], 3.0, ["accuracy", "roc_auc"],
                                       realized_=True)
    assert bad and realized["accuracy"] < bounds["accuracy"]


def test_bounds_rarely_fire_on_reference_like_windows_and_fire_on_a_real_drop():
    perf = reference_profile(window_rows=1000)
    assert perf.window_rows == 1000
    watched = ["accuracy", "roc_auc"]
    false_alarms = 0
    for seed in range(200):
        truth, outputs = binary(1000, seed=1000 + seed)
        false_alarms += performance.degraded(perf, performance.estimate(perf, outputs), 1000, 3.0, watched)[0]
        false_alarms += performance.degraded(perf, performance.realized(perf, truth, outputs), 1000, 3.0, watched,
                                             realized_=True)[0]
    assert false_alarms <= 4  # 400 checks of two metrics each at 3 sigma
    # Windows far from the decision boundary are easier; windows near it (x around 0, little spread)
    # are harder: accuracy falls, and the estimate sees it without labels.
    truth, outputs = binary(1000, seed=5, scale=0.3)
    estimate = performance.estimate(perf, outputs)
    assert performance.degraded(perf, estimate, 1000, 3.0, watched)[0]
    # The bound widens on smaller windows: sqrt(1000 / n).
    assert perf.bound("accuracy", 250, 3.0) == pytest.approx(
        perf.estimated["accuracy"] - 2 * 3.0 * perf.estimated_std["accuracy"])


def test_regression_reference_keeps_error_metrics_and_an_upper_bound():
    rng = np.random.default_rng(9)
    t = rng.normal(50, 10, 20_000)
    v = t + rng.normal(0, 2, 20_000)
    perf = performance.build(numbers(t), Outputs(None, None, None, v))
    assert perf.problem == performance.REGRESSION and not perf.can_estimate
    assert perf.reference["mae"] == pytest.approx(skm.mean_absolute_error(t, v))
    worse = performance.regression(t[:1000], t[:1000] + rng.normal(0, 4, 1000))
    bad, bounds = performance.degraded(perf, worse, 1000, 3.0, ["mae"], realized_=True)
    assert bad and bounds["mae"] > perf.reference["mae"]


def test_the_profile_keeps_the_performance_through_protobuf(tmp_path):
    perf = reference_profile(2.5, method="binned")
    profile = profiles.Profile("fraud", "3", 50_000, {}, {}, performance=perf)
    profiles.save(profile, tmp_path / "p.vigilprofile")
    loaded = profiles.load(tmp_path / "p.vigilprofile").performance
    assert (loaded.problem, loaded.positive_class, loaded.classes) == ("binary", "fraud", ["fraud", "ok"])
    assert loaded.reference == perf.reference and loaded.estimated_std == perf.estimated_std
    assert loaded.calibration.method == "binned" and loaded.calibration.applied
    _, outputs = binary(2000, seed=12, sharpness=2.5)
    assert performance.estimate(loaded, outputs) == performance.estimate(perf, outputs)
