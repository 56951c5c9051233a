"""The drift statistics, each a plain function of numpy arrays.

Numeric columns are compared as samples (the reference's reservoir against
the window's values) or as counts in the reference's quantile bins;
categorical columns as counts per category. Where scipy has the statistic,
scipy computes it, so the numbers are the ones a user would get from scipy on
the same data.

- `ks`: two-sample Kolmogorov–Smirnov statistic (exact) and p-value (`scipy.stats.ks_2samp`:
  the exact distribution up to 10^6 reference × window pairs, the asymptotic one beyond).
- `wasserstein_normed`: Wasserstein-1 distance divided by the reference's standard
  deviation (floored at 0.001, as Evidently does for constant columns).
- `psi`: population stability index on binned counts; empty bins are given a
  share of 0.0001 so the logarithm stays finite.
- `jensen_shannon`: Jensen–Shannon distance of two count vectors, natural log
  (`scipy.spatial.distance.jensenshannon`; 0 for identical, at most sqrt(ln 2)).
- `chi2_two_sample`: chi-squared test of homogeneity on the 2×k contingency table
  of reference and window counts (`scipy.stats.chi2_contingency`); categories
  absent from both are dropped first.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

# scipy is imported where it is used: importing it costs about a second, which every
# `vigil` command would otherwise pay at start-up.

PSI_EMPTY_BIN_SHARE = 1e-4
MIN_STD = 1e-3


class TestResult(NamedTuple):
    statistic: float
    p_value: float


# Above this many reference × window pairs, the KS p-value comes from the asymptotic distribution:
# the exact one costs about 12 ms a column at 10,000 × 5,000 and differs in the 4th decimal.
KS_EXACT_MAX_PAIRS = 1_000_000


def ks_method(n_reference: int, n_current: int) -> str:
    """How `ks` computes its p-value for samples of these sizes: scipy's "exact" or "asymp"."""
    return "exact" if n_reference * n_current <= KS_EXACT_MAX_PAIRS else "asymp"


def ks(reference: np.ndarray, current: np.ndarray) -> TestResult:
    if reference.size == 0 or current.size == 0:
        return TestResult(math.nan, math.nan)
    from scipy import stats as scipy_stats

    result = scipy_stats.ks_2samp(reference, current, method=ks_method(reference.size, current.size))
    return TestResult(float(result.statistic), float(result.pvalue))


def wasserstein_normed(reference: np.ndarray, current: np.ndarray, reference_std: float) -> float:
    if reference.size == 0 or current.size == 0:
        return math.nan
    # scipy's `wasserstein_distance` (its `_cdf_distance`, p = 1), step for step so the number is the
    # same, without its two argsorts: the reservoir comes sorted and the window is sorted once.
    u = reference if _is_sorted(reference) else np.sort(reference)
    v = np.sort(current)
    all_values = np.concatenate((u, v))
    all_values.sort(kind="mergesort")
    deltas = np.diff(all_values)
    u_cdf = u.searchsorted(all_values[:-1], "right") / u.size
    v_cdf = v.searchsorted(all_values[:-1], "right") / v.size
    return float(_vecdot(np.abs(u_cdf - v_cdf), deltas)) / max(reference_std, MIN_STD)


def _is_sorted(values: np.ndarray) -> bool:
    return bool(np.all(values[1:] >= values[:-1]))


def _vecdot(a: np.ndarray, b: np.ndarray) -> float:
    vecdot = getattr(np, "vecdot", None)  # what scipy uses where numpy has it (numpy >= 2)
    return vecdot(a, b) if vecdot is not None else np.sum(np.multiply(a, b))


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of `values` in the bins between `edges`, plus one bin below and one above.

    With n edges there are n + 1 bins: (-inf, e0], (e0, e1], ..., (e_{n-1}, +inf),
    upper bound inclusive, as OTLP explicit-bucket histograms count.
    """
    return np.bincount(np.searchsorted(edges, values, side="left"), minlength=edges.size + 1)


def psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    ref_total, cur_total = reference_counts.sum(), current_counts.sum()
    if ref_total == 0 or cur_total == 0:
        return math.nan
    ref = np.maximum(reference_counts / ref_total, PSI_EMPTY_BIN_SHARE)
    cur = np.maximum(current_counts / cur_total, PSI_EMPTY_BIN_SHARE)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def jensen_shannon(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    if reference_counts.sum() == 0 or current_counts.sum() == 0:
        return math.nan
    from scipy.spatial import distance

    value = distance.jensenshannon(reference_counts.astype(float), current_counts.astype(float))
    return float(value) if np.isfinite(value) else 0.0


def chi2_two_sample(reference_counts: np.ndarray, current_counts: np.ndarray) -> TestResult:
    if reference_counts.sum() == 0 or current_counts.sum() == 0:
        return TestResult(math.nan, math.nan)
    table = np.vstack([reference_counts, current_counts]).astype(float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return TestResult(0.0, 1.0)  # one category in both: nothing can differ
    from scipy import stats as scipy_stats

    result = scipy_stats.chi2_contingency(table)
    return TestResult(float(result.statistic), float(result.pvalue))


def adjust_p_values(p_values: np.ndarray, method: str) -> np.ndarray:
    """Family-wise p-values: "bonferroni" or "benjamini_hochberg" (NaN entries are left out)."""
    adjusted = np.full(p_values.shape, math.nan)
    tested = ~np.isnan(p_values)
    p = p_values[tested]
    m = p.size
    if m == 0:
        return adjusted
    if method == "bonferroni":
        adjusted[tested] = np.minimum(p * m, 1.0)
    elif method == "benjamini_hochberg":
        from scipy import stats as scipy_stats

        adjusted[tested] = scipy_stats.false_discovery_control(p, method="bh")
    else:
        raise ValueError(f"unknown correction {method!r}")
    return adjusted
