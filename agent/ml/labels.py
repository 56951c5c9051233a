"""Delayed ground truth: joining labels that arrive late to the predictions they are for.

A prediction with an `ml.prediction.id` waits (pending) for its label; a
label (`ml.label` with `ml.prediction.id` and `ml.model.name`, on a log
record or a span) is joined to it by (model, id). Everything is bounded:

- a pending prediction waits at most `ttl`; it is then *expired*, as is the
  oldest one when `max_pending` are waiting (a second prediction for an id that
  waits takes its place as the newest: the latest one is labelled);
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


# Pending predictions and closed ids are tens of thousands of entries each (100,000 at the default
# `max_pending`, as every id an app sends is new), so they are kept in columns rather than a tuple
# per entry: see `_Ring` and `_Closed`. Labels that came first (`waiting`) are few and stay a dict of tuples
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


_SLACK = 1024  # stale entries a deque (or gone entries a ring) may hold beyond twice the live ones


def _compact(items: dict, order: deque) -> None:
    if len(order) > 2 * len(items) + _SLACK:
        order.clear()
        order.extend(items.items())


_NONE: dict = {}
_CLASSES = 4096  # distinct predicted classes shared, at most


def _runs(models: list[str]) -> list[tuple[str, int, int]]:
    """(model, start, end) of each run of one model in `models` (few models, long runs: C-speed scans)."""
    out, start, n = [], 0, len(models)
    if not n or models.count(models[0]) == n:
        return [(models[0], 0, n)] if n else []
    others = set(models)
    while start < n:
        model = models[start]
        rest = models[start:]
        end = min((start + rest.index(o) for o in others if o != model and o in rest), default=n)
        out.append((model, start, end))
        start = end
    return out


class _Ring:
    """Entries keyed by (model, id) in the order they were put, each field a column.

    Entry number `seq` sits at position `seq - base` of every column; `index[model][id]` is its
    `seq`. Taking an entry out leaves a gap (its id None) and moves `head` past the gaps at the
    front; the gone front is cut off the columns once it is an eighth of them, and the gaps are
    squeezed out (the entries renumbered) once they outnumber the live entries. Per entry that is
    one dict slot and one int beside the id string the wire reader made, and a machine word per
    field: about half of a dict of tuples keyed by (model, id) tuples with a deque beside it.
    """

    def __init__(self, typecodes: tuple[str | None, ...]) -> None:
        self.typecodes = typecodes  # per field: an `array` typecode, or None for objects (a list)
        self.index: dict[str, dict[str, int]] = {}
        self.ids: list[str | None] = []
        self.models: list[str | None] = []
        self.fields: list[list | array] = [[] if t is None else array(t) for t in typecodes]
        self.base = self.head = self.next = self.live = 0

    def __len__(self) -> int:
        return self.live

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key[1] in self.index.get(key[0], _NONE)

    def __iter__(self):
        """The (model, id) keys, oldest first."""
        ids, models = self.ids, self.models
        return ((models[p], ids[p]) for p in range(self.head - self.base, len(ids)) if ids[p] is not None)

    def items(self) -> list[tuple[tuple[str, str], tuple]]:
        models, ids, fields = self.rows()
        return list(zip(zip(models, ids), zip(*fields)))

    def rows(self) -> tuple[list, list, list[list]]:
        """The live entries' models, ids and fields, oldest first, as lists."""
        h = self.head - self.base
        if self.live == len(self.ids) - h:  # no gaps (as when every id is new)
            return self.models[h:], self.ids[h:], [list(f[h:]) for f in self.fields]
        at = [p for p in range(h, len(self.ids)) if self.ids[p] is not None]
        return ([self.models[p] for p in at], [self.ids[p] for p in at],
                [list(map(f.__getitem__, at)) for f in self.fields])

    def get(self, model: str, id_: str) -> tuple | None:
        seq = self.index.get(model, _NONE).get(id_)
        if seq is None:
            return None
        return tuple([f[seq - self.base] for f in self.fields])

    def put(self, model: str, ids: list[str], fields: Iterable[Iterable]) -> None:
        """New entries of `model` (`ids` distinct, none of them here) at the back, one iterable per field."""
        n, seq = len(ids), self.next
        self.index.setdefault(model, {}).update(zip(ids, range(seq, seq + n)))
        self.models.extend(repeat(model, n))
        self.ids.extend(ids)
        for column, values in zip(self.fields, fields):
            column.extend(values)
        self.next += n
        self.live += n

    def put_one(self, model: str, id_: str, entry: tuple) -> tuple | None:
        """An entry at the back, taking the place of the one for the same key (returned) if any."""
        previous = self.pop(model, id_)
        self.index.setdefault(model, {})[id_] = self.next
        self.ids.append(id_)
        self.models.append(model)
        for column, value in zip(self.fields, entry):
            column.append(value)
        self.next += 1
        self.live += 1
        return previous

    def pop(self, model: str, id_: str) -> tuple | None:
        """Take the entry for (model, id) out; None when there is none."""
        ids = self.index.get(model)
        seq = None if ids is None else ids.pop(id_, None)
        if seq is None:
            return None
        p = seq - self.base
        entry = tuple([f[p] for f in self.fields])
        self.ids[p] = self.models[p] = None
        self.live -= 1
        return entry

    def oldest(self) -> tuple[tuple[str, str], tuple] | None:
        """The oldest live (key, entry), the gaps before it skipped."""
        ids, p = self.ids, self.head - self.base
        while p < len(ids) and ids[p] is None:
            p += 1
        self.head = p + self.base
        if p == len(ids):
            return None
        return (self.models[p], ids[p]), tuple([f[p] for f in self.fields])

    def pop_oldest(self, count: int, want: int = 0) -> tuple[list, list, list[list]]:
        """Take the `count` oldest entries out (there are at least as many): their models, ids and
        their first `want` fields."""
        ids, h = self.ids, self.head - self.base
        end = h + count
        if len(ids) - h != self.live and None in ids[h:end]:  # gaps among them: one at a time
            gone = []
            while len(gone) < count:
                (model, id_), _ = self.oldest()
                gone.append((model, id_, self.pop(model, id_)))
            models, taken, entries = zip(*gone)
            return list(models), list(taken), [list(f) for f in zip(*entries)][:want]
        models, taken = self.models[h:end], ids[h:end]
        fields = [list(f[h:end]) for f in self.fields[:want]]
        for model, start, end in _runs(models):
            deque(map(self.index[model].__delitem__, taken[start:end]), 0)
        self.head += count
        self.live -= count
        return models, taken, fields

    def tidy(self) -> None:
        """Cut the gone front off the columns; squeeze the gaps out once they outnumber the live entries."""
        cut = self.head - self.base
        if cut >= max(1024, len(self.ids) // 8):
            for column in (self.ids, self.models, *self.fields):
                del column[:cut]
            self.base = self.head
        if len(self.ids) - (self.head - self.base) > 2 * self.live + _SLACK:
            models, ids, fields = self.rows()
            self.ids, self.models = ids, models
            self.fields = [f if t is None else array(t, f) for t, f in zip(self.typecodes, fields)]
            self.base = self.head = 0
            self.next = self.live
            for seq, (model, id_) in enumerate(zip(models, ids)):
                self.index[model][id_] = seq

    def copy(self) -> _Ring:
        """The live entries (without the index: a copy to save, not to change)."""
        copy = _Ring(self.typecodes)
        h = self.head - self.base
        copy.ids, copy.models = self.ids[h:], self.models[h:]
        copy.fields = [f[h:] for f in self.fields]
        copy.live = self.live
        copy.next = len(copy.ids)
        return copy

    def load(self, models: list[str], ids: list[str], fields: list[list]) -> None:
        """Replace the entries with these, oldest first (a key given twice: the later one, at its place)."""
        self.__init__(self.typecodes)
        for model, id_, *entry in zip(models, ids, *fields):
            self.put_one(model, id_, tuple(entry))
        self.tidy()


def _pending() -> _Ring:
    return _Ring((None, None, "d", "d", "d"))  # version, predicted, score, value, time




class _Closed:
    """Closed ids, keyed by (model, id), oldest first: `index[model][id]` is (matched, time).

    That entry is one tuple for all the ids closed in one call, kept beside each of their places in
    the columns too; a place is live while its key's entry is that very tuple (an id closed again
    gets a new one, at the back, and its old place goes stale). So a closed id costs a dict slot and
    three list slots beside the id string it shares with the prediction it closed. The stale front is
    cut off once it is an eighth of the lists, the stale places squeezed out once they outnumber the
    live ones.
    """

    def __init__(self) -> None:
        self.index: dict[str, dict[str, tuple[bool, float]]] = {}
        self.ids: list[str] = []
        self.models: list[str] = []
        self.entries: list[tuple[bool, float]] = []
        self.head = self.live = 0  # where the first live place may be; how many are live

    def __len__(self) -> int:
        return self.live

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key[1] in self.index.get(key[0], _NONE)

    def __iter__(self):
        models, ids, _ = self.rows()
        return zip(models, ids)

    def items(self) -> list[tuple[tuple[str, str], tuple[bool, float]]]:
        models, ids, entries = self.rows()
        return list(zip(zip(models, ids), entries))

    def get(self, model: str, id_: str) -> tuple[bool, float] | None:
        return self.index.get(model, _NONE).get(id_)

    def add(self, models: list[str], ids: list[str], matched: bool, now: float) -> None:
        """Close these (model, id) pairs (distinct) at the back, in this order."""
        entry, index, before = (matched, now), self.index, 0
        for model, start, end in _runs(models):
            known = index.get(model)
            if known is None:
                known = index[model] = {}
            before = len(known)
            known.update(zip(ids[start:end], repeat(entry)))
            self.live += len(known) - before  # an id closed before is counted once
        self.ids.extend(ids)
        self.models.extend(models)
        self.entries.extend(repeat(entry, len(ids)))

    def drop_oldest(self, count: int) -> None:
        """Forget the `count` oldest (there are at least as many)."""
        ids, models, entries, index, h = self.ids, self.models, self.entries, self.index, self.head
        if len(ids) - h == self.live:  # none stale: the next `count` places
            end = h + count
            for model, start, stop in _runs(models[h:end]):
                deque(map(index[model].__delitem__, ids[h + start:h + stop]), 0)
        else:
            left = count
            while left:
                known = index[models[h]]
                if known.get(ids[h]) is entries[h]:
                    del known[ids[h]]
                    left -= 1
                h += 1
            end = h
        self.head = end
        self.live -= count

    def _live_at(self) -> list[int]:
        index, ids, entries = self.index, self.ids, self.entries
        return [p for p, model in enumerate(self.models[self.head:], self.head)
                if index[model].get(ids[p]) is entries[p]]

    def rows(self) -> tuple[list[str], list[str], list[tuple[bool, float]]]:
        """The live ones' models, ids and entries, oldest first."""
        h = self.head
        if len(self.ids) - h == self.live:
            return self.models[h:], self.ids[h:], self.entries[h:]
        at = self._live_at()
        return [self.models[p] for p in at], [self.ids[p] for p in at], [self.entries[p] for p in at]

    def tidy(self) -> None:
        if self.head >= max(1024, len(self.ids) // 8):
            del self.ids[:self.head], self.models[:self.head], self.entries[:self.head]
            self.head = 0
        if len(self.ids) - self.head > 2 * self.live + _SLACK:
            self.models, self.ids, self.entries = self.rows()
            self.head = 0

    def copy(self) -> _Closed:
        """The live ones (a copy to save, not to change: it has no index)."""
        copy = _Closed()
        copy.models, copy.ids, copy.entries = self.rows()
        copy.live = len(copy.ids)
        return copy

    def load(self, models: list[str], ids: list[str], matched: list[bool], times: list[float]) -> None:
        """Replace what is here with these, oldest first (an id given twice: the later one counts)."""
        self.__init__()
        for model, id_, m, t in zip(models, ids, matched, times):
            self.add([model], [id_], m, t)
        self.tidy()


class LabelJoin:
    def __init__(self, ttl: float, max_pending: int, wait: float) -> None:
        self.ttl, self.max_pending, self.wait = ttl, max_pending, wait
        self.pending = _pending()  # (model, id) -> (version, predicted, score, value, time)
        self.closed = _Closed()
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

    # --- in ------------------------------------------------------------------------------------

    def add_predictions(self, model: str, version: str, ids: Iterable[str], predicted: Iterable[str | None],
                        scores: Iterable[float], values: Iterable[float], now: float) -> list[Joined]:
        """Predictions to wait for their labels; returns those whose label was already waiting."""
        columns = [c if isinstance(c, list) else list(c) for c in (ids, predicted, scores, values)]
        n = min(map(len, columns))
        ids, predicted, scores, values = (c if len(c) == n else c[:n] for c in columns)  # as zip() reads them
        known = self.pending.index.get(model)
        if not (self.waiting and not self.waiting.keys().isdisjoint(zip(repeat(model), ids))) \
                and (known is None or known.keys().isdisjoint(ids)) and len(set(ids)) == len(ids):
            # Every id new, none with its label waiting (as apps send them): the same steps in bulk.
            self._add_new(model, version, ids, predicted, scores, values, now)
            return []
        return self._add_one_by_one(model, version, ids, predicted, scores, values, now)

    def _shared(self, predicted: list[str | None]) -> list[str | None]:
        if len(self._classes) > _CLASSES:  # not classes: free text
            self._classes.clear()
        return list(map(self._classes.setdefault, predicted, predicted))

    def _add_new(self, model: str, version: str, ids: list[str], predicted: list[str | None],
                 scores: list[float], values: list[float], now: float) -> None:
        n = len(ids)
        predicted = self._shared(predicted)
        self.pending.put(model, ids, (repeat(version, n), predicted, scores, values, repeat(now, n)))
        if ids:
            self.pending_count[(model, version)] += n
        self.changed = True
        excess = len(self.pending) - self.max_pending
        if excess > 0:
            self._expire_oldest(excess, now)
        self.pending.tidy()

    def _add_one_by_one(self, model: str, version: str, ids: list[str], predicted: Iterable[str | None],
                        scores: Iterable[float], values: Iterable[float], now: float) -> list[Joined]:
        joined = []
        pending, waiting = self.pending, self.waiting
        for id_, label_, score, value in zip(ids, self._shared(list(predicted)), scores, values):
            early = waiting.pop((model, id_), None) if waiting else None
            if early is not None:
                self._close(model, id_, True, now)
                self.matched[(model, version)] += 1
                joined.append(Joined(model, version, label_, score, value, early[0]))
                continue
            # a repeated id: the latest prediction is the one labelled
            previous = pending.put_one(model, id_, (version, label_, score, value, now))
            if previous is not None:
                self._uncount(model, previous[0])
            self.pending_count[(model, version)] += 1
        self.changed = True
        while len(pending) > self.max_pending:
            (model_, id_), entry = pending.oldest()
            pending.pop(model_, id_)
            self._expire(model_, id_, entry, CAPACITY, now)
        pending.tidy()
        self.closed.tidy()
        return joined

    def _expire_oldest(self, count: int, now: float) -> None:
        """Expire the `count` oldest pending predictions (beyond `max_pending`) as `_expire` one at a
        time would: the same entries, counters and closed ids."""
        models, ids, (versions,) = self.pending.pop_oldest(count, want=1)
        counts, expired = self.pending_count, self.expired
        for (model, version), n in Counter(zip(models, versions)).items():
            counts[(model, version)] -= n
            if counts[(model, version)] <= 0:
                del counts[(model, version)]
            expired[(model, version, CAPACITY)] += n
        self.changed = True
        closed = self.closed
        closed.add(models, ids, False, now)  # as one at a time: the oldest closed beyond max_pending go
        excess = len(closed) - self.max_pending
        if excess > 0:
            closed.drop_oldest(excess)
        closed.tidy()

    def add_labels(self, model: str, ids: Iterable[str], labels: Iterable[str | float], now: float) -> list[Joined]:
        """Labels to join; returns those whose prediction was waiting."""
        joined = []
        pending, waiting, closed = self.pending, self.waiting, self.closed
        for id_, label in zip(ids, labels):
            self.received[model] += 1
            entry = pending.pop(model, id_)
            if entry is not None:
                version, predicted, score, value, _ = entry
                self._uncount(model, version)
                self._close(model, id_, True, now)
                self.matched[(model, version)] += 1
                joined.append(Joined(model, version, predicted, score, value, label))
                continue
            key = (model, id_)
            done = closed.get(model, id_)
            if done is not None or key in waiting:
                self.unmatched[(model, DUPLICATE if done is None or done[0] else LATE)] += 1
                continue
            entry = waiting[key] = (label, now)
            self._waiting_order.append((key, entry))
            if len(waiting) > self.max_pending:
                oldest, _ = _oldest(waiting, self._waiting_order)
                del waiting[oldest]
                self.unmatched[(oldest[0], UNKNOWN_ID)] += 1
        _compact(waiting, self._waiting_order)
        pending.tidy()
        closed.tidy()
        self.changed = True
        return joined

    def expire(self, now: float) -> None:
        """Expire predictions older than `ttl` and give up on labels older than `wait`."""
        pending = self.pending
        while (oldest := pending.oldest()) is not None:
            (model, id_), entry = oldest
            if now - entry[4] < self.ttl:
                break
            pending.pop(model, id_)
            self._expire(model, id_, entry, TTL, now)
        waiting = self.waiting
        while (oldest := _oldest(waiting, self._waiting_order)) is not None:
            key, entry = oldest
            if now - entry[1] < self.wait:
                break
            del waiting[key]
            self.unmatched[(key[0], UNKNOWN_ID)] += 1
            self.changed = True
        pending.tidy()
        self.closed.tidy()
        _compact(waiting, self._waiting_order)

    def _uncount(self, model: str, version: str) -> None:
        counts = self.pending_count
        counts[(model, version)] -= 1
        if counts[(model, version)] <= 0:
            del counts[(model, version)]

    def _expire(self, model: str, id_: str, entry: tuple, reason: str, now: float) -> None:
        self._uncount(model, entry[0])
        self.expired[(model, entry[0], reason)] += 1
        self._close(model, id_, False, now)
        self.changed = True

    def _close(self, model: str, id_: str, matched: bool, now: float) -> None:
        closed = self.closed
        closed.add([model], [id_], matched, now)
        if len(closed) > self.max_pending:
            closed.drop_oldest(1)

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
        if self.pending:
            models, ids, (versions, predicted, scores, values, times) = self.pending.rows()
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
        if self.closed:
            models, ids, entries = self.closed.rows()
            c = message.closed
            c.model.extend(index(models))
            c.id.extend(ids)
            c.matched.extend(list(map(itemgetter(0), entries)))
            c.time.extend(list(map(itemgetter(1), entries)))
        message.names.extend(names)
        return message

    def load_proto(self, message: labels_pb2.LabelJoinState) -> None:
        """Take the state in `message` (replacing this one's waiting entries; counters are kept)."""
        names = list(message.names)
        p, w, c = message.pending, message.waiting, message.closed
        n = min(len(p.model), len(p.id), len(p.version), len(p.predicted), len(p.has_predicted), len(p.score),
                len(p.value), len(p.time))  # as far as the shortest column, as zip() reads them
        self.pending.load([names[m] for m in p.model[:n]], list(p.id[:n]),
                          [[names[v] for v in p.version[:n]],
                           [pr if has else None for pr, has in zip(p.predicted, p.has_predicted)][:n],
                           list(p.score[:n]), list(p.value[:n]), list(p.time[:n])])
        self.waiting = {(names[m], i): (n if is_n else s, t)
                        for m, i, s, n, is_n, t in zip(w.model, w.id, w.label_string, w.label_number,
                                                       w.label_is_number, w.time)}
        n = min(len(c.model), len(c.id), len(c.matched), len(c.time))
        self.closed.load([names[m] for m in c.model[:n]], list(c.id[:n]), list(c.matched[:n]), list(c.time[:n]))
        # Saved oldest first, so the order is the dict's own.
        self._waiting_order = deque(self.waiting.items())
        models, _, (versions, *_) = self.pending.rows()
        self.pending_count = Counter(zip(models, versions))
        self.changed = False

    def snapshot(self) -> LabelJoin:
        """A copy of what waits (not the counters), to save from another thread."""
        copy = LabelJoin(self.ttl, self.max_pending, self.wait)
        copy.pending, copy.waiting, copy.closed = self.pending.copy(), dict(self.waiting), self.closed.copy()
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
