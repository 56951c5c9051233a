"""The label join takes a batch of new ids in bulk: the same state, counters and order of expiry as
taking its predictions one at a time, whatever mix of repeats, early labels and expiry comes."""

from __future__ import annotations

import math
import random
import pytest

from agent.ml import label_rows, labels as label_join
from agent.ml.labels import CAPACITY, LabelJoin


class OneByOne(LabelJoin):
    """The join taking every prediction one at a time (what a batch of new ids must match)."""

    def add_predictions(self, model, version, ids, predicted, scores, values, now):
        return self._add_one_by_one(model, version, list(ids), predicted, scores, values, now)


def state(join: LabelJoin) -> tuple:
    saved = join.to_proto()
    saved.saved_time_unix_nano = 0
    return (list(join.pending.items()), list(join.waiting.items()), list(join.closed.items()),
            list(join.received.items()), list(join.matched.items()), list(join.expired.items()),
            list(join.unmatched.items()), list(join.pending_count.items()), saved.SerializeToString(),
            # what decides which label that came first is the oldest next time
            list(join._waiting_order))


@pytest.mark.parametrize("seed", range(200))
def test_a_batch_in_bulk_is_the_same_as_one_at_a_time(seed, monkeypatch):
    rng = random.Random(seed)
    if seed % 2:  # the order deques compacted often, halfway through a batch too
        slack = rng.choice([0, 5, 50])
        monkeypatch.setattr(label_join, "_SLACK", slack)
        monkeypatch.setattr(label_rows, "_SLACK", slack)
    ttl, max_pending, wait = rng.choice([5, 50]), rng.choice([1, 3, 8, 30, 400]), rng.choice([3, 30])
    bulk, reference = LabelJoin(ttl, max_pending, wait), OneByOne(ttl, max_pending, wait)
    now, fresh = 0.0, 0
    for _ in range(rng.choice([60, 300])):
        if rng.random() < 0.6:
            now += rng.choice([0, 0, 1, 2.5])  # several calls at one time too, as one batch's versions are
        model, version = rng.choice([("fraud", "v1"), ("fraud", "v2"), ("churn", "")])
        size = rng.choice([0, 1, 4, 12, 40])
        pick = rng.random()
        if pick < 0.45:  # new ids, as apps send them
            ids = [f"n{fresh + i}" for i in range(size)]
            fresh += size
        elif pick < 0.7 and fresh:  # recent ones (labels taken out of the middle of what waits)
            ids = [f"n{rng.randrange(max(0, fresh - 300), fresh)}" for _ in range(size)]
        else:  # a small pool: repeats, labels that came first, ids already closed
            ids = [f"p{rng.randrange(15)}" for _ in range(size)]
        kind = rng.random()
        if kind < 0.65:
            predicted = [rng.choice(["ok", "fraud", None]) for _ in ids]
            scores = [rng.random() for _ in ids]
            values = [math.nan] * len(ids)
            got = [join.add_predictions(model, version, ids, predicted, scores, values, now)
                   for join in (bulk, reference)]
        elif kind < 0.9:
            labels = [rng.choice(["ok", "fraud", 1.0]) for _ in ids]
            got = [join.add_labels(model, ids, labels, now) for join in (bulk, reference)]
        else:
            got = [join.expire(now) for join in (bulk, reference)]
        # as reprs: NaN (a missing score or value) equal to NaN, every other number exactly
        assert repr(got[0]) == repr(got[1])
        assert repr(state(bulk)) == repr(state(reference))


def test_at_capacity_each_new_prediction_expires_the_oldest_in_order():
    join = LabelJoin(ttl=100, max_pending=4, wait=5)
    join.add_predictions("fraud", "v1", ["a", "b", "c"], ["ok"] * 3, [0.1] * 3, [math.nan] * 3, now=0)
    join.add_predictions("fraud", "v2", ["d", "e", "f"], ["ok"] * 3, [0.1] * 3, [math.nan] * 3, now=1)
    assert list(join.pending) == [("fraud", k) for k in "cdef"]
    assert list(join.closed) == [("fraud", "a"), ("fraud", "b")]
    assert join.expired == {("fraud", "v1", CAPACITY): 2}
    assert join.pending_count == {("fraud", "v1"): 1, ("fraud", "v2"): 3}
    # A label for an expired prediction is late; for a waiting one it joins.
    assert join.add_labels("fraud", ["a", "d"], ["ok", "fraud"], now=2)[0].version == "v2"
    assert join.unmatched == {("fraud", "late"): 1}


def test_unequal_columns_are_read_as_far_as_the_shortest():
    join = LabelJoin(ttl=100, max_pending=10, wait=5)
    join.add_predictions("fraud", "v1", iter(["a", "b", "c"]), ["ok", "ok"], [0.1, 0.2, 0.3], [1.0, 2.0, 3.0], now=0)
    assert list(join.pending) == [("fraud", "a"), ("fraud", "b")] and join.pending_count == {("fraud", "v1"): 2}
