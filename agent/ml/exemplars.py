"""Exemplars: which predictions a derived metric's point points at, so a backend leads to their traces.

Chosen with numpy over whole columns, never row by row, and bounded per point
as the OpenTelemetry SDK's AlignedHistogramBucketExemplarReservoir is (at most
one per bucket of a histogram), with at most `limit` per point:

- `BucketReservoir`, per interval: the slowest predictions on the latency
  histogram, the lowest-confidence ones on the confidence histogram; each batch
  offers its most telling rows (`argpartition`), each bucket keeps its most
  telling one;
- `column_exemplars`, per drift window: per column, the values furthest out of
  the reference's range (one per bin of the feature-value histogram), and the
  rows that hit each data-health check.

Only rows that came with a trace id are candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from agent.metrics_builder import Exemplar
from agent.ml.columns import UNREADABLE, ColumnView, category_of, equals_any, is_in
from agent.ml.health import ColumnHealth
from agent.ml.predictions import SPAN_ID, TRACE_ID
from agent.ml.profile import CATEGORICAL, NUMBER, ColumnProfile
from agent.ml.vocabulary import FEATURE_NAME



@dataclass
class Traces:
    """The trace and span ids of a run of rows (b"" where a row has none) and when they were seen."""

    trace_ids: np.ndarray  # 'S16'
    span_ids: np.ndarray  # 'S8'
    time_ns: np.ndarray  # int64, per row
    traced: np.ndarray  # bool: the row has a trace id

    @classmethod
    def none(cls, rows: int) -> Traces:
        return cls(np.zeros(rows, dtype=TRACE_ID), np.zeros(rows, dtype=SPAN_ID), np.zeros(rows, dtype=np.int64),
                   np.zeros(rows, dtype=bool))

    @classmethod
    def of(cls, trace_ids: np.ndarray | None, span_ids: np.ndarray | None, rows: int, time_ns: int) -> Traces | None:
        """A batch's ids seen at `time_ns`; None when no row has a trace id (nothing to keep)."""
        if trace_ids is None or len(trace_ids) != rows:
            return None
        traced = has_trace(trace_ids)
        if not traced.any():
            return None
        spans = span_ids if span_ids is not None and len(span_ids) == rows else np.zeros(rows, dtype=SPAN_ID)
        return cls(trace_ids, spans, np.full(rows, time_ns, dtype=np.int64), traced)

    def __len__(self) -> int:
        return self.trace_ids.size

    def rows(self, start: int, stop: int) -> Traces:
        return Traces(self.trace_ids[start:stop], self.span_ids[start:stop], self.time_ns[start:stop],
                      self.traced[start:stop])

    def exemplar(self, row: int, value: float) -> Exemplar:
        # Through tobytes: indexing an 'S16' array drops trailing zero bytes, which belong to the id.
        return Exemplar(self.trace_ids[row:row + 1].tobytes(), self.span_ids[row:row + 1].tobytes(), float(value),
                        int(self.time_ns[row]))


def has_trace(trace_ids: np.ndarray) -> np.ndarray:
    """Rows whose trace id is set (an all-zero id is no id, as OTLP says)."""
    raw = np.ascontiguousarray(trace_ids, dtype=TRACE_ID).view(np.uint64).reshape(trace_ids.size, 2)
    return (raw[:, 0] | raw[:, 1]) != 0


def join(parts: Sequence[tuple[int, Traces | None]]) -> Traces | None:
    """The traces of consecutive chunks (rows, traces or None) as one run; None when none had any."""
    if not any(t is not None for _, t in parts):
        return None
    whole = [t if t is not None else Traces.none(rows) for rows, t in parts]
    if len(whole) == 1:
        return whole[0]
    return Traces(np.concatenate([t.trace_ids for t in whole]), np.concatenate([t.span_ids for t in whole]),
                  np.concatenate([t.time_ns for t in whole]), np.concatenate([t.traced for t in whole]))


class BucketReservoir:
    """At most one exemplar per bucket of a histogram: the highest value seen in it (`highest`), or the
    lowest; `take` gives the `limit` most telling of them."""

    def __init__(self, bounds: np.ndarray, highest: bool, limit: int) -> None:
        self._bounds = np.asarray(bounds, dtype=float)
        self._sign = 1.0 if highest else -1.0
        self._limit = limit
        n = self._bounds.size + 1
        self._score = np.full(n, -math.inf)  # value * sign: larger is more telling
        self._trace = np.zeros(n, dtype=TRACE_ID)
        self._span = np.zeros(n, dtype=SPAN_ID)
        self._time = np.zeros(n, dtype=np.int64)

    def offer(self, values: np.ndarray, traces: Traces | None) -> None:
        """The batch's most telling rows with a trace id (at most `limit` of them) into their buckets."""
        if traces is None or not values.size:
            return
        score = values * self._sign
        usable = traces.traced & np.isfinite(score)
        candidates = int(np.count_nonzero(usable))
        if not candidates:
            return
        score = np.where(usable, score, -math.inf)
        k = min(self._limit, candidates)
        top = np.argpartition(score, score.size - k)[score.size - k:] if score.size > k else np.arange(score.size)
        top = top[np.argsort(-score[top], kind="stable")]  # most telling first: np.unique keeps the first
        buckets, first = np.unique(np.searchsorted(self._bounds, values[top], side="left"), return_index=True)
        rows = top[first]
        better = score[rows] > self._score[buckets]
        buckets, rows = buckets[better], rows[better]
        self._score[buckets] = score[rows]
        self._trace[buckets] = traces.trace_ids[rows]
        self._span[buckets] = traces.span_ids[rows]
        self._time[buckets] = traces.time_ns[rows]

    def merge(self, other: BucketReservoir) -> None:
        """Take `other`'s exemplars where they are more telling (same bounds)."""
        better = other._score > self._score
        for mine, theirs in ((self._score, other._score), (self._trace, other._trace), (self._span, other._span),
                             (self._time, other._time)):
            mine[better] = theirs[better]

    def copy(self) -> BucketReservoir:
        out = BucketReservoir(self._bounds, self._sign > 0, self._limit)
        out.merge(self)
        return out

    def take(self, limit: int | None = None) -> list[Exemplar]:
        """The most telling exemplars, one per bucket, most telling first."""
        kept = np.flatnonzero(np.isfinite(self._score))
        kept = kept[np.argsort(-self._score[kept], kind="stable")][:self._limit if limit is None else limit]
        return [Exemplar(self._trace[i:i + 1].tobytes(), self._span[i:i + 1].tobytes(),
                         float(self._score[i] * self._sign), int(self._time[i])) for i in kept.tolist()]


@dataclass
class ColumnExemplars:
    """One column's exemplars in a drift window."""

    values: list[Exemplar] = field(default_factory=list)  # the feature-value histogram's: one per bin
    drift: list[Exemplar] = field(default_factory=list)  # furthest out of the reference's range (or unseen)
    health: dict[str, list[Exemplar]] = field(default_factory=dict)  # by check, its hits
    out_of_range: list[tuple[float, Exemplar]] = field(default_factory=list)  # (how far out, exemplar)


def column_exemplars(reference: ColumnProfile, view: ColumnView, health: ColumnHealth, traces: Traces,
                     limit: int) -> ColumnExemplars:
    """The column's telling rows among those with a trace id (`traces` aligned with the column's rows)."""
    out = ColumnExemplars()
    has = traces.traced
    if not has.any():
        return out
    column = view.column
    x = column.numbers
    numeric_sentinels = [s for s in view.sentinels if isinstance(s, (int, float)) and not isinstance(s, bool)]
    is_sentinel = equals_any(x, numeric_sentinels) if numeric_sentinels else np.zeros(x.size, dtype=bool)
    shares = health.as_dict()
    made: dict[int, Exemplar] = {}  # a row is often the exemplar of several points

    def exemplar(row: int) -> Exemplar:
        e = made.get(row)
        if e is None:
            e = made[row] = traces.exemplar(row, x[row])
        return e

    def hits(name: str, mask: np.ndarray) -> None:
        rows = np.flatnonzero(mask & has)[-limit:]  # the latest ones
        if rows.size:
            out.health[name] = [exemplar(r) if math.isfinite(x[r]) else traces.exemplar(r, shares[name])
                                for r in rows.tolist()]

    if shares["missing"]:
        hits("missing", ~(view.is_number | view.is_string))
    if shares["sentinel"]:
        strings = {str(s) for s in view.sentinels}
        hits("sentinel", is_sentinel | (view.is_string & _strings_in(column.strings, strings)))
    if shares["type_mismatch"]:
        hits("type_mismatch", view.is_string if reference.value_type == NUMBER
             else view.is_number | (view.is_string & _strings_in(column.strings, {UNREADABLE})))
    if reference.kind == CATEGORICAL:
        if shares["unseen_category"]:
            known = set(reference.categories) | {str(s) for s in view.sentinels}
            # The latest candidates only: finding a few hits needs no pass of Python over the whole window.
            rows = np.flatnonzero((view.is_number | view.is_string) & has)[-16 * limit:]
            names = np.array([category_of(x[r]) if view.is_number[r] else column.strings[r] for r in rows.tolist()],
                             dtype=object)
            unseen = np.zeros(x.size, dtype=bool)
            unseen[rows[~is_in(names, known)]] = True
            hits("unseen_category", unseen)
            out.drift = out.health.get("unseen_category", [])
        return out
    if not reference.reservoir.size:
        return out
    # How far out of the reference's range, in units of its width: > 0 outside, <= 0 inside.
    width = max(reference.max - reference.min, abs(reference.max), 1e-12)
    with np.errstate(invalid="ignore"):
        far = np.maximum(reference.min - x, x - reference.max) / width
    usable = has & view.is_number & ~is_sentinel
    candidates = int(np.count_nonzero(usable))
    if not candidates:
        return out
    # The furthest-out candidates only (argpartition, not a sort of the window): enough for `limit`
    # per point and one per bin.
    far[~usable] = -math.inf
    keep = min(candidates, _CANDIDATES * limit)
    rows = np.argpartition(far, far.size - keep)[far.size - keep:] if far.size > keep else np.arange(far.size)
    rows = rows[far[rows] > -math.inf]
    order = rows[np.argsort(-far[rows], kind="stable")]  # furthest out first
    out.drift = [exemplar(r) for r in order[:limit].tolist()]
    outside = order[far[order] > 0][:limit]
    out.out_of_range = [(float(far[r]), exemplar(r)) for r in outside.tolist()]
    if outside.size:
        out.health["out_of_range"] = [e for _, e in out.out_of_range]
    if reference.bin_edges.size:
        finite = order[np.isfinite(x[order])]
        seen: set[int] = set()
        for row, bucket in zip(finite.tolist(), np.searchsorted(reference.bin_edges, x[finite], side="left").tolist()):
            if bucket not in seen:  # one per bin: its furthest-out row, furthest first
                seen.add(bucket)
                out.values.append(exemplar(row))
                if len(out.values) == limit:
                    break
    return out


@dataclass
class WindowExemplars:
    """A drift window's exemplars: per column, and the model's (the furthest-out row of each drifted column,
    with the column's name as a filtered attribute)."""

    columns: dict[str, ColumnExemplars] = field(default_factory=dict)
    model: list[Exemplar] = field(default_factory=list)


def window_exemplars(references: Mapping[str, ColumnProfile], views: Mapping[str, ColumnView],
                     healths: Mapping[str, ColumnHealth], drifted: Sequence[str], traces: Traces,
                     limit: int) -> WindowExemplars:
    """Every column's exemplars in the window (`references`: the profile's columns by name)."""
    out = WindowExemplars()
    if not traces.traced.any():
        return out
    for name, reference in references.items():
        out.columns[name] = column_exemplars(reference, views[name], healths[name], traces, limit)
    # The model's points name no column: each exemplar says which one it stands for.
    out.model = [out.columns[name].drift[0]._replace(attributes={FEATURE_NAME: name})
                 for name in drifted if name in out.columns and out.columns[name].drift][:limit]
    return out


_CANDIDATES = 16  # rows looked at per exemplar a column's point may carry


def _strings_in(strings: np.ndarray, names: set[str]) -> np.ndarray:
    found = np.zeros(strings.size, dtype=bool)
    if names:
        present = np.flatnonzero(strings != None)  # noqa: E711 (elementwise comparison)
        found[present] = is_in(strings[present], names)
    return found
