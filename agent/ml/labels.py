"""Delayed ground truth: joining labels that arrive late to the predictions they are for.

A prediction with an `ml.prediction.id` waits (pending) for its label; a
label (`ml.label` with `ml.prediction.id` and `ml.model.name`, on a log
record or a span) is joined to it by (model, id). Everything is bounded:

- a pending prediction waits at most `ttl`; it is then *expired*, as is the
  oldest one when `max_pending` are waiting (a second prediction for an id that
  waits takes its place as the newest: the latest one is labelled, and an id
  predicted again after it closed waits again, no longer closed);
- a label whose prediction has not arrived waits `wait` (a label may come
  before its prediction: another pipeline, another batch), at most
  `max_pending` of them; if its prediction never comes it is *unmatched*
  (`unknown_id`);
- the ids of the last `max_pending` closed predictions are remembered, so a
  second label for the same id is unmatched as a `duplicate` (the first label
  counts) and a label for an expired prediction is unmatched as `late`.

Times are wall-clock seconds (`time.time()`), so the age of what waits keeps
counting across a restart: the state is saved under `state_dir` as a
`vigil.v1.LabelJoinState` protobuf and read back at start.

Counters (cumulative): received (labels, by model), matched (by model and
version), expired (pending predictions, by model, version and reason `ttl` or
`max_pending`) and unmatched (labels, by model and reason).
"""

from __future__ import annotations

import math
import time
from array import array
from itertools import repeat
from operator import itemgetter
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from agent.ml.label_rows import MATCHED, NO_ENTRY, PENDING, TIME, ClosedView, PendingView, Rows, runs
from agent.proto.vigil.v1 import labels_pb2
from agent.statefile import write_atomic

UNKNOWN_ID = "unknown_id"
DUPLICATE = "duplicate"
LATE = "late"
TTL = "ttl"
CAPACITY = "max_pending"


@dataclass
class Joined:
    """A label joined to its prediction."""

    model: str
    version: str
    predicted: str | None
    score: float
    value: float
    label: str | float


# Pending predictions and closed ids are tens of thousands of rows (100,000 each at the default
# `max_pending`, as every id an app sends is new): they are `label_rows.Rows`, a column per field.
# Labels that came first (`waiting`) are few and stay a dict of tuples
#   waiting: (model, id) -> (label, time)
# with a deque of (key, entry) in arrival order beside it, to find the oldest entry: taking the first
# key of a dict again and again after deleting from its front scans the deleted slots each time
# (quadratic at capacity). A deque item whose key is gone or was put again later (its entry no longer
# that very tuple) is stale and skipped; the deque is rebuilt when stale items outnumber live ones.


def _oldest(items: dict, order: deque) -> tuple[Any, tuple] | None:
    """The oldest live (key, entry) of `items`, stale ones dropped."""
    while order:
        key, entry = order[0]
        if items.get(key) is entry:
            return key, entry
        order.popleft()
    return None


_SLACK = 1024  # stale entries the deque may hold beyond twice the live ones


def _compact(items: dict, order: deque) -> None:
    if len(order) > 2 * len(items) + _SLACK:
        order.clear()
        order.extend(items.items())


_CLASSES = 4096  # distinct predicted classes shared, at most


def _counts(models: list[str], versions: list[str]) -> Counter[tuple[str, str]]:
    """Counter(zip(models, versions)), from their runs (each call's predictions are of one version)."""
    counts: Counter[tuple[str, str]] = Counter()
    for model, start, end in runs(models):
        for version, first, last in runs(versions[start:end]):
            counts[(model, version)] += last - first
    return counts


class LabelJoin:
    def __init__(self, ttl: float, max_pending: int, wait: float) -> None:
        self.ttl, self.max_pending, self.wait = ttl, max_pending, wait
        self.rows = Rows()  # pending and closed predictions
        self.waiting: dict[tuple[str, str], tuple[str | float, float]] = {}
        self._waiting_order: deque[tuple[tuple[str, str], tuple[str | float, float]]] = deque()
        self.received: Counter[str] = Counter()  # model
        self.matched: Counter[tuple[str, str]] = Counter()  # (model, version)
        self.expired: Counter[tuple[str, str, str]] = Counter()  # (model, version, reason)
        self.unmatched: Counter[tuple[str, str]] = Counter()  # (model, reason)
        self.pending_count: Counter[tuple[str, str]] = Counter()  # (model, version): what waits now
        self.changed = False  # since the last save
        # One string per predicted class, not one per prediction (the wire reader makes one per span).
        self._classes: dict[str | None, str | None] = {}

    @property
    def pending(self) -> PendingView:
        """(model, id) -> (version, predicted, score, value, time), oldest first."""
        return PendingView(self.rows)

    @property
    def closed(self) -> ClosedView:
        """(model, id) -> (matched, time), in the order they were closed."""
        return ClosedView(self.rows)

    # --- in ------------------------------------------------------------------------------------

    def add_predictions(self, model: str, version: str, ids: Iterable[str], predicted: Iterable[str | None],
                        scores: Iterable[float], values: Iterable[float], now: float) -> list[Joined]:
        """Predictions to wait for their labels; returns those whose label was already waiting."""
        columns = [c if isinstance(c, (list, array)) else list(c) for c in (ids, predicted, scores, values)]
        n = min(map(len, columns))
        ids, predicted, scores, values = (c if len(c) == n else c[:n] for c in columns)  # as zip() reads them
        if not (self.waiting and not self.waiting.keys().isdisjoint(zip(repeat(model), ids))) and self.rows.add_new(
                model, ids, (repeat(version, n), self._shared(predicted), scores, values, array("d", [now]) * n)):
            # Every id new, none with its label waiting (as apps send them): the same steps in bulk.
            if n:
                self.pending_count[(model, version)] += n
            self.changed = True
            excess = self.rows.pending - self.max_pending
            if excess > 0:
                self._expire_oldest(excess, now)
            self.rows.tidy()
            return []
        return self._add_one_by_one(model, version, ids, predicted, scores, values, now)

    def _shared(self, predicted: list[str | None]) -> list[str | None]:
        if len(self._classes) > _CLASSES:  # not classes: free text
            self._classes.clear()
        return list(map(self._classes.setdefault, predicted, predicted))

    def _add_one_by_one(self, model: str, version: str, ids: list[str], predicted: Iterable[str | None],
                        scores: Iterable[float], values: Iterable[float], now: float) -> list[Joined]:
        joined = []
        rows, waiting = self.rows, self.waiting
        for id_, label_, score, value in zip(ids, self._shared(list(predicted)), scores, values):
            # a repeated id: the latest prediction is the one labelled (a closed one waits again)
            previous = rows.add_one(model, id_, (version, label_, score, value, now))
            if previous is not None:
                self._uncount(model, previous[0])
            early = waiting.pop((model, id_), None) if waiting else None
            if early is not None:
                self._close(rows.next - 1, True, now)
                self.matched[(model, version)] += 1
                joined.append(Joined(model, version, label_, score, value, early[0]))
                continue
            self.pending_count[(model, version)] += 1
        self.changed = True
        while rows.pending > self.max_pending:
            self._expire(rows.oldest_pending(), CAPACITY, now)
        rows.tidy()
        return joined

    def _expire_oldest(self, count: int, now: float) -> None:
        """Expire the `count` oldest pending predictions (beyond `max_pending`) as `_expire` one at a
        time would: the same entries, counters and closed ids."""
        models, versions = self.rows.close_oldest(count, now)
        for (model, version), n in _counts(models, versions).items():
            self._uncount(model, version, n)
            self.expired[(model, version, CAPACITY)] += n
        self._forget_beyond_capacity()

    def add_labels(self, model: str, ids: Iterable[str], labels: Iterable[str | float], now: float) -> list[Joined]:
        """Labels to join; returns those whose prediction was waiting."""
        joined = []
        rows, waiting = self.rows, self.waiting
        for id_, label in zip(ids, labels):
            self.received[model] += 1
            seq = rows.find(model, id_)
            if seq is not None:
                state = rows.state_of(seq)
                if state != PENDING:
                    self.unmatched[(model, DUPLICATE if state == MATCHED else LATE)] += 1
                    continue
                version, predicted, score, value, _ = rows.entry(seq)
                self._uncount(model, version)
                self._close(seq, True, now)
                self.matched[(model, version)] += 1
                joined.append(Joined(model, version, predicted, score, value, label))
                continue
            key = (model, id_)
            if key in waiting:
                self.unmatched[(model, DUPLICATE)] += 1
                continue
            entry = waiting[key] = (label, now)
            self._waiting_order.append((key, entry))
            if len(waiting) > self.max_pending:
                oldest, _ = _oldest(waiting, self._waiting_order)
                del waiting[oldest]
                self.unmatched[(oldest[0], UNKNOWN_ID)] += 1
        _compact(waiting, self._waiting_order)
        rows.tidy()
        self.changed = True
        return joined

    def expire(self, now: float) -> None:
        """Expire predictions older than `ttl` and give up on labels older than `wait`."""
        rows = self.rows
        while (seq := rows.oldest_pending()) is not None and now - rows.entry(seq)[TIME] >= self.ttl:
            self._expire(seq, TTL, now)
        waiting = self.waiting
        while (oldest := _oldest(waiting, self._waiting_order)) is not None:
            key, entry = oldest
            if now - entry[1] < self.wait:
                break
            del waiting[key]
            self.unmatched[(key[0], UNKNOWN_ID)] += 1
            self.changed = True
        rows.tidy()
        _compact(waiting, self._waiting_order)

    def _uncount(self, model: str, version: str, n: int = 1) -> None:
        counts = self.pending_count
        counts[(model, version)] -= n
        if counts[(model, version)] <= 0:
            del counts[(model, version)]

    def _expire(self, seq: int, reason: str, now: float) -> None:
        model, (version, *_) = self.rows.models[seq - self.rows.base], self.rows.entry(seq)
        self._uncount(model, version)
        self.expired[(model, version, reason)] += 1
        self._close(seq, False, now)
        self.changed = True

    def _close(self, seq: int, matched: bool, now: float) -> None:
        self.rows.close(seq, matched, now)
        self._forget_beyond_capacity()

    def _forget_beyond_capacity(self) -> None:
        excess = self.rows.closed - self.max_pending
        if excess > 0:
            self.rows.forget_oldest(excess)

    # --- looking in ----------------------------------------------------------------------------

    def models(self) -> set[str]:
        """Models with predictions waiting (so their labels are taken even before a prediction is seen)."""
        return {model for model, _ in self.pending_count}

    # --- kept across restarts ------------------------------------------------------------------

    def to_proto(self) -> labels_pb2.LabelJoinState:
        names: dict[str, int] = {}

        def index(column: list[str]) -> list[int]:
            for name in set(column):
                names.setdefault(name, len(names))
            return list(map(names.__getitem__, column))

        message = labels_pb2.LabelJoinState(saved_time_unix_nano=time.time_ns())
        rows = self.rows
        if rows.pending:
            models, ids, (versions, predicted, scores, values, times) = rows.pending_rows()
            p = message.pending
            p.model.extend(index(models))
            p.id.extend(ids)
            p.version.extend(index(versions))
            if None in predicted:
                p.predicted.extend(["" if x is None else x for x in predicted])
                p.has_predicted.extend([x is not None for x in predicted])
            else:
                p.predicted.extend(predicted)
                p.has_predicted.extend([True] * len(predicted))
            p.score.extend(scores)
            p.value.extend(values)
            p.time.extend(times)
        if self.waiting:
            keys, entries = self.waiting.keys(), self.waiting.values()
            first, second = itemgetter(0), itemgetter(1)
            w = message.waiting
            w.model.extend(index(list(map(first, keys))))
            w.id.extend(list(map(second, keys)))
            found = list(map(first, entries))
            is_number = [not isinstance(x, str) for x in found]
            w.label_string.extend(["" if n else x for x, n in zip(found, is_number)])
            w.label_number.extend([float(x) if n else math.nan for x, n in zip(found, is_number)])
            w.label_is_number.extend(is_number)
            w.time.extend(list(map(second, entries)))
        if rows.closed:
            models, ids, matched, times = rows.closed_rows()
            c = message.closed
            c.model.extend(index(models))
            c.id.extend(ids)
            c.matched.extend(matched)
            c.time.extend(times)
        message.names.extend(names)
        return message

    def load_proto(self, message: labels_pb2.LabelJoinState) -> None:
        """Take the state in `message` (replacing this one's waiting entries; counters are kept)."""
        names = list(message.names)
        p, w, c = message.pending, message.waiting, message.closed
        rows = self.rows = Rows()
        # The closed first, then the pending: an id in both (as an older Vigil saved an id predicted
        # again after it closed) waits, as it would here. An id given twice: the later one, at its place.
        for model, id_, matched, t in zip(c.model, c.id, c.matched, c.time):
            rows.add_one(names[model], id_, (*NO_ENTRY, t))
            rows.close(rows.next - 1, matched, t)
        for model, id_, version, predicted, has, score, value, t in zip(
                p.model, p.id, p.version, p.predicted, p.has_predicted, p.score, p.value, p.time):
            rows.add_one(names[model], id_, (names[version], predicted if has else None, score, value, t))
        rows.tidy()
        self.waiting = {(names[m], i): (n if is_n else s, t)
                        for m, i, s, n, is_n, t in zip(w.model, w.id, w.label_string, w.label_number,
                                                       w.label_is_number, w.time)}
        # Saved oldest first, so the order is the dict's own.
        self._waiting_order = deque(self.waiting.items())
        models, _, (versions, *_) = rows.pending_rows()
        self.pending_count = Counter(zip(models, versions))
        self.changed = False

    def snapshot(self) -> LabelJoin:
        """A copy of what waits (not the counters), to save from another thread."""
        copy = LabelJoin(self.ttl, self.max_pending, self.wait)
        copy.rows, copy.waiting = self.rows.copy(), dict(self.waiting)
        return copy


def save(join: LabelJoin, path: Path) -> None:
    """Write atomically (a crash leaves the old state or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, join.to_proto().SerializeToString())


def load(join: LabelJoin, path: Path) -> bool:
    """Read the state at `path` into `join`; False when there is none."""
    if not path.exists():
        return False
    message = labels_pb2.LabelJoinState()
    message.ParseFromString(path.read_bytes())
    join.load_proto(message)
    return True
