"""Rule semantics with a clock the test controls: states, `for`, hysteresis, keep_firing_for, stale data,
and the aggregations (max/min/avg/sum/count/last, rate and increase of counters, histogram quantiles,
ratios)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.alerts.engine import FIRING, INACTIVE, PENDING, RESOLVED, RuleEngine
from agent.alerts.store import quantile
from tests.alerts.helpers import Clock, counter, gauge, histogram, rule

DRIFT = {"ml.model.name": "fraud", "ml.model.version": "v3", "ml.feature.name": "a"}


def states(changes) -> list[tuple[str, str]]:
    return [(c.previous, c.state) for c in changes]


def feed(engine: RuleEngine, clock: Clock, value: float, metric: str = "m", **attrs) -> None:
    engine.store.observe(gauge(metric, [(value, {**DRIFT, **attrs})], time_s=clock()), clock())


def test_pending_then_firing_after_for_then_resolved():
    clock, engine = Clock(), RuleEngine([rule(threshold=0.5, **{"for": "60s"})])
    feed(engine, clock, 0.9)
    assert states(engine.evaluate(clock())) == [(INACTIVE, PENDING)]
    clock.advance(30)
    feed(engine, clock, 0.8)
    assert engine.evaluate(clock()) == []  # still pending: 30s of 60s
    clock.advance(30)
    feed(engine, clock, 0.7)
    changes = engine.evaluate(clock())
    assert states(changes) == [(PENDING, FIRING)]
    assert changes[0].alert.fired_at == clock() and changes[0].alert.active_since == clock() - 60
    clock.advance(15)
    feed(engine, clock, 0.2)
    changes = engine.evaluate(clock())
    assert states(changes) == [(FIRING, RESOLVED)]
    assert changes[0].alert.resolved_at == clock()
    assert engine.alerts == {}


def test_pending_that_dips_below_starts_over():
    clock, engine = Clock(), RuleEngine([rule(threshold=0.5, **{"for": "60s"})])
    feed(engine, clock, 0.9)
    engine.evaluate(clock())
    clock.advance(45)
    feed(engine, clock, 0.4)
    assert states(engine.evaluate(clock())) == [(PENDING, INACTIVE)]
    clock.advance(15)
    feed(engine, clock, 0.9)
    assert states(engine.evaluate(clock())) == [(INACTIVE, PENDING)]
    clock.advance(45)
    assert engine.evaluate(clock()) == []  # 45s into the new pending, not 105s into the old


def test_for_zero_fires_at_once():
    clock, engine = Clock(), RuleEngine([rule(threshold=0.5)])
    feed(engine, clock, 0.9)
    assert states(engine.evaluate(clock())) == [(INACTIVE, PENDING), (PENDING, FIRING)]


def test_no_flapping_across_the_hysteresis_band():
    """Threshold 0.8, clear 0.6: a value wandering between 0.65 and 0.85 fires once and stays firing."""
    clock, engine = Clock(), RuleEngine([rule(threshold=0.8, clear_threshold=0.6)])
    values = [0.85, 0.7, 0.82, 0.65, 0.79, 0.84, 0.66, 0.75, 0.81, 0.61]
    seen = []
    for value in values:
        feed(engine, clock, value)
        seen += states(engine.evaluate(clock()))
        clock.advance(15)
    assert seen == [(INACTIVE, PENDING), (PENDING, FIRING)]
    feed(engine, clock, 0.59)
    assert states(engine.evaluate(clock())) == [(FIRING, RESOLVED)]
    # Without a clear threshold the same values flap: fire, resolve, fire, ...
    clock2, plain = Clock(), RuleEngine([rule(threshold=0.8)])
    flaps = []
    for value in values:
        feed(plain, clock2, value)
        flaps += [s for s in states(plain.evaluate(clock2())) if s[1] in (FIRING, RESOLVED)]
        clock2.advance(15)
    assert len(flaps) >= 6


def test_clear_threshold_below_direction():
    """op <: fires below 0.85, clears only back above 0.9."""
    clock, engine = Clock(), RuleEngine([rule(op="<", threshold=0.85, clear_threshold=0.9)])
    out = []
    for value in (0.84, 0.88, 0.86, 0.89, 0.91):
        feed(engine, clock, value)
        out += states(engine.evaluate(clock()))
        clock.advance(15)
    assert out == [(INACTIVE, PENDING), (PENDING, FIRING), (FIRING, RESOLVED)]


def test_keep_firing_for():
    clock, engine = Clock(), RuleEngine([rule(threshold=0.5, keep_firing_for="60s")])
    feed(engine, clock, 0.9)
    engine.evaluate(clock())
    clock.advance(15)
    feed(engine, clock, 0.1)
    assert engine.evaluate(clock()) == []  # below, but kept firing
    clock.advance(30)
    feed(engine, clock, 0.9)
    assert engine.evaluate(clock()) == []  # back above: the keep_firing_for clock starts over
    clock.advance(15)
    feed(engine, clock, 0.1)
    engine.evaluate(clock())
    clock.advance(59)
    assert engine.evaluate(clock()) == []
    clock.advance(1)
    assert states(engine.evaluate(clock())) == [(FIRING, RESOLVED)]


def test_alert_without_data_keeps_its_state_until_stale():
    clock, engine = Clock(), RuleEngine([rule(threshold=0.5, stale_after="5m")])
    feed(engine, clock, 0.9)
    engine.evaluate(clock())
    clock.advance(299)
    assert engine.evaluate(clock()) == []  # the latest point still counts
    clock.advance(1)
    assert states(engine.evaluate(clock())) == [(FIRING, RESOLVED)]


def test_group_by_makes_one_alert_per_group_and_aggregates_within():
    clock = Clock()
    engine = RuleEngine([rule(metric="ml.feature.drift.score", group_by=["ml.model.name", "ml.feature.name"],
                              aggregation="max", threshold=0.5,
                              summary="{feature} of {model} {version}: {value:.2f} > {threshold}")])
    points = [(0.7, {"ml.model.name": "fraud", "ml.feature.name": "a", "ml.model.version": "v3"}),
              (0.2, {"ml.model.name": "fraud", "ml.feature.name": "a", "ml.model.version": "v4"}),
              (0.3, {"ml.model.name": "fraud", "ml.feature.name": "b", "ml.model.version": "v3"}),
              (0.9, {"ml.model.name": "churn", "ml.feature.name": "a", "ml.model.version": "v1"})]
    engine.store.observe(gauge("ml.feature.drift.score", points), clock())
    firing = {tuple(sorted(c.alert.labels.items())): c.alert for c in engine.evaluate(clock()) if c.state == FIRING}
    assert {dict(k)["ml.model.name"] + "/" + dict(k)["ml.feature.name"]: a.value for k, a in firing.items()} == {
        "fraud/a": 0.7, "churn/a": 0.9}
    alert = next(a for a in firing.values() if a.labels["ml.model.name"] == "fraud")
    assert alert.labels == {"ml.model.name": "fraud", "ml.feature.name": "a", "alertname": "TestRule",
                            "severity": "warning"}
    # version is not a group label, so the summary cannot name it
    assert alert.annotations["summary"] == "a of fraud <none>: 0.70 > 0.5"


@pytest.mark.parametrize("how, expected", [("max", 3.0), ("min", 1.0), ("avg", 2.0), ("sum", 6.0),
                                           ("count", 3.0), ("last", 2.0)])
def test_aggregations_over_latest_values(how, expected):
    clock = Clock()
    engine = RuleEngine([rule(aggregation=how, threshold=-1)])
    engine.store.observe(gauge("m", [(1.0, {"i": 1}), (3.0, {"i": 3})]), clock())
    clock.advance(1)
    engine.store.observe(gauge("m", [(2.0, {"i": 2})]), clock())
    (alert,) = engine.alerts.values() if engine.evaluate(clock()) else ()
    assert alert.value == expected


def test_matchers_select_series_and_absent_labels_read_empty():
    clock = Clock()
    engine = RuleEngine([rule(metric="hw.temperature", matchers=['hw.sensor_location="gpu"', 'hw.id=~"GPU-.*"'],
                              group_by=["hw.id"], threshold=85)])
    engine.store.observe(gauge("hw.temperature", [(90.0, {"hw.sensor_location": "memory"}),
                                                  (80.0, {"hw.sensor_location": "gpu"})],
                               resource={"hw.id": "GPU-1"}), clock())
    engine.store.observe(gauge("hw.temperature", [(99.0, {"hw.sensor_location": "gpu"})],
                               resource={"hw.id": "other"}), clock())
    assert engine.evaluate(clock()) == []
    assert len(engine.store) == 1  # series no rule reads are not kept
    engine.store.observe(gauge("hw.temperature", [(88.0, {"hw.sensor_location": "gpu"})],
                               resource={"hw.id": "GPU-1"}), clock())
    assert [c.alert.labels["hw.id"] for c in engine.evaluate(clock()) if c.state == FIRING] == ["GPU-1"]


def test_rate_and_increase_of_a_cumulative_counter_with_a_reset():
    clock = Clock()
    engine = RuleEngine([rule(name="Rate", metric="c", aggregation="rate", window="60s", threshold=-1),
                         rule(name="Inc", metric="c", aggregation="increase", window="60s", threshold=-1)])
    t0 = clock()
    # 10/s for 60s, then a restart (reset to 0) and 20 more in the next 10s
    for t, value in ((0, 100), (30, 400), (60, 700), (70, 20)):
        clock.now = t0 + t
        engine.store.observe(counter("c", [(value, {})], time_s=clock(), start_s=t0 - 1000), clock())
    engine.evaluate(clock())
    values = {a.rule: a.value for a in engine.alerts.values()}
    # window (10s, 70s]: baseline the point at 0s... the last at or before 10s is t=0 (value 100)
    assert values["Inc"] == pytest.approx(300 + 300 + 20)
    assert values["Rate"] == pytest.approx(620 / 70)


def test_increase_counts_a_counter_born_within_the_window():
    """The first error of a model creates its counter at 1: that is an increase of 1, not of nothing."""
    clock = Clock()
    engine = RuleEngine([rule(metric="errors", aggregation="increase", window="10m", op=">", threshold=0)])
    engine.store.observe(counter("errors", [(1, {})], time_s=clock(), start_s=clock() - 5), clock())
    assert [c.state for c in engine.evaluate(clock())] == [PENDING, FIRING]
    # An old counter seen for the first time (started long ago) tells nothing yet.
    engine2 = RuleEngine([rule(metric="errors", aggregation="increase", window="10m", op=">", threshold=0)])
    engine2.store.observe(counter("errors", [(7, {})], time_s=clock(), start_s=clock() - 86400), clock())
    assert engine2.evaluate(clock()) == []


def test_delta_counter_increments_add_up():
    clock = Clock()
    engine = RuleEngine([rule(metric="c", aggregation="increase", window="60s", threshold=-1)])
    for step in range(4):
        engine.store.observe(counter("c", [(5, {})], time_s=clock(), start_s=clock() - 30, delta=True), clock())
        clock.advance(30)
    clock.advance(-30)
    engine.evaluate(clock())
    (alert,) = engine.alerts.values()
    # samples at 0, 30, 60, 90 (running totals 5, 10, 15, 20); window (30, 90]: baseline 30 → +10
    assert alert.value == 10


def test_error_rate_as_a_ratio_of_rates_and_zero_when_no_errors_yet():
    clock = Clock()
    engine = RuleEngine([rule(name="ErrorRate", metric="ml.prediction.errors", aggregation="rate", window="5m",
                              group_by=["ml.model.name"], threshold=0.05,
                              denominator={"metric": "ml.predictions", "aggregation": "rate", "window": "5m"})])
    t0 = clock()
    model = {"ml.model.name": "fraud"}
    for t, requests in ((0, 0), (60, 600), (120, 1200)):
        clock.now = t0 + t
        engine.store.observe(counter("ml.predictions", [(requests, {**model, "ml.prediction.label": "ok"})],
                                     time_s=clock(), start_s=t0), clock())
    assert [c.state for c in engine.evaluate(clock())] == []
    (point,) = engine.values(engine.rules["ErrorRate"], clock()).values()
    assert point.value == 0.0  # the errors counter does not exist yet: no errors
    clock.advance(60)
    engine.store.observe(counter("ml.predictions", [(1800, {**model, "ml.prediction.label": "ok"})],
                                 time_s=clock(), start_s=t0), clock())
    engine.store.observe(counter("ml.prediction.errors", [(60, {**model, "error.type": "timeout"})],
                                 time_s=clock(), start_s=clock() - 30), clock())
    changes = engine.evaluate(clock())
    assert [c.state for c in changes] == [PENDING, FIRING]
    assert changes[-1].alert.value == pytest.approx(60 / 1800 * 180 / 30, rel=1e-6)


def test_quantile_of_delta_histograms_over_a_window_matches_numpy_within_a_bucket():
    rng = np.random.default_rng(7)
    bounds = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0]
    clock = Clock()
    engine = RuleEngine([rule(metric="ml.prediction.duration", aggregation="quantile", quantile=0.95,
                              window="5m", group_by=["ml.model.name"], threshold=-1)])
    everything = []
    for step in range(6):  # one delta point a minute; the first falls out of the 5m window
        latencies = rng.lognormal(np.log(0.08), 0.6, 500)
        if step > 0:
            everything.append(latencies)
        counts = np.histogram(latencies, [-np.inf, *bounds, np.inf])[0]
        engine.store.observe(histogram("ml.prediction.duration", bounds, counts.tolist(),
                                       {"ml.model.name": "fraud"}, time_s=clock()), clock())
        clock.advance(60)
    clock.advance(-60)
    engine.evaluate(clock())
    (alert,) = engine.alerts.values()
    truth = float(np.percentile(np.concatenate(everything), 95))
    i = int(np.searchsorted(bounds, truth))
    lower, upper = (bounds[i - 1] if i else 0.0), bounds[i]
    assert lower <= alert.value <= upper


def test_quantile_of_cumulative_histograms_uses_the_increase_in_the_window():
    clock = Clock()
    engine = RuleEngine([rule(metric="h", aggregation="quantile", quantile=0.5, window="60s", threshold=-1)])
    bounds = [1.0, 2.0, 3.0]
    engine.store.observe(histogram("h", bounds, [100, 0, 0, 0], {}, time_s=clock(), delta=False), clock())
    clock.advance(60)
    # 10 new observations, all in (2, 3]: within the window the median is there, not in the first bucket
    engine.store.observe(histogram("h", bounds, [100, 0, 10, 0], {}, time_s=clock(), delta=False), clock())
    engine.evaluate(clock())
    (alert,) = engine.alerts.values()
    assert 2.0 <= alert.value <= 3.0


def test_quantile_function_edges():
    assert quantile(0.5, (1.0, 2.0), [0, 0, 0]) is None
    assert quantile(0.5, (1.0, 2.0), [0, 10, 0]) == pytest.approx(1.5)
    assert quantile(0.99, (1.0, 2.0), [0, 0, 10]) == 2.0  # the overflow bucket: the highest bound
    assert quantile(0.5, (1.0, 2.0), [10, 0, 0]) == pytest.approx(0.5)  # the first bucket starts at 0


def test_bounded_memory_series_samples_and_alerts():
    clock = Clock()
    engine = RuleEngine([rule(metric="c", aggregation="rate", window="10m", group_by=["i"], threshold=-1)],
                        max_series=50, max_samples=20, max_alerts=10)
    for step in range(100):
        engine.store.observe(counter("c", [(step, {"i": i}) for i in range(80)], time_s=clock(), start_s=1),
                             clock())
        clock.advance(1)
    assert len(engine.store) == 50
    assert engine.store.dropped_series == 30 * 100
    assert all(len(s.samples) <= 20 for s in engine.store.all_series())
    engine.evaluate(clock())
    assert len(engine.alerts) == 10 and engine.dropped_alerts == 40


def test_gauges_keep_only_their_latest_point_and_unseen_series_are_forgotten():
    clock = Clock()
    engine = RuleEngine([rule(stale_after="1m")], stale_after=60)
    for i in range(10):
        engine.store.observe(gauge("m", [(float(i), {})]), clock())
    (series,) = engine.store.all_series()
    assert len(series.samples) == 1 and series.latest.value == 9.0
    clock.advance(61)
    engine.evaluate(clock())
    assert len(engine.store) == 0


def test_restore_keeps_firing_alerts_and_drops_those_of_changed_rules():
    clock, engine = Clock(), RuleEngine([rule(threshold=0.5)])
    feed(engine, clock, 0.9)
    engine.evaluate(clock())
    saved = engine.to_json()
    again = RuleEngine([rule(threshold=0.5)])
    assert again.restore(saved) == 1
    changed = RuleEngine([rule(threshold=0.5, severity="critical")])
    assert changed.restore(saved) == 0
    gone = RuleEngine([rule(name="Other", threshold=0.5)])
    assert gone.restore(saved) == 0


def _with_trace(batch, trace: int):
    """The batch, its first point carrying an exemplar of trace `trace` (as an SDK inside a span sets)."""
    metric = batch.message.resource_metrics[0].scope_metrics[0].metrics[0]
    point = (metric.sum if metric.WhichOneof("data") == "sum" else metric.gauge).data_points[0]
    point.exemplars.add(trace_id=bytes([trace] * 16), span_id=bytes([trace] * 8), as_double=1.0)
    return batch


def test_an_alert_links_only_a_trace_from_within_its_rules_window():
    """A 5-minute error-burst rule: the trace of an error days ago is not behind today's burst; one
    within the window is, and it goes from the alert once the window has passed it."""
    clock = Clock()
    engine = RuleEngine([rule(name="Burst", metric="errors", aggregation="increase", window="5m", threshold=5)])
    errors = 0.0

    def export(new_errors: float, trace: int | None = None) -> None:
        nonlocal errors
        errors += new_errors
        batch = counter("errors", [(errors, DRIFT)], time_s=clock(), start_s=1.0)
        engine.store.observe(batch if trace is None else _with_trace(batch, trace), clock())

    def traces() -> set[str]:
        return {a.annotations.get("trace_id", "") for a in engine.alerts.values()}

    export(1, trace=7)  # one error, two days ago, inside trace 7
    engine.evaluate(clock())
    for _ in range(2 * 24 * 60):
        clock.advance(60)
        export(0)
    for _ in range(5):  # today's burst: errors whose points carry no exemplar
        clock.advance(60)
        export(3)
    assert states(engine.evaluate(clock())) == [(INACTIVE, PENDING), (PENDING, FIRING)]
    assert traces() == {""}
    clock.advance(60)
    export(3, trace=9)
    engine.evaluate(clock())
    assert traces() == {bytes([9] * 16).hex()}
    for _ in range(6):  # still bursting, no new exemplar: trace 9 ages out of the 5 minutes
        clock.advance(60)
        export(3)
        engine.evaluate(clock())
    assert engine.alerts and traces() == {""}


def test_an_alert_without_a_window_links_a_trace_no_older_than_stale_after():
    clock = Clock()
    engine = RuleEngine([rule(name="Drift", metric="m", threshold=0.5, stale_after="10m")])
    engine.store.observe(_with_trace(gauge("m", [(0.9, DRIFT)], time_s=clock()), 4), clock())
    engine.evaluate(clock())
    (alert,) = engine.alerts.values()
    assert alert.annotations["trace_id"] == bytes([4] * 16).hex()
    for _ in range(11):  # the value holds, reported each minute without an exemplar
        clock.advance(60)
        feed(engine, clock, 0.9)
        engine.evaluate(clock())
    (alert,) = engine.alerts.values()
    assert alert.state == FIRING and "trace_id" not in alert.annotations and "span_id" not in alert.annotations
