"""The drift statistics, each a plain function of numpy arrays.

Numeric columns are compared as samples (the reference's reservoir against
the window's values) or as counts in the reference's quantile bins;
categorical columns as counts per category. The numbers are the ones a user
would get from scipy on the same data: scipy computes them, or, where scipy's
way costs most of the engine's time, they are computed here the way scipy
does and tested against it (tests/ml/test_stats.py).

- `two_sample`: KS and Wasserstein-1 of a numeric column from one merge of the
  two sorted samples (the reservoir is kept sorted; the window is sorted once).
  `ks_2samp` and `wasserstein_distance` would each sort both again.
- `ks`: two-sample Kolmogorov–Smirnov statistic (exact) and p-value as `scipy.stats.ks_2samp`
  gives them: the exact distribution up to 10^6 reference × window pairs (scipy computes it),
  the asymptotic one beyond (`kolmogorov_sf`, i.e. `scipy.stats.kstwo.sf`).
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


class TwoSample(NamedTuple):
    """A numeric column's two-sample statistics: KS and the (raw) Wasserstein-1 distance."""
    ks: TestResult
    wasserstein: float


def two_sample(reference: np.ndarray, current: np.ndarray) -> TwoSample:
    """`ks(reference, current)` and the Wasserstein-1 distance, from one merge of the sorted samples.

    Sorted input (the profile's reservoir) is not sorted again.
    """
    if reference.size == 0 or current.size == 0:
        return TwoSample(TestResult(math.nan, math.nan), math.nan)
    u, v = sort(reference), sort(current)
    if math.isnan(u[-1]) or math.isnan(v[-1]):  # NaN sorts last; scipy propagates it
        return TwoSample(_scipy_ks(u, v), math.nan)
    values, differences = _pooled_ecdf_differences(u, v)
    return TwoSample(_ks_test(u, v, values, differences), _wasserstein(values, differences))


def ks(reference: np.ndarray, current: np.ndarray) -> TestResult:
    return two_sample(reference, current).ks


def wasserstein_normed(reference: np.ndarray, current: np.ndarray, reference_std: float) -> float:
    return normed(two_sample(reference, current).wasserstein, reference_std)


def normed(distance: float, reference_std: float) -> float:
    return distance / max(reference_std, MIN_STD)


def sort(values: np.ndarray) -> np.ndarray:
    return values if _is_sorted(values) else np.sort(values)


def _is_sorted(values: np.ndarray) -> bool:
    return bool(np.all(values[1:] >= values[:-1]))


def _pooled_ecdf_differences(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pooled values in order and, at each, ECDF of u - ECDF of v (u, v sorted, no NaN).

    A stable argsort of two sorted runs is one merge pass. Within a run of equal values the ECDFs
    are partial; only the last of the run has the value's ECDFs (what searchsorted "right" gives).
    """
    pooled = np.concatenate((u, v))
    order = np.argsort(pooled, kind="stable")
    u_count = np.cumsum(order < u.size)
    v_count = np.arange(1, pooled.size + 1) - u_count
    return pooled[order], u_count / u.size - v_count / v.size


def _ks_test(u: np.ndarray, v: np.ndarray, values: np.ndarray, differences: np.ndarray) -> TestResult:
    """`scipy.stats.ks_2samp(u, v, method=ks_method(...))`, two-sided."""
    if ks_method(u.size, v.size) == "exact":
        return _scipy_ks(u, v)  # small samples: scipy's exact distribution, statistic and all
    # ks_2samp takes the extremes of cdf1 - cdf2 over every pooled value; the last of each run of
    # equal values is enough (the others repeat it), and each difference is computed as it does.
    at_values = differences[np.append(values[1:] != values[:-1], True)]
    below, above = float(np.clip(-at_values.min(), 0, 1)), float(at_values.max())
    d = below if below > above else above
    # ks_2samp's asymptotic p-value: the two-sided one-sample distribution at the effective size.
    m, n = sorted([float(u.size), float(v.size)], reverse=True)
    return TestResult(d, min(max(kolmogorov_sf(d, round(m * n / (m + n))), 0.0), 1.0))


def _scipy_ks(u: np.ndarray, v: np.ndarray) -> TestResult:
    from scipy import stats as scipy_stats

    result = scipy_stats.ks_2samp(u, v, method=ks_method(u.size, v.size))
    return TestResult(float(result.statistic), float(result.pvalue))


def _wasserstein(values: np.ndarray, differences: np.ndarray) -> float:
    # scipy's `wasserstein_distance` (its `_cdf_distance`, p = 1): the sum of |ECDF difference| times
    # the gap to the next pooled value. Inside a run of equal values the differences here are partial,
    # but the gap is 0 there, so every product is scipy's. Summed by numpy rather than with scipy's
    # np.vecdot, which is BLAS: multi-threaded, it costs more than the rest of this function (the
    # sums differ in the last bit or so).
    return float(np.sum(np.abs(differences[:-1]) * np.diff(values)))


# --- the Kolmogorov distribution ---------------------------------------------------------------
# scipy's `kstwo.sf(x, n)` for n > 140 and 2.2 <= n·x² < 370 (a drifted column of a large window)
# is 2·`scipy.special.smirnov(n, x)`, an exact sum of about n terms in double-double arithmetic:
# 4 to 6 ms a call at n = 5,000. The same sum is taken here in one vectorised pass (about 0.1 ms),
# in a form that keeps each term's relative error near 1e-13.

_SMIRNOV_MAX_N = 1_000_000  # beyond it scipy's smirnov approximates; this sum is not used


def kolmogorov_sf(x: float, n: int) -> float:
    """`scipy.stats.kstwo.sf(x, n)`: P(D_n > x) for the two-sided one-sample KS statistic D_n."""
    t = n * x
    if 140 < n <= _SMIRNOV_MAX_N and x < 0.5 and t > 1.0:  # scipy's _kolmogn, branch for branch
        nxsquared = t * x
        if nxsquared >= 370.0:
            return 0.0
        if nxsquared >= 2.2:
            return min(max(2 * smirnov_sf(n, x), 0.0), 1.0)
    from scipy import stats as scipy_stats

    return float(scipy_stats.kstwo.sf(x, n))


def smirnov_sf(n: int, x: float) -> float:
    """`scipy.special.smirnov(n, x)`, P(D+_n >= x), for 0 < x < 1 and 1/n < x, by Birnbaum–Tingey:

        x · sum over 0 <= j < n(1-x) of C(n, j) (1 - x - j/n)^(n-j) (x + j/n)^(j-1)

    Each term is taken in logs with C(n, j) written through Stirling's formula, so the large
    logarithms cancel in closed form rather than in floating point:

        log term_j = (n-j) log1p(-nx/(n-j)) + j log1p(nx/j) - log(x + j/n)
                     + ½ log(n / (2π j (n-j))) + δ(n) - δ(j) - δ(n-j),

    δ(k) = log k! - (k log k - k + ½ log 2πk), Stirling's remainder.
    """
    nx = n * x
    j = np.arange(1.0, n - math.floor(nx))
    if j.size == 0:  # x >= 1 - 1/n: the j = 0 term alone
        return (1.0 - x) ** n
    k = n - j
    logs = (k * np.log1p(-nx / k) + j * np.log1p(nx / j) - np.log(x + j / n)
            + 0.5 * np.log(n / (2 * math.pi * j * k)) + _stirling_remainder(np.array([float(n)]))[0]
            - _stirling_remainder(j) - _stirling_remainder(k))
    top = float(logs.max())  # scaled, so a sum below the smallest normal double keeps its digits
    total = math.exp(top + math.log(x * float(np.sum(np.exp(logs - top)))))
    return (1.0 - x) ** n + total  # j = 0 adds x · (1-x)^n / x


_STIRLING_SERIES_FROM = 30
_STIRLING_SMALL = np.array([0.0] + [math.lgamma(k + 1) - (k * math.log(k) - k + 0.5 * math.log(2 * math.pi * k))
                                    for k in range(1, _STIRLING_SERIES_FROM)])


def _stirling_remainder(k: np.ndarray) -> np.ndarray:
    """δ(k) = log k! - (k log k - k + ½ log 2πk) for whole k >= 1: the asymptotic series from 30
    (its next term is below 1e-16 there), log-gamma below."""
    r = 1.0 / np.maximum(k, _STIRLING_SERIES_FROM)
    r2 = r * r
    out = r * (1 / 12 - r2 * (1 / 360 - r2 * (1 / 1260 - r2 / 1680)))
    small = k < _STIRLING_SERIES_FROM
    if small.any():
        out[small] = _STIRLING_SMALL[k[small].astype(np.intp)]
    return out


def bin_counts(values: np.ndarray, edges: np.ndarray, *, is_sorted: bool = False) -> np.ndarray:
    """Counts of `values` in the bins between `edges`, plus one bin below and one above.

    With n edges there are n + 1 bins: (-inf, e0], (e0, e1], ..., (e_{n-1}, +inf),
    upper bound inclusive, as OTLP explicit-bucket histograms count. `is_sorted`: the values
    are in ascending order (then each edge is looked up in them, not each value in the edges).
    """
    if is_sorted:
        at_or_below = np.searchsorted(values, edges, side="right")
    elif edges.size <= 16:  # a comparison pass per edge costs less than a binary search per value
        at_or_below = np.array([np.count_nonzero(values <= edge) for edge in edges], dtype=np.int64)
    else:
        return np.bincount(np.searchsorted(edges, values, side="left"), minlength=edges.size + 1)
    return np.diff(at_or_below, prepend=0, append=values.size)


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
