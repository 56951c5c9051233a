"""Model performance: realised once labels arrive, estimated from calibrated confidence before.

Realised metrics are computed by `agent.ml.realized_metrics` on the rows this module pairs with
their labels; this module hands them on (`__all__`), so callers take every performance name from here.

Estimated without labels (confidence-based performance estimation): with a
calibration map fitted on the labelled reference (`agent.ml.calibration`),
each prediction's calibrated probability is the chance it is right.

- binary, from the score: p = cal(score) is P(positive); a prediction of the
  positive class is right with p, of the negative class with 1 − p. Expected
  confusion counts TP = Σ p over positive predictions, FP = Σ (1 − p) over
  them, FN = Σ p over negative predictions give precision, recall and F1;
  ROC AUC is the AUC with each row counted as p positive and 1 − p negative;
- multiclass, from the top-class confidence: cal(confidence) is the chance
  the predicted class is right; their mean is the estimated accuracy. Per
  class k: TP = Σ p over predictions of k, FP = Σ (1 − p) over them; a wrong
  prediction of class j is a missed k with the share of the reference's wrong
  predictions of j whose label was k (`error_confusion`), so FN = Σ (1 − p) ·
  share over the other predictions. Precision, recall and F1 per class follow,
  and their macro average (CBPE's confusion-matrix estimate, with the
  reference's error structure in place of the per-class probabilities).

The estimate is right on average when P(label | score) is the same as in the
reference — when only the inputs' distribution moved (covariate shift). It
cannot see concept drift (the same inputs now mean another label), nor
regions of input space the reference never covered, where the calibration
map only extends its last value; realised metrics are the check for both.

Alert bounds come from sampling variability: the reference is resampled into
windows of `window_rows` rows, and the standard deviation of each metric over
those windows, scaled by sqrt(window_rows / rows) to a window of `rows` rows,
gives the bound  reference value − sigma · std  (+ for the error metrics of
regression). Estimated metrics are held to the estimate on the reference,
realised ones to the realised value on the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from agent.ml import calibration as calibrations
from agent.ml.calibration import Calibration
from agent.ml.columns import RawColumn
from agent.ml.realized_metrics import (CLASSIFICATION_METRICS, REGRESSION_METRICS, Classification, categories,
                                      classification, present, regression, roc_auc)
from agent.ml.vocabulary import PREDICTION_CONFIDENCE, PREDICTION_LABEL, PREDICTION_SCORE, PREDICTION_VALUE

BINARY = "binary"
MULTICLASS = "multiclass"
REGRESSION = "regression"
PROBLEMS = (BINARY, MULTICLASS, REGRESSION)

DEFAULT_WINDOW_ROWS = 1000
DEFAULT_DRAWS = 200
DEFAULT_THRESHOLD = 0.5
MAX_CLASSES = 100


# --- what the reference says ---------------------------------------------------------------------

@dataclass
class PerformanceProfile:
    """What a labelled reference says about the model's performance (kept in the profile)."""

    problem: str  # BINARY, MULTICLASS or REGRESSION
    positive_class: str = ""  # binary: the class the score is the probability of
    classes: list[str] = field(default_factory=list)
    threshold: float = DEFAULT_THRESHOLD  # binary, without predicted labels: score >= threshold is positive
    calibration: Calibration | None = None
    reference: dict[str, float] = field(default_factory=dict)  # realised on the reference
    estimated: dict[str, float] = field(default_factory=dict)  # estimated on the reference
    estimated_std: dict[str, float] = field(default_factory=dict)  # over windows of window_rows
    realized_std: dict[str, float] = field(default_factory=dict)
    window_rows: int = DEFAULT_WINDOW_ROWS
    labeled_rows: int = 0
    # Multiclass: (classes x classes), row j: where the reference's wrong predictions of classes[j]
    # belonged (shares of its labels, 0 on the diagonal); None: accuracy is estimated alone.
    error_confusion: np.ndarray | None = None

    @property
    def can_estimate(self) -> bool:
        return self.calibration is not None

    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        return self.calibration(scores) if self.calibration is not None else np.clip(scores, 0.0, 1.0)

    def bound(self, metric: str, rows: int, sigma: float, realized: bool = False) -> float:
        """The value past which `metric` on a window of `rows` rows is degraded (NaN: no bound): below
        it for scores (accuracy, …), above it for errors (MAE, RMSE, MAPE)."""
        centre = (self.reference if realized else self.estimated).get(metric, math.nan)
        std = (self.realized_std if realized else self.estimated_std).get(metric, math.nan)
        if rows <= 0 or not math.isfinite(centre) or not math.isfinite(std):
            return math.nan
        spread = sigma * std * math.sqrt(self.window_rows / rows)
        return centre + spread if metric in REGRESSION_METRICS else centre - spread


@dataclass
class Outputs:
    """One window's model outputs, row-aligned: any may be None when the model does not give it."""

    predicted: np.ndarray | None = None  # object: class name or None
    score: np.ndarray | None = None  # float, NaN where absent
    confidence: np.ndarray | None = None
    value: np.ndarray | None = None

    @classmethod
    def from_columns(cls, columns: dict[str, RawColumn], label: str = PREDICTION_LABEL,
                     score: str = PREDICTION_SCORE, confidence: str = PREDICTION_CONFIDENCE,
                     value: str = PREDICTION_VALUE) -> Outputs:
        return cls(categories(columns[label]) if label in columns else None,
                   columns[score].numbers if score in columns else None,
                   columns[confidence].numbers if confidence in columns else None,
                   columns[value].numbers if value in columns else None)

    def take(self, rows: np.ndarray) -> Outputs:
        return Outputs(*(None if a is None else a[rows] for a in (self.predicted, self.score, self.confidence,
                                                                  self.value)))

    @property
    def rows(self) -> int:
        for a in (self.predicted, self.score, self.confidence, self.value):
            if a is not None:
                return a.size
        return 0

    def has(self, name: str) -> bool:
        a = getattr(self, name)
        if a is None:
            return False
        return bool(present(a).any()) if a.dtype == object else bool(np.isfinite(a).any())


def positive_predictions(perf: PerformanceProfile, outputs: Outputs) -> np.ndarray:
    """Binary: whether each row predicts the positive class (its label, else score >= threshold)."""
    by_score = outputs.score >= perf.threshold
    if outputs.predicted is None:
        return by_score
    labelled = present(outputs.predicted)
    return np.where(labelled, outputs.predicted == perf.positive_class, by_score)


def infer_positive(truth: np.ndarray | None, predicted: np.ndarray | None, score: np.ndarray) -> str | None:
    """The class a binary score is the probability of: the predicted class with the highest mean
    score, else the labelled class with the highest mean score."""
    for names in (predicted, truth):
        if names is None:
            continue
        usable = present(names) & np.isfinite(score)
        if not usable.any():
            continue
        classes, inverse = np.unique(names[usable], return_inverse=True)
        means = np.bincount(inverse, weights=score[usable]) / np.bincount(inverse)
        if classes.size == 1 and names is predicted:
            continue  # one predicted class says nothing about which one the score favours
        return str(classes[int(np.argmax(means))])
    return None


def estimate(perf: PerformanceProfile, outputs: Outputs) -> dict[str, float]:
    """Estimated metrics of a window without labels (empty when the profile cannot estimate)."""
    if not perf.can_estimate:
        return {}
    if perf.problem == BINARY and outputs.score is not None:
        usable = np.isfinite(outputs.score)
        if not usable.any():
            return {}
        window = outputs.take(usable)
        p = perf.calibrate(window.score)
        positive = positive_predictions(perf, window)
        return _binary_estimate(window.score, p, positive)
    if perf.problem == MULTICLASS and outputs.confidence is not None:
        usable = np.isfinite(outputs.confidence)
        if not usable.any():
            return {}
        p = perf.calibrate(outputs.confidence[usable])
        out = {"accuracy": float(p.mean()), "rows": int(usable.sum())}
        if perf.error_confusion is not None and outputs.predicted is not None:
            out.update(_multiclass_estimate(perf, outputs.predicted[usable], p))
        return out
    return {}


def _multiclass_estimate(perf: PerformanceProfile, predicted: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Macro precision, recall and F1 from each prediction's chance of being right (module docstring)."""
    index = {c: i for i, c in enumerate(perf.classes)}
    k = len(perf.classes)
    rows = np.array([index.get(c, -1) if c is not None else -1 for c in predicted.tolist()], dtype=np.intp)
    known = rows >= 0
    rows, p = rows[known], p[known]
    if not rows.size:
        return {}
    tp = np.bincount(rows, weights=p, minlength=k)
    predictions = np.bincount(rows, minlength=k).astype(float)
    fp = predictions - tp
    fn = (1.0 - p) @ perf.error_confusion[rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predictions > 0, tp / predictions, math.nan)
        # A class neither predicted nor expected among the labels (half a row) is left out, as the
        # realised macro average leaves out a class absent from the window.
        expected = tp + fn
        recall = np.where(expected >= 0.5, tp / expected, math.nan)
        f1 = np.where((predictions > 0) | (expected >= 0.5), 2 * tp / (2 * tp + fp + fn), math.nan)
    return {name: float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
            for name, v in (("precision", precision), ("recall", recall), ("f1", f1))}


def error_confusion(classes: list[str], truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Row j: the shares of the labels of the wrong predictions of classes[j] (module docstring); a
    class never wrong on the reference takes the shares of all wrong predictions."""
    index = {c: i for i, c in enumerate(classes)}
    k = len(classes)
    counts = np.zeros((k, k))
    for t, q in zip(truth.tolist(), predicted.tolist()):
        if t != q and t in index and q in index:
            counts[index[q], index[t]] += 1
    overall = counts.sum(axis=0)
    out = np.empty((k, k))
    for j in range(k):
        row = counts[j] if counts[j].sum() > 0 else np.where(np.arange(k) == j, 0.0, overall + 1e-12)
        out[j] = row / row.sum() if row.sum() > 0 else 0.0
    return out


def _binary_estimate(score: np.ndarray, p: np.ndarray, positive: np.ndarray) -> dict[str, float]:
    tp, fp = p[positive].sum(), (1.0 - p[positive]).sum()
    fn = p[~positive].sum()
    out = {"accuracy": float(np.where(positive, p, 1.0 - p).mean()),
           "precision": float(tp / (tp + fp)) if tp + fp > 0 else math.nan,
           "recall": float(tp / (tp + fn)) if tp + fn > 0 else math.nan,
           "f1": float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn > 0 else math.nan,
           "roc_auc": roc_auc(score, p), "rows": int(score.size)}
    return out


def realized(perf: PerformanceProfile | None, truth: RawColumn, outputs: Outputs) -> dict[str, float]:
    """The realised counterpart of `estimate` (and MAE/RMSE/MAPE for regression): the numbers the
    alert bounds and the offline report compare."""
    result = evaluate_labels(perf, truth, outputs)
    if isinstance(result, Classification):
        return {**result.summary(), "rows": result.rows}
    return result or {}


def evaluate_labels(perf: PerformanceProfile | None, truth: RawColumn,
                    outputs: Outputs) -> Classification | dict[str, float] | None:
    """Realised metrics: a `Classification`, or the regression metrics, or None when the outputs
    cannot be compared with the labels. The problem is the profile's, else what the outputs are: a
    numeric value without a class is regression; a binary score's positive class is inferred."""
    problem = perf.problem if perf is not None else None
    if problem == REGRESSION or (problem is None and outputs.value is not None and outputs.predicted is None):
        return regression(truth.numbers, outputs.value) if outputs.value is not None else None
    labels = categories(truth)
    predicted = outputs.predicted
    positive = perf.positive_class if perf is not None and perf.problem == BINARY else None
    if positive is None and outputs.score is not None and (perf is None or perf.problem == BINARY):
        positive = infer_positive(labels, predicted, outputs.score)
    if positive is not None and outputs.score is not None:
        binary = perf or PerformanceProfile(BINARY, positive)
        by_score = positive_predictions(binary, Outputs(None, outputs.score))
        negative = next((c for c in (perf.classes if perf else []) if c != positive), None) or \
            _other_class(labels, predicted, positive)
        named = np.where(by_score, positive, negative).astype(object)
        named[~np.isfinite(outputs.score)] = None
        predicted = named if predicted is None else np.where(present(predicted), predicted, named)
    if predicted is None:
        return None
    return classification(labels, predicted, outputs.score, positive)


def _other_class(labels: np.ndarray, predicted: np.ndarray | None, positive: str) -> str:
    seen = set(labels[present(labels)].tolist())
    if predicted is not None:
        seen |= set(predicted[present(predicted)].tolist())
    others = sorted(seen - {positive})
    return others[0] if others else f"not {positive}"


# --- building the profile ------------------------------------------------------------------------

def build(truth: RawColumn, outputs: Outputs, *, positive_class: str | None = None,
          method: str = calibrations.ISOTONIC, window_rows: int = DEFAULT_WINDOW_ROWS,
          draws: int = DEFAULT_DRAWS, seed: int = 0) -> PerformanceProfile | None:
    """What a labelled reference says: the problem, a calibration map (when the outputs allow an
    estimate) and the metrics with their spread over windows of `window_rows` rows.

    None when there is nothing to learn (no labelled row with a prediction).
    """
    labelled = ~truth.is_missing
    if outputs.value is not None and outputs.has("value") and outputs.predicted is None:
        return _build_regression(truth, outputs, labelled, window_rows, draws, seed)
    labels = categories(truth)
    score = outputs.score if outputs.score is not None and outputs.has("score") else None
    classes = sorted(set(labels[labelled].tolist()))
    if score is not None and len(classes) <= 2:
        positive = positive_class if positive_class is not None else infer_positive(labels, outputs.predicted, score)
        if positive is None:
            return None
        perf = PerformanceProfile(BINARY, positive, classes[:MAX_CLASSES])
        rows = labelled & np.isfinite(score)
        outcome = (labels[rows] == positive).astype(float)
        perf.calibration = calibrations.fit(score[rows], outcome, method, seed=seed)
    elif outputs.predicted is not None and outputs.has("predicted"):
        perf = PerformanceProfile(MULTICLASS, classes=classes[:MAX_CLASSES])
        confidence = outputs.confidence
        if confidence is not None and np.isfinite(confidence).any():
            rows = labelled & present(outputs.predicted) & np.isfinite(confidence)
            correct = (labels[rows] == outputs.predicted[rows]).astype(float)
            perf.calibration = calibrations.fit(confidence[rows], correct, method, seed=seed)
            perf.error_confusion = error_confusion(perf.classes, labels[rows], outputs.predicted[rows])
    else:
        return None
    usable = labelled & _has_prediction(perf, outputs)
    if not usable.any():
        return None
    index = np.flatnonzero(usable)
    truth_u, outputs_u = _take_column(truth, index), outputs.take(index)
    perf.labeled_rows = int(index.size)
    perf.reference = _finite(realized(perf, truth_u, outputs_u))
    perf.estimated = _finite(estimate(perf, outputs_u))
    perf.window_rows = min(window_rows, index.size)
    perf.realized_std = _spread(lambda i: realized(perf, _take_column(truth_u, i), outputs_u.take(i)),
                                index.size, perf.window_rows, draws, seed)
    if perf.can_estimate:
        perf.estimated_std = _spread(lambda i: estimate(perf, outputs_u.take(i)), index.size,
                                     perf.window_rows, draws, seed + 1)
    return perf


def _build_regression(truth: RawColumn, outputs: Outputs, labelled: np.ndarray, window_rows: int, draws: int,
                      seed: int) -> PerformanceProfile | None:
    usable = labelled & np.isfinite(truth.numbers) & np.isfinite(outputs.value)
    if not usable.any():
        return None
    index = np.flatnonzero(usable)
    t, v = truth.numbers[index], outputs.value[index]
    perf = PerformanceProfile(REGRESSION, labeled_rows=int(index.size), window_rows=min(window_rows, index.size))
    perf.reference = _finite(regression(t, v))
    perf.realized_std = _spread(lambda i: regression(t[i], v[i]), index.size, perf.window_rows, draws, seed)
    return perf


def _has_prediction(perf: PerformanceProfile, outputs: Outputs) -> np.ndarray:
    rows = outputs.rows
    has = np.zeros(rows, dtype=bool)
    if outputs.predicted is not None:
        has |= present(outputs.predicted)
    if perf.problem == BINARY and outputs.score is not None:
        has |= np.isfinite(outputs.score)
    return has


def _take_column(column: RawColumn, rows: np.ndarray) -> RawColumn:
    return RawColumn(column.numbers[rows], column.strings[rows])


def _spread(metrics: Callable[[np.ndarray], dict[str, float]], rows: int, window: int, draws: int,
            seed: int) -> dict[str, float]:
    """Standard deviation of each metric over `draws` windows of `window` rows drawn (with
    replacement) from `rows` reference rows."""
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {}
    for _ in range(draws):
        for name, value in metrics(rng.integers(0, rows, window)).items():
            if name != "rows":
                samples.setdefault(name, []).append(value)
    out = {}
    for name, values in samples.items():
        values_ = np.array(values, dtype=float)
        values_ = values_[np.isfinite(values_)]
        if values_.size >= 2:
            out[name] = float(values_.std(ddof=1))
    return out


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if k != "rows" and v is not None and math.isfinite(v)}


def degraded(perf: PerformanceProfile, metrics: dict[str, float], rows: int, sigma: float,
             watched: tuple[str, ...] | list[str], realized_: bool = False) -> tuple[bool, dict[str, float]]:
    """Whether any watched metric went past its bound, and the bounds that applied."""
    bounds = {}
    for name in watched:
        bound = perf.bound(name, rows, sigma, realized=realized_)
        if math.isfinite(bound) and math.isfinite(metrics.get(name, math.nan)):
            bounds[name] = bound
    worse = [metrics[n] > b if n in REGRESSION_METRICS else metrics[n] < b for n, b in bounds.items()]
    return any(worse), bounds


__all__ = ["BINARY", "MULTICLASS", "REGRESSION", "PROBLEMS", "DEFAULT_WINDOW_ROWS", "DEFAULT_DRAWS",
           "DEFAULT_THRESHOLD", "MAX_CLASSES", "PerformanceProfile", "Outputs", "positive_predictions",
           "infer_positive", "estimate", "realized", "evaluate_labels", "build", "degraded",
           # the realised metrics
           "CLASSIFICATION_METRICS", "REGRESSION_METRICS", "Classification", "categories", "classification",
           "present", "regression", "roc_auc"]
