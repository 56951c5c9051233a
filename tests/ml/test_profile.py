"""Reference profiles: the kind of a column, quantile bins, the reservoir, moments, and the protobuf."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.ml import profile as profiles, stats
from agent.ml.columns import RawColumn
from agent.ml.profile import CATEGORICAL, NUMBER, NUMERIC, STRING, ColumnProfile, Profile
from tests.ml.data import numbers, strings


# --- kind ------------------------------------------------------------------------------------------

def test_strings_are_categorical() -> None:
    assert profiles.infer_kind(strings(["a", "b", "a", None])) == CATEGORICAL


def test_few_distinct_integers_are_categorical() -> None:
    assert profiles.infer_kind(numbers([0, 1, 2, 1, 0] * 20)) == CATEGORICAL
    assert profiles.infer_kind(numbers([1.0, 2.0, 3.0, np.nan])) == CATEGORICAL  # integer-valued floats
    assert profiles.infer_kind(numbers(list(range(10)) * 3)) == CATEGORICAL       # ten is still few


def test_many_distinct_integers_are_numeric() -> None:
    assert profiles.infer_kind(numbers(list(range(11)) * 3)) == NUMERIC


def test_floats_are_numeric() -> None:
    assert profiles.infer_kind(numbers(np.random.default_rng(0).standard_normal(100))) == NUMERIC
    assert profiles.infer_kind(numbers([0.5, 1.0, 1.0])) == NUMERIC  # one fraction is enough


def test_the_majority_type_decides_a_mixed_column() -> None:
    mostly_strings = RawColumn.from_values(["a", "b", "c", 1.5, 2.5])
    mostly_numbers = RawColumn.from_values(["a", 1.5, 2.5, 3.5, 4.5])
    assert profiles.infer_kind(mostly_strings) == CATEGORICAL
    assert profiles.build_column("x", mostly_strings).value_type == STRING
    assert profiles.infer_kind(mostly_numbers) == NUMERIC
    assert profiles.build_column("x", mostly_numbers).value_type == NUMBER


def test_an_all_missing_column_is_numeric() -> None:
    assert profiles.infer_kind(RawColumn.missing(10)) == NUMERIC
    assert profiles.infer_kind(RawColumn.missing(0)) == NUMERIC


def test_kind_can_be_overridden() -> None:
    few_integers = numbers([0, 1, 2] * 50)
    column = profiles.build_column("x", few_integers, kind=NUMERIC)
    assert column.kind == NUMERIC
    assert column.reservoir.size == 150
    floats = numbers([0.25, 0.5, 0.25, 0.75])
    column = profiles.build_column("x", floats, kind=CATEGORICAL)
    assert column.kind == CATEGORICAL
    assert column.categories == {"0.25": 2, "0.5": 1, "0.75": 1}


# --- numeric profiles ------------------------------------------------------------------------------

def reference_values(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(0.0, 1.0, n)


def test_bin_edges_are_reference_quantiles_and_counts_cover_the_finite_values() -> None:
    values = reference_values(5_000)
    raw = np.concatenate([values, [np.nan, np.nan, np.inf, -np.inf]])
    column = profiles.build_column("x", numbers(raw), bins=10)
    np.testing.assert_allclose(column.bin_edges, np.quantile(values, np.arange(1, 10) / 10), rtol=1e-12)
    assert column.bin_counts.size == column.bin_edges.size + 1
    assert column.bin_counts.sum() == values.size  # NaN and ±inf are not counted
    # Quantile bins hold about a tenth of the values each.
    assert np.all(np.abs(column.bin_counts - 500) <= 1)
    np.testing.assert_array_equal(column.bin_counts, stats.bin_counts(values, column.bin_edges))
    assert column.count == raw.size
    assert column.missing == 2  # NaN is missing; ±inf is present (and out of any range)


def test_bins_of_a_column_with_few_values_are_deduplicated() -> None:
    values = np.array([1.0] * 50 + [2.0] * 30 + [3.5] * 20)
    column = profiles.build_column("x", numbers(values), kind=NUMERIC, bins=10)
    # Nine deciles of three distinct values collapse to a few distinct edges, sorted, no repeats.
    np.testing.assert_array_equal(column.bin_edges, np.unique(np.quantile(values, np.linspace(0, 1, 11)[1:-1])))
    assert 2 <= column.bin_edges.size < 9
    assert column.bin_counts.size == column.bin_edges.size + 1
    assert column.bin_counts.sum() == 100


def test_moments_and_range_are_of_the_finite_values() -> None:
    values = reference_values(3_000, seed=1)
    column = profiles.build_column("x", numbers(np.concatenate([values, [np.nan, np.inf]])))
    assert column.mean == pytest.approx(values.mean(), rel=1e-12)
    assert column.std == pytest.approx(values.std(ddof=0), rel=1e-12)  # the population std, as the proto says
    assert (column.min, column.max) == (values.min(), values.max())


def test_the_reservoir_holds_every_value_when_they_fit() -> None:
    values = reference_values(1_000, seed=2)
    column = profiles.build_column("x", numbers(values), reservoir_size=1_000)
    np.testing.assert_array_equal(column.reservoir, np.sort(values))


def test_the_reservoir_is_a_bounded_sample_without_replacement() -> None:
    values = reference_values(20_000, seed=3)
    column = profiles.build_column("x", numbers(values), reservoir_size=2_000, seed=9)
    assert column.reservoir.size == 2_000
    assert np.all(np.diff(column.reservoir) >= 0)  # sorted
    assert np.isin(column.reservoir, values).all()
    assert np.unique(column.reservoir).size == 2_000  # distinct values: no value drawn twice
    # It is drawn from all of the reference, not its beginning: its quantiles are the reference's.
    assert np.quantile(column.reservoir, 0.5) == pytest.approx(np.quantile(values, 0.5), rel=0.1)
    assert np.quantile(column.reservoir, 0.9) == pytest.approx(np.quantile(values, 0.9), rel=0.1)
    again = profiles.build_column("x", numbers(values), reservoir_size=2_000, seed=9)
    np.testing.assert_array_equal(column.reservoir, again.reservoir)  # seeded: reproducible


def test_the_default_reservoir_is_bounded() -> None:
    column = profiles.build_column("x", numbers(reference_values(30_000, seed=4)))
    assert column.reservoir.size == profiles.DEFAULT_RESERVOIR


def test_an_all_missing_numeric_column_profiles_without_error() -> None:
    column = profiles.build_column("x", RawColumn.from_values([None, float("nan"), None]))
    assert (column.kind, column.count, column.missing) == (NUMERIC, 3, 3)
    assert column.missing_share == 1.0
    assert column.reservoir.size == 0 and column.bin_edges.size == 0 and column.bin_counts.size == 0
    only_infinities = profiles.build_column("x", numbers([np.inf, -np.inf]), kind=NUMERIC)
    assert only_infinities.reservoir.size == 0 and only_infinities.missing == 0


def test_an_all_missing_categorical_column_profiles_without_error() -> None:
    column = profiles.build_column("x", RawColumn.missing(4), kind=CATEGORICAL)
    assert (column.kind, column.count, column.missing, column.categories) == (CATEGORICAL, 4, 4, {})
    assert profiles.build_column("x", RawColumn.missing(0)).missing_share == 0.0


# --- categorical profiles --------------------------------------------------------------------------

def test_categories_are_counted_with_numbers_named_as_integers() -> None:
    column = profiles.build_column("x", RawColumn.from_values([3, 3.0, 1, None, 1, 3, float("nan")]))
    assert column.kind == CATEGORICAL and column.value_type == NUMBER
    assert column.categories == {"1": 2, "3": 3}
    assert (column.count, column.missing) == (7, 2)
    labels = profiles.build_column("y", strings(["cat", "dog", "cat", "", None]))
    assert labels.categories == {"": 1, "cat": 2, "dog": 1}
    assert labels.value_type == STRING


# --- protobuf and files ----------------------------------------------------------------------------

def assert_columns_equal(a: ColumnProfile, b: ColumnProfile) -> None:
    assert (a.name, a.kind, a.value_type, a.count, a.missing) == (b.name, b.kind, b.value_type, b.count, b.missing)
    np.testing.assert_array_equal(a.bin_edges, b.bin_edges)
    np.testing.assert_array_equal(a.bin_counts, b.bin_counts)
    np.testing.assert_array_equal(a.reservoir, b.reservoir)
    assert (a.mean, a.std, a.min, a.max) == (b.mean, b.std, b.min, b.max)  # doubles survive exactly
    assert a.categories == b.categories and list(a.categories) == list(b.categories)


def assert_profiles_equal(a: Profile, b: Profile) -> None:
    assert (a.model_name, a.model_version, a.rows, a.source, a.created_time_unix_nano) == \
        (b.model_name, b.model_version, b.rows, b.source, b.created_time_unix_nano)
    assert list(a.features) == list(b.features) and list(a.predictions) == list(b.predictions)
    for name in a.features:
        assert_columns_equal(a.features[name], b.features[name])
    for name in a.predictions:
        assert_columns_equal(a.predictions[name], b.predictions[name])


def example_profile() -> Profile:
    rng = np.random.default_rng(12)
    n = 4_000
    features = {
        "amount": profiles.build_column("amount", numbers(np.where(rng.random(n) < 0.1, np.nan,
                                                                    rng.lognormal(3, 1, n))), reservoir_size=1_000),
        "country": profiles.build_column("country", strings(rng.choice(["DE", "FR", "ÜS", "日本"], n))),
        "n_items": profiles.build_column("n_items", numbers(rng.integers(1, 5, n))),
        "empty": profiles.build_column("empty", RawColumn.missing(n)),
        "empty_cat": profiles.build_column("empty_cat", RawColumn.missing(n), kind=CATEGORICAL),
    }
    predictions = {
        "ml.prediction.label": profiles.build_column("ml.prediction.label", strings(rng.choice(["yes", "no"], n))),
        "ml.prediction.score": profiles.build_column("ml.prediction.score", numbers(rng.random(n))),
    }
    return Profile("fraud", "v7", n, features, predictions, source="file:train.parquet",
                   created_time_unix_nano=1_700_000_000_123_456_789)


def test_a_profile_survives_the_protobuf() -> None:
    profile = example_profile()
    message = profiles.to_proto(profile)
    assert message.features[0].numeric.count == profile.features["amount"].bin_counts.sum()
    again = profiles.from_proto(type(message).FromString(message.SerializeToString()))
    assert_profiles_equal(profile, again)


def test_a_profile_survives_save_and_load(tmp_path) -> None:
    profile = example_profile()
    path = tmp_path / "deep" / "fraud.vigilprofile"
    profiles.save(profile, path)
    assert_profiles_equal(profile, profiles.load(path))
    assert [p.name for p in path.parent.iterdir()] == ["fraud.vigilprofile"]  # no temporary file left
    profiles.save(example_profile(), path)  # overwriting works too
    assert_profiles_equal(profile, profiles.load(path))


def test_a_column_of_unknown_kind_is_refused() -> None:
    message = profiles.to_proto(example_profile())
    message.features[0].kind = 0  # COLUMN_KIND_UNSPECIFIED
    with pytest.raises(ValueError, match="amount"):
        profiles.from_proto(message)


def test_the_loaded_profile_gives_the_same_drift_numbers(tmp_path) -> None:
    from agent.ml import drift

    profile = example_profile()
    profiles.save(profile, tmp_path / "p.pb")
    loaded = profiles.load(tmp_path / "p.pb")
    rng = np.random.default_rng(13)
    window = {"amount": numbers(rng.lognormal(3.2, 1, 500)), "country": strings(rng.choice(["DE", "FR"], 500)),
              "n_items": numbers(rng.integers(1, 6, 500))}
    a = drift.evaluate(profile, window, 500, drift.DriftConfig())
    b = drift.evaluate(loaded, window, 500, drift.DriftConfig())
    for name in a.columns:
        assert a.columns[name].statistics == b.columns[name].statistics
        assert a.columns[name].p_adjusted == b.columns[name].p_adjusted or (
            math.isnan(a.columns[name].p_adjusted) and math.isnan(b.columns[name].p_adjusted))
