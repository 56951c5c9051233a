"""Realised model metrics: predictions against their ground truth, as scikit-learn computes them.

- classification: accuracy; precision, recall and F1 per class (the classes
  seen in either the labels or the predictions) and their macro average; ROC
  AUC for a binary model with a score. A per-class value that divides by zero
  (no prediction of the class, no label of it) is undefined (NaN) and left
  out of the macro average — scikit-learn's `zero_division=np.nan`;
- regression: MAE, RMSE and MAPE (|error| / max(|truth|, machine epsilon), as
  scikit-learn computes it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agent.ml.columns import RawColumn, category_of

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION_METRICS = ("mae", "rmse", "mape")


def categories(column: RawColumn) -> np.ndarray:
    """Each row's value as a category name (numbers as `category_of` writes them); None where missing."""
    out = column.strings.copy()
    numbers = column.is_number
    if numbers.any():
        out[numbers] = [category_of(v) for v in column.numbers[numbers]]
    return out


def present(values: np.ndarray) -> np.ndarray:
    return values != None  # noqa: E711 (elementwise)


@dataclass
class Classification:
    rows: int
    accuracy: float
    classes: list[str]
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray  # labels per class
    roc_auc: float = math.nan
    positive: str | None = None

    def macro(self, metric: str) -> float:
        values = getattr(self, metric)
        values = values[~np.isnan(values)]
        return float(values.mean()) if values.size else math.nan

    def of(self, metric: str, cls: str) -> float:
        if cls not in self.classes:
            return math.nan
        return float(getattr(self, metric)[self.classes.index(cls)])

    def summary(self) -> dict[str, float]:
        """Accuracy, the positive class's precision/recall/F1 and ROC AUC for a binary model, the
        macro averages otherwise (what alert bounds are kept for)."""
        out = {"accuracy": self.accuracy}
        for metric in ("precision", "recall", "f1"):
            out[metric] = self.of(metric, self.positive) if self.positive is not None else self.macro(metric)
        out["roc_auc"] = self.roc_auc
        return out


def classification(truth: np.ndarray, predicted: np.ndarray, score: np.ndarray | None = None,
                   positive: str | None = None) -> Classification:
    """Realised classification metrics of the rows with both a label and a prediction (ROC AUC: the
    rows with a label and a finite score, the label compared with `positive`)."""
    both = present(truth) & present(predicted)
    t, p = truth[both], predicted[both]
    classes, inverse = (np.unique(np.concatenate([t, p]), return_inverse=True) if t.size
                        else (np.empty(0, dtype=object), np.empty(0, dtype=np.intp)))
    k = classes.size
    ti, pi = inverse[:t.size], inverse[t.size:]
    hits = ti == pi
    tp = np.bincount(ti[hits], minlength=k).astype(float)
    predicted_n = np.bincount(pi, minlength=k).astype(float)
    support = np.bincount(ti, minlength=k).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted_n > 0, tp / predicted_n, math.nan)
        recall = np.where(support > 0, tp / support, math.nan)
        f1 = np.where(predicted_n + support > 0, 2 * tp / (predicted_n + support), math.nan)
    result = Classification(int(t.size), float(hits.mean()) if t.size else math.nan,
                            [str(c) for c in classes], precision, recall, f1, support.astype(np.int64),
                            positive=positive)
    if score is not None and positive is not None:
        labelled = present(truth) & np.isfinite(score)
        result.roc_auc = roc_auc(score[labelled], (truth[labelled] == positive).astype(float))
    return result


def roc_auc(scores: np.ndarray, positive_weight: np.ndarray, negative_weight: np.ndarray | None = None) -> float:
    """Area under the ROC curve, each row counted `positive_weight` positive and `negative_weight`
    (default 1 − positive_weight) negative; ties in the score count half. With 0/1 weights this is
    the Mann–Whitney statistic scikit-learn's `roc_auc_score` computes."""
    scores = np.asarray(scores, dtype=float)
    wp = np.asarray(positive_weight, dtype=float)
    wn = 1.0 - wp if negative_weight is None else np.asarray(negative_weight, dtype=float)
    if scores.size == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    s, wp, wn = scores[order], wp[order], wn[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    gp, gn = np.add.reduceat(wp, starts), np.add.reduceat(wn, starts)
    total_p, total_n = gp.sum(), gn.sum()
    if total_p <= 0 or total_n <= 0:
        return math.nan
    below = np.cumsum(gn) - gn
    return float(np.sum(gp * (below + 0.5 * gn)) / (total_p * total_n))


def regression(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    usable = np.isfinite(truth) & np.isfinite(predicted)
    t, p = truth[usable], predicted[usable]
    if not t.size:
        return {"mae": math.nan, "rmse": math.nan, "mape": math.nan, "rows": 0}
    error = p - t
    return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error ** 2))),
            "mape": float(np.mean(np.abs(error) / np.maximum(np.abs(t), np.finfo(np.float64).eps))),
            "rows": int(t.size)}
