"""The drift statistics of agent/ml/stats.py against scipy and against formulas written out here.

Each statistic is checked twice where that is possible: against the scipy function the module
promises to match (so a user running scipy on the same data gets the same number), and against
the textbook formula computed independently in this file (so a wrong scipy call, e.g. the wrong
log base or a forgotten normalisation, cannot pass by agreeing with itself).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from scipy.spatial import distance

from agent.ml import stats

REL = 1e-9


def approx(value: float) -> object:
    return pytest.approx(value, rel=REL, abs=1e-15)


# --- formulas written out, independent of scipy ------------------------------------------------

def ecdf(sample: np.ndarray, at: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.sort(sample), at, side="right") / sample.size


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """sup_x |F_a(x) - F_b(x)|: the supremum is reached at a data point (ECDFs are right-continuous)."""
    grid = np.union1d(a, b)
    return float(np.max(np.abs(ecdf(a, grid) - ecdf(b, grid))))


def wasserstein_1(a: np.ndarray, b: np.ndarray) -> float:
    """The integral of |F_a - F_b| over the line: a sum over the gaps between pooled data points."""
    grid = np.union1d(a, b)
    return float(np.sum(np.abs(ecdf(a, grid[:-1]) - ecdf(b, grid[:-1])) * np.diff(grid)))


def pearson_chi2(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Pearson's chi-squared test of homogeneity on the 2×k table (no continuity correction)."""
    table = np.vstack([reference, current]).astype(float)
    table = table[:, table.sum(axis=0) > 0]
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return statistic, float(scipy_stats.chi2.sf(statistic, table.shape[1] - 1))


def js_distance(a: np.ndarray, b: np.ndarray) -> float:
    """sqrt of the Jensen–Shannon divergence, natural log, 0·log 0 = 0."""
    p, q = a / a.sum(), b / b.sum()
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float(np.sum(x[nz] * np.log(x[nz] / m[nz])))

    return math.sqrt(max((kl(p) + kl(q)) / 2, 0.0))


def psi_formula(reference: np.ndarray, current: np.ndarray, floor: float = 1e-4) -> float:
    r = np.maximum(reference / reference.sum(), floor)
    c = np.maximum(current / current.sum(), floor)
    return float(sum((ci - ri) * math.log(ci / ri) for ri, ci in zip(r, c)))


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Step-up BH: adj_(i) = min_{j >= i} m/j · p_(j), capped at 1, returned in the input order."""
    m = p.size
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    out = np.empty(m)
    out[order] = adjusted
    return out


# --- KS ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_ref, n_cur, shift", [
    (40, 25, 0.0),        # exact p-value
    (300, 700, 0.3),      # exact
    (1_000, 1_000, 0.1),    # exact: at the limit of 10^6 pairs
    (10_000, 2_000, 0.05),  # asymptotic
    (12_000, 20_000, 0.02),  # asymptotic
])
def test_ks_matches_scipy_and_the_ecdf_supremum(n_ref: int, n_cur: int, shift: float) -> None:
    rng = np.random.default_rng(n_ref + n_cur)
    a, b = rng.standard_normal(n_ref), rng.standard_normal(n_cur) + shift
    result = stats.ks(a, b)
    expected = scipy_stats.ks_2samp(a, b, method=stats.ks_method(n_ref, n_cur))
    assert result.statistic == approx(expected.statistic)
    assert result.p_value == approx(expected.pvalue)
    assert result.statistic == approx(ks_statistic(a, b))
    assert 0.0 <= result.p_value <= 1.0
    # Where the asymptotic p-value is used, it is close to scipy's exact one.
    if n_ref * n_cur <= 10_000 * 2_000:
        exact = scipy_stats.ks_2samp(a, b, method="exact").pvalue
        assert result.p_value == pytest.approx(exact, rel=0.05, abs=1e-4)


def test_ks_with_ties_in_integer_data() -> None:
    rng = np.random.default_rng(7)
    a = rng.integers(0, 15, 800).astype(float)
    b = rng.integers(1, 16, 600).astype(float)
    result = stats.ks(a, b)
    expected = scipy_stats.ks_2samp(a, b, method=stats.ks_method(a.size, b.size))
    assert result.statistic == approx(expected.statistic)
    assert result.p_value == approx(expected.pvalue)
    # With ties the supremum must be taken after every tied value, which the ECDF formula does.
    assert result.statistic == approx(ks_statistic(a, b))
    assert result.statistic > 0.05


def test_ks_of_identical_constant_columns_is_zero_with_p_one() -> None:
    result = stats.ks(np.full(100, 3.0), np.full(50, 3.0))
    assert result.statistic == 0.0
    assert result.p_value == approx(1.0)


def test_ks_of_disjoint_constant_columns_is_one() -> None:
    result = stats.ks(np.full(100, 3.0), np.full(50, 4.0))
    assert result.statistic == 1.0
    assert result.p_value == approx(scipy_stats.ks_2samp(np.full(100, 3.0), np.full(50, 4.0)).pvalue)
    assert result.p_value < 1e-20


@pytest.mark.parametrize("a, b", [(np.empty(0), np.arange(5.0)), (np.arange(5.0), np.empty(0)),
                                  (np.empty(0), np.empty(0))])
def test_ks_of_an_empty_sample_is_nan(a: np.ndarray, b: np.ndarray) -> None:
    result = stats.ks(a, b)
    assert math.isnan(result.statistic) and math.isnan(result.p_value)


# --- KS and Wasserstein from one merge: the same numbers as scipy, on every path -------------------

TIGHT = 1e-12  # floating-point noise: what the merge may change against scipy's own computation


def samples(case: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(sum(map(ord, case)))
    if case == "continuous, asymptotic":
        return rng.standard_normal(10_000), rng.standard_normal(5_000) * 1.1 + 0.05
    if case == "shifted, asymptotic":  # p-value from the Smirnov sum (2.2 <= n·d² < 370)
        return rng.standard_normal(10_000), rng.standard_normal(8_000) + 0.3
    if case == "far apart, asymptotic":  # n·d² >= 370: p-value 0
        return rng.standard_normal(10_000), rng.standard_normal(8_000) + 3.0
    if case == "integers with ties, asymptotic":
        return rng.integers(0, 12, 4_000).astype(float), rng.integers(1, 13, 3_000).astype(float)
    if case == "integers with ties, exact":
        return rng.integers(0, 5, 300).astype(float), rng.integers(0, 6, 200).astype(float)
    if case == "signed zeros":
        a = rng.choice([-0.0, 0.0, 1.0, -1.0], 3_000)
        return a, rng.choice([-0.0, 0.0, 1.0, 2.0], 2_000)
    if case == "tiny":
        return np.array([0.5]), np.array([0.1, 0.7])
    if case == "one each, equal":
        return np.array([2.0]), np.array([2.0])
    if case == "at the exact limit":  # 10^6 pairs: exact
        return rng.standard_normal(1_000), rng.standard_normal(1_000) + 0.1
    if case == "just past the exact limit":  # 1,001 × 1,000: asymptotic
        return rng.standard_normal(1_001), rng.standard_normal(1_000) + 0.1
    if case == "unsorted reference, small window":  # asymptotic at n_eff < 140 (scipy's own branch)
        return rng.standard_normal(20_000), rng.standard_normal(120) + 0.2
    raise ValueError(case)


CASES = ["continuous, asymptotic", "shifted, asymptotic", "far apart, asymptotic", "integers with ties, asymptotic",
         "integers with ties, exact", "signed zeros", "tiny", "one each, equal", "at the exact limit",
         "just past the exact limit", "unsorted reference, small window"]


@pytest.mark.parametrize("case", CASES)
def test_two_sample_gives_scipys_ks_and_wasserstein(case: str) -> None:
    a, b = samples(case)
    expected = scipy_stats.ks_2samp(a, b, method=stats.ks_method(a.size, b.size))
    for reference, current in ((np.sort(a), b), (a, np.sort(b))):  # sorted or not, either side
        result = stats.two_sample(reference, current)
        assert result.ks.statistic == expected.statistic  # the same float: the same differences compared
        assert result.ks.p_value == pytest.approx(expected.pvalue, rel=TIGHT, abs=1e-300)
        assert result.wasserstein == pytest.approx(scipy_stats.wasserstein_distance(a, b), rel=TIGHT, abs=1e-15)
        assert stats.ks(reference, current) == result.ks
    assert expected.statistic == approx(ks_statistic(a, b))
    assert stats.two_sample(a, b).wasserstein == approx(wasserstein_1(a, b))


@pytest.mark.parametrize("n_ref, n_cur", [(970, 968), (1000, 999), (968, 1000), (500, 1500), (37, 1000), (3, 7)])
def test_exact_p_value_of_unequal_sizes_is_ks_2samps(n_ref: int, n_cur: int) -> None:
    # Windows and references with a few values missing: the exact distribution of unequal sizes.
    rng = np.random.default_rng(n_ref * n_cur)
    for shift in (0.0, 0.08, 0.3):
        a, b = rng.standard_normal(n_ref), rng.standard_normal(n_cur) + shift
        expected = scipy_stats.ks_2samp(a, b, method="exact")
        result = stats.two_sample(np.sort(a), b).ks
        assert stats.ks_method(n_ref, n_cur) == "exact"
        assert result.statistic == expected.statistic
        assert result.p_value == pytest.approx(expected.pvalue, rel=TIGHT, abs=1e-300)


def test_exact_p_value_of_unequal_sizes_without_scipys_routine(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal(970), rng.standard_normal(968) + 0.1
    with_routine = stats.ks(a, b)
    monkeypatch.setattr(stats, "_outer_prob_inside", lambda: None)
    assert stats.ks(a, b) == with_routine == pytest.approx(tuple(scipy_stats.ks_2samp(a, b, method="exact"))[:2])


def test_two_sample_does_not_change_its_inputs() -> None:
    a, b = samples("continuous, asymptotic")
    a_copy, b_copy = a.copy(), b.copy()
    stats.two_sample(a, b)
    np.testing.assert_array_equal(a, a_copy)
    np.testing.assert_array_equal(b, b_copy)


def pooled_by_argsort(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pooled values and ECDF differences from a stable argsort of u then v (the merge's oracle)."""
    pooled = np.concatenate((u, v))
    order = np.argsort(pooled, kind="stable")
    u_count = np.cumsum(order < u.size)
    v_count = np.arange(1, pooled.size + 1) - u_count
    return pooled[order], u_count / u.size - v_count / v.size


@pytest.mark.parametrize("values", ["ties", "signed zeros and infinities", "continuous"])
def test_the_merge_gives_the_argsorts_values_and_differences_bit_for_bit(values: str) -> None:
    rng = np.random.default_rng(11)
    pool = np.array([0.0, -0.0, 1.0, -1.5, 3.25, np.inf, -np.inf, 1e-300])
    for _ in range(300):
        sizes = rng.integers(1, 80, 2)
        if values == "ties":
            u, v = (rng.integers(0, 6, n).astype(float) for n in sizes)
        elif values == "signed zeros and infinities":
            u, v = (rng.choice(pool, n) for n in sizes)
        else:
            u, v = (rng.normal(size=n) for n in sizes)
        u, v = np.sort(u), np.sort(v)
        for a, b in ((u, v), (v, u)):
            merged, expected = stats._pooled_ecdf_differences(a, b), pooled_by_argsort(a, b)
            for got, want in zip(merged, expected):
                assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    # A window's size against the reservoir's: one large sample, one small, many ties.
    u, v = np.sort(rng.integers(0, 50, 10_000).astype(float)), np.sort(rng.normal(size=200_000).round(2))
    for got, want in zip(stats._pooled_ecdf_differences(u, v), pooled_by_argsort(u, v)):
        assert got.tobytes() == want.tobytes()


def test_two_sample_with_nan_propagates_it_as_scipy_does() -> None:
    # The engine leaves NaN out before testing (see test_drift); called with one, the result is NaN.
    a, b = samples("continuous, asymptotic")
    b[7] = np.nan
    result = stats.two_sample(a, b)
    assert math.isnan(result.ks.statistic) and math.isnan(result.ks.p_value) and math.isnan(result.wasserstein)
    assert math.isnan(scipy_stats.ks_2samp(a, b, method="asymp").pvalue)


# --- Wasserstein -----------------------------------------------------------------------------------

@pytest.mark.parametrize("n_ref, n_cur, shift, scale", [(50, 30, 0.0, 1.0), (5_000, 800, 0.4, 2.5),
                                                        (1_000, 1_000, -3.0, 0.1)])
def test_wasserstein_normed_matches_scipy_over_std(n_ref: int, n_cur: int, shift: float, scale: float) -> None:
    rng = np.random.default_rng(n_ref)
    a = rng.standard_normal(n_ref) * scale
    b = rng.standard_normal(n_cur) * scale + shift
    std = float(a.std())
    result = stats.wasserstein_normed(a, b, std)
    assert result == approx(scipy_stats.wasserstein_distance(a, b) / std)
    assert result == approx(wasserstein_1(a, b) / std)


def test_wasserstein_normed_of_a_pure_shift_is_the_shift_in_stds() -> None:
    a = np.random.default_rng(3).standard_normal(2_000) * 4.0
    # W1 between a sample and the same sample moved by d is exactly |d|.
    assert stats.wasserstein_normed(a, a + 2.0, 4.0) == approx(0.5)
    assert stats.wasserstein_normed(a, a, 4.0) == 0.0


def test_wasserstein_normed_with_ties() -> None:
    rng = np.random.default_rng(11)
    a, b = rng.integers(0, 6, 500).astype(float), rng.integers(0, 7, 400).astype(float)
    std = float(a.std())
    assert stats.wasserstein_normed(a, b, std) == approx(scipy_stats.wasserstein_distance(a, b) / std)
    assert stats.wasserstein_normed(a, b, std) == approx(wasserstein_1(a, b) / std)


@pytest.mark.parametrize("std", [0.0, 1e-9, 0.0009999])
def test_wasserstein_normed_floors_the_std_at_a_thousandth(std: float) -> None:
    constant = np.full(200, 5.0)
    shifted = np.full(100, 5.25)
    assert stats.wasserstein_normed(constant, shifted, std) == approx(0.25 / 0.001)
    assert stats.wasserstein_normed(constant, constant, std) == 0.0


def test_wasserstein_normed_does_not_floor_a_std_above_a_thousandth() -> None:
    a = np.array([0.0, 0.004])
    b = np.array([0.002, 0.006])
    assert stats.wasserstein_normed(a, b, 0.002) == approx(0.002 / 0.002)


@pytest.mark.parametrize("a, b", [(np.empty(0), np.arange(5.0)), (np.arange(5.0), np.empty(0))])
def test_wasserstein_of_an_empty_sample_is_nan(a: np.ndarray, b: np.ndarray) -> None:
    assert math.isnan(stats.wasserstein_normed(a, b, 1.0))


# --- binning ---------------------------------------------------------------------------------------

def test_bin_counts_have_open_end_bins_and_upper_inclusive_inner_bins() -> None:
    # As OTLP explicit-bucket histograms count: (-inf, e0], (e0, e1], ..., (e_last, +inf).
    edges = np.array([0.0, 1.0, 2.0])
    values = np.array([-5.0, -0.0001, 0.0, 0.5, 1.0, 1.0001, 2.0, 2.0001, 7.0, -np.inf, np.inf])
    counts = stats.bin_counts(values, edges)
    # (-inf, 0]: -5, -0.0001, 0, -inf | (0, 1]: 0.5, 1 | (1, 2]: 1.0001, 2 | (2, inf): 2.0001, 7, inf
    assert counts.tolist() == [4, 2, 2, 3]
    assert stats.bin_counts(np.empty(0), edges).tolist() == [0, 0, 0, 0]
    assert stats.bin_counts(np.array([1.0, 2.0]), np.empty(0)).tolist() == [2]


@pytest.mark.parametrize("edges", [0, 3, 9, 16, 17, 40])
def test_bin_counts_are_the_same_on_every_path(edges: int) -> None:
    # Sorted values look each edge up; few edges are counted by comparison; many by a binary search.
    rng = np.random.default_rng(edges)
    values = np.concatenate([rng.integers(0, 30, 2_000).astype(float), [np.inf, -np.inf, np.nan]])
    grid = np.unique(rng.integers(0, 30, edges).astype(float)) if edges else np.empty(0)
    expected = np.bincount(np.searchsorted(grid, values, side="left"), minlength=grid.size + 1)
    np.testing.assert_array_equal(stats.bin_counts(values, grid), expected)
    np.testing.assert_array_equal(stats.bin_counts(np.sort(values), grid, is_sorted=True), expected)


# --- PSI -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reference, current", [
    ([100, 200, 300, 400], [110, 190, 320, 380]),
    ([100, 200, 300, 400], [400, 300, 200, 100]),
    ([500, 0, 500], [250, 500, 250]),       # a bin empty in the reference
    ([250, 500, 250], [500, 0, 500]),       # a bin empty in the window
    ([1, 1_000_000], [1_000_000, 1]),
])
def test_psi_matches_the_formula_with_a_floor_on_empty_bins(reference: list[int], current: list[int]) -> None:
    ref, cur = np.array(reference), np.array(current)
    value = stats.psi(ref, cur)
    assert value == approx(psi_formula(ref, cur))
    assert value >= 0.0


def test_psi_is_zero_for_equal_shares_and_symmetric() -> None:
    ref, cur = np.array([10, 20, 30, 40]), np.array([30, 60, 90, 120])
    assert stats.psi(ref, cur) == pytest.approx(0.0, abs=1e-15)
    a, b = np.array([5, 10, 85]), np.array([30, 30, 40])
    assert stats.psi(a, b) == approx(stats.psi(b, a))


def test_psi_of_a_known_case() -> None:
    # Shares (0.5, 0.5) against (0.9, 0.1): 0.4·ln(1.8) + (-0.4)·ln(0.2)
    assert stats.psi(np.array([50, 50]), np.array([90, 10])) == approx(0.4 * math.log(1.8) - 0.4 * math.log(0.2))


@pytest.mark.parametrize("reference, current", [([0, 0], [1, 2]), ([1, 2], [0, 0]), ([], [])])
def test_psi_with_no_counts_is_nan(reference: list[int], current: list[int]) -> None:
    assert math.isnan(stats.psi(np.array(reference, dtype=np.int64), np.array(current, dtype=np.int64)))


# --- Jensen–Shannon --------------------------------------------------------------------------------

@pytest.mark.parametrize("reference, current", [
    ([100, 200, 300, 400], [110, 190, 320, 380]),
    ([500, 0, 500], [250, 500, 250]),
    ([250, 500, 250, 0], [500, 0, 500, 7]),
    ([3, 1], [1, 3]),
])
def test_jensen_shannon_matches_scipy_and_the_formula(reference: list[int], current: list[int]) -> None:
    ref, cur = np.array(reference), np.array(current)
    value = stats.jensen_shannon(ref, cur)
    assert value == approx(distance.jensenshannon(ref.astype(float), cur.astype(float)))
    assert value == approx(js_distance(ref.astype(float), cur.astype(float)))
    assert 0.0 <= value <= math.sqrt(math.log(2)) + 1e-12


def test_jensen_shannon_uses_the_natural_log() -> None:
    # Disjoint supports reach the maximum: sqrt(ln 2) in nats (it would be 1 in bits).
    assert stats.jensen_shannon(np.array([5, 0]), np.array([0, 9])) == approx(math.sqrt(math.log(2)))


def test_jensen_shannon_of_equal_shares_is_zero() -> None:
    assert stats.jensen_shannon(np.array([1, 2, 3]), np.array([2, 4, 6])) == pytest.approx(0.0, abs=1e-7)
    assert stats.jensen_shannon(np.array([7]), np.array([3])) == pytest.approx(0.0, abs=1e-7)  # one category


@pytest.mark.parametrize("reference, current", [([0, 0], [1, 2]), ([1, 2], [0, 0])])
def test_jensen_shannon_with_no_counts_is_nan(reference: list[int], current: list[int]) -> None:
    assert math.isnan(stats.jensen_shannon(np.array(reference), np.array(current)))


# --- chi-squared -----------------------------------------------------------------------------------

@pytest.mark.parametrize("reference, current", [
    ([500, 300, 200], [45, 35, 20]),          # no drift
    ([500, 300, 200], [20, 30, 50]),          # drift
    ([500, 300, 200, 0], [40, 30, 20, 10]),   # a category absent from the reference
    ([500, 300, 200, 100], [60, 40, 0, 10]),  # a category absent from the window
    ([500, 300, 0, 200], [20, 30, 0, 50]),    # a category absent from both: dropped
])
def test_chi2_matches_chi2_contingency_and_pearsons_formula(reference: list[int], current: list[int]) -> None:
    ref, cur = np.array(reference), np.array(current)
    result = stats.chi2_two_sample(ref, cur)
    table = np.vstack([ref, cur])
    expected = scipy_stats.chi2_contingency(table[:, table.sum(axis=0) > 0])
    assert result.statistic == approx(expected.statistic)
    assert result.p_value == approx(expected.pvalue)
    # With 3+ categories scipy applies no continuity correction: plain Pearson.
    statistic, p_value = pearson_chi2(ref, cur)
    assert result.statistic == approx(statistic)
    assert result.p_value == approx(p_value)


def test_chi2_on_two_categories_is_scipys_yates_corrected_test() -> None:
    ref, cur = np.array([600, 400]), np.array([45, 55])
    result = stats.chi2_two_sample(ref, cur)
    expected = scipy_stats.chi2_contingency(np.vstack([ref, cur]))  # correction=True by default
    assert result.statistic == approx(expected.statistic)
    assert result.p_value == approx(expected.pvalue)
    # Yates' correction makes it more conservative than Pearson's statistic.
    assert result.statistic < pearson_chi2(ref, cur)[0]


def test_chi2_with_a_category_absent_from_the_reference_detects_it() -> None:
    result = stats.chi2_two_sample(np.array([1000, 1000, 0]), np.array([40, 40, 20]))
    assert result.p_value < 1e-10


@pytest.mark.parametrize("reference, current", [([100], [50]), ([100, 0], [50, 0]), ([0, 100, 0], [0, 3, 0])])
def test_chi2_with_a_single_category_has_p_one(reference: list[int], current: list[int]) -> None:
    assert stats.chi2_two_sample(np.array(reference), np.array(current)) == (0.0, 1.0)


@pytest.mark.parametrize("reference, current", [([0, 0], [1, 2]), ([1, 2], [0, 0]), ([], [])])
def test_chi2_with_no_counts_is_nan(reference: list[int], current: list[int]) -> None:
    result = stats.chi2_two_sample(np.array(reference, dtype=np.int64), np.array(current, dtype=np.int64))
    assert math.isnan(result.statistic) and math.isnan(result.p_value)


# --- multiple testing ------------------------------------------------------------------------------

P_VALUES = np.array([0.001, 0.2, np.nan, 0.012, 0.04, 0.9, np.nan, 0.0049, 0.03, 1.0, 0.012])


def test_bonferroni_multiplies_by_the_number_of_tested_columns() -> None:
    adjusted = stats.adjust_p_values(P_VALUES, "bonferroni")
    tested = ~np.isnan(P_VALUES)
    m = int(tested.sum())
    assert m == 9
    assert np.isnan(adjusted[~tested]).all()
    np.testing.assert_allclose(adjusted[tested], np.minimum(P_VALUES[tested] * m, 1.0), rtol=REL)


def test_benjamini_hochberg_matches_scipy_with_nans_left_out() -> None:
    adjusted = stats.adjust_p_values(P_VALUES, "benjamini_hochberg")
    tested = ~np.isnan(P_VALUES)
    assert np.isnan(adjusted[~tested]).all()
    np.testing.assert_allclose(adjusted[tested], scipy_stats.false_discovery_control(P_VALUES[tested], method="bh"),
                               rtol=REL)
    np.testing.assert_allclose(adjusted[tested], benjamini_hochberg(P_VALUES[tested]), rtol=REL)


def test_benjamini_hochberg_is_never_stricter_than_bonferroni() -> None:
    rng = np.random.default_rng(5)
    for _ in range(50):
        p = rng.uniform(0, 1, 12) ** 3
        bh = stats.adjust_p_values(p, "benjamini_hochberg")
        bonferroni = stats.adjust_p_values(p, "bonferroni")
        assert np.all(bh <= bonferroni + 1e-15)
        assert np.all(bh >= p - 1e-15)


def test_adjusting_nothing_gives_nans() -> None:
    for method in ("bonferroni", "benjamini_hochberg"):
        assert stats.adjust_p_values(np.empty(0), method).size == 0
        assert np.isnan(stats.adjust_p_values(np.array([np.nan, np.nan]), method)).all()


def test_a_single_p_value_is_left_as_it_is() -> None:
    for method in ("bonferroni", "benjamini_hochberg"):
        assert stats.adjust_p_values(np.array([np.nan, 0.03]), method)[1] == approx(0.03)


def test_an_unknown_correction_is_refused() -> None:
    with pytest.raises(ValueError, match="holm"):
        stats.adjust_p_values(np.array([0.1]), "holm")


def test_every_statistic_of_the_table_has_a_function_and_each_kind_one_test() -> None:
    from agent.ml import statistics

    assert set(stats.COMPUTE) == set(statistics.BY_NAME)
    for kind in statistics.KINDS:
        assert sum(statistics.BY_NAME[name].test for name in statistics.of_kind(kind)) == 1
        assert set(statistics.methods(kind)) == set(statistics.of_kind(kind))
