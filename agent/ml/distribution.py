"""A column's reference and current distributions on one shared value axis, for charts.

The reference profile bins numeric values at its quantile edges, with one open
bin below the first edge and one above the last. A window that moved far
lands in those open bins, and a chart drawn on them shows a pile-up at the
edge, not how far it went. Here the open bins are closed at the reference's
minimum and maximum, and the current values beyond them get bins of their own
out to the window's own range (at most `MAX_EXTRA_BINS` a side), so the shift's
size is on the axis. Categorical columns give their counts per category.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from agent.ml import stats
from agent.ml.columns import ColumnView
from agent.ml.profile import ColumnProfile

MAX_EXTRA_BINS = 10


def reference_bins(reference: ColumnProfile) -> tuple[list[float], list[int]]:
    """The reference's bins with finite bounds: [min, edges…, max] and one count per bin."""
    inner = [float(e) for e in reference.bin_edges]
    counts = [int(n) for n in reference.bin_counts]
    if not counts:
        return [], []
    lo = min(float(reference.min), inner[0]) if inner else float(reference.min)
    hi = max(float(reference.max), inner[-1]) if inner else float(reference.max)
    return [lo, *inner, hi], counts


def window_bins(reference: ColumnProfile, values: np.ndarray) -> tuple[list[float], list[int]]:
    """The window's sorted usable `values` counted on the reference's bins, widened to their range."""
    bounds, _ = reference_bins(reference)
    if values.size == 0 or not bounds:
        return bounds, [0] * max(len(bounds) - 1, 0)
    lo, hi = bounds[0], bounds[-1]
    step = (hi - lo) / max(len(bounds) - 1, 1) or max(abs(hi), 1.0) * 0.1
    low, high = float(values[0]), float(values[-1])
    below = _extension(lo, low, step) if low < lo else []
    above = _extension(hi, high, step) if high > hi else []
    edges = [*reversed(below), *bounds, *above]
    # bin_counts has a bin below the first edge and one above the last: the lowest value sits
    # on the first edge (the first bin holds only it) and nothing is above the last.
    counts = stats.bin_counts(values, np.asarray(edges), is_sorted=True)
    out = counts[1:-1].copy()
    out[0] += counts[0]
    return edges, [int(n) for n in out]


def _extension(start: float, reach: float, step: float) -> list[float]:
    """Edges from `start` outward to `reach` (either side), about `step` apart, at most MAX_EXTRA_BINS."""
    span = reach - start
    n = min(MAX_EXTRA_BINS, max(1, math.ceil(abs(span) / step)))
    return [start + span * (i + 1) / n for i in range(n)]


def column(reference: ColumnProfile, view: ColumnView) -> dict[str, Any]:
    """One column's distributions as the charts read them (JSON-ready)."""
    if reference.is_numeric:
        ref_bounds, ref_counts = reference_bins(reference)
        cur_bounds, cur_counts = window_bins(reference, view.sorted_numbers)
        return {"kind": "numeric", "reference": {"bounds": ref_bounds, "counts": ref_counts},
                "current": {"bounds": cur_bounds, "counts": cur_counts}}
    current = view.usable_category_counts
    names = list(reference.categories) + sorted(str(n) for n in current if n not in reference.categories)
    return {"kind": "categorical", "categories": names,
            "reference": [int(reference.categories.get(n, 0)) for n in names],
            "current": [int(current.get(n, 0)) for n in names]}


def numeric_windows(columns: Mapping[str, ColumnProfile], views: Mapping[str, ColumnView]) -> dict[str, dict]:
    """Per numeric column of a window: its `window_bins` as {"bounds", "counts"}."""
    out = {}
    for name, reference in columns.items():
        if reference.is_numeric and name in views:
            bounds, counts = window_bins(reference, views[name].sorted_numbers)
            out[name] = {"bounds": bounds, "counts": counts}
    return out
