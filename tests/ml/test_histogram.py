"""Explicit-bucket histograms: counts as OTLP has them, and quantiles read back within one bucket.

The latencies are seeded draws shaped like inference latencies (lognormal,
a slow tail, two modes); numpy's percentiles of the raw values are the truth.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.ml.buckets import CONFIDENCE_BOUNDS, DURATION_BOUNDS, GENAI_DURATION_BOUNDS, TOKEN_BOUNDS, check_bounds
from agent.ml.histogram import Histogram, quantile


def latencies(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "lognormal":  # a model around 20 ms
        return rng.lognormal(np.log(0.02), 0.5, n)
    if kind == "tail":  # mostly fast, 3% very slow (cold caches, GC)
        fast = rng.lognormal(np.log(0.008), 0.3, n)
        return np.where(rng.random(n) < 0.03, rng.lognormal(np.log(1.5), 0.6, n), fast)
    if kind == "bimodal":  # two batch sizes
        return np.where(rng.random(n) < 0.6, rng.normal(0.05, 0.005, n), rng.normal(0.4, 0.03, n)).clip(1e-4)
    if kind == "exponential":
        return rng.exponential(0.2, n)
    raise ValueError(kind)


def bucket_of(bounds: np.ndarray, value: float) -> tuple[float, float]:
    """The bucket (lower, upper] holding `value`."""
    i = int(np.searchsorted(bounds, value, side="left"))
    lower = bounds[i - 1] if i > 0 else 0.0
    upper = bounds[i] if i < bounds.size else math.inf
    return lower, upper


@pytest.mark.parametrize("kind", ["lognormal", "tail", "bimodal", "exponential"])
@pytest.mark.parametrize("n", [200, 5_000, 100_000])
def test_quantiles_match_numpy_percentiles_within_one_bucket(kind: str, n: int):
    values = latencies(kind, n, seed=n)
    h = Histogram(np.array(DURATION_BOUNDS))
    for part in np.array_split(values, 7):  # batches, as the processor counts them
        h.add(part)
    assert h.count == n
    for q in (0.5, 0.95, 0.99):
        true = float(np.percentile(values, q * 100))
        estimate = h.quantile(q)
        lower, upper = bucket_of(h.bounds, true)
        upper = min(upper, h.max)
        width = upper - lower
        # Within one bucket: no farther from the truth than the width of the bucket that holds it.
        assert abs(estimate - true) <= width + 1e-12, (q, true, estimate, (lower, upper))
        # And with these bounds (about x1.5 apart), within half the true value.
        assert abs(estimate - true) <= 0.5 * true, (q, true, estimate)


def test_counts_are_otlp_buckets_upper_bound_inclusive():
    h = Histogram(np.array([1.0, 2.0, 5.0]))
    h.add(np.array([0.5, 1.0, 1.5, 2.0, 2.0001, 5.0, 7.0, math.nan, math.inf]))
    assert h.counts.tolist() == [2, 2, 2, 1]  # (-inf,1] (1,2] (2,5] (5,inf); NaN and inf left out
    assert h.count == 7 and h.total == pytest.approx(0.5 + 1 + 1.5 + 2 + 2.0001 + 5 + 7)
    assert (h.min, h.max) == (0.5, 7.0)


def test_merge_is_the_histogram_of_all_values():
    rng = np.random.default_rng(3)
    a, b = rng.exponential(0.1, 1000), rng.exponential(0.3, 500)
    ha, hb, hall = (Histogram(np.array(DURATION_BOUNDS)) for _ in range(3))
    ha.add(a)
    hb.add(b)
    hall.add(np.concatenate([a, b]))
    ha.merge(hb)
    assert ha.counts.tolist() == hall.counts.tolist()
    assert (ha.min, ha.max) == (hall.min, hall.max) and ha.total == pytest.approx(hall.total)


def test_quantile_edge_cases():
    bounds = np.array([1.0, 2.0])
    assert math.isnan(quantile(bounds, np.array([0, 0, 0]), 0.5))
    one = Histogram(bounds)
    one.add(np.array([1.5]))
    assert one.quantile(0.0) == one.quantile(0.5) == one.quantile(1.0) == 1.5  # min = max = the value
    overflow = Histogram(bounds)
    overflow.add(np.array([3.0, 9.0]))
    assert 3.0 <= overflow.quantile(0.99) <= 9.0  # the overflow bucket ends at the recorded max


def test_default_bounds_are_valid_and_the_conventions():
    for bounds in (DURATION_BOUNDS, CONFIDENCE_BOUNDS, TOKEN_BOUNDS, GENAI_DURATION_BOUNDS):
        assert check_bounds(bounds) == [float(b) for b in bounds]
    assert TOKEN_BOUNDS == (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
                            67108864)
    assert GENAI_DURATION_BOUNDS[0] == 0.01 and GENAI_DURATION_BOUNDS[-1] == 81.92
    assert CONFIDENCE_BOUNDS[-1] == 1.0 and {0.9, 0.95, 0.99} <= set(CONFIDENCE_BOUNDS)
    ratios = np.array(DURATION_BOUNDS[1:]) / np.array(DURATION_BOUNDS[:-1])
    assert ratios.max() <= 2.0 + 1e-9


@pytest.mark.parametrize("bad", [[], [1.0, 1.0], [2.0, 1.0], [1.0, math.inf]])
def test_bad_bounds_are_refused(bad):
    with pytest.raises(ValueError):
        check_bounds(bad)
