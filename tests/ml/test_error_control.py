"""Error control of the drift decision, measured by simulation (seeded, so the figures are fixed).

The acceptance criteria: on windows with no drift the share of flagged feature-windows stays at or
below the family alpha (0.05); a 0.25 sd mean shift in 10,000-row windows is caught in at least 95% of
them; a 0.05 sd shift in 100,000-row windows — significant, but too small to matter — is not flagged;
a large shift of a categorical column is caught even in a 200-row window.

Besides the decision, the simulations check what the decision rests on, so that a broken test cannot
hide behind the effect-size threshold: the raw KS p-values are calibrated (about 5% below 0.05 under
no drift), and the Bonferroni-adjusted p-values alone keep the family-wise error near alpha.
"""

from __future__ import annotations

import numpy as np
import pytest

from agent.ml import drift, profile as profiles, stats
from agent.ml.drift import DriftConfig
from agent.ml.profile import Profile
from tests.ml.data import categories, numbers

REFERENCE_ROWS = 50_000
FEATURES = 10
ALPHA = 0.05
WINDOWS = 50


def normal_profile(features: int, seed: int) -> Profile:
    rng = np.random.default_rng(seed)
    columns = {f"f{i}": profiles.build_column(f"f{i}", numbers(rng.standard_normal(REFERENCE_ROWS)), seed=i)
               for i in range(features)}
    return Profile("m", "1", REFERENCE_ROWS, columns)


@pytest.fixture(scope="module")
def no_drift() -> dict[str, np.ndarray]:
    """50 windows of 1,000–5,000 rows × 10 features, all N(0, 1) like the reference (500 feature-windows;
    more would cost more time than they add: the effect threshold is never approached)."""
    profile = normal_profile(FEATURES, seed=200)
    rng = np.random.default_rng(201)
    drifted, significant, p_values, scores = [], [], [], []
    for _ in range(WINDOWS):
        rows = int(rng.integers(1_000, 5_001))
        window = {name: numbers(rng.standard_normal(rows)) for name in profile.features}
        result = drift.evaluate(profile, window, rows, DriftConfig())
        columns = list(result.columns.values())
        assert all(c.tested for c in columns)
        drifted.append([c.drifted for c in columns])
        significant.append([c.p_adjusted < ALPHA for c in columns])
        p_values.append([c.p_value for c in columns])
        scores.append([c.score for c in columns])
    return {"drifted": np.array(drifted), "significant": np.array(significant),
            "p": np.array(p_values), "score": np.array(scores)}


def test_no_drift_false_alarms_per_feature_window_stay_below_alpha(no_drift) -> None:
    rate = no_drift["drifted"].mean()
    print(f"false alarms per feature-window: {rate:.4f} of {no_drift['drifted'].size}")
    assert rate <= ALPHA
    windows_with_a_false_alarm = no_drift["drifted"].any(axis=1).mean()
    print(f"windows with any false alarm: {windows_with_a_false_alarm:.3f}")
    assert windows_with_a_false_alarm <= ALPHA


def test_no_drift_raw_ks_p_values_are_calibrated(no_drift) -> None:
    p = no_drift["p"].ravel()
    below = (p < 0.05).mean()
    print(f"raw KS p < 0.05: {below:.4f}; p < 0.01: {(p < 0.01).mean():.4f}; median p {np.median(p):.3f}")
    # Uniform under no drift: 5% ± sampling error (500 p-values, correlated through the 10 references).
    assert 0.015 <= below <= 0.10
    assert 0.35 <= np.median(p) <= 0.65


def test_no_drift_family_wise_error_of_the_corrected_test_alone_is_near_alpha(no_drift) -> None:
    # Significance alone (what numeric_method "ks" decides on): any column significant in a window.
    family_wise = no_drift["significant"].any(axis=1).mean()
    print(f"windows with a significant column (Bonferroni, no effect threshold): {family_wise:.3f}")
    # alpha + 3 standard errors of a rate over the windows; uncorrected it would be about 0.40.
    bound = ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / WINDOWS)
    assert family_wise <= bound
    bh = np.array([stats.adjust_p_values(row, "benjamini_hochberg") for row in no_drift["p"]])
    bh_family_wise = (bh < ALPHA).any(axis=1).mean()
    print(f"windows with a significant column (Benjamini–Hochberg): {bh_family_wise:.3f}")
    # Under no drift at all every discovery is false: BH's FDR is its family-wise error.
    assert bh_family_wise <= bound


def test_no_drift_effect_sizes_stay_below_the_threshold(no_drift) -> None:
    largest = no_drift["score"].max()
    print(f"largest normed Wasserstein distance under no drift: {largest:.4f}")
    assert largest < 0.1


def test_a_quarter_sd_shift_in_10000_row_windows_is_caught() -> None:
    profile = normal_profile(3, seed=210)
    rng = np.random.default_rng(211)
    caught, untouched_flagged = [], []
    for _ in range(40):
        # f0 and f1 shifted by 0.25 sd, f2 not: the correction is over all three tested columns.
        window = {f"f{i}": numbers(rng.standard_normal(10_000) + (0.25 if i < 2 else 0.0)) for i in range(3)}
        result = drift.evaluate(profile, window, 10_000, DriftConfig())
        caught += [result.columns[f"f{i}"].drifted for i in range(2)]
        untouched_flagged.append(result.columns["f2"].drifted)
    power = np.mean(caught)
    print(f"power at 0.25 sd, 10,000 rows: {power:.3f} of {len(caught)} feature-windows; "
          f"unshifted feature flagged in {np.mean(untouched_flagged):.3f} of windows")
    assert power >= 0.95
    assert np.mean(untouched_flagged) <= ALPHA


def test_a_twentieth_sd_shift_in_100000_row_windows_is_significant_but_not_flagged() -> None:
    profile = normal_profile(2, seed=220)
    rng = np.random.default_rng(221)
    flagged, significant, scores = [], [], []
    for _ in range(10):
        window = {f"f{i}": numbers(rng.standard_normal(100_000) + 0.05) for i in range(2)}
        result = drift.evaluate(profile, window, 100_000, DriftConfig())
        flagged += [c.drifted for c in result.columns.values()]
        significant += [c.p_adjusted < ALPHA for c in result.columns.values()]
        scores += [c.score for c in result.columns.values()]
    print(f"0.05 sd, 100,000 rows: flagged {np.mean(flagged):.3f}, significant {np.mean(significant):.3f}, "
          f"mean normed Wasserstein {np.mean(scores):.4f}")
    assert np.mean(flagged) <= ALPHA
    # The test does see it: it is the effect-size threshold that keeps it from being flagged.
    assert np.mean(significant) >= 0.5
    assert 0.03 <= np.mean(scores) <= 0.08


NAMES = ["web", "ios", "android", "partner"]
REFERENCE_SHARES = [0.5, 0.3, 0.15, 0.05]


@pytest.fixture(scope="module")
def channel_profile() -> Profile:
    rng = np.random.default_rng(230)
    column = profiles.build_column("channel", categories(rng, NAMES, REFERENCE_SHARES, REFERENCE_ROWS))
    assert column.kind == profiles.CATEGORICAL
    return Profile("m", "1", REFERENCE_ROWS, {"channel": column})


def test_a_big_categorical_shift_in_a_200_row_window_is_caught(channel_profile) -> None:
    rng = np.random.default_rng(231)
    shifted = [0.2, 0.3, 0.3, 0.2]
    caught = [drift.evaluate(channel_profile, {"channel": categories(rng, NAMES, shifted, 200)}, 200,
                             DriftConfig()).columns["channel"].drifted for _ in range(40)]
    print(f"categorical shift, 200 rows: caught {np.mean(caught):.3f}")
    assert np.mean(caught) >= 0.95


def test_a_new_category_in_a_200_row_window_is_caught(channel_profile) -> None:
    rng = np.random.default_rng(232)
    window = categories(rng, NAMES + ["kiosk"], [0.4, 0.2, 0.1, 0.05, 0.25], 200)
    assert drift.evaluate(channel_profile, {"channel": window}, 200, DriftConfig()).columns["channel"].drifted


def test_no_categorical_drift_in_200_row_windows_is_not_flagged(channel_profile) -> None:
    rng = np.random.default_rng(233)
    results = [drift.evaluate(channel_profile, {"channel": categories(rng, NAMES, REFERENCE_SHARES, 200)}, 200,
                              DriftConfig()).columns["channel"] for _ in range(200)]
    false_alarms = np.mean([c.drifted for c in results])
    p = np.array([c.p_value for c in results])
    print(f"categorical no drift, 200 rows: false alarms {false_alarms:.3f}, chi2 p < 0.05 {np.mean(p < 0.05):.3f}")
    assert false_alarms <= ALPHA
    assert 0.01 <= np.mean(p < 0.05) <= 0.10  # the chi-squared p-values are calibrated too
