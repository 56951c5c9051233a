"""Which predictions the derived metrics' exemplars point at: the most telling ones, bounded per point
(at most one per histogram bucket, at most `limit` in all), only rows that came with a trace id."""

from __future__ import annotations

import math

import numpy as np

from agent.ml.columns import ColumnView, RawColumn
from agent.ml.exemplars import BucketReservoir, Traces, column_exemplars, join, window_exemplars
from agent.ml.health import column_health
from agent.ml.predictions import Predictions
from agent.ml.profile import build_column
from agent.ml.traffic import Traffic

T = 1_700_000_000_000_000_000


def trace_id(i: int) -> bytes:
    return i.to_bytes(16, "big")  # ends with the row's number: low bytes often zero for the tests


def traces(rows: int, without: tuple[int, ...] = (), first: int = 1) -> Traces:
    ids = np.array([b"" if i in without else trace_id(first + i) for i in range(rows)], dtype="S16")
    spans = np.array([(first + i).to_bytes(8, "big") for i in range(rows)], dtype="S8")
    made = Traces.of(ids, spans, rows, T)
    assert made is not None
    return made


def test_a_batch_with_no_trace_id_keeps_nothing():
    assert Traces.of(np.zeros(5, dtype="S16"), np.zeros(5, dtype="S8"), 5, T) is None
    assert Traces.of(None, None, 5, T) is None


def test_ids_keep_their_trailing_zero_bytes():
    ids = np.array([bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4700")], dtype="S16")
    spans = np.array([bytes.fromhex("00f067aa0ba90200")], dtype="S8")
    e = Traces.of(ids, spans, 1, T).exemplar(0, 1.0)
    assert e.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4700" and e.span_id.hex() == "00f067aa0ba90200"


def test_the_slowest_of_each_bucket_and_at_most_limit():
    bounds = np.array([0.1, 1.0, 10.0])
    reservoir = BucketReservoir(bounds, highest=True, limit=3)
    durations = np.array([0.05, 0.07, 0.5, 0.9, 3.0, 42.0, math.nan, 50.0])
    reservoir.offer(durations, traces(8, without=(7,)))  # the slowest has no trace: not a candidate
    taken = reservoir.take()
    assert [e.value for e in taken] == [42.0, 3.0, 0.9]  # one per bucket, slowest first
    assert taken[0].trace_id == trace_id(6) and taken[0].time_unix_nano == T
    # A later batch: a slower one replaces its bucket's, a faster one does not.
    reservoir.offer(np.array([20.0, 2.0]), traces(2, first=100))
    assert [(e.value, e.trace_id) for e in reservoir.take()] == \
        [(42.0, trace_id(6)), (3.0, trace_id(5)), (0.9, trace_id(4))]
    reservoir.offer(np.array([60.0]), traces(1, first=200))
    assert reservoir.take()[0].trace_id == trace_id(200)
    assert len(reservoir.take(10)) == 3  # only the batches' top `limit` rows were offered: 3 buckets at most here


def test_the_lowest_confidence_and_merging_intervals():
    bounds = np.array([0.5, 0.8, 0.9])
    recent, earlier = BucketReservoir(bounds, False, 2), BucketReservoir(bounds, False, 2)
    recent.offer(np.array([0.95, 0.85, 0.45]), traces(3))
    earlier.offer(np.array([0.3, 0.99]), traces(2, first=50))
    assert [e.value for e in recent.take()] == [0.45, 0.85]
    both = earlier.copy()
    both.merge(recent)
    assert [(e.value, e.trace_id) for e in both.take()] == [(0.3, trace_id(50)), (0.85, trace_id(2))]
    assert [e.value for e in earlier.take()] == [0.3, 0.99]  # the copy was merged, not the original


def test_joined_chunks_keep_their_rows_and_fill_the_chunks_without_ids():
    joined = join([(2, traces(2)), (3, None), (1, traces(1, first=9))])
    assert len(joined) == 6
    assert [joined.exemplar(i, 0).trace_id for i in (0, 1, 5)] == [trace_id(1), trace_id(2), trace_id(9)]
    assert joined.exemplar(3, 0).trace_id == bytes(16)
    assert join([(2, None)]) is None


def reference_of(values):
    return build_column("amount", RawColumn.from_values(values))


def test_a_numeric_column_points_at_the_values_furthest_out_of_the_reference():
    reference = reference_of(list(np.linspace(10, 20, 200)))
    values = [15.0, 12.0, 95.0, None, -999, 21.0, "oops", 5.0, 500.0, 16.0]
    column = RawColumn.from_values(values)
    view = ColumnView(column, [-999])
    health = column_health(reference, view)
    found = column_exemplars(reference, view, health, traces(len(values), without=(8,)), limit=3)
    # 500 has no trace id; then 95 (7.5 widths out), 5 (0.5 out), 21 (0.1 out).
    assert [e.value for e in found.drift] == [95.0, 5.0, 21.0]
    assert [e.value for _, e in found.out_of_range] == [95.0, 5.0, 21.0]
    assert [e.value for e in found.health["out_of_range"]] == [95.0, 5.0, 21.0]
    assert found.health["missing"][0].trace_id == trace_id(4)  # row 3
    assert found.health["missing"][0].value == health.missing  # no value of its own: the check's share
    assert [e.value for e in found.health["sentinel"]] == [-999.0]
    assert found.health["type_mismatch"][0].trace_id == trace_id(7)  # "oops", row 6
    bins = np.searchsorted(reference.bin_edges, [e.value for e in found.values], side="left")
    assert len(set(bins.tolist())) == len(found.values) <= 3  # at most one per bin of the histogram
    assert found.values[0].value == 95.0


def test_a_categorical_column_points_at_unseen_categories():
    reference = build_column("country", RawColumn.from_values(["de", "fr", "it"] * 50), "categorical")
    values = ["de", "xx", "fr", "yy", "de"]
    view = ColumnView(RawColumn.from_values(values))
    found = column_exemplars(reference, view, column_health(reference, view), traces(5), limit=4)
    assert [e.trace_id for e in found.health["unseen_category"]] == [trace_id(2), trace_id(4)]
    assert found.drift == found.health["unseen_category"]


def test_a_window_bounds_each_point_and_names_the_drifted_columns_first_rows():
    references = {"a": reference_of(list(range(100))), "b": reference_of(list(range(100)))}
    columns = {"a": RawColumn.from_values([1000.0] * 50), "b": RawColumn.from_values([50.0] * 50)}
    views = {n: ColumnView(c) for n, c in columns.items()}
    healths = {n: column_health(references[n], v) for n, v in views.items()}
    found = window_exemplars(references, views, healths, ["a"], traces(50), limit=2)
    assert len(found.columns["a"].drift) == 2 and found.columns["a"].drift[0].value == 1000.0
    (model,) = found.model
    assert model.trace_id == found.columns["a"].drift[0].trace_id and model.attributes == {"ml.feature.name": "a"}
    assert "out_of_range" not in found.columns["b"].health
    nothing = window_exemplars(references, views, healths, ["a"], Traces.none(50), limit=2)
    assert nothing.columns == {} and nothing.model == []


def test_failed_predictions_by_error_type_the_latest_ones_and_other_types_beyond_the_cap():
    traffic = Traffic([0.1, 1.0], [0.5, 0.9], 0.6, max_classes=5, max_error_types=1, exemplars=2)
    found = Predictions("fraud", "v1", rows=6, durations=[0.05] * 6)
    for row, kind in ((0, "timeout"), (2, "timeout"), (3, "timeout"), (4, "oom"), (5, "timeout")):
        found.add_error(row, kind)
    traffic.add(found, {}, traces(6, without=(5,)))
    failed = traffic.interval.failed
    # The batch's latest two with a trace id (row 5 has none): rows 3 (timeout) and 4 (oom, beyond the cap).
    assert [e.trace_id for e in failed["timeout"]] == [trace_id(4)]
    assert [e.trace_id for e in failed["_OTHER"]] == [trace_id(5)]
    more = Predictions("fraud", "v1", rows=3, durations=[0.05] * 3)
    for row in range(3):
        more.add_error(row, "timeout")
    traffic.add(more, {}, traces(3, first=100))
    assert [e.trace_id for e in failed["timeout"]] == [trace_id(101), trace_id(102)]  # the latest two
    assert all(e.value == 1.0 for e in failed["timeout"])
    assert traffic.take_interval().failed is failed and traffic.interval.failed == {}


def test_the_builder_writes_exemplars_on_gauges_and_histograms_with_their_filtered_attributes():
    from agent.metrics_builder import Exemplar, MetricsBuilder
    from agent.ml.metrics import FEATURE_VALUE, MODEL_DRIFTED

    out = MetricsBuilder(time_ns=T)
    rm = out.resource({"service.name": "fraud-api"})
    e = Exemplar(trace_id(7), (7).to_bytes(8, "big"), 500.0, T - 1, {"ml.feature.name": "amount"})
    rm.record(MODEL_DRIFTED, 1, {"ml.model.name": "fraud"}, exemplars=[e])
    rm.record_histogram(FEATURE_VALUE, [1.0, 2.0], [0, 0, 1], 500.0, exemplars=[e._replace(attributes=None)])
    gauge, histogram = out.batch().message.resource_metrics[0].scope_metrics[0].metrics
    (written,) = gauge.gauge.data_points[0].exemplars
    assert (written.trace_id, written.span_id, written.as_double, written.time_unix_nano) == \
        (trace_id(7), (7).to_bytes(8, "big"), 500.0, T - 1)
    assert [(a.key, a.value.string_value) for a in written.filtered_attributes] == [("ml.feature.name", "amount")]
    assert not histogram.histogram.data_points[0].exemplars[0].filtered_attributes
