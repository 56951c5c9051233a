"""The alerts processor's series store under hostile metrics: absurd values, huge histograms, many
series sent fast. It keeps evaluating, holds a bounded amount, and counts what it did not keep."""

from __future__ import annotations

import math
import tracemalloc

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from agent.alerts.engine import FIRING, RuleEngine
from agent.alerts.rules import RuleConfig
from agent.alerts.store import SeriesStore
from agent.signals import Batch, Signal

NOW = 1_800_000_000.0


def histogram_request(buckets: int, series: int = 1, at: float = NOW) -> bytes:
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="latency")
    metric.histogram.aggregation_temporality = 2  # cumulative
    for s in range(series):
        point = metric.histogram.data_points.add(count=buckets + 1, time_unix_nano=int(at * 1e9))
        point.explicit_bounds.extend(float(b) for b in range(buckets))
        point.bucket_counts.extend(range(1000, 1000 + buckets + 1))
        point.attributes.add(key="k").value.string_value = f"s{s}"
    return request.SerializeToString()


def counter_request(series: int, value: float, at: float) -> bytes:
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name="requests")
    metric.sum.aggregation_temporality, metric.sum.is_monotonic = 2, True
    for s in range(series):
        point = metric.sum.data_points.add(as_double=value, time_unix_nano=int(at * 1e9), start_time_unix_nano=1)
        point.attributes.add(key="k").value.string_value = f"s{s}"
    return request.SerializeToString()


P99 = RuleConfig(name="P99", metric="latency", aggregation="quantile", quantile=0.99, window="5m",
                 op=">", threshold=0)
RATE = RuleConfig(name="Rate", metric="requests", aggregation="rate", window="5m", op=">", threshold=0)


def held_mib(store: SeriesStore, wires: list[tuple[bytes, float]]) -> float:
    """MiB the store holds after observing each (request, time)."""
    tracemalloc.start()
    try:
        for wire, at in wires:
            store.observe(Batch.from_wire(Signal.METRICS, wire), at)
        return tracemalloc.get_traced_memory()[0] / 2**20
    finally:
        tracemalloc.stop()


def test_a_histogram_with_more_buckets_than_the_limit_is_counted_not_kept():
    store = SeriesStore([P99], max_buckets=256)
    held = held_mib(store, [(histogram_request(10_000), NOW + i) for i in range(50)])
    # Before the limit, 50 such points (7.6 MiB on the wire) held 33 MiB.
    assert held < 1 and len(store) == 0 and store.dropped_points == 50
    store.observe(Batch.from_wire(Signal.METRICS, histogram_request(200)), NOW)
    assert len(store) == 1


def test_histories_are_bounded_in_all_however_fast_many_series_send():
    """500 counter series sending every 10 ms for 1.2 s of a 5 m window: 60,000 samples offered;
    the store keeps its budget (oldest samples first) and each series still has a rate."""
    store = SeriesStore([RATE], max_stored_samples=10_000)
    wires = [(counter_request(500, float(i), NOW + i * 0.01), NOW + i * 0.01) for i in range(120)]
    held = held_mib(store, wires)
    # Before the budget, the store held 12 MiB (215 bytes a sample), and would grow to 2 GiB at the
    # default limits (10,000 series of 1,000 samples).
    assert store.stored_samples <= 10_000 and held < 4, held
    assert store.forgotten_samples == 60_000 - store.stored_samples
    engine = RuleEngine([RATE])
    engine.store = store
    assert len(engine.values(RATE, NOW + 1.2)) == 1 and engine.values(RATE, NOW + 1.2)[()].value > 0


def test_absurd_values_and_times_neither_raise_nor_fire_on_nan():
    rules = [RuleConfig(name="Gauge", metric="g", group_by=["k"], op=">", threshold=0), RATE, P99]
    engine = RuleEngine(rules)
    request = ExportMetricsServiceRequest()
    metrics = request.resource_metrics.add().scope_metrics.add().metrics
    gauge = metrics.add(name="g").gauge
    values = [math.nan, math.inf, -math.inf, 1.7976931348623157e308, -1.7976931348623157e308, 5e-324]
    times = [0, 2**64 - 1, int(NOW * 1e9)]
    for i, value in enumerate(values):
        point = gauge.data_points.add(as_double=value, time_unix_nano=times[i % 3])
        point.attributes.add(key="k").value.string_value = str(i)
    counter = metrics.add(name="requests").sum
    counter.aggregation_temporality, counter.is_monotonic = 2, True
    for i, value in enumerate(values * 2):
        counter.data_points.add(as_double=value, time_unix_nano=times[i % 3], start_time_unix_nano=times[(i + 1) % 3])
    histogram = metrics.add(name="latency").histogram
    histogram.aggregation_temporality = 2
    bad = histogram.data_points.add(count=2**64 - 1, sum=math.nan, time_unix_nano=2**64 - 1)
    bad.explicit_bounds.extend([math.nan, math.inf, -math.inf])
    bad.bucket_counts.extend([2**64 - 1, 0, 1, 2])
    histogram.data_points.add(count=3).bucket_counts.extend([1, 2])  # counts that do not match the bounds
    metrics.add(name="latency").exponential_histogram.data_points.add(count=1)
    metrics.add(name="latency").summary.data_points.add(count=1)
    wire = request.SerializeToString()
    for step in range(5):
        engine.store.observe(Batch.from_wire(Signal.METRICS, wire), NOW + step)
        changes = engine.evaluate(NOW + step)
    firing = {a.labels.get("k") for a in engine.alerts.values() if a.state == FIRING}
    assert {"1", "3", "5"} <= firing and "0" not in firing  # +inf, the largest double, the least; NaN never
    assert all(not math.isnan(c.alert.value) for c in changes if c.alert.value is not None)
    # The histogram that cannot be read and the kinds no rule reads are counted, not kept.
    assert engine.store.dropped_points == 5 * 4


def test_the_default_budget_keeps_a_realistic_load_whole():
    """100 series every 10 s over a 5 m window: 3,000 samples, all kept, as before the budget."""
    store = SeriesStore([RATE])
    for i in range(31):
        store.observe(Batch.from_wire(Signal.METRICS, counter_request(100, float(i), NOW + 10 * i)), NOW + 10 * i)
    assert store.forgotten_samples == 0 and store.stored_samples == 100 * 31
