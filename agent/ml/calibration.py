"""Calibration maps: from a model's score to the probability that the event it scores happens.

A label-free performance estimate is only as good as the probabilities it
averages. A model's scores are often over- or under-confident, so the
reference (which has labels) is used to fit a monotone map from score to
observed frequency:

- `isotonic`: isotonic regression by pool-adjacent-violators, stored as the
  points it passes through and read with linear interpolation between them
  (as scikit-learn's `IsotonicRegression(out_of_bounds="clip")` predicts);
- `binned`: equal-frequency bins of the score, each mapped to the share of
  positive outcomes in it.

A map is only used when it helps: it is fitted on k-1 folds of the reference
and scored on the held-out fold, k times, and applied only when its held-out
Brier score is lower than the raw scores'. A model that is calibrated already
keeps its own scores (a fitted map would only add noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

ISOTONIC = "isotonic"
BINNED = "binned"
METHODS = (ISOTONIC, BINNED)

DEFAULT_FOLDS = 5
DEFAULT_BINS = 20
# Fewer labelled rows than this: no map is fitted (the raw scores are used).
MIN_ROWS = 100


@dataclass
class Calibration:
    method: str
    # isotonic: the points the map passes through (x increasing); binned: inner bin edges and one
    # rate per bin (len(y) == len(x) + 1).
    x: np.ndarray = field(default_factory=lambda: np.empty(0))
    y: np.ndarray = field(default_factory=lambda: np.empty(0))
    # Held-out (cross-validated) Brier scores of the raw scores and of the map.
    brier_raw: float = math.nan
    brier_calibrated: float = math.nan
    folds: int = 0
    applied: bool = False

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of `scores`; the scores themselves (clipped to [0, 1]) when the
        map is not applied."""
        scores = np.asarray(scores, dtype=float)
        if not self.applied or not self.y.size:
            return np.clip(scores, 0.0, 1.0)
        return apply_map(self.method, self.x, self.y, scores)


def isotonic(scores: np.ndarray, outcomes: np.ndarray, weights: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Increasing isotonic regression of `outcomes` on `scores` (pool adjacent violators).

    Returns the points (x, y) of the fitted step function where a block starts and ends;
    `np.interp(s, x, y)` reads it, constant beyond the ends.
    """
    scores = np.asarray(scores, dtype=float)
    outcomes = np.asarray(outcomes, dtype=float)
    weights = np.ones_like(scores) if weights is None else np.asarray(weights, dtype=float)
    if not scores.size:
        return np.empty(0), np.empty(0)
    # Equal scores are one point (their weighted mean): scikit-learn does the same.
    xs, inverse = np.unique(scores, return_inverse=True)
    w = np.bincount(inverse, weights=weights, minlength=xs.size)
    wy = np.bincount(inverse, weights=weights * outcomes, minlength=xs.size)
    # Blocks as parallel stacks: total weight, weighted sum, index of the first point.
    block_w: list[float] = []
    block_wy: list[float] = []
    block_start: list[int] = []
    for i, (wi, wyi) in enumerate(zip(w.tolist(), wy.tolist())):
        block_w.append(wi)
        block_wy.append(wyi)
        block_start.append(i)
        # Pool while the last block's mean is below the one before it.
        while len(block_w) > 1 and block_wy[-1] * block_w[-2] < block_wy[-2] * block_w[-1]:
            wi, wyi = block_w.pop(), block_wy.pop()
            block_start.pop()
            block_w[-1] += wi
            block_wy[-1] += wyi
    means = np.array(block_wy) / np.array(block_w)
    starts = np.array(block_start)
    ends = np.append(starts[1:] - 1, xs.size - 1)
    # Each block contributes its first and last point (one, when it holds a single score).
    x = np.column_stack([xs[starts], xs[ends]]).ravel()
    y = np.repeat(means, 2)
    keep = np.ones(x.size, dtype=bool)
    keep[1::2] = starts != ends
    return x[keep], y[keep]


def binned(scores: np.ndarray, outcomes: np.ndarray, bins: int = DEFAULT_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Equal-frequency bins of `scores`: inner edges and the mean outcome per bin."""
    scores = np.asarray(scores, dtype=float)
    outcomes = np.asarray(outcomes, dtype=float)
    if not scores.size:
        return np.empty(0), np.empty(0)
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, bins + 1)[1:-1]))
    index = np.searchsorted(edges, scores, side="left")
    counts = np.bincount(index, minlength=edges.size + 1)
    sums = np.bincount(index, weights=outcomes, minlength=edges.size + 1)
    overall = float(outcomes.mean())
    rates = np.where(counts > 0, sums / np.maximum(counts, 1), overall)
    return edges, rates


def apply_map(method: str, x: np.ndarray, y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    if method == ISOTONIC:
        return np.interp(scores, x, y)
    if method == BINNED:
        return y[np.searchsorted(x, scores, side="left")]
    raise ValueError(f"unknown calibration method {method!r}")


def fit_map(method: str, scores: np.ndarray, outcomes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if method == ISOTONIC:
        return isotonic(scores, outcomes)
    if method == BINNED:
        return binned(scores, outcomes)
    raise ValueError(f"unknown calibration method {method!r}")


def brier(probabilities: np.ndarray, outcomes: np.ndarray) -> float:
    return float(np.mean((np.asarray(probabilities, dtype=float) - outcomes) ** 2)) if outcomes.size else math.nan


def fit(scores: np.ndarray, outcomes: np.ndarray, method: str = ISOTONIC, folds: int = DEFAULT_FOLDS,
        seed: int = 0) -> Calibration:
    """A map from `scores` (0–1) to the probability of `outcomes` (0/1), checked on held-out folds.

    Rows with a non-finite score are left out. With fewer than `MIN_ROWS` rows, or outcomes of
    one kind only, no map is fitted and the raw scores are used.
    """
    scores = np.asarray(scores, dtype=float)
    outcomes = np.asarray(outcomes, dtype=float)
    usable = np.isfinite(scores) & np.isfinite(outcomes)
    scores, outcomes = np.clip(scores[usable], 0.0, 1.0), outcomes[usable]
    result = Calibration(method)
    if scores.size < MIN_ROWS or np.unique(outcomes).size < 2:
        result.brier_raw = brier(scores, outcomes)
        return result
    folds = max(2, min(folds, scores.size // 20))
    fold_of = np.random.default_rng(seed).permutation(scores.size) % folds
    held_out = np.empty(scores.size)
    for k in range(folds):
        test = fold_of == k
        x, y = fit_map(method, scores[~test], outcomes[~test])
        held_out[test] = apply_map(method, x, y, scores[test])
    result.x, result.y = fit_map(method, scores, outcomes)
    result.folds = folds
    result.brier_raw = brier(scores, outcomes)
    result.brier_calibrated = brier(held_out, outcomes)
    result.applied = bool(result.brier_calibrated < result.brier_raw)
    return result
