"""OTTL conditions: the subset Vigil runs, OTTL's comparison rules, and what lies outside refused with why.

Conditions are the Collector's documented ones (opentelemetry-collector-contrib processor/filterprocessor
README.md, commit ba96fac1, and pkg/ottl's boolean expressions), read against real protobuf items.
"""

from __future__ import annotations

import pytest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agent.processors import ottl
from tests.processors.collector_docs import set_attributes


def _span_item() -> ottl.Item:
    resource = Resource()
    set_attributes(resource.attributes, {"host.name": "localhost", "service.name": "fraud-api"})
    span = Span(name="app_3", kind=Span.SPAN_KIND_SERVER, parent_span_id=b"\x01" * 8)
    span.status.code = 2
    set_attributes(span.attributes, {"container.name": "app_container_1", "http.response.status_code": 503,
                                     "ratio": 0.5, "grpc": True, "nested": {"inner": "x"}, "list": ["a", "b"]})
    return ottl.Item(resource=resource, scope=InstrumentationScope(name="opentelemetry.instrumentation.flask"),
                     span=span)


SPAN = _span_item()


@pytest.mark.parametrize("condition,expected", [
    ('attributes["container.name"] == "app_container_1"', True),
    ('resource.attributes["host.name"] == "localhost"', True),
    ('name == "app_3"', True),
    ('span.name == "app_3"', True),  # the context's own prefix, as newer Collector configs write it
    ('kind == SPAN_KIND_SERVER', True),
    ('kind != SPAN_KIND_CLIENT', True),
    ('status.code == STATUS_CODE_ERROR', True),
    ('instrumentation_scope.name == "opentelemetry.instrumentation.flask"', True),
    ('scope.name == "opentelemetry.instrumentation.flask"', True),
    ('attributes["http.response.status_code"] >= 500', True),
    ('attributes["http.response.status_code"] < 503.5', True),   # int against double
    ('attributes["http.response.status_code"] == "503"', False),  # int against string: only unequal
    ('attributes["http.response.status_code"] != "503"', True),
    ('attributes["http.response.status_code"] > "5"', False),
    ('attributes["ratio"] == 0.5', True),
    ('attributes["grpc"] == true', True),
    ('attributes["grpc"] > false', False),  # bools do not order
    ('attributes["missing"] == nil', True),
    ('attributes["missing"] != nil', False),
    ('attributes["missing"] < 5', False),
    ('attributes["http.response.status_code"] > -1', True),  # a sign, not arithmetic
    ('attributes["nested"]["inner"] == "x"', True),
    ('attributes["list"][1] == "b"', True),
    ('name < "b"', True),  # strings order
    ('IsMatch(name, "app_.*")', True),
    ('IsMatch(attributes["http.response.status_code"], "^5")', True),  # a number read as its text
    ('IsMatch(attributes["missing"], ".*")', False),
    ('not IsMatch(name, "^health")', True),
    ('name == "x" or (kind == SPAN_KIND_SERVER and not attributes["grpc"] == false)', True),
    ('name == "x" or kind == SPAN_KIND_SERVER and name == "y"', False),  # and binds tighter than or
    ('(name == "x" or kind == SPAN_KIND_SERVER) and name == "y"', False),
    ('IsRootSpan()', False),
    ('true', True),
    ('attributes["container.name"] == "app_container_1" and\n    resource.attributes["host.name"] == "localhost"', True),
])
def test_span_conditions(condition, expected):
    assert ottl.parse(condition, "span")(SPAN) is expected


def test_log_and_metric_contexts():
    record = LogRecord(severity_number=9, severity_text="INFO")
    record.body.string_value = "user password=hunter2"
    log = ottl.Item(resource=Resource(), scope=InstrumentationScope(), log=record)
    assert ottl.parse('IsMatch(body, ".*password.*")', "log")(log)
    assert ottl.parse("severity_number < SEVERITY_NUMBER_WARN", "log")(log)
    assert ottl.parse('severity_text == "INFO" and severity_number >= SEVERITY_NUMBER_INFO', "log")(log)
    assert not ottl.parse("severity_number == SEVERITY_NUMBER_INFO2", "log")(log)

    metric = Metric(name="my.metric")
    point = metric.histogram.data_points.add(count=3)
    set_attributes(point.attributes, {"http.method": "GET"})
    resource = Resource()
    set_attributes(resource.attributes, {"my_label": "abc123"})
    item = ottl.Item(resource=resource, scope=InstrumentationScope(), metric=metric)
    assert ottl.parse('name == "my.metric" and resource.attributes["my_label"] == "abc123"', "metric")(item)
    assert ottl.parse("type == METRIC_DATA_TYPE_HISTOGRAM", "metric")(item)
    assert ottl.parse('HasAttrKeyOnDatapoint("http.method")', "metric")(item)
    assert ottl.parse('HasAttrOnDatapoint("http.method", "GET")', "metric")(item)
    assert not ottl.parse('HasAttrOnDatapoint("http.method", "POST")', "metric")(item)
    on_point = ottl.Item(resource=resource, scope=item.scope, metric=metric, datapoint=point)
    assert ottl.parse("metric.type == METRIC_DATA_TYPE_HISTOGRAM and count == 3", "datapoint")(on_point)
    assert ottl.parse('attributes["http.method"] == "GET" and metric.name == "my.metric"', "datapoint")(on_point)


NOT_RUN = ("is an OTTL function Vigil does not run "
           "(the subset: IsMatch, IsRootSpan, HasAttrKeyOnDatapoint, HasAttrOnDatapoint)")


@pytest.mark.parametrize("condition,context,reason", [
    ('XYZ(name)', "span", "unknown function 'XYZ' in the span context"),
    # OTTL's own functions outside the subset, however their arguments are written.
    ('Concat(["a", name], "") == "a"', "span", f"'Concat' {NOT_RUN}"),
    ('IsString(attributes["a"])', "span", f"'IsString' {NOT_RUN}"),
    ('Len(body) > 10', "log", f"'Len' {NOT_RUN}"),
    ('ConvertCase(name, "lower") == "x"', "span", f"'ConvertCase' {NOT_RUN}"),
    ('Int(attributes["a"]) > 1 and Substring(name, 0, 3) == "app"', "span", f"'Int' {NOT_RUN}"),
    ('IsMap(ParseJSON(body))', "log", f"'ParseJSON' {NOT_RUN}"),
    ('Any(attributes["tags"], (_, v) => v == "prod")', "span", f"'Any' {NOT_RUN}"),
    ('set(attributes["a"], "b")', "span", "'set' is an OTTL editor, which changes telemetry: a condition only reads it"),
    ('name == "Len(x)" or XYZ(name)', "span", "unknown function 'XYZ' in the span context"),  # text, not a call
    ('HasAttrOnDatapoint("a", "b")', "span", "'HasAttrOnDatapoint' runs only in the metric context, not the span one"),
    ('attributes[test] == "pass"', "span", "unexpected 'test' at column 12 (outside the OTTL subset Vigil runs)"),
    ('resource.attributes[test] == "pass"', "metric",
     "unexpected 'test' at column 21 (outside the OTTL subset Vigil runs)"),
    ('name == ', "span", "incomplete condition: it ends too early"),
    ('end_time_unix_nano - start_time_unix_nano < 1000000', "span",
     "arithmetic (+ - * /) is outside the OTTL subset Vigil runs: '-' at column 20"),
    ('time_unix_nano -1000 > 0', "log", "arithmetic (+ - * /) is outside the OTTL subset Vigil runs: '-' at column 16"),
    ('severity_number + 1 > 9', "log", "arithmetic (+ - * /) is outside the OTTL subset Vigil runs: '+' at column 17"),
    ('attributes["n"] * 2 > 9', "span", "arithmetic (+ - * /) is outside the OTTL subset Vigil runs: '*' at column 17"),
    ('attributes["n"] / 2 > 9', "span", "arithmetic (+ - * /) is outside the OTTL subset Vigil runs: '/' at column 17"),
    ('attributes["a"] == "b', "span", "unterminated string starting at column 20"),
    ('IsMatch(name, "a) and name == "b"', "span", "unterminated string starting at column 33"),
    ('IsMatch(name, "\\d+")', "span",
     'invalid escape in the string at column 15 (write \\\\ for a backslash, as in "\\\\d+")'),
    ('foo == 1', "span", "unknown path 'foo' in the span context"),
    ('severity_number == 1', "span", "unknown path 'severity_number' in the span context"),
    ('kind == SEVERITY_NUMBER_WARN', "span", "unknown enum 'SEVERITY_NUMBER_WARN' in the span context"),
    ('kind == SPAN_KIND_SERVERX', "span", "unknown enum 'SPAN_KIND_SERVERX' in the span context"),
    ('attributes["grpc"]', "span", "a path alone is not a condition: compare it (== nil, == true, ...)"),
    ('"yes"', "span", "a condition must be a boolean, got string"),
    ('IsMatch(name, "(")', "span", "IsMatch: invalid regex '(': missing ): ("),
    # RE2, as the Collector: what would need backtracking is refused.
    ('IsMatch(name, "^(?!health)")', "span", "IsMatch: invalid regex '^(?!health)': invalid perl operator: (?! "
     "(RE2 syntax, as in the Collector: no lookaround, backreferences or possessive repeats)"),
    ('IsMatch(name, attributes["p"])', "span", "IsMatch's pattern must be a string literal"),
    ('IsMatch(name)', "span", "IsMatch takes 2 arguments (target, pattern), got 1"),
    ('IsRootSpan()', "log", "'IsRootSpan' runs only in the span context, not the log one"),
    ('name = "x"', "span", "unexpected '=' at column 6 (outside the OTTL subset Vigil runs)"),
    ("name == 'x'", "span", "unexpected \"'\" at column 9 (outside the OTTL subset Vigil runs)"),
])
def test_outside_the_subset_is_refused_with_the_reason(condition, context, reason):
    with pytest.raises(ValueError) as refused:
        ottl.parse(condition, context)
    assert str(refused.value) == reason


def test_is_match_runs_in_linear_time_on_a_pattern_that_backtracks_in_pythons_re():
    # Python's re takes about four times longer for every two more characters here; RE2 does not backtrack.
    span = Span(name="a" * 10_000 + "!")
    item = ottl.Item(resource=Resource(), scope=InstrumentationScope(), span=span)
    assert ottl.parse('IsMatch(name, "^(a+)+$")', "span")(item) is False
    span.name = "a" * 10_000
    assert ottl.parse('IsMatch(name, "^(a+)+$")', "span")(item) is True


def test_indexing_into_a_scalar_fails_at_run_time():
    with pytest.raises(ottl.OttlError, match="type string does not support string indexing"):
        ottl.parse('attributes["container.name"]["x"] == "y"', "span")(SPAN)
    with pytest.raises(ottl.OttlError, match="index 5 out of bounds"):
        ottl.parse('attributes["list"][5] == "y"', "span")(SPAN)
    # Where the path reads nothing, there is nothing to index: nil, no error.
    assert ottl.parse('attributes["missing"]["x"] == nil', "span")(SPAN)
    assert ottl.parse('attributes["nested"]["missing"][0] == nil', "span")(SPAN)
