"""Absurd inputs never raise in the engine: profile building, drift evaluation, data health.

What an app can put in an attribute (or a data file in a column): infinities, NaN, the largest
doubles, integers beyond any double, huge strings, NUL characters, mixed types, lists and maps.
Results may be NaN where a statistic has no value, but nothing raises, shares stay in [0, 1], and a
huge string costs its own size once, not once per row.
"""

from __future__ import annotations

import math
import tracemalloc
import warnings

import numpy as np
import pytest

from agent.ml import drift, health, profile as profiles
from agent.ml.columns import RawColumn
from agent.ml.drift import DriftConfig
from agent.ml.profile import CATEGORICAL, NUMERIC, Profile
from tests.ml.data import numbers, strings

HUGE = "x" * 1_000_000

ABSURD_VALUES = [
    float("inf"), float("-inf"), float("nan"), 1.7976931348623157e308, -1.7976931348623157e308, 5e-324,
    10**400, -(10**400), 2**63, np.int64(3), np.float32(2.5), np.float64(-1.0),
    HUGE, "", "\x00", "\x00unreadable", "ünïcödé ☃", "-999", "nan", "inf",
    [1, 2], {"a": 1}, (1,), b"bytes", bytearray(b"x"), complex(1, 2), object(), True, False, np.bool_(True),
    None,
    -999, 0, -0.0,
]


def absurd_column(rows: int, seed: int) -> RawColumn:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(ABSURD_VALUES), rows)
    return RawColumn.from_values(ABSURD_VALUES[i] for i in picks)


def mostly_absurd_numbers(rows: int, seed: int) -> RawColumn:
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(rows)
    values[rng.random(rows) < 0.2] = np.inf
    values[rng.random(rows) < 0.2] = -1.7976931348623157e308
    values[rng.random(rows) < 0.2] = 1.7976931348623157e308
    values[rng.random(rows) < 0.1] = np.nan
    return numbers(values)


def check_drift(result: drift.DriftResult) -> None:
    assert 0.0 <= result.share <= 1.0
    assert isinstance(result.detected, bool)
    for column in result.columns.values():
        for value in (column.p_value, column.p_adjusted):
            assert math.isnan(value) or 0.0 <= value <= 1.0
        assert isinstance(column.drifted, bool)
        assert all(isinstance(v, float) for v in column.statistics.values())


def check_health(result: health.ColumnHealth) -> None:
    for name, value in result.as_dict().items():
        assert 0.0 <= value <= 1.0, name


def test_from_values_reads_every_absurd_value() -> None:
    column = RawColumn.from_values(ABSURD_VALUES)
    assert len(column) == len(ABSURD_VALUES)
    by_value = dict(zip(map(repr, ABSURD_VALUES), zip(column.numbers, column.strings)))
    assert by_value[repr(10**400)][0] == math.inf and by_value[repr(-(10**400))][0] == -math.inf
    assert by_value[repr(np.int64(3))][0] == 3.0 and by_value[repr(np.float32(2.5))][0] == 2.5
    assert by_value[repr(True)][1] == "true" and by_value[repr(np.bool_(True))][1] == "true"
    assert by_value[repr(None)][0] != by_value[repr(None)][0] and by_value[repr(None)][1] is None
    unreadable = column.strings[[isinstance(v, (list, dict, tuple, bytes, bytearray, complex)) or type(v) is object
                                 for v in ABSURD_VALUES]]
    assert len(set(unreadable)) == 1  # one marker for every value of no usable type


@pytest.mark.parametrize("kind", [None, NUMERIC, CATEGORICAL])
@pytest.mark.parametrize("make", [absurd_column, mostly_absurd_numbers])
def test_absurd_columns_profile_evaluate_and_check_without_raising(kind, make, tmp_path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow in the moments of ±1.8e308 is expected
        reference = profiles.build_column("x", make(2_000, seed=1), kind=kind, reservoir_size=500)
        normal = profiles.build_column("n", numbers(np.random.default_rng(2).standard_normal(2_000)))
        labels = profiles.build_column("c", strings(["a", "b", "c"] * 100))
        profile = Profile("m", "1", 2_000, {"x": reference, "n": normal, "c": labels})
        # The protobuf round trip keeps whatever the moments became (inf, NaN).
        profiles.save(profile, tmp_path / "p.pb")
        loaded = profiles.load(tmp_path / "p.pb")
        for window_rows in (0, 1, 40, 1_000):
            window = {"x": make(window_rows, seed=3), "n": make(window_rows, seed=4), "c": make(window_rows, seed=5)}
            for p in (profile, loaded):
                for config in (DriftConfig(), DriftConfig(correction="benjamini_hochberg", numeric_method="psi",
                                                          categorical_method="chi2", sentinels=[-999, "nan", 0])):
                    check_drift(drift.evaluate(p, window, window_rows, config))
                    for name, column in window.items():
                        check_health(health.column_health(p.features[name], column, config.sentinels))


def test_a_window_of_only_unusable_values_is_not_tested() -> None:
    profile = Profile("m", "1", 100, {"n": profiles.build_column("n", numbers(np.arange(100.0) / 7)),
                                      "c": profiles.build_column("c", strings(["a", "b"] * 50))})
    window = {"n": RawColumn.from_values([math.inf, -math.inf, math.nan, None, -999, "x", [1]] * 20),
              "c": RawColumn.from_values([None, -999, "-999", math.nan] * 20)}
    result = drift.evaluate(profile, window, 140, DriftConfig())
    assert not any(c.tested for c in result.columns.values())
    assert not result.detected and result.share == 0.0


def test_a_constant_reference_and_window() -> None:
    profile = Profile("m", "1", 500, {"k": profiles.build_column("k", numbers([4.2] * 500), kind=NUMERIC)})
    assert profile.features["k"].std < 1e-12  # zero up to rounding in the mean
    same = drift.evaluate(profile, {"k": numbers([4.2] * 100)}, 100, DriftConfig()).columns["k"]
    assert same.tested and same.statistics["ks"] == 0.0 and same.p_value == pytest.approx(1.0)
    assert same.score == 0.0 and not same.drifted
    moved = drift.evaluate(profile, {"k": numbers([4.3] * 100)}, 100, DriftConfig()).columns["k"]
    assert moved.score == pytest.approx(0.1 / 0.001) and moved.drifted  # the std floor of 0.001
    assert math.isfinite(moved.statistics["psi"]) and math.isfinite(moved.statistics["jensen_shannon"])


def test_a_single_category_reference() -> None:
    profile = Profile("m", "1", 100, {"c": profiles.build_column("c", strings(["only"] * 100))})
    same = drift.evaluate(profile, {"c": strings(["only"] * 50)}, 50, DriftConfig()).columns["c"]
    assert (same.statistics["chi2"], same.p_value) == (0.0, 1.0)
    assert same.statistics["jensen_shannon"] == pytest.approx(0.0, abs=1e-7) and not same.drifted


def test_huge_strings_cost_their_size_once() -> None:
    # One 1 MB string among 2,000 rows: a fixed-width copy (numpy's astype(str)) would take 8 GB.
    reference = profiles.build_column("c", strings(["a", "b"] * 1_000))
    window = strings([HUGE] + ["a", "b"] * 1_000)
    tracemalloc.start()
    try:
        profiles.build_column("c", window)
        drift.evaluate(Profile("m", "1", 2_000, {"c": reference}), {"c": window}, 2_001, DriftConfig())
        health.column_health(reference, window, [-999])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000


def test_strings_that_differ_only_in_trailing_nuls_stay_different() -> None:
    reference = profiles.build_column("c", strings(["a"] * 50 + ["a\x00"] * 50))
    assert reference.categories == {"a": 50, "a\x00": 50}
    assert health.column_health(reference, strings(["a\x00", "a\x00\x00"]), []).unseen_category == 0.5
