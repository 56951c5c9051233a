"""ColumnView: what the drift tests, health checks and histograms share per window column gives the
same numbers as computing each from the RawColumn, on columns with every kind of value."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from agent.ml import drift, profile as profiles
from agent.ml.columns import UNREADABLE, ColumnView, RawColumn, equals_any, is_in
from agent.ml.health import column_health
from agent.ml.profile import CATEGORICAL, NUMBER

SENTINEL_SETS = [[], [-999], [-999, "n/a"], [-999.5, "-999", 1.5], [True, "true"]]


def mixed(seed: int, rows: int = 400) -> RawColumn:
    """Numbers (integers among them), infinities, NaN, None, strings, booleans, sentinels, unreadables."""
    rng = np.random.default_rng(seed)
    pool = [1.5, 2.0, -3.0, 7, -999, -999.5, float("inf"), float("-inf"), float("nan"), None, "a", "b", "n/a",
            "-999", "", True, False, [1, 2], {"k": 1}, 0.25, 1e308]
    return RawColumn.from_values([pool[i] for i in rng.integers(0, len(pool), rows)])


def health_from_the_column(reference, column: RawColumn, sentinels) -> dict[str, float]:
    """column_health as it was computed before views: every mask from the RawColumn itself."""
    rows = len(column)
    is_number, is_string = column.is_number, column.is_string
    present = int((is_number | is_string).sum())
    numeric_sentinels = [s for s in sentinels if isinstance(s, (int, float))]
    string_sentinels = [str(s) for s in sentinels]
    sentinel = int(np.isin(column.numbers[is_number], numeric_sentinels).sum()) if numeric_sentinels else 0
    if string_sentinels:
        sentinel += int(is_in(column.strings[is_string], string_sentinels).sum())
    unreadable = int((column.strings == UNREADABLE).sum())
    mismatch = int(is_string.sum() if reference.value_type == NUMBER else is_number.sum() + unreadable)
    out_of_range = unseen = 0
    if reference.kind == CATEGORICAL:
        values = column.category_values()
        if values.size:
            fresh = ~is_in(values, reference.categories)
            if string_sentinels:
                fresh &= ~is_in(values, string_sentinels)
            unseen = int(fresh.sum())
    else:
        numbers = column.numbers[is_number]
        if numeric_sentinels:
            numbers = numbers[~np.isin(numbers, numeric_sentinels)]
        if reference.reservoir.size:
            out_of_range = int(((numbers < reference.min) | (numbers > reference.max)).sum())

    def share(part: int, whole: int) -> float:
        return part / whole if whole else 0.0

    return {"missing": share(rows - present, rows), "sentinel": share(sentinel, present),
            "type_mismatch": share(mismatch, present), "out_of_range": share(out_of_range, present),
            "unseen_category": share(unseen, present)}


@pytest.mark.parametrize("sentinels", SENTINEL_SETS)
@pytest.mark.parametrize("seed", range(4))
def test_a_view_reads_what_the_column_reads(seed: int, sentinels: list) -> None:
    column = mixed(seed)
    view = ColumnView(column, sentinels)
    np.testing.assert_array_equal(view.is_string, column.is_string)
    np.testing.assert_array_equal(view.is_number, column.is_number)
    assert view.present == int((~column.is_missing).sum())
    np.testing.assert_array_equal(view.usable_numbers, column.usable_numbers(sentinels))
    np.testing.assert_array_equal(view.sorted_numbers, np.sort(column.usable_numbers(sentinels)))
    assert view.category_counts == Counter(column.category_values().tolist())
    assert view.usable_category_counts == Counter(column.usable_categories(sentinels).tolist())


@pytest.mark.parametrize("sentinels", SENTINEL_SETS)
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["numeric", "categorical", "number categories"])
def test_health_from_a_view_is_health_from_the_column(seed: int, sentinels: list, kind: str) -> None:
    rng = np.random.default_rng(seed + 100)
    if kind == "numeric":
        reference = profiles.build_column("x", RawColumn.from_values(list(rng.normal(0, 3, 300))))
    elif kind == "categorical":
        reference = profiles.build_column("x", RawColumn.from_values(list(rng.choice(["a", "n/a", "c"], 300))))
    else:
        reference = profiles.build_column("x", RawColumn.from_values([int(v) for v in rng.integers(-3, 4, 300)]))
    column = mixed(seed)
    expected = health_from_the_column(reference, column, sentinels)
    assert column_health(reference, ColumnView(column, sentinels)).as_dict() == expected
    assert column_health(reference, column, sentinels).as_dict() == expected


@pytest.mark.parametrize("sentinels", SENTINEL_SETS)
def test_category_counts_from_a_view_are_those_from_the_column(sentinels: list) -> None:
    reference = profiles.build_column("x", RawColumn.from_values(["a", "b", "a", "z"] * 20), kind=CATEGORICAL)
    column = mixed(7)
    ref, cur, order = drift.category_counts(reference, ColumnView(column, sentinels))
    counts = Counter(column.usable_categories(sentinels).tolist())
    assert order == list(reference.categories) + sorted(n for n in counts if n not in reference.categories)
    assert cur.tolist() == [counts.get(n, 0) for n in order]
    assert ref.tolist() == [reference.categories.get(n, 0) for n in order]


def test_a_view_computes_each_reading_once() -> None:
    view = ColumnView(mixed(1), [-999])
    assert view.sorted_numbers is view.sorted_numbers
    assert view.is_string is view.is_string
    assert view.category_counts is view.category_counts


@pytest.mark.parametrize("targets", [[], [-999], [-999, 1.5, True], [float("inf")], [float("nan")]])
def test_equals_any_is_isin(targets: list) -> None:
    values = np.array([1.5, -999.0, 1.0, np.inf, -np.inf, np.nan, 0.0, -0.0, 3.0])
    np.testing.assert_array_equal(equals_any(values, targets), np.isin(values, targets))
