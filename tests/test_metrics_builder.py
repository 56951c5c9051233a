"""Points written by `MetricsBuilder` carry exactly the attributes they were given, whatever was written before."""

from __future__ import annotations

from agent.attributes import any_value
from agent.metrics_builder import Instrument, MetricsBuilder, MetricSpec

GAUGE = MetricSpec("vigil.test.gauge", "1", Instrument.GAUGE, "a gauge")
HISTOGRAM = MetricSpec("vigil.test.histogram", "s", Instrument.HISTOGRAM, "a histogram")


def attributes(point) -> list[tuple[str, object, str]]:
    return [(kv.key, any_value(kv.value), kv.value.WhichOneof("value")) for kv in point.attributes]


def test_equal_values_of_other_types_stay_their_own_type():
    # 1, 1.0 and True are equal Python values; as attributes they are an int, a double and a bool.
    builder = MetricsBuilder()
    metrics = builder.resource({"service.name": "svc"})
    for value in (1, 1.0, True, 1, [1, 2], {"k": "v"}, "1"):
        metrics.record(GAUGE, 0.5, {"a": value, "b": "x"})
    points = builder.batch().message.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points
    assert [attributes(p)[0][2] for p in points] == ["int_value", "double_value", "bool_value", "int_value",
                                                      "array_value", "kvlist_value", "string_value"]
    assert all(attributes(p)[1] == ("b", "x", "string_value") for p in points)
    assert attributes(points[4])[0][1] == [1, 2]


def test_a_histogram_and_a_gauge_with_the_same_attributes_each_get_them():
    builder = MetricsBuilder()
    metrics = builder.resource({})
    labels = {"ml.model.name": "fraud", "ml.feature.name": "amount"}
    metrics.record(GAUGE, 3, labels)
    metrics.record_histogram(HISTOGRAM, [1.0], [2, 3], 4.0, labels)
    metrics.record(GAUGE, 4, labels)
    scope = builder.batch().message.resource_metrics[0].scope_metrics[0]
    gauge, histogram = scope.metrics
    expected = [("ml.model.name", "fraud", "string_value"), ("ml.feature.name", "amount", "string_value")]
    assert [attributes(p) for p in gauge.gauge.data_points] == [expected, expected]
    assert attributes(histogram.histogram.data_points[0]) == expected
    assert [p.as_int for p in gauge.gauge.data_points] == [3, 4]
