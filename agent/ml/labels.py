"""Delayed ground truth: joining labels that arrive late to the predictions they are for.

A prediction with an `ml.prediction.id` waits (pending) for its label; a
label (`ml.label` with `ml.prediction.id` and `ml.model.name`, on a log
record or a span) is joined to it by (model, id). Everything is bounded:

- a pending prediction waits at most `ttl`; it is then *expired*, as is the
  oldest one when `max_pending` are waiting;
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
from itertools import repeat
from operator import itemgetter
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

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


# What waits, as plain tuples (one per id; tens of thousands of them), oldest first:
#   pending: (model, id) -> (version, predicted, score, value, time)
#   waiting: (model, id) -> (label, time)
#   closed:  (model, id) -> (matched, time)
# Each dict has a deque of (key, time) in arrival order beside it, to find the oldest entry: taking
# the first key of a dict again and again after deleting from its front scans the deleted slots each
# time (quadratic at capacity). A deque entry whose key is gone or was put again later is stale and
# skipped; the deque is rebuilt when stale entries outnumber live ones. Plain dicts (not
# OrderedDicts) because a snapshot for saving is a copy made on the event loop: a dict copies ~10x faster.


def _oldest(items: dict, order: deque, at: int) -> tuple[Any, tuple] | None:
    """The oldest live (key, entry) of `items` (`at`: where an entry keeps its time), stale ones dropped."""
    while order:
        key, t = order[0]
        entry = items.get(key)
        if entry is not None and entry[at] == t:
            return key, entry
        order.popleft()
    return None


_SLACK = 1024  # stale entries a deque may hold beyond twice its dict's size


def _compact(items: dict, order: deque, at: int) -> None:
    if len(order) > 2 * len(items) + _SLACK:
        order.clear()
        order.extend((key, entry[at]) for key, entry in items.items())


class LabelJoin:
    def __init__(self, ttl: float, max_pending: int, wait: float) -> None:
        self.ttl, self.max_pending, self.wait = ttl, max_pending, wait
        self.pending: dict[tuple[str, str], tuple[str, str | None, float, float, float]] = {}
        self.waiting: dict[tuple[str, str], tuple[str | float, float]] = {}
        self.closed: dict[tuple[str, str], tuple[bool, float]] = {}
        self._pending_order: deque[tuple[tuple[str, str], float]] = deque()
        self._waiting_order: deque[tuple[tuple[str, str], float]] = deque()
        self._closed_order: deque[tuple[tuple[str, str], float]] = deque()
        self.received: Counter[str] = Counter()  # model
        self.matched: Counter[tuple[str, str]] = Counter()  # (model, version)
        self.expired: Counter[tuple[str, str, str]] = Counter()  # (model, version, reason)
        self.unmatched: Counter[tuple[str, str]] = Counter()  # (model, reason)
        self.pending_count: Counter[tuple[str, str]] = Counter()  # (model, version): what waits now
        self.changed = False  # since the last save

    # --- in ------------------------------------------------------------------------------------

    def add_predictions(self, model: str, version: str, ids: Iterable[str], predicted: Iterable[str | None],
                        scores: Iterable[float], values: Iterable[float], now: float) -> list[Joined]:
        """Predictions to wait for their labels; returns those whose label was already waiting."""
        columns = [c if isinstance(c, list) else list(c) for c in (ids, predicted, scores, values)]
        n = min(map(len, columns))
        ids, predicted, scores, values = (c if len(c) == n else c[:n] for c in columns)  # as zip() reads them
        keys = list(zip(repeat(model), ids))
        if not (self.waiting and not self.waiting.keys().isdisjoint(keys)) and self.pending.keys().isdisjoint(keys) \
                and len(set(ids)) == len(ids):
            # Every id new, none with its label waiting (as apps send them): the same steps in bulk.
            self._add_new(model, version, keys, predicted, scores, values, now)
            return []
        return self._add_one_by_one(model, version, keys, predicted, scores, values, now)

    def _add_new(self, model: str, version: str, keys: list[tuple[str, str]], predicted: Iterable[str | None],
                 scores: Iterable[float], values: Iterable[float], now: float) -> None:
        pending = self.pending
        pending.update(zip(keys, zip(repeat(version), predicted, scores, values, repeat(now))))
        self._pending_order.extend(zip(keys, repeat(now)))
        if keys:
            self.pending_count[(model, version)] += len(keys)
        self.changed = True
        excess = len(pending) - self.max_pending
        if excess > 0:
            self._expire_oldest(excess, now)
        _compact(pending, self._pending_order, 4)

    def _add_one_by_one(self, model: str, version: str, keys: list[tuple[str, str]],
                        predicted: Iterable[str | None], scores: Iterable[float], values: Iterable[float],
                        now: float) -> list[Joined]:
        joined = []
        pending, waiting = self.pending, self.waiting
        for key, label_, score, value in zip(keys, predicted, scores, values):
            early = waiting.pop(key, None) if waiting else None
            if early is not None:
                self._close(key, True, now)
                self.matched[(model, version)] += 1
                joined.append(Joined(model, version, label_, score, value, early[0]))
                continue
            previous = pending.pop(key, None)  # a repeated id: the latest prediction is the one labelled
            if previous is not None:
                self.pending_count[(model, previous[0])] -= 1
            pending[key] = (version, label_, score, value, now)
            self._pending_order.append((key, now))
            self.pending_count[(model, version)] += 1
        self.changed = True
        while len(pending) > self.max_pending:
            key, entry = _oldest(pending, self._pending_order, 4)
            del pending[key]
            self._expire(key, entry, CAPACITY, now)
        _compact(pending, self._pending_order, 4)
        return joined

    def _expire_oldest(self, count: int, now: float) -> None:
        """Expire the `count` oldest pending predictions (beyond `max_pending`) as `_expire` one at a
        time would: the same entries, counters, closed ids and the same orders left behind."""
        pending, order = self.pending, self._pending_order
        gone: list[tuple[str, str]] = []
        versions: list[str] = []
        newest = False  # one of them came at `now`
        while len(gone) < count:
            key, t = order.popleft()
            entry = pending.get(key)
            if entry is not None and entry[4] == t:
                del pending[key]
                gone.append(key)
                versions.append(entry[0])
                newest = newest or t == now
        order.appendleft((key, t))  # `_oldest` leaves the last one taken at the front: so do we
        by_version = Counter(zip([key[0] for key in gone], versions))
        counts, expired = self.pending_count, self.expired
        for (model, version), n in by_version.items():
            counts[(model, version)] -= n
            if counts[(model, version)] <= 0:
                del counts[(model, version)]
            expired[(model, version, CAPACITY)] += n
        self.changed = True
        closed, closed_order = self.closed, self._closed_order
        # In bulk when that is the same as one at a time: ids not closed before, none of them taken at
        # `now` (whose earlier entries, if any, would look current), no compaction halfway.
        if newest or not closed.keys().isdisjoint(gone) or \
                len(closed_order) + len(gone) > 2 * len(closed) + _SLACK:
            for key in gone:
                self._close(key, False, now)
            return
        closed.update(zip(gone, repeat((False, now))))
        closed_order.extend(zip(gone, repeat(now)))
        last = None
        while len(closed) > self.max_pending:
            key, t = closed_order.popleft()
            entry = closed.get(key)
            if entry is not None and entry[1] == t:
                del closed[key]
                last = (key, t)
        if last is not None:
            closed_order.appendleft(last)
        _compact(closed, closed_order, 1)

    def add_labels(self, model: str, ids: Iterable[str], labels: Iterable[str | float], now: float) -> list[Joined]:
        """Labels to join; returns those whose prediction was waiting."""
        joined = []
        pending, waiting, closed = self.pending, self.waiting, self.closed
        for id_, label in zip(ids, labels):
            self.received[model] += 1
            key = (model, id_)
            entry = pending.pop(key, None)
            if entry is not None:
                version, predicted, score, value, _ = entry
                self._uncount(model, version)
                self._close(key, True, now)
                self.matched[(model, version)] += 1
                joined.append(Joined(model, version, predicted, score, value, label))
                continue
            done = closed.get(key)
            if done is not None or key in waiting:
                self.unmatched[(model, DUPLICATE if done is None or done[0] else LATE)] += 1
                continue
            waiting[key] = (label, now)
            self._waiting_order.append((key, now))
            if len(waiting) > self.max_pending:
                oldest, _ = _oldest(waiting, self._waiting_order, 1)
                del waiting[oldest]
                self.unmatched[(oldest[0], UNKNOWN_ID)] += 1
        _compact(waiting, self._waiting_order, 1)
        self.changed = True
        return joined

    def expire(self, now: float) -> None:
        """Expire predictions older than `ttl` and give up on labels older than `wait`."""
        pending = self.pending
        while (oldest := _oldest(pending, self._pending_order, 4)) is not None:
            key, entry = oldest
            if now - entry[4] < self.ttl:
                break
            del pending[key]
            self._expire(key, entry, TTL, now)
        waiting = self.waiting
        while (oldest := _oldest(waiting, self._waiting_order, 1)) is not None:
            key, entry = oldest
            if now - entry[1] < self.wait:
                break
            del waiting[key]
            self.unmatched[(key[0], UNKNOWN_ID)] += 1
            self.changed = True
        _compact(pending, self._pending_order, 4)
        _compact(waiting, self._waiting_order, 1)

    def _uncount(self, model: str, version: str) -> None:
        counts = self.pending_count
        counts[(model, version)] -= 1
        if counts[(model, version)] <= 0:
            del counts[(model, version)]

    def _expire(self, key: tuple[str, str], entry: tuple, reason: str, now: float) -> None:
        self._uncount(key[0], entry[0])
        self.expired[(key[0], entry[0], reason)] += 1
        self._close(key, False, now)
        self.changed = True

    def _close(self, key: tuple[str, str], matched: bool, now: float) -> None:
        closed = self.closed
        closed.pop(key, None)
        closed[key] = (matched, now)
        self._closed_order.append((key, now))
        if len(closed) > self.max_pending:
            del closed[_oldest(closed, self._closed_order, 1)[0]]
        _compact(closed, self._closed_order, 1)

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
        # Column by column, each a map() of an itemgetter over the dict's keys or values (zip(*rows)
        # and list comprehensions over 100k rows are several times slower).
        first, second = itemgetter(0), itemgetter(1)
        if self.pending:
            keys, entries = self.pending.keys(), self.pending.values()
            p = message.pending
            p.model.extend(index(list(map(first, keys))))
            p.id.extend(list(map(second, keys)))
            p.version.extend(index(list(map(first, entries))))
            predicted = list(map(second, entries))
            if None in predicted:
                p.predicted.extend(["" if x is None else x for x in predicted])
                p.has_predicted.extend([x is not None for x in predicted])
            else:
                p.predicted.extend(predicted)
                p.has_predicted.extend([True] * len(predicted))
            p.score.extend(list(map(itemgetter(2), entries)))
            p.value.extend(list(map(itemgetter(3), entries)))
            p.time.extend(list(map(itemgetter(4), entries)))
        if self.waiting:
            keys, entries = self.waiting.keys(), self.waiting.values()
            w = message.waiting
            w.model.extend(index(list(map(first, keys))))
            w.id.extend(list(map(second, keys)))
            found = list(map(first, entries))
            is_number = [not isinstance(x, str) for x in found]
            w.label_string.extend(["" if n else x for x, n in zip(found, is_number)])
            w.label_number.extend([float(x) if n else math.nan for x, n in zip(found, is_number)])
            w.label_is_number.extend(is_number)
            w.time.extend(list(map(second, entries)))
        if self.closed:
            keys, entries = self.closed.keys(), self.closed.values()
            c = message.closed
            c.model.extend(index(list(map(first, keys))))
            c.id.extend(list(map(second, keys)))
            c.matched.extend(list(map(first, entries)))
            c.time.extend(list(map(second, entries)))
        message.names.extend(names)
        return message

    def load_proto(self, message: labels_pb2.LabelJoinState) -> None:
        """Take the state in `message` (replacing this one's waiting entries; counters are kept)."""
        names = list(message.names)
        p, w, c = message.pending, message.waiting, message.closed
        self.pending = {
            (names[m], i): (names[v], pr if has else None, s, val, t)
            for m, i, v, pr, has, s, val, t in zip(p.model, p.id, p.version, p.predicted, p.has_predicted,
                                                  p.score, p.value, p.time)}
        self.waiting = {(names[m], i): (n if is_n else s, t)
                        for m, i, s, n, is_n, t in zip(w.model, w.id, w.label_string, w.label_number,
                                                       w.label_is_number, w.time)}
        self.closed = {(names[m], i): (matched, t) for m, i, matched, t in zip(c.model, c.id, c.matched, c.time)}
        # Saved oldest first, so the orders are the dicts' own.
        self._pending_order = deque((key, entry[4]) for key, entry in self.pending.items())
        self._waiting_order = deque((key, entry[1]) for key, entry in self.waiting.items())
        self._closed_order = deque((key, entry[1]) for key, entry in self.closed.items())
        self.pending_count = Counter((model, entry[0]) for (model, _), entry in self.pending.items())
        self.changed = False

    def snapshot(self) -> LabelJoin:
        """A copy of what waits (not the counters), to save from another thread."""
        copy = LabelJoin(self.ttl, self.max_pending, self.wait)
        copy.pending, copy.waiting, copy.closed = dict(self.pending), dict(self.waiting), dict(self.closed)
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
