"""Drift of one window against a reference profile, and the rule that calls it.

Every column is tested with its kind's test in the statistics' table
(`agent.ml.statistics`): numeric columns with KS, categorical ones with the
chi-squared test of homogeneity. A column drifts when both

- its test is significant after a correction across the window's columns
  (Bonferroni by default, Benjamini–Hochberg selectable; family alpha 0.05), and
- its effect size passes a practical threshold: by default the
  Wasserstein distance normed by the reference's standard deviation >= 0.1 for
  numeric columns and the Jensen–Shannon distance >= 0.1 for categorical ones.

The significance test keeps false alarms at the family alpha on small
windows; the effect-size threshold keeps large windows from flagging shifts
too small to matter. The model drifts when the share of drifted columns
reaches `drift_share`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from agent.ml import parallel, statistics, stats
from agent.ml.columns import ColumnView, RawColumn
from agent.ml.config import DriftConfig
from agent.ml.profile import CATEGORICAL, NUMERIC, ColumnProfile, Profile


@dataclass
class ColumnDrift:
    name: str
    kind: str
    tested: bool
    p_value: float = math.nan  # the test's own p-value
    p_adjusted: float = math.nan  # after the correction across columns
    score: float = math.nan  # the effect size the decision uses
    method: str = ""
    drifted: bool = False
    statistics: dict[str, float] = field(default_factory=dict)
    # The window's counts: numeric, in the reference's bins; categorical, per name in `categories`.
    current_counts: np.ndarray | None = None
    categories: list[str] | None = None


@dataclass
class DriftResult:
    columns: dict[str, ColumnDrift]
    share: float
    detected: bool

    @property
    def drifted_columns(self) -> list[str]:
        return [name for name, c in self.columns.items() if c.drifted]


def numeric_values(column: RawColumn, sentinels: list[float | str]) -> np.ndarray:
    """The values a numeric test uses: finite numbers that are not sentinels."""
    return column.usable_numbers(sentinels)


def category_counts(reference: ColumnProfile, column: RawColumn | ColumnView,
                    sentinels: list[float | str] = ()) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Reference and window counts over the union of their categories (reference order first).

    A `ColumnView` brings its own sentinels."""
    view = column if isinstance(column, ColumnView) else ColumnView(column, sentinels)
    current = view.usable_category_counts
    order = list(reference.categories) + sorted(n for n in current if n not in reference.categories)
    ref = np.array([reference.categories.get(n, 0) for n in order], dtype=np.int64)
    cur = np.array([current.get(n, 0) for n in order], dtype=np.int64)
    return ref, cur, order


def views(profile: Profile, window: Mapping[str, RawColumn], rows: int,
          sentinels: list[float | str]) -> dict[str, ColumnView]:
    """A view of each profiled column of the window (all missing where the window lacks it)."""
    return {name: ColumnView(window[name] if name in window else RawColumn.missing(rows), sentinels)
            for name in profile.columns()}


def test_column(reference: ColumnProfile, column: RawColumn | ColumnView, config: DriftConfig) -> ColumnDrift:
    """The statistics of one column against its reference (no decision yet)."""
    view = column if isinstance(column, ColumnView) else ColumnView(column, config.sentinels)
    result = ColumnDrift(reference.name, reference.kind, tested=False)
    if reference.kind == NUMERIC:
        values = view.sorted_numbers  # sorted once for every statistic
        result.current_counts = stats.bin_counts(values, reference.bin_edges, is_sorted=True)
        if values.size < config.min_values or reference.reservoir.size == 0:
            return result
        comparison = stats.Comparison(reference.bin_counts, result.current_counts, reference.reservoir, values,
                                      reference.std)
        result.method = config.numeric_method
    else:
        ref, cur, result.categories = category_counts(reference, view)
        result.current_counts = cur
        if cur.sum() < config.min_values or ref.sum() == 0:
            return result
        comparison = stats.Comparison(ref, cur)
        result.method = config.categorical_method
    for name, compute, is_test in _COMPUTED[reference.kind]:
        value = compute(comparison)
        if is_test:
            result.p_value = value.p_value
            value = value.statistic
        result.statistics[name] = value
    result.tested = True
    result.score = result.statistics[result.method]
    return result


# Per column kind, in report order: each statistic's name, function and whether it is the test.
_COMPUTED = {kind: tuple((name, stats.COMPUTE[name], statistics.BY_NAME[name].test)
                         for name in statistics.of_kind(kind))
             for kind in statistics.KINDS}


def evaluate(profile: Profile, window: Mapping[str, RawColumn], rows: int, config: DriftConfig,
             column_views: Mapping[str, ColumnView] | None = None) -> DriftResult:
    """Test every profiled column on `window` and decide which drifted.

    A column absent from the window counts as all missing; it is not tested. `column_views`
    (`views(...)` of the same window) lets the caller share what the tests compute per column.
    """
    if column_views is None:
        column_views = views(profile, window, rows, config.sentinels)
    columns = profile.columns()
    results = dict(zip(columns, parallel.map_columns(
        lambda item: test_column(item[1], column_views[item[0]], config), columns.items(), rows)))
    return decide(results, config)


def decide(results: dict[str, ColumnDrift], config: DriftConfig) -> DriftResult:
    """Which of the tested columns (`test_column`'s results, by name) drifted, after the correction
    across them, and whether the model did."""
    p_values = np.array([r.p_value if r.tested else math.nan for r in results.values()])
    adjusted = stats.adjust_p_values(p_values, config.correction)
    for result, p_adjusted in zip(results.values(), adjusted):
        if not result.tested:
            continue
        result.p_adjusted = float(p_adjusted)
        threshold = config.numeric_threshold if result.kind == NUMERIC else config.categorical_threshold
        significant = p_adjusted < config.alpha
        if statistics.BY_NAME[result.method].test:
            # The test statistic itself was chosen: significance alone decides.
            result.drifted = bool(significant)
        else:
            result.drifted = bool(significant and result.score >= threshold)
    tested = [r for r in results.values() if r.tested]
    share = sum(r.drifted for r in tested) / len(tested) if tested else 0.0
    return DriftResult(results, share, bool(tested) and share >= config.drift_share)


__all__ = ["CATEGORICAL", "NUMERIC", "DriftConfig", "DriftResult", "ColumnDrift", "decide", "evaluate", "test_column"]
