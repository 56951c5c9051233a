"""Data health of a window against the reference: every share on data built so the answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from agent.ml import profile as profiles
from agent.ml.columns import RawColumn
from agent.ml.health import column_health
from agent.ml.profile import CATEGORICAL, NUMERIC
from tests.ml.data import numbers, strings

SENTINELS = [-999]


@pytest.fixture(scope="module")
def numeric_reference():
    # Range [0, 10]; 200 values so the reservoir is not empty.
    return profiles.build_column("x", numbers(np.linspace(0.0, 10.0, 200)))


@pytest.fixture(scope="module")
def categorical_reference():
    return profiles.build_column("c", strings(["red", "green", "blue"] * 50))


def test_missing_share_counts_none_and_nan(numeric_reference) -> None:
    values: list = list(np.linspace(1.0, 9.0, 80))
    values += [None] * 10 + [float("nan")] * 10  # 20 of 100 missing
    column = RawColumn.from_values(values)
    health = column_health(numeric_reference, column, SENTINELS)
    assert health.missing == 0.2
    assert (health.sentinel, health.type_mismatch, health.out_of_range, health.unseen_category) == (0, 0, 0, 0)


def test_missing_share_on_a_large_window(numeric_reference) -> None:
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 10, 10_000)
    missing = rng.permutation(10_000)[:2_000]
    values[missing] = np.nan
    assert column_health(numeric_reference, numbers(values), SENTINELS).missing == 0.2


def test_sentinel_share_among_present_values(numeric_reference) -> None:
    # 100 rows: 20 missing, 80 present of which 8 are -999 (as a number) and 2 "-999" strings.
    values = [5.0] * 70 + [-999] * 8 + ["-999"] * 2 + [None] * 20
    health = column_health(numeric_reference, RawColumn.from_values(values), SENTINELS)
    assert health.missing == 0.2
    assert health.sentinel == 10 / 80
    # The strings are also of the wrong type for a numeric column; the sentinels are not out of range.
    assert health.type_mismatch == 2 / 80
    assert health.out_of_range == 0.0


def test_other_sentinels(numeric_reference, categorical_reference) -> None:
    column = RawColumn.from_values([5.0, -1.0, -1.0, 0.0])
    assert column_health(numeric_reference, column, [-1, "N/A"]).sentinel == 0.5
    assert column_health(numeric_reference, column, []).sentinel == 0.0
    labels = strings(["red", "N/A", "N/A", "blue"])
    health = column_health(categorical_reference, labels, [-1, "N/A"])
    assert health.sentinel == 0.5
    assert health.unseen_category == 0.0  # a sentinel is not an unseen category


def test_strings_in_a_numeric_column_are_type_mismatches(numeric_reference) -> None:
    values = [1.0] * 6 + ["1.5", "abc", "", None]
    health = column_health(numeric_reference, RawColumn.from_values(values), SENTINELS)
    assert health.type_mismatch == 3 / 9
    assert health.missing == 0.1


def test_numbers_in_a_string_column_are_type_mismatches(categorical_reference) -> None:
    values = ["red"] * 5 + [1, 2.5, 3] + [None, None]
    health = column_health(categorical_reference, RawColumn.from_values(values), SENTINELS)
    assert health.type_mismatch == 3 / 8
    assert health.unseen_category == 3 / 8  # "1", "2.5" and "3" are not categories the reference had


def test_unreadable_values_are_type_mismatches_whatever_the_reference_type(numeric_reference,
                                                                           categorical_reference) -> None:
    values = [[1, 2], {"a": 1}, b"x", 4.0]
    assert column_health(numeric_reference, RawColumn.from_values(values), SENTINELS).type_mismatch == 0.75
    assert column_health(categorical_reference, RawColumn.from_values(["red", [1], {"a": 1}, "blue"]),
                         SENTINELS).type_mismatch == 0.5


def test_number_categories_take_strings_as_mismatches(numeric_reference) -> None:
    reference = profiles.build_column("n", numbers([1, 2, 3] * 30))
    assert (reference.kind, reference.value_type) == (CATEGORICAL, profiles.NUMBER)
    health = column_health(reference, RawColumn.from_values([1, 2.0, 3, 7, "3", "x"]), SENTINELS)
    assert health.type_mismatch == 2 / 6
    assert health.unseen_category == 2 / 6  # 7 and "x"; the string "3" names a known category


def test_out_of_range_includes_infinities(numeric_reference) -> None:
    values = [0.0, 10.0, 5.0, -0.001, 10.001, float("inf"), float("-inf"), 1e308, -1e308, 3.0]
    health = column_health(numeric_reference, numbers(values), SENTINELS)
    assert health.out_of_range == 6 / 10  # the bounds themselves are in range
    assert health.missing == 0.0


def test_out_of_range_needs_a_reference_range() -> None:
    empty_reference = profiles.build_column("x", RawColumn.missing(5))
    health = column_health(empty_reference, numbers([1.0, 2.0, np.inf]), SENTINELS)
    assert health.out_of_range == 0.0


def test_unseen_categories(categorical_reference) -> None:
    values = ["red", "green", "purple", "purple", "orange", "blue", "-999", None, "Red", "red "]
    health = column_health(categorical_reference, strings(values), SENTINELS)
    # Present: 9; unseen: purple ×2, orange, "Red", "red " (case and spaces matter); "-999" is a sentinel.
    assert health.unseen_category == 5 / 9
    assert health.sentinel == 1 / 9
    assert health.missing == 0.1


def test_a_numeric_reference_has_no_unseen_categories(numeric_reference) -> None:
    assert column_health(numeric_reference, strings(["a", "b"]), SENTINELS).unseen_category == 0.0


@pytest.mark.parametrize("reference", ["numeric_reference", "categorical_reference"])
def test_an_empty_window_is_all_zero(reference: str, request) -> None:
    health = column_health(request.getfixturevalue(reference), RawColumn.missing(0), SENTINELS)
    assert health.as_dict() == {"missing": 0.0, "sentinel": 0.0, "type_mismatch": 0.0, "out_of_range": 0.0,
                                "unseen_category": 0.0}


@pytest.mark.parametrize("kind", [NUMERIC, CATEGORICAL])
def test_an_all_missing_window_is_all_missing_and_nothing_else(kind: str) -> None:
    reference = profiles.build_column("x", numbers([1, 2, 3] * 20), kind=kind)
    health = column_health(reference, RawColumn.missing(50), SENTINELS)
    assert health.as_dict() == {"missing": 1.0, "sentinel": 0.0, "type_mismatch": 0.0, "out_of_range": 0.0,
                                "unseen_category": 0.0}


def test_a_healthy_window_is_all_zero(numeric_reference, categorical_reference) -> None:
    rng = np.random.default_rng(1)
    assert set(column_health(numeric_reference, numbers(rng.uniform(0, 10, 1_000)), SENTINELS).as_dict().values()) \
        == {0.0}
    labels = strings(rng.choice(["red", "green", "blue"], 1_000))
    assert set(column_health(categorical_reference, labels, SENTINELS).as_dict().values()) == {0.0}


def test_every_health_kind_is_a_field_in_report_order() -> None:
    from dataclasses import fields

    from agent.ml.health import ColumnHealth
    from agent.ml.vocabulary import HEALTH_KINDS

    assert tuple(f.name for f in fields(ColumnHealth)) == HEALTH_KINDS
    assert tuple(ColumnHealth(0.1, 0.2, 0.3, 0.4, 0.5).as_dict()) == HEALTH_KINDS
