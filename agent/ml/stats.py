"""The drift statistics, each a plain function of numpy arrays.

Numeric columns are compared as samples (the reference's reservoir against
the window's values) or as counts in the reference's quantile bins;
categorical columns as counts per category. The numbers are the ones a user
would get from scipy on the same data. They are computed here the way scipy
computes them and tested against it (tests/ml/test_stats.py): scipy's argument
handling costs more than the arithmetic of a window's columns, and scipy.stats
and scipy.special hold a large share of a running agent's memory: neither is
imported by a window's statistics. The chi-squared p-value is
`chi_squared.chi2_sf` (scipy.special.chdtrc's), the KS distributions are in
`kolmogorov`; the exact KS p-value of unequal sizes (a reference and a window of
different sizes, as when a feature is missing on a few spans) comes from the
compiled routine `ks_2samp` calls for it, loaded from its file without importing
the scipy.stats package.

- `two_sample`: KS and Wasserstein-1 of a numeric column from one merge of the
  two sorted samples (the reservoir is kept sorted; the window is sorted once).
  `ks_2samp` and `wasserstein_distance` would each sort both again.
- `ks`: two-sample Kolmogorov–Smirnov statistic (exact) and p-value as `scipy.stats.ks_2samp`
  gives them: the exact distribution up to 10^6 reference × window pairs, the asymptotic one
  beyond (`kolmogorov.kolmogorov_sf`, i.e. `scipy.stats.kstwo.sf`).
- `wasserstein_normed`: Wasserstein-1 distance divided by the reference's standard
  deviation (floored at 0.001, as Evidently does for constant columns).
- `psi`: population stability index on binned counts; empty bins are given a
  share of 0.0001 so the logarithm stays finite.
- `jensen_shannon`: Jensen–Shannon distance of two count vectors, natural log
  (`scipy.spatial.distance.jensenshannon`; 0 for identical, at most sqrt(ln 2)).
- `chi2_two_sample`: chi-squared test of homogeneity on the 2×k contingency table
  of reference and window counts (`scipy.stats.chi2_contingency`, Yates-corrected
  on two categories); categories absent from both are dropped first.
- `adjust_p_values`: Bonferroni, or Benjamini–Hochberg as
  `scipy.stats.false_discovery_control`.

`COMPUTE` binds each row of the statistics' table (`agent.ml.statistics`) to
its function of a `Comparison` (a column's reference against a window).
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import math
import os
import sys
from types import ModuleType
from typing import Callable, NamedTuple

import numpy as np

from agent.ml import kolmogorov, statistics
from agent.ml.chi_squared import chi2_sf

# scipy is imported where it is used: every `vigil` command would otherwise pay for importing it at
# start-up.

PSI_EMPTY_BIN_SHARE = 1e-4
MIN_STD = 1e-3


class TestResult(NamedTuple):
    statistic: float
    p_value: float


# Above this many reference × window pairs, the KS p-value comes from the asymptotic distribution:
# at these sizes the exact one costs more than the rest of a column's tests and differs only in the 4th
# decimal.
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
        return TwoSample(TestResult(math.nan, math.nan), math.nan)
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

    The values are merged as a stable sort of u then v orders them (u's first among equal values):
    each of u's goes after the values of v below it. Within a run of equal values the ECDFs are
    partial; only the last of the run has the value's ECDFs (what searchsorted "right" gives). Each
    ECDF is count / size, divided as numpy divides a count array, so the differences are the same
    to the bit as from an argsort of the pooled values (tests/ml/test_stats.py).
    """
    n = u.size + v.size
    v_below = np.searchsorted(v, u, side="left")
    at = v_below + np.arange(u.size)  # u's places in the merge
    is_v = np.ones(n, dtype=bool)
    is_v[at] = False
    values = np.empty(n, dtype=np.result_type(u, v))
    values[at] = u
    values[is_v] = v
    # u's ECDF is j / len(u) from its j-th value up to the next: one run per j.
    differences = np.repeat(np.arange(u.size + 1) / u.size, np.diff(at, prepend=0, append=n))
    v_ecdf = np.empty(n)
    v_ecdf[is_v] = np.arange(1, v.size + 1) / v.size
    v_ecdf[at] = v_below / v.size
    return values, np.subtract(differences, v_ecdf, out=differences)


def _ks_test(u: np.ndarray, v: np.ndarray, values: np.ndarray, differences: np.ndarray) -> TestResult:
    """`scipy.stats.ks_2samp(u, v, method=ks_method(...))`, two-sided."""
    # ks_2samp takes the extremes of cdf1 - cdf2 over every pooled value; the last of each run of
    # equal values is enough (the others repeat it), and each difference is computed as it does.
    at_values = differences[np.append(values[1:] != values[:-1], True)]
    below, above = min(max(-float(at_values.min()), 0.0), 1.0), float(at_values.max())  # np.clip, on floats
    d = below if below > above else above
    if ks_method(u.size, v.size) == "exact":
        if u.size != v.size:
            return _exact_unequal_sizes(u, v, d)
        # The exact distribution is on whole steps of 1/n: ks_2samp rounds d to one, as here.
        h = int(np.round(d * u.size))
        d = h / u.size
        if h == 0:
            return TestResult(d, 1.0)
        p = kolmogorov.equal_sizes_sf(u.size, h)
        if 0 <= p <= 1:
            return TestResult(d, p)
        # Rounding took the exact value out of [0, 1]: ks_2samp takes the asymptotic one then.
    return _asymptotic(u.size, v.size, d)


def _exact_unequal_sizes(u: np.ndarray, v: np.ndarray, d: float) -> TestResult:
    """ks_2samp's exact p-value for samples of unequal sizes (its `_attempt_exact_2kssamp`), from the
    compiled recursion it calls; where that routine is not found, ks_2samp itself."""
    outer_prob_inside = _outer_prob_inside()
    if outer_prob_inside is None:
        return _scipy_ks(u, v)
    n1, n2 = u.size, v.size
    g = math.gcd(n1, n2)
    if n1 // g >= np.iinfo(np.int32).max / (n2 // g):  # lcm past int32: ks_2samp goes asymptotic
        return _asymptotic(n1, n2, d)
    lcm = (n1 // g) * n2
    h = int(np.round(d * lcm))
    d = h * 1.0 / lcm
    if h == 0:
        return TestResult(d, 1.0)
    try:
        with np.errstate(invalid="raise", over="raise"):
            p = float(outer_prob_inside(n1, n2, g, h))
    except (FloatingPointError, OverflowError):
        return _asymptotic(n1, n2, d)
    return TestResult(d, p) if 0 <= p <= 1 else _asymptotic(n1, n2, d)


_PYTHRAN = "scipy.stats._stats_pythran"


@functools.cache
def _outer_prob_inside() -> Callable[[int, int, int, int], float] | None:
    # scipy's own (private) routine behind ks_2samp's exact p-value of unequal sizes: the same
    # arithmetic without its argument handling, which costs as much again. tests/ml/test_stats.py
    # holds the result to ks_2samp's (tests/ml/test_kolmogorov.py, loaded alone); a scipy without
    # it gets ks_2samp.
    module = sys.modules.get(_PYTHRAN) or _load_alone(_PYTHRAN)
    return getattr(module, "_compute_outer_prob_inside_method", None)


def _load_alone(name: str) -> ModuleType | None:
    """The compiled module `name` of scipy.stats, loaded from its file without importing the
    scipy.stats package, whose every distribution would stay resident in the agent (about 45 MiB).
    It enters sys.modules under its own name, so a later `import scipy.stats` uses it too."""
    scipy_spec = importlib.util.find_spec("scipy")
    if scipy_spec is None or not scipy_spec.submodule_search_locations:
        return None
    package = name.rpartition(".")[0]
    folder = os.path.join(scipy_spec.submodule_search_locations[0], *package.split(".")[1:])
    loader = (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES)
    spec = importlib.machinery.FileFinder(folder, loader).find_spec(name)
    if spec is None:
        return None
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception:  # e.g. built against another numpy: ks_2samp itself, then
        return None
    return module


def _asymptotic(n1: int, n2: int, d: float) -> TestResult:
    """ks_2samp's asymptotic p-value: the two-sided one-sample distribution at the effective size."""
    m, n = sorted([float(n1), float(n2)], reverse=True)
    return TestResult(d, min(max(kolmogorov.kolmogorov_sf(d, round(m * n / (m + n))), 0.0), 1.0))


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
    gaps = np.diff(values)
    return float(np.sum(np.multiply(np.abs(differences[:-1]), gaps, out=gaps)))


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
    """`scipy.spatial.distance.jensenshannon` of the two count vectors (0 where that is not finite)."""
    ref_total, cur_total = reference_counts.sum(), current_counts.sum()
    if ref_total == 0 or cur_total == 0:
        return math.nan
    p, q = reference_counts / ref_total, current_counts / cur_total
    m = (p + q) / 2.0
    divergence = (_relative_entropy(p, m) + _relative_entropy(q, m)) / 2.0
    return math.sqrt(divergence) if divergence >= 0 else 0.0  # rounding below 0: scipy's NaN, taken as 0


def _relative_entropy(p: np.ndarray, m: np.ndarray) -> float:
    # The sum of scipy.special.rel_entr(p, m): p·log(p/m) where p > 0, 0 where p = 0 (m >= p/2 > 0
    # wherever p > 0, so rel_entr's other cases cannot arise).
    p_m = np.divide(p, m, out=np.ones_like(p), where=p > 0)
    return float(np.sum(p * np.log(p_m)))


def chi2_two_sample(reference_counts: np.ndarray, current_counts: np.ndarray) -> TestResult:
    """`scipy.stats.chi2_contingency` of the 2×k table: Pearson's statistic against the counts the
    margins expect, with Yates' continuity correction when k = 2 (one degree of freedom)."""
    if reference_counts.sum() == 0 or current_counts.sum() == 0:
        return TestResult(math.nan, math.nan)
    table = np.vstack([reference_counts, current_counts]).astype(float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return TestResult(0.0, 1.0)  # one category in both: nothing can differ
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    dof = table.shape[1] - 1
    observed = table
    if dof == 1:  # Yates: each count moved half a unit towards its expected value, never past it
        diff = expected - observed
        observed = observed + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    return TestResult(statistic, chi2_sf(dof, statistic))


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
        adjusted[tested] = benjamini_hochberg(p)
    else:
        raise ValueError(f"unknown correction {method!r}")
    return adjusted


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """`scipy.stats.false_discovery_control(p, method="bh")`: the i-th smallest of m p-values times
    m/i, then each made no larger than any above it in rank, capped at 1."""
    if p.size <= 1:
        return p
    order = np.argsort(p)
    ranked = p[order] * (p.size / np.arange(1, p.size + 1))
    np.minimum.accumulate(ranked[::-1], out=ranked[::-1])
    adjusted = np.empty_like(ranked)
    adjusted[order] = ranked
    return np.clip(adjusted, 0, 1)


# --- the statistics' table, bound to functions ---------------------------------------------------

class Comparison:
    """One column's reference against a window, as the statistics read it: the counts per bin
    (numeric) or per category, and for a numeric column the two samples and the reference's
    standard deviation."""

    def __init__(self, reference_counts: np.ndarray, current_counts: np.ndarray,
                 reference_sample: np.ndarray | None = None, current_sample: np.ndarray | None = None,
                 reference_std: float = math.nan) -> None:
        self.reference_counts = reference_counts
        self.current_counts = current_counts
        self.reference_sample = reference_sample
        self.current_sample = current_sample
        self.reference_std = reference_std
        self._two_sample: TwoSample | None = None

    @property
    def two_sample(self) -> TwoSample:
        """KS and Wasserstein of the samples, from the one merge both take."""
        if self._two_sample is None:
            self._two_sample = two_sample(self.reference_sample, self.current_sample)
        return self._two_sample


# Name → its function: a test statistic's gives a TestResult, an effect size's a float.
COMPUTE: dict[str, Callable[[Comparison], TestResult | float]] = {}


def computes(name: str) -> Callable:
    """Bind the decorated function to the table's row `name`."""
    if name not in statistics.BY_NAME:
        raise ValueError(f"{name!r} is not in the statistics' table (agent/ml/statistics.py)")

    def bind(function: Callable[[Comparison], TestResult | float]) -> Callable[[Comparison], TestResult | float]:
        COMPUTE[name] = function
        return function
    return bind


@computes("ks")
def _ks(c: Comparison) -> TestResult:
    return c.two_sample.ks


@computes("chi2")
def _chi2(c: Comparison) -> TestResult:
    return chi2_two_sample(c.reference_counts, c.current_counts)


@computes("psi")
def _psi(c: Comparison) -> float:
    return psi(c.reference_counts, c.current_counts)


@computes("wasserstein_normed")
def _wasserstein_normed(c: Comparison) -> float:
    return normed(c.two_sample.wasserstein, c.reference_std)


@computes("jensen_shannon")
def _jensen_shannon(c: Comparison) -> float:
    return jensen_shannon(c.reference_counts, c.current_counts)
