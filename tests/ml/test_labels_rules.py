"""The label join keeps what waits in compact columns: it must behave exactly as the rules read in plain
dicts (in the order entries were put, oldest first), whatever mix of repeats, early labels, closed ids
and expiry comes, through saves and loads too."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from agent.ml import label_rows, labels as label_join
from agent.ml.labels import CAPACITY, DUPLICATE, LATE, TTL, UNKNOWN_ID, Joined, LabelJoin


class Rules:
    """The label join's rules, one entry at a time, in dicts whose order is their age."""

    def __init__(self, ttl: float, max_pending: int, wait: float) -> None:
        self.ttl, self.max_pending, self.wait = ttl, max_pending, wait
        self.pending: dict = {}  # (model, id) -> (version, predicted, score, value, time)
        self.waiting: dict = {}  # (model, id) -> (label, time)
        self.closed: dict = {}  # (model, id) -> (matched, time)
        self.received, self.matched, self.expired, self.unmatched = Counter(), Counter(), Counter(), Counter()

    def _close(self, key, matched, now):
        self.closed.pop(key, None)  # closed again: now the newest
        self.closed[key] = (matched, now)
        while len(self.closed) > self.max_pending:
            del self.closed[next(iter(self.closed))]

    def _expire(self, key, reason, now):
        version = self.pending.pop(key)[0]
        self.expired[(key[0], version, reason)] += 1
        self._close(key, False, now)

    def add_predictions(self, model, version, ids, predicted, scores, values, now):
        joined = []
        for id_, p, s, v in zip(ids, predicted, scores, values):
            key = (model, id_)
            if key in self.waiting:
                self._close(key, True, now)
                self.matched[(model, version)] += 1
                joined.append(Joined(model, version, p, s, v, self.waiting.pop(key)[0]))
                continue
            self.pending.pop(key, None)  # predicted again: the latest one waits, as the newest,
            self.closed.pop(key, None)  # and an id closed before is no longer closed
            self.pending[key] = (version, p, s, v, now)
        while len(self.pending) > self.max_pending:
            self._expire(next(iter(self.pending)), CAPACITY, now)
        return joined

    def add_labels(self, model, ids, labels, now):
        joined = []
        for id_, label in zip(ids, labels):
            key = (model, id_)
            self.received[model] += 1
            if key in self.pending:
                version, p, s, v, _ = self.pending.pop(key)
                self._close(key, True, now)
                self.matched[(model, version)] += 1
                joined.append(Joined(model, version, p, s, v, label))
            elif key in self.closed or key in self.waiting:
                late = key in self.closed and not self.closed[key][0]
                self.unmatched[(model, LATE if late else DUPLICATE)] += 1
            else:
                self.waiting[key] = (label, now)
                if len(self.waiting) > self.max_pending:
                    oldest = next(iter(self.waiting))
                    del self.waiting[oldest]
                    self.unmatched[(oldest[0], UNKNOWN_ID)] += 1
        return joined

    def expire(self, now):
        while self.pending and now - next(iter(self.pending.values()))[4] >= self.ttl:
            self._expire(next(iter(self.pending)), TTL, now)
        while self.waiting and now - next(iter(self.waiting.values()))[1] >= self.wait:
            oldest = next(iter(self.waiting))
            del self.waiting[oldest]
            self.unmatched[(oldest[0], UNKNOWN_ID)] += 1


def state(join) -> str:
    """Everything that waits, in order, and the counters; as a repr, so NaN equals NaN."""
    counts = Counter((model, entry[0]) for (model, _), entry in join.pending.items())
    return repr((list(join.pending.items()), list(join.waiting.items()), list(join.closed.items()),
                 sorted(join.received.items()), sorted(join.matched.items()), sorted(join.expired.items()),
                 sorted(join.unmatched.items()), sorted(counts.items())))


@pytest.mark.parametrize("seed", range(150))
def test_the_join_follows_the_rules(seed, monkeypatch):
    rng = random.Random(seed)
    if seed % 2:  # gaps squeezed out and fronts cut often, halfway through a batch too
        slack = rng.choice([0, 5, 50])
        monkeypatch.setattr(label_join, "_SLACK", slack)
        monkeypatch.setattr(label_rows, "_SLACK", slack)
    ttl, max_pending, wait = rng.choice([5, 50]), rng.choice([1, 3, 8, 30, 400]), rng.choice([3, 30])
    join, rules = LabelJoin(ttl, max_pending, wait), Rules(ttl, max_pending, wait)
    now, fresh = 0.0, 0
    for _ in range(rng.choice([60, 300])):
        if rng.random() < 0.6:
            now += rng.choice([0, 0, 1, 2.5])  # several calls at one time too
        model, version = rng.choice([("fraud", "v1"), ("fraud", "v2"), ("churn", "")])
        size = rng.choice([0, 1, 4, 12, 40])
        pick = rng.random()
        if pick < 0.45:  # new ids, as apps send them
            ids = [f"n{fresh + i}" for i in range(size)]
            fresh += size
        elif pick < 0.7 and fresh:  # recent ones: taken out of the middle of what waits
            ids = [f"n{rng.randrange(max(0, fresh - 300), fresh)}" for _ in range(size)]
        else:  # a small pool: repeats in one call too, labels that came first, ids closed again
            ids = [f"p{rng.randrange(15)}" for _ in range(size)]
        kind = rng.random()
        if kind < 0.6:
            predicted = [rng.choice(["ok", "fraud", None]) for _ in ids]
            scores = [rng.random() for _ in ids]
            values = [rng.choice([math.nan, 2.5]) for _ in ids]
            got = [j.add_predictions(model, version, ids, predicted, scores, values, now) for j in (join, rules)]
        elif kind < 0.85:
            labels = [rng.choice(["ok", "fraud", 1.0]) for _ in ids]
            got = [j.add_labels(model, ids, labels, now) for j in (join, rules)]
        elif kind < 0.95:
            got = [j.expire(now) for j in (join, rules)]
        else:  # saved and read back, as across a restart
            again = LabelJoin(ttl, max_pending, wait)
            again.load_proto(join.snapshot().to_proto())
            again.received, again.matched = join.received, join.matched
            again.expired, again.unmatched = join.expired, join.unmatched
            assert again.pending_count == join.pending_count
            join, got = again, [None, None]
        assert repr(got[0]) == repr(got[1])
        assert state(join) == state(rules)
        assert +join.pending_count == Counter((m, e[0]) for (m, _), e in rules.pending.items())
