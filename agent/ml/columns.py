"""A column of raw values as they arrived (numbers, strings or nothing), ready for numpy.

Attribute values come in with whatever type the app gave them. A column keeps
the two readings side by side — the value as a number (NaN when it is not
one) and as a string (None when it is not one) — so the engine can compare it
with the reference's type without another pass over Python objects. A row holds
a number or a string, never both.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable, Sequence

import numpy as np


@dataclass
class RawColumn:
    numbers: np.ndarray  # float64; NaN where the value is missing, NaN itself, or a string
    strings: np.ndarray  # object; the value where it is a string, else None

    @classmethod
    def from_values(cls, values: Iterable[Any]) -> RawColumn:
        """From Python values: numbers (bool counts as a string "true"/"false"), strings, None."""
        values = list(values)
        numbers = np.full(len(values), math.nan)
        strings = np.full(len(values), None, dtype=object)
        for i, value in enumerate(values):
            if value is None:
                continue
            if isinstance(value, (bool, np.bool_)):
                strings[i] = "true" if value else "false"
            elif isinstance(value, (int, float, np.integer, np.floating)):
                try:
                    numbers[i] = value
                except OverflowError:  # an int beyond float range
                    numbers[i] = math.inf if value > 0 else -math.inf
            elif isinstance(value, str):
                strings[i] = value
            else:  # lists, dicts, bytes: no usable reading; counted as a type mismatch
                strings[i] = UNREADABLE
        return cls(numbers, strings)

    @classmethod
    def missing(cls, n: int) -> RawColumn:
        return cls(np.full(n, math.nan), np.full(n, None, dtype=object))

    def __len__(self) -> int:
        return self.numbers.size

    @property
    def is_string(self) -> np.ndarray:
        return self.strings != None  # noqa: E711 (elementwise comparison)

    @property
    def is_number(self) -> np.ndarray:
        return ~np.isnan(self.numbers)

    @property
    def is_missing(self) -> np.ndarray:
        return ~(self.is_number | self.is_string)

    def rows(self, start: int, stop: int) -> RawColumn:
        """Rows start..stop-1 (views, not copies)."""
        return RawColumn(self.numbers[start:stop], self.strings[start:stop])

    def concat(self, other: RawColumn) -> RawColumn:
        return RawColumn(np.concatenate([self.numbers, other.numbers]),
                         np.concatenate([self.strings, other.strings]))

    def category_values(self) -> np.ndarray:
        """Every present value as a category string (numbers formatted as in `category_of`)."""
        out = self.strings.copy()
        numbers = self.is_number
        out[numbers] = [category_of(v) for v in self.numbers[numbers]]
        return out[numbers | self.is_string]

    def usable_numbers(self, sentinels: Sequence[float | str] = ()) -> np.ndarray:
        """The values numeric statistics use: finite numbers that are not sentinels."""
        values = self.numbers[np.isfinite(self.numbers)]
        numeric = [s for s in sentinels if isinstance(s, (int, float)) and not isinstance(s, bool)]
        return values[~equals_any(values, numeric)] if numeric and values.size else values

    def usable_categories(self, sentinels: Sequence[float | str] = ()) -> np.ndarray:
        """The values categorical statistics use: every present value but sentinels, as strings."""
        values = self.category_values()
        names = [category_of(s) if isinstance(s, (int, float)) else str(s) for s in sentinels]
        return values[~is_in(values, names)] if names and values.size else values


class ColumnView:
    """One window's column as the drift tests, health checks and histograms read it.

    Each mask, count and array is computed on first use and kept, so the statistics of a
    column share one pass over it (over an object array each pass costs as much as a test).
    The column must not change while a view of it is in use.
    """

    def __init__(self, column: RawColumn, sentinels: Sequence[float | str] = ()) -> None:
        self.column = column
        self.sentinels = list(sentinels)

    def __len__(self) -> int:
        return len(self.column)

    @cached_property
    def is_number(self) -> np.ndarray:
        return self.column.is_number

    @cached_property
    def is_string(self) -> np.ndarray:
        # A row holds a number or a string, never both (how every reader builds a RawColumn), so
        # only the rows without a number are looked at: a comparison per Python object is slow.
        is_string = np.zeros(len(self), dtype=bool)
        gaps = np.flatnonzero(~self.is_number)
        is_string[gaps] = self.column.strings[gaps] != None  # noqa: E711 (elementwise comparison)
        return is_string

    @cached_property
    def present(self) -> int:
        """Rows with a value (a number, NaN aside, or a string)."""
        return int(np.count_nonzero(self.is_number | self.is_string))

    @cached_property
    def numbers(self) -> np.ndarray:
        """The values that are numbers (infinities included)."""
        return self.column.numbers[self.is_number]

    @cached_property
    def string_counts(self) -> Counter:
        """How often each string value came (UNREADABLE among them)."""
        return Counter(self.column.strings[self.is_string].tolist())

    @cached_property
    def usable_numbers(self) -> np.ndarray:
        """`RawColumn.usable_numbers(sentinels)`, in the column's order."""
        return self.column.usable_numbers(self.sentinels)

    @cached_property
    def sorted_numbers(self) -> np.ndarray:
        """`usable_numbers`, sorted (what every numeric test wants)."""
        return np.sort(self.usable_numbers)

    @cached_property
    def category_counts(self) -> Counter:
        """How often each present value came, as a category name (`category_values`)."""
        counts = Counter(self.string_counts)
        if self.numbers.size:
            counts.update(map(category_of, self.numbers.tolist()))
        return counts

    @cached_property
    def usable_category_counts(self) -> dict[str, int]:
        """Counts of `RawColumn.usable_categories(sentinels)`: sentinels' categories left out."""
        names = {category_of(s) if isinstance(s, (int, float)) else str(s) for s in self.sentinels}
        return {name: n for name, n in self.category_counts.items() if name not in names}


def equals_any(values: np.ndarray, targets: Sequence[float]) -> np.ndarray:
    """`np.isin(values, targets)` for a few numeric targets: one comparison pass each, without
    isin's set-up (which costs more than the passes for the handful of sentinels a config lists)."""
    found = np.zeros(values.shape, dtype=bool)
    for target in targets:
        found |= values == target
    return found


# A value of a type no column can use (a list, a map); a string no app would send.
UNREADABLE = "\x00unreadable"


def is_in(values: np.ndarray, names) -> np.ndarray:
    """`np.isin` for an object array of strings, by hashing: no fixed-width copy (one huge string
    would make `astype(str)` allocate its length for every row) and linear in the number of names."""
    names = set(names)
    if not names:
        return np.zeros(values.size, dtype=bool)
    return np.fromiter(map(names.__contains__, values.tolist()), dtype=bool, count=values.size)


def category_of(number: float) -> str:
    """The category name of a number: integers without a decimal point (3, not 3.0)."""
    return str(int(number)) if float(number).is_integer() else repr(float(number))


def concat_all(columns: list[RawColumn]) -> RawColumn:
    if len(columns) == 1:
        return columns[0]
    return RawColumn(np.concatenate([c.numbers for c in columns]),
                     np.concatenate([c.strings for c in columns]))
