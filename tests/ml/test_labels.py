"""The label join: labels that come late, early, twice, for unknown ids, after the TTL, across a restart."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agent.ml import labels, predictions
from agent.ml.labels import LabelJoin
from agent.proto.vigil.v1 import labels_pb2

NAN = math.nan


def predict(join: LabelJoin, ids: list[str], now: float, version: str = "v1", model: str = "fraud"):
    return join.add_predictions(model, version, ids, ["fraud" if i.endswith("1") else "ok" for i in ids],
                                [0.9 if i.endswith("1") else 0.2 for i in ids], [NAN] * len(ids), now)


def test_a_label_after_its_prediction_is_joined_to_it():
    join = LabelJoin(ttl=100, max_pending=10, wait=5)
    assert predict(join, ["a1", "a2"], now=0) == []
    joined = join.add_labels("fraud", ["a1"], ["ok"], now=10)
    assert [(j.version, j.predicted, j.score, j.label) for j in joined] == [("v1", "fraud", 0.9, "ok")]
    assert join.received["fraud"] == 1 and join.matched[("fraud", "v1")] == 1
    assert set(join.pending) == {("fraud", "a2")} and join.pending_count == {("fraud", "v1"): 1}


def test_a_label_before_its_prediction_waits_for_it():
    join = LabelJoin(ttl=100, max_pending=10, wait=5)
    assert join.add_labels("fraud", ["b1"], [1.0], now=0) == []
    assert join.matched == {} and ("fraud", "b1") in join.waiting
    joined = predict(join, ["b1"], now=3, version="v2")
    assert [(j.version, j.label) for j in joined] == [("v2", 1.0)]
    assert join.matched[("fraud", "v2")] == 1 and not join.pending and not join.waiting


def test_a_second_label_is_a_duplicate_and_the_first_one_counts():
    join = LabelJoin(ttl=100, max_pending=10, wait=5)
    predict(join, ["c1"], now=0)
    assert len(join.add_labels("fraud", ["c1"], ["fraud"], now=1)) == 1
    assert join.add_labels("fraud", ["c1"], ["ok"], now=2) == []
    # Two labels before the prediction: the second is a duplicate too.
    join.add_labels("fraud", ["d1", "d1"], ["ok", "fraud"], now=3)
    assert [j.label for j in predict(join, ["d1"], now=4)] == ["ok"]
    assert join.unmatched == {("fraud", "duplicate"): 2}
    assert join.received["fraud"] == 4 and join.matched[("fraud", "v1")] == 2


def test_a_label_for_an_unknown_id_is_unmatched_once_it_has_waited():
    join = LabelJoin(ttl=100, max_pending=10, wait=5)
    join.add_labels("fraud", ["nobody"], ["ok"], now=0)
    join.expire(now=4.9)
    assert join.unmatched == {}
    join.expire(now=5.0)
    assert join.unmatched == {("fraud", "unknown_id"): 1} and not join.waiting
    # Its prediction coming later finds nothing: it waits for a label of its own.
    assert predict(join, ["nobody"], now=6) == []


def test_a_prediction_expires_after_the_ttl_and_a_label_then_is_late():
    join = LabelJoin(ttl=100, max_pending=10, wait=5)
    predict(join, ["e1"], now=0)
    predict(join, ["e2"], now=50)
    join.expire(now=100)
    assert join.expired == {("fraud", "v1", "ttl"): 1} and set(join.pending) == {("fraud", "e2")}
    assert join.add_labels("fraud", ["e1"], ["ok"], now=101) == []
    assert join.unmatched == {("fraud", "late"): 1}
    assert len(join.add_labels("fraud", ["e2"], ["ok"], now=101)) == 1  # within its ttl


def test_what_waits_is_bounded_by_max_pending():
    join = LabelJoin(ttl=1e9, max_pending=3, wait=1e9)
    predict(join, ["p1", "p2", "p3", "p4", "p5"], now=0)
    assert list(join.pending) == [("fraud", "p3"), ("fraud", "p4"), ("fraud", "p5")]  # the oldest went
    assert join.expired == {("fraud", "v1", "max_pending"): 2}
    join.add_labels("fraud", ["x1", "x2", "x3", "x4"], ["ok"] * 4, now=1)
    assert len(join.waiting) == 3 and join.unmatched == {("fraud", "unknown_id"): 1}
    for i in range(10):
        join.add_labels("fraud", [f"p{i}"], ["ok"], now=2)
    assert len(join.closed) <= 3 and len(join.pending) + len(join.waiting) <= 6


def test_models_are_apart():
    join = LabelJoin(ttl=100, max_pending=10, wait=5)
    predict(join, ["same"], now=0, model="fraud")
    assert join.add_labels("churn", ["same"], ["ok"], now=1) == []
    assert join.models() == {"fraud"}


def test_the_state_survives_a_restart(tmp_path: Path):
    join = LabelJoin(ttl=100, max_pending=10, wait=50)
    predict(join, ["r1", "r2"], now=0)
    join.add_predictions("fraud", "v1", ["r3"], [None], [NAN], [12.5], now=1)  # no class: a regression
    join.add_labels("fraud", ["early"], [3.5], now=2)
    join.add_labels("fraud", ["r1"], ["fraud"], now=3)
    path = tmp_path / "state" / "@labels.pb"
    labels.save(join.snapshot(), path)
    assert not path.with_name("@labels.pb.tmp").exists()

    again = LabelJoin(ttl=100, max_pending=10, wait=50)
    assert labels.load(again, path)
    assert same(again.pending, join.pending) and same(again.waiting, join.waiting)
    assert same(again.closed, join.closed)
    assert again.pending_count == join.pending_count
    joined = again.add_labels("fraud", ["r2", "r3", "r1"], ["ok", 12.0, "ok"], now=4)
    assert [(j.predicted, j.label) for j in joined] == [("ok", "ok"), (None, 12.0)]
    assert joined[1].value == 12.5
    assert again.unmatched == {("fraud", "duplicate"): 1}  # r1 was labelled before the restart
    assert [j.label for j in again.add_predictions("fraud", "v1", ["early"], [None], [NAN], [3.0], now=5)] == [3.5]
    # The ages keep counting: what arrived at 0 expires at the ttl, whenever the agent restarted.
    predict(again, ["r9"], now=5)
    again.expire(now=104)
    assert again.expired == {} and again.pending
    again.expire(now=105)
    assert not again.pending


def test_a_batch_with_a_score_that_is_not_a_number_is_refused_whole():
    join = LabelJoin(ttl=100, max_pending=10, wait=5)
    predict(join, ["g1"], now=0)
    with pytest.raises(TypeError):
        join.add_predictions("fraud", "v1", ["g2", "g3"], ["ok", "ok"], [0.1, "high"], [NAN, NAN], now=1)
    assert list(join.pending) == [("fraud", "g1")]
    predict(join, ["g2"], now=2)
    assert [j.score for j in join.add_labels("fraud", ["g1", "g2", "g3"], ["ok"] * 3, now=3)] == [0.9, 0.2]


def test_an_id_predicted_again_after_it_closed_waits_again():
    join = LabelJoin(ttl=100, max_pending=10, wait=5)
    predict(join, ["e1"], now=0)
    join.add_labels("fraud", ["e1"], ["ok"], now=1)
    assert list(join.closed) == [("fraud", "e1")]
    predict(join, ["e1"], now=2, version="v2")  # an id an app uses again
    assert list(join.pending) == [("fraud", "e1")] and not join.closed
    assert [j.version for j in join.add_labels("fraud", ["e1"], ["fraud"], now=3)] == ["v2"]
    assert join.add_labels("fraud", ["e1"], ["ok"], now=4) == [] and join.unmatched == {("fraud", "duplicate"): 1}


def test_a_save_with_an_id_both_waiting_and_closed_reads_back_waiting():
    # As an earlier Vigil saved an id predicted again after it closed: the prediction waits.
    saved = labels_pb2.LabelJoinState(names=["fraud", "v1"])
    saved.closed.model.extend([0, 0]), saved.closed.id.extend(["f1", "f2"])
    saved.closed.matched.extend([True, False]), saved.closed.time.extend([1.0, 2.0])
    p = saved.pending
    p.model.append(0), p.id.append("f1"), p.version.append(1), p.predicted.append("ok")
    p.has_predicted.append(True), p.score.append(0.5), p.value.append(NAN), p.time.append(3.0)
    join = LabelJoin(ttl=100, max_pending=10, wait=5)
    join.load_proto(saved)
    assert list(join.pending) == [("fraud", "f1")] and join.closed.items() == [(("fraud", "f2"), (False, 2.0))]
    assert [j.score for j in join.add_labels("fraud", ["f1", "f2"], ["ok", "ok"], now=4)] == [0.5]
    assert join.unmatched == {("fraud", "late"): 1}


def same(a: dict, b: dict) -> bool:
    """Equal entries, NaN equal to NaN (as it is once written and read back)."""
    def plain(entries: dict) -> dict:
        return {k: tuple(repr(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                         for v in entry) for k, entry in entries.items()}
    return list(a) == list(b) and plain(a) == plain(b)


def test_no_state_file_is_no_state(tmp_path: Path):
    join = LabelJoin(ttl=1, max_pending=1, wait=1)
    assert not labels.load(join, tmp_path / "absent.pb")


@pytest.mark.parametrize("value, expected", [("yes", "yes"), (1, 1.0), (2.5, 2.5), (True, "true"),
                                             (math.nan, None), (math.inf, None), ([1], None), (None, None)])
def test_label_values(value, expected):
    assert predictions.label_value(value) == expected
