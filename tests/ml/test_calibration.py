"""Calibration maps against scikit-learn, and the held-out check that decides whether a map is used."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from agent.ml import calibration


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def scored(n: int, seed: int, sharpness: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Scores of a model whose truth is P(y=1 | x) = sigmoid(2x); `sharpness` > 1 is over-confident."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, n)
    return sigmoid(2.0 * sharpness * x), (rng.random(n) < sigmoid(2.0 * x)).astype(float)


@pytest.mark.parametrize("n, decimals", [(10, 2), (500, 2), (20_000, 3), (20_000, 12)])
def test_isotonic_matches_scikit_learn(n: int, decimals: int):
    scores, outcomes = scored(n, seed=n + decimals, sharpness=2.0)
    scores = scores.round(decimals)  # ties, many or none
    x, y = calibration.isotonic(scores, outcomes)
    reference = IsotonicRegression(out_of_bounds="clip").fit(scores, outcomes)
    probe = np.concatenate([np.linspace(-0.1, 1.1, 2001), scores])
    np.testing.assert_allclose(np.interp(probe, x, y), reference.predict(probe), atol=1e-12)
    assert np.all(np.diff(y) >= 0) and np.all(np.diff(x) >= 0)


def test_isotonic_of_an_increasing_sequence_is_itself_and_of_a_decreasing_one_its_mean():
    s = np.linspace(0, 1, 11)
    x, y = calibration.isotonic(s, s)
    np.testing.assert_allclose(np.interp(s, x, y), s)
    x, y = calibration.isotonic(s, 1 - s)
    np.testing.assert_allclose(np.interp(s, x, y), np.full(11, 0.5))


def test_binned_map_is_the_positive_share_per_equal_frequency_bin():
    scores, outcomes = scored(10_000, seed=5, sharpness=2.0)
    edges, rates = calibration.binned(scores, outcomes, bins=10)
    assert edges.size == 9
    np.testing.assert_allclose(edges, np.quantile(scores, np.linspace(0, 1, 11)[1:-1]))
    index = np.searchsorted(edges, scores, side="left")
    for b in range(10):
        assert rates[b] == pytest.approx(outcomes[index == b].mean())
    np.testing.assert_allclose(calibration.apply_map("binned", edges, rates, scores), rates[index])


def test_a_map_is_used_only_when_it_beats_the_raw_scores_on_held_out_folds():
    over, truth = scored(20_000, seed=1, sharpness=2.0)  # over-confident: the map helps
    fitted = calibration.fit(over, truth)
    assert fitted.applied and fitted.folds == 5
    assert fitted.brier_calibrated < fitted.brier_raw
    # Calibrated probabilities track the truth in each decile of the score.
    p = fitted(over)
    for part in np.array_split(np.argsort(over), 10):
        assert abs(p[part].mean() - truth[part].mean()) < 0.03

    calibrated, truth = scored(20_000, seed=2)  # already calibrated: a map would only add noise
    kept = calibration.fit(calibrated, truth)
    assert not kept.applied and kept.brier_calibrated >= kept.brier_raw
    np.testing.assert_array_equal(kept(calibrated), calibrated)  # the raw scores are used

    for method in calibration.METHODS:
        assert calibration.fit(over, truth, method=method).applied


def test_too_few_rows_or_one_outcome_fit_no_map():
    scores, outcomes = scored(50, seed=3)
    assert not calibration.fit(scores, outcomes).applied
    scores, _ = scored(1000, seed=4)
    none = calibration.fit(scores, np.zeros(1000))
    assert not none.applied and none.y.size == 0
    # NaN scores are left out rather than breaking the fit.
    scores, outcomes = scored(2000, seed=6, sharpness=3.0)
    scores[::10] = np.nan
    assert calibration.fit(scores, outcomes).applied
