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

from dataclasses import dataclass

import numpy as np

from agent.ml.columns import UNREADABLE, ColumnView, RawColumn, equals_any
from agent.ml.profile import CATEGORICAL, NUMBER, ColumnProfile
from agent.ml.vocabulary import HEALTH_KINDS


@dataclass
class ColumnHealth:
    # One field per kind of vocabulary.HEALTH_KINDS, under its name.
    missing: float
    sentinel: float
    type_mismatch: float
    out_of_range: float
    unseen_category: float

    def as_dict(self) -> dict[str, float]:
        """The shares by kind, in report order."""
        return {kind: getattr(self, kind) for kind in HEALTH_KINDS}


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def column_health(reference: ColumnProfile, column: RawColumn | ColumnView,
                  sentinels: list[float | str] = ()) -> ColumnHealth:
    """The shares above for one column; a `ColumnView` brings its own sentinels (and what the
    drift tests already computed from it)."""
    view = column if isinstance(column, ColumnView) else ColumnView(column, sentinels)
    rows, present, strings = len(view), view.present, view.string_counts
    numeric_sentinels = [s for s in view.sentinels if isinstance(s, (int, float))]
    string_sentinels = {str(s) for s in view.sentinels}
    is_sentinel = equals_any(view.numbers, numeric_sentinels)
    sentinel = int(np.count_nonzero(is_sentinel)) + sum(strings[s] for s in string_sentinels)
    # A value of no usable type (a list, a map) is a mismatch whatever the reference's type.
    if reference.value_type == NUMBER:
        mismatch = sum(strings.values())
    else:
        mismatch = view.numbers.size + strings[UNREADABLE]
    out_of_range = unseen = 0
    if reference.kind == CATEGORICAL:
        unseen = sum(n for name, n in view.category_counts.items()
                     if name not in reference.categories and name not in string_sentinels)
    elif reference.reservoir.size:
        numbers = view.numbers[~is_sentinel] if numeric_sentinels else view.numbers
        out_of_range = int(np.count_nonzero((numbers < reference.min) | (numbers > reference.max)))
    return ColumnHealth(
        missing=_share(rows - present, rows),
        sentinel=_share(sentinel, present),
        type_mismatch=_share(mismatch, present),
        out_of_range=_share(out_of_range, present),
        unseen_category=_share(unseen, present),
    )
