"""drift.evaluate through profiles built with profile.build_column: the numbers and the decision rule.

The statistics of a column must be exactly what scipy gives on the same data (the reference values,
and the window's values without missing values, non-finite numbers and sentinels); the decision
must follow the documented rule: significant after the correction across the window's tested
columns AND an effect size at or above the threshold.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from scipy.spatial import distance

from agent.ml import drift, profile as profiles, stats
from agent.ml.columns import RawColumn
from agent.ml.drift import DriftConfig
from agent.ml.profile import CATEGORICAL, NUMERIC, Profile
from tests.ml.data import numbers, strings

EXACT = dict(rel=1e-12, abs=1e-300)


def upper_inclusive_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in (-inf, e0], (e0, e1], ..., (e_last, inf), one bin at a time."""
    bounds = np.concatenate([[-np.inf], edges, [np.inf]])
    return np.array([np.sum((values > lo) & (values <= hi)) for lo, hi in zip(bounds[:-1], bounds[1:])])


def psi_formula(reference: np.ndarray, current: np.ndarray) -> float:
    r = np.maximum(reference / reference.sum(), 1e-4)
    c = np.maximum(current / current.sum(), 1e-4)
    return float(np.sum((c - r) * np.log(c / r)))


@pytest.fixture(scope="module")
def reference_values() -> np.ndarray:
    return np.random.default_rng(100).standard_normal(3_000)


@pytest.fixture(scope="module")
def mixed_profile(reference_values) -> Profile:
    reference_labels = np.array(["a"] * 500 + ["b"] * 300 + ["c"] * 200, dtype=object)
    features = {
        "x": profiles.build_column("x", numbers(reference_values)),
        "color": profiles.build_column("color", strings(reference_labels)),
    }
    assert features["x"].kind == NUMERIC and features["color"].kind == CATEGORICAL
    return Profile("m", "1", 3_000, features)


def test_numeric_statistics_equal_scipy_on_the_usable_window_values(mixed_profile, reference_values) -> None:
    reference = mixed_profile.features["x"]
    assert reference.reservoir.size == reference_values.size  # every reference value is kept
    rng = np.random.default_rng(101)
    usable = rng.standard_normal(500) * 1.2 + 0.3
    window_values = list(usable) + [None] * 20 + [float("nan")] * 20 + [-999] * 30 + [float("inf")] * 5 \
        + [float("-inf")] * 5 + ["12.5"] * 20
    order = rng.permutation(len(window_values))
    window = RawColumn.from_values([window_values[i] for i in order])

    result = drift.evaluate(mixed_profile, {"x": window}, len(window), DriftConfig())
    column = result.columns["x"]
    assert column.tested and column.method == "wasserstein_normed"

    expected_ks = scipy_stats.ks_2samp(reference_values, usable,
                                       method=stats.ks_method(reference_values.size, usable.size))
    assert column.statistics["ks"] == pytest.approx(expected_ks.statistic, **EXACT)
    assert column.p_value == pytest.approx(expected_ks.pvalue, **EXACT)
    expected_w = scipy_stats.wasserstein_distance(reference_values, usable) / reference_values.std()
    assert column.statistics["wasserstein_normed"] == pytest.approx(expected_w, **EXACT)
    assert column.score == column.statistics["wasserstein_normed"]

    edges = np.quantile(reference_values, np.linspace(0, 1, 11)[1:-1])
    np.testing.assert_allclose(reference.bin_edges, edges, rtol=1e-15)
    reference_counts = upper_inclusive_counts(reference_values, reference.bin_edges)
    window_counts = upper_inclusive_counts(usable, reference.bin_edges)
    np.testing.assert_array_equal(reference.bin_counts, reference_counts)
    np.testing.assert_array_equal(column.current_counts, window_counts)
    assert column.statistics["psi"] == pytest.approx(psi_formula(reference_counts, window_counts), **EXACT)
    assert column.statistics["jensen_shannon"] == pytest.approx(
        distance.jensenshannon(reference_counts.astype(float), window_counts.astype(float)), **EXACT)

    # "color" is absent from the window: not tested, so the correction is over one column.
    assert not result.columns["color"].tested
    assert column.p_adjusted == pytest.approx(column.p_value, **EXACT)


def test_categorical_statistics_equal_chi2_contingency_on_the_counts(mixed_profile) -> None:
    # a, b known; c (in the reference) absent; d and the number 7 new; -999 and "-999" sentinels; None missing.
    values = ["a"] * 40 + ["b"] * 30 + ["d"] * 20 + [7] + ["-999"] * 5 + [-999] * 3 + [None] * 5
    window = RawColumn.from_values(values)
    result = drift.evaluate(mixed_profile, {"color": window}, len(values), DriftConfig())
    column = result.columns["color"]
    assert column.tested and column.method == "jensen_shannon"

    ref, cur = drift.category_counts(mixed_profile.features["color"], window, [-999])[:2]
    names = drift.category_counts(mixed_profile.features["color"], window, [-999])[2]
    assert names == ["a", "b", "c", "7", "d"]
    assert ref.tolist() == [500, 300, 200, 0, 0] and cur.tolist() == [40, 30, 0, 1, 20]

    expected = scipy_stats.chi2_contingency(np.array([[500, 300, 200, 0, 0], [40, 30, 0, 1, 20]]))
    assert column.statistics["chi2"] == pytest.approx(expected.statistic, **EXACT)
    assert column.p_value == pytest.approx(expected.pvalue, **EXACT)
    assert column.statistics["jensen_shannon"] == pytest.approx(
        distance.jensenshannon([500, 300, 200, 0, 0], [40, 30, 0, 1, 20]), **EXACT)
    assert column.statistics["psi"] == pytest.approx(
        psi_formula(np.array([500, 300, 200, 0, 0]), np.array([40, 30, 0, 1, 20])), **EXACT)
    assert column.drifted  # a category gone and a new one at 20%: significant and large


def test_the_bonferroni_correction_is_over_the_tested_columns_only(mixed_profile) -> None:
    rng = np.random.default_rng(102)
    window = {"x": numbers(rng.standard_normal(400) + 0.1),
              "color": strings(rng.choice(["a", "b", "c"], 400, p=[0.45, 0.35, 0.2]))}
    result = drift.evaluate(mixed_profile, window, 400, DriftConfig())
    for column in result.columns.values():
        assert column.p_adjusted == pytest.approx(min(1.0, 2 * column.p_value), **EXACT)
    # Too few values in a column: it is not tested and not counted.
    window["color"] = strings(["a"] * 29 + [None] * 371)
    result = drift.evaluate(mixed_profile, window, 400, DriftConfig())
    assert not result.columns["color"].tested and math.isnan(result.columns["color"].p_adjusted)
    assert result.columns["x"].p_adjusted == pytest.approx(result.columns["x"].p_value, **EXACT)
    window["color"] = strings(["a"] * 30 + [None] * 370)  # exactly min_values
    assert drift.evaluate(mixed_profile, window, 400, DriftConfig()).columns["color"].tested


def test_benjamini_hochberg_is_selectable(mixed_profile) -> None:
    rng = np.random.default_rng(103)
    window = {"x": numbers(rng.standard_normal(400) + 0.2),
              "color": strings(rng.choice(["a", "b", "c"], 400, p=[0.45, 0.35, 0.2]))}
    result = drift.evaluate(mixed_profile, window, 400, DriftConfig(correction="benjamini_hochberg"))
    p = np.array([c.p_value for c in result.columns.values()])
    adjusted = np.array([c.p_adjusted for c in result.columns.values()])
    np.testing.assert_allclose(adjusted, scipy_stats.false_discovery_control(p, method="bh"), rtol=1e-12)


@pytest.mark.parametrize("method", ["wasserstein_normed", "psi", "jensen_shannon", "ks"])
def test_the_numeric_score_is_the_configured_statistic(mixed_profile, method: str) -> None:
    window = {"x": numbers(np.random.default_rng(104).standard_normal(300) + 0.5)}
    column = drift.evaluate(mixed_profile, window, 300, DriftConfig(numeric_method=method)).columns["x"]
    assert column.method == method and column.score == column.statistics[method]


@pytest.mark.parametrize("method", ["jensen_shannon", "psi", "chi2"])
def test_the_categorical_score_is_the_configured_statistic(mixed_profile, method: str) -> None:
    window = {"color": strings(["a"] * 50 + ["c"] * 50)}
    column = drift.evaluate(mixed_profile, window, 100, DriftConfig(categorical_method=method)).columns["color"]
    assert column.method == method and column.score == column.statistics[method]
    assert column.drifted


def test_significant_but_small_is_not_drift_unless_the_test_itself_decides(mixed_profile, reference_values) -> None:
    # The reference itself, slightly shifted: KS is significant (3,000 against 3,000 values all moved
    # by 0.09 sd: p ≈ 0.01), the normed Wasserstein distance is exactly 0.09 < 0.1.
    window = {"x": numbers(reference_values + 0.09 * reference_values.std())}
    column = drift.evaluate(mixed_profile, window, 3_000, DriftConfig()).columns["x"]
    assert column.p_adjusted < 0.05
    assert column.score == pytest.approx(0.09, rel=1e-9)
    assert not column.drifted
    ks_decides = drift.evaluate(mixed_profile, window, 3_000, DriftConfig(numeric_method="ks")).columns["x"]
    assert ks_decides.drifted
    lower = drift.evaluate(mixed_profile, window, 3_000, DriftConfig(numeric_threshold=0.08)).columns["x"]
    assert lower.drifted


def test_large_but_not_significant_is_not_drift(mixed_profile) -> None:
    window = {"x": numbers([0.9, -0.2, 1.4, 0.6, 0.3])}  # five values: a big distance, no evidence
    column = drift.evaluate(mixed_profile, window, 5, DriftConfig(min_values=5)).columns["x"]
    assert column.tested
    assert column.score >= 0.1
    assert column.p_adjusted >= 0.05
    assert not column.drifted


# --- the model-level rule ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ten_features() -> Profile:
    rng = np.random.default_rng(105)
    return Profile("m", "1", 5_000, {f"f{i}": profiles.build_column(f"f{i}", numbers(rng.standard_normal(5_000)))
                                     for i in range(10)})


def shifted_window(shifted: int, present: int = 10, n: int = 2_000, seed: int = 106) -> dict[str, RawColumn]:
    rng = np.random.default_rng(seed)
    return {f"f{i}": numbers(rng.standard_normal(n) + (1.0 if i < shifted else 0.0)) for i in range(present)}


@pytest.mark.parametrize("shifted, drift_share, detected", [
    (5, 0.5, True), (5, 0.6, False), (4, 0.5, False), (10, 1.0, True), (0, 0.1, False), (1, 0.1, True)])
def test_the_model_drifts_when_the_share_of_drifted_columns_reaches_drift_share(
        ten_features, shifted: int, drift_share: float, detected: bool) -> None:
    result = drift.evaluate(ten_features, shifted_window(shifted), 2_000, DriftConfig(drift_share=drift_share))
    assert sorted(result.drifted_columns) == sorted(f"f{i}" for i in range(shifted))
    assert result.share == shifted / 10
    assert result.detected is detected


def test_the_share_is_over_tested_columns(ten_features) -> None:
    # Columns 8 and 9 are absent from the window: 4 drifted of 8 tested.
    result = drift.evaluate(ten_features, shifted_window(4, present=8), 2_000, DriftConfig())
    assert sum(c.tested for c in result.columns.values()) == 8
    assert result.share == 0.5 and result.detected


def test_a_window_with_nothing_to_test_has_no_drift(ten_features) -> None:
    result = drift.evaluate(ten_features, {}, 100, DriftConfig())
    assert result.share == 0.0 and not result.detected and result.drifted_columns == []
    result = drift.evaluate(ten_features, {}, 0, DriftConfig())
    assert result.share == 0.0 and not result.detected
    for column in result.columns.values():
        assert not column.tested and math.isnan(column.p_value) and math.isnan(column.score)


def test_benjamini_hochberg_flags_at_least_what_bonferroni_flags() -> None:
    # Ten features each shifted by 0.2 sd, 500-row windows against 5,000 reference rows: p-values
    # around 1e-3..1e-1, where the two corrections part. With the default effect threshold on.
    rng = np.random.default_rng(107)
    profile = Profile("m", "1", 5_000, {f"f{i}": profiles.build_column(f"f{i}", numbers(rng.standard_normal(5_000)))
                                        for i in range(10)})
    bonferroni_total = bh_total = 0
    for _ in range(10):
        window = {f"f{i}": numbers(rng.standard_normal(500) + 0.2) for i in range(10)}
        bonferroni = drift.evaluate(profile, window, 500, DriftConfig())
        bh = drift.evaluate(profile, window, 500, DriftConfig(correction="benjamini_hochberg"))
        assert set(bonferroni.drifted_columns) <= set(bh.drifted_columns)
        for name in window:  # same tests, only the correction differs
            assert bh.columns[name].p_value == bonferroni.columns[name].p_value
            assert bh.columns[name].p_adjusted <= bonferroni.columns[name].p_adjusted
        bonferroni_total += len(bonferroni.drifted_columns)
        bh_total += len(bh.drifted_columns)
    print(f"drifted feature-windows of 100: Bonferroni {bonferroni_total}, Benjamini–Hochberg {bh_total}")
    assert bh_total > bonferroni_total


def test_sentinels_in_the_reference_do_not_make_every_window_drift():
    # 5% of -999 on both sides is the same distribution: no drift, and the reference's moments
    # describe the real values, not the sentinel.
    import numpy as np

    from agent.ml.columns import RawColumn
    from agent.ml.drift import DriftConfig, evaluate
    from agent.ml.profile import Profile, build_column

    rng = np.random.default_rng(7)

    def with_sentinels(n: int) -> RawColumn:
        values = rng.normal(size=n)
        values[rng.random(n) < 0.05] = -999
        return RawColumn.from_values(values.tolist())

    config = DriftConfig()
    reference = build_column("x", with_sentinels(20_000), sentinels=config.sentinels)
    assert reference.min > -10 and 0.9 < reference.std < 1.1
    profile = Profile("m", "1", 20_000, {"x": reference})
    flagged = [evaluate(profile, {"x": with_sentinels(5_000)}, 5_000, config).columns["x"].drifted
               for _ in range(10)]
    assert not any(flagged)
