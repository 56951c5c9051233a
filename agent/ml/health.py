"""Data health of one window, per column, against the reference.

- `missing`: share of rows where the value is absent or NaN;
- `sentinel`: share of present values equal to a sentinel (default -999);
- `type_mismatch`: share of present values of the other type than the
  reference's (a string where numbers were seen, or the reverse);
- `out_of_range`: share of present numeric values outside the reference's
  [min, max] (infinities included);
- `unseen_category`: share of present categorical values the reference never had.

Every share is NaN-free: an empty window gives 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from agent.ml.columns import UNREADABLE, RawColumn, is_in
from agent.ml.profile import CATEGORICAL, NUMBER, ColumnProfile


@dataclass
class ColumnHealth:
    missing: float
    sentinel: float
    type_mismatch: float
    out_of_range: float
    unseen_category: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def column_health(reference: ColumnProfile, column: RawColumn, sentinels: list[float | str]) -> ColumnHealth:
    rows = len(column)
    is_number, is_string = column.is_number, column.is_string
    present = int((is_number | is_string).sum())
    numeric_sentinels = [s for s in sentinels if isinstance(s, (int, float))]
    string_sentinels = [str(s) for s in sentinels]
    sentinel = int(np.isin(column.numbers[is_number], numeric_sentinels).sum()) if numeric_sentinels else 0
    if string_sentinels:
        sentinel += int(is_in(column.strings[is_string], string_sentinels).sum())
    # A value of no usable type (a list, a map) is a mismatch whatever the reference's type.
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
    return ColumnHealth(
        missing=_share(rows - present, rows),
        sentinel=_share(sentinel, present),
        type_mismatch=_share(mismatch, present),
        out_of_range=_share(out_of_range, present),
        unseen_category=_share(unseen, present),
    )
