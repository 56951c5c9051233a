"""The `attributes` processor with the Collector's own configs, as written.

The blocks are copied from opentelemetry-collector-contrib's processor/attributesprocessor README.md
(commit 000d4c7c) and testdata/config.yaml (commit 1cab1b85); the spans each example's comments
describe are sent through, and what comes out is what those comments say.
"""

from __future__ import annotations

import hashlib
import struct

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent import attributes
from agent.signals import Batch, Signal
from tests.processors.collector_docs import load, make, problems, run, set_attributes, typed
from tests.sink import InMemorySink

TRACES = (Signal.TRACES,)


def spans(*rows: tuple[str, str, dict], resource: dict | None = None, scope=("", "")) -> ExportTraceServiceRequest:
    """One resource per row: (service name, span name, span attributes)."""
    request = ExportTraceServiceRequest()
    for service, name, values in rows:
        resource_spans = request.resource_spans.add()
        set_attributes(resource_spans.resource.attributes, {"service.name": service, **(resource or {})})
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name, scope_spans.scope.version = scope
        set_attributes(scope_spans.spans.add(name=name).attributes, values)
    return request


def span_attributes(message) -> list[dict]:
    return [attributes.as_dict(span.attributes) for rs in message.resource_spans for ss in rs.scope_spans
            for span in ss.spans]


README_EXAMPLE = """
processors:
  attributes/example:
    actions:
      - key: db.table
        action: delete
      - key: redacted_span
        value: true
        action: upsert
      - key: copy_key
        from_attribute: key_original
        action: update
      - key: account_id
        value: 2245
        action: insert
      - key: account_password
        action: delete
      - key: account_email
        action: hash
      - key: http.status_code
        action: convert
        converted_type: int
      # Use default_value when source attribute doesn't exist
      - key: region
        from_attribute: cloud.region
        default_value: "us-east-1"
        action: insert
      # Use default_value when context value is not available
      - key: tenant_id
        from_context: "metadata.tenant"
        default_value: "default-tenant"
        action: upsert
"""


async def test_the_readme_example_runs_as_written():
    config = load(README_EXAMPLE, TRACES)
    # from_context is accepted; Vigil's receivers keep no client metadata, which the warning says.
    assert config.warnings == ["processors.attributes/example: actions[8].from_context: Vigil's receivers keep "
                               "no client metadata or auth, so it never finds a value and default_value applies"]
    sent = spans(("svc", "op", {"db.table": "users", "copy_key": "old", "key_original": "new",
                                "account_password": "hunter2", "account_email": "ann@example.com",
                                "http.status_code": "503", "cloud.region": "eu-west-1"}),
                 ("svc", "op", {"account_id": 7, "redacted_span": False}))
    out = await run(config, "attributes/example", Signal.TRACES, sent)
    first, second = [typed(span.attributes) for rs in out.resource_spans for ss in rs.scope_spans
                     for span in ss.spans]
    assert first == {
        "copy_key": ("string_value", "new"), "key_original": ("string_value", "new"),
        "account_email": ("string_value", hashlib.sha256(b"ann@example.com").hexdigest()),
        "http.status_code": ("int_value", 503), "cloud.region": ("string_value", "eu-west-1"),
        "redacted_span": ("bool_value", True), "account_id": ("int_value", 2245),
        "region": ("string_value", "eu-west-1"), "tenant_id": ("string_value", "default-tenant"),
    }
    assert second == {"account_id": ("int_value", 7), "redacted_span": ("bool_value", True),
                      "region": ("string_value", "us-east-1"), "tenant_id": ("string_value", "default-tenant")}


async def test_insert_and_extract_from_the_testdata():
    assert problems(r"""
  attributes/regex_insert:
    actions:
      - key: "http.url"
        pattern: ^(?P<http_protocol>.*):\/\/(?P<http_domain>.*)\/(?P<http_path>.*)(\?|\&)(?P<http_query_params>.*)
        action: extract
""", TRACES) == ["processors.attributes/regex_insert.actions[0]: extract: every group of the pattern must be named, "
                "(?P<name>...)"]
    # (The Collector refuses that testdata block too: its `(\?|\&)` group has no name.) Named, it extracts:
    config = load(r"""
  attributes/regex_insert:
    actions:
      - key: "http.url"
        pattern: ^(?P<http_protocol>.*):\/\/(?P<http_domain>.*)\/(?P<http_path>.*)(?P<sep>\?|\&)(?P<http_query_params>.*)
        action: extract
  attributes/insert:
    actions:
      - key: "attribute1"
        value: 123
        action: insert
      - key: "string key"
        from_attribute: "anotherkey"
        action: insert
""", TRACES)
    url = "http://example.com/path?queryParam1=value1,queryParam2=value2"
    out = await run(config, "attributes/regex_insert", Signal.TRACES,
                    spans(("svc", "op", {"http.url": url, "http_domain": "stale"})))
    assert span_attributes(out) == [{"http.url": url, "http_protocol": "http", "http_domain": "example.com",
                                     "http_path": "path", "sep": "?",
                                     "http_query_params": "queryParam1=value1,queryParam2=value2"}]
    out = await run(config, "attributes/insert", Signal.TRACES,
                    spans(("svc", "op", {"anotherkey": 5}), ("svc", "op", {"attribute1": "kept"})))
    assert span_attributes(out) == [{"anotherkey": 5, "attribute1": 123, "string key": 5}, {"attribute1": "kept"}]


EXCLUDE_MULTI = """
  attributes/excludemulti:
    exclude:
      match_type: strict
      services: ["svcA", "svcB"]
      attributes:
        - {key: env, value: "dev"}
        - {key: test_request}
    actions:
      - key: credit_card
        action: delete
      - key: duplicate_key
        action: delete
"""


async def test_exclude_on_services_and_attributes_as_the_testdata_says():
    out = await run(load(EXCLUDE_MULTI, TRACES), "attributes/excludemulti", Signal.TRACES, spans(
        ("svcB", "span1", {"env": "dev", "test_request": 123, "credit_card": 1234}),
        ("svcA", "span2", {"env": "dev", "test_request": False}),
        ("svcB", "span3", {"env": 1, "test_request": "dev", "credit_card": 1234}),
        ("svcC", "span4", {"env": "dev", "test_request": False, "credit_card": 1234})))
    assert span_attributes(out) == [
        {"env": "dev", "test_request": 123, "credit_card": 1234},   # matches: left alone
        {"env": "dev", "test_request": False},
        {"env": 1, "test_request": "dev"},                         # env is not the string "dev"
        {"env": "dev", "test_request": False},                     # svcC is not excluded
    ]


async def test_include_and_exclude_together_as_the_testdata_says():
    config = load("""
  attributes/selectiveprocessing:
    include:
      match_type: strict
      services: ["svcA", "svcB"]
    exclude:
      match_type: strict
      attributes:
        - { key: redact_trace, value: false}
    actions:
      - key: credit_card
        action: delete
      - key: duplicate_key
        action: delete
""", TRACES)
    out = await run(config, "attributes/selectiveprocessing", Signal.TRACES, spans(
        ("svcB", "span1", {"env": "production", "test_request": 123, "credit_card": 1234, "redact_trace": "false"}),
        ("svcA", "span2", {"env": "staging", "test_request": False, "redact_trace": True, "credit_card": 1}),
        ("svcB", "span3", {"env": "production", "test_request": True, "credit_card": 1234, "redact_trace": False}),
        ("svcC", "span4", {"env": "dev", "test_request": False, "credit_card": 1})))
    assert [span.get("credit_card") for span in span_attributes(out)] == [None, None, 1234, 1]


async def test_regexp_services_and_span_names():
    config = load("""
  attributes/regexp:
    include:
      match_type: regexp
      services: ["auth.*"]
    exclude:
      match_type: regexp
      span_names: ["login.*"]
    actions:
      - key: password
        action: update
        value: "obfuscated"
      - key: token
        action: delete
""", TRACES)
    secrets = {"password": "pw", "token": "t"}
    out = await run(config, "attributes/regexp", Signal.TRACES, spans(
        ("auth-service", "check", secrets), ("auth-service", "login-form", secrets), ("billing", "check", secrets)))
    assert span_attributes(out) == [{"password": "obfuscated"}, secrets, secrets]


async def test_resources_and_libraries_select_as_the_testdata_says():
    config = load("""
  attributes/excluderesources:
    exclude:
      match_type: strict
      resources:
        - {key: host.type, value: "n1-standard-1"}
    actions:
      - key: credit_card
        action: delete
  attributes/excludelibrary:
    exclude:
      match_type: strict
      libraries:
        - {name: "mongo-java-driver", version: "3.8.0"}
    actions:
      - key: credit_card
        action: delete
""", TRACES)
    card = {"credit_card": 1234}
    n1 = spans(("svc", "op", card), resource={"host.type": "n1-standard-1"})
    other = spans(("svc", "op", card), resource={"host.type": "e2-small"})
    assert span_attributes(await run(config, "attributes/excluderesources", Signal.TRACES, n1)) == [card]
    assert span_attributes(await run(config, "attributes/excluderesources", Signal.TRACES, other)) == [{}]
    mongo = spans(("svc", "op", card), scope=("mongo-java-driver", "3.8.0"))
    newer = spans(("svc", "op", card), scope=("mongo-java-driver", "4.0.0"))
    assert span_attributes(await run(config, "attributes/excludelibrary", Signal.TRACES, mongo)) == [card]
    assert span_attributes(await run(config, "attributes/excludelibrary", Signal.TRACES, newer)) == [{}]


async def test_the_complex_example_step_by_step():
    config = load("""
  attributes/complex:
    actions:
      - key: operation
        value: default
        action: insert
      - key: svc.operation
        from_attribute: operation
        action: upsert
      - key: operation
        action: delete
""", TRACES)
    out = await run(config, "attributes/complex", Signal.TRACES, spans(
        ("s", "1", {"timeout": 10, "svc.operation": "addition", "operation": "addition"}),
        ("s", "2", {"operation": "subtract", "math_value": 123}),
        ("s", "3", {"timeout": 10, "math_value": 4}),
        ("s", "4", {"svc.operation": "division", "timeout": 3})))
    assert span_attributes(out) == [{"timeout": 10, "svc.operation": "addition"},
                                    {"svc.operation": "subtract", "math_value": 123},
                                    {"timeout": 10, "math_value": 4, "svc.operation": "default"},
                                    {"svc.operation": "default", "timeout": 3}]


async def test_hash_is_sha256_of_the_collectors_bytes_and_pattern_selects_keys():
    config = load("""
  attributes/hash:
    actions:
      - key: user.email
        action: hash
      - pattern: ^ml\\.feature\\.
        action: hash
      - pattern: secret
        action: delete
""", TRACES)
    out = await run(config, "attributes/hash", Signal.TRACES, spans(("s", "op", {
        "user.email": "a@b.c", "ml.feature.age": 42, "ml.feature.score": 0.5, "ml.feature.vip": True,
        "my_secret_token": "x", "kept": "y"})))
    assert span_attributes(out) == [{
        "user.email": hashlib.sha256(b"a@b.c").hexdigest(),
        "ml.feature.age": hashlib.sha256(struct.pack("<q", 42)).hexdigest(),
        "ml.feature.score": hashlib.sha256(struct.pack("<d", 0.5)).hexdigest(),
        "ml.feature.vip": hashlib.sha256(b"\x01").hexdigest(),
        "kept": "y"}]


async def test_convert_as_the_collector_converts():
    config = load("""
  attributes/convert:
    actions:
      - {key: a, action: convert, converted_type: int}
      - {key: b, action: convert, converted_type: int}
      - {key: c, action: convert, converted_type: int}
      - {key: d, action: convert, converted_type: double}
      - {key: e, action: convert, converted_type: string}
      - {key: f, action: convert, converted_type: string}
      - {key: g, action: convert, converted_type: double}
""", TRACES)
    out = await run(config, "attributes/convert", Signal.TRACES, spans(("s", "op", {
        "a": "503", "b": -2.9, "c": "not a number", "d": True, "e": 2.5, "f": 7, "g": "1e3"})))
    (span,) = [span for rs in out.resource_spans for ss in rs.scope_spans for span in ss.spans]
    assert typed(span.attributes) == {
        "a": ("int_value", 503), "b": ("int_value", -2), "c": ("string_value", "not a number"),
        "d": ("double_value", 1.0), "e": ("string_value", "2.5"), "f": ("string_value", "7"),
        "g": ("double_value", 1000.0)}


# pdata's Value.AsString (opentelemetry-collector pdata/pcommon/value.go, commit 10d00402): a double as
# float64AsString, the JSON encoder's numbers (fixed point from 1e-6 up to 1e21, `e-7` not `e-07`), NaN and
# infinities as that encoder's refusal; maps and lists as encoding/json writes them.
AS_STRING = [
    (1.5e-5, "0.000015"), (1e-7, "1e-7"), (1.2345678901234568e20, "123456789012345680000"), (1e21, "1e+21"),
    (2.5e-10, "2.5e-10"), (100.0, "100"), (-0.0, "-0"), (0.1, "0.1"),
    (float("nan"), "json: unsupported value: NaN"), (float("inf"), "json: unsupported value: +Inf"),
    (float("-inf"), "json: unsupported value: -Inf"),
    ({"z": 1.5e-5, "a": [b"\x00\xff", 7, True], "html": "<a&b>"},
     '{"a":["AP8=",7,true],"html":"\\u003ca\\u0026b\\u003e","z":0.000015}'),
    ({"x": float("nan")}, ""),  # encoding/json refuses it and AsString keeps the empty result
]


async def test_convert_to_string_writes_numbers_as_the_collectors_as_string():
    config = load("\n".join(["  attributes/to_string:", "    actions:"] + [
        f"      - {{key: v{i}, action: convert, converted_type: string}}" for i in range(len(AS_STRING))]), TRACES)
    out = await run(config, "attributes/to_string", Signal.TRACES,
                    spans(("s", "op", {f"v{i}": value for i, (value, _) in enumerate(AS_STRING)})))
    assert span_attributes(out) == [{f"v{i}": text for i, (_, text) in enumerate(AS_STRING)}]


async def test_regexp_matches_a_double_as_the_collectors_as_string():
    config = load("""
  attributes/small:
    include:
      match_type: regexp
      attributes: [{key: ratio, value: '^0\\.0000'}]
    actions:
      - {key: small, value: true, action: insert}
""", TRACES)
    out = await run(config, "attributes/small", Signal.TRACES, spans(("s", "a", {"ratio": 1.5e-5}),
                                                                     ("s", "b", {"ratio": 0.5})))
    assert span_attributes(out) == [{"ratio": 1.5e-5, "small": True}, {"ratio": 0.5}]


async def test_metrics_per_data_point_selected_by_metric_name():
    config = load("""
  attributes/points:
    include:
      match_type: regexp
      metric_names: ["^http\\\\."]
    actions:
      - {key: user.id, action: delete}
      - {key: env, value: prod, action: upsert}
""", (Signal.METRICS,))
    request = ExportMetricsServiceRequest()
    scope = request.resource_metrics.add().scope_metrics.add()
    for name in ("http.server.duration", "queue.depth"):
        metric = scope.metrics.add(name=name)
        for user in ("u1", "u2"):
            set_attributes(metric.gauge.data_points.add(as_int=1).attributes, {"user.id": user})
    out = await run(config, "attributes/points", Signal.METRICS, request)
    points = {m.name: [attributes.as_dict(p.attributes) for p in m.gauge.data_points]
              for m in out.resource_metrics[0].scope_metrics[0].metrics}
    assert points == {"http.server.duration": [{"env": "prod"}, {"env": "prod"}],
                      "queue.depth": [{"user.id": "u1"}, {"user.id": "u2"}]}


async def test_logs_selected_by_body_and_severity_text_as_the_testdata_says():
    config = load("""
  attributes/log_body_regexp:
    include:
      match_type: regexp
      log_bodies: ["AUTH.*"]
    actions:
      - key: password
        action: update
        value: "obfuscated"
      - key: token
        action: delete
  attributes/log_severity_regexp:
    include:
      match_type: regexp
      log_severity_texts: [ "debug.*" ]
    actions:
      - key: password
        action: update
        value: "obfuscated"
""", (Signal.LOGS,))
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for body, severity in (("AUTH failed", "debug"), ("request served", "info")):
        record = records.add(severity_text=severity)
        record.body.string_value = body
        set_attributes(record.attributes, {"password": "pw", "token": "t"})

    def seen(out):
        return [attributes.as_dict(r.attributes) for r in out.resource_logs[0].scope_logs[0].log_records]

    assert seen(await run(config, "attributes/log_body_regexp", Signal.LOGS, request)) == [
        {"password": "obfuscated"}, {"password": "pw", "token": "t"}]
    assert seen(await run(config, "attributes/log_severity_regexp", Signal.LOGS, request)) == [
        {"password": "obfuscated", "token": "t"}, {"password": "pw", "token": "t"}]


async def test_log_bodies_match_any_body_as_its_text():
    config = load("""
  attributes/bodies_regexp:
    include:
      match_type: regexp
      log_bodies: ['"event":"login"', "^404$", "^true$"]
    actions:
      - {key: matched, value: true, action: insert}
  attributes/bodies_strict:
    include:
      match_type: strict
      log_bodies: ["0.000015", '["a",1]']
    actions:
      - {key: matched, value: true, action: insert}
""", (Signal.LOGS,))
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for body in ({"event": "login", "user": "ann"}, 404, True, 1.5e-5, ["a", 1], "plain", {"event": "logout"}):
        attributes.set_any_value(records.add().body, body)

    def matched(out):
        return [attributes.as_dict(r.attributes) == {"matched": True}
                for r in out.resource_logs[0].scope_logs[0].log_records]

    assert matched(await run(config, "attributes/bodies_regexp", Signal.LOGS, request)) == [
        True, True, True, False, False, False, False]
    assert matched(await run(config, "attributes/bodies_strict", Signal.LOGS, request)) == [
        False, False, False, True, True, False, False]


def test_bad_configs_are_refused_by_field():
    assert problems("""
  attributes/bad:
    actions:
      - {key: a, action: rename}
      - {key: b, action: delete, pattern: "("}
      - {key: c, action: insert}
      - {key: d, action: extract, pattern: "(?P<x>a)(b)"}
      - {key: e, action: convert, converted_type: bool}
      - {key: f, action: hash, value: 1}
""", TRACES) == [
        "processors.attributes/bad.actions[0].action: Input should be 'insert', 'update', 'upsert', 'delete', "
        "'hash', 'extract' or 'convert' (got 'rename')",
        "processors.attributes/bad.actions[1].pattern: invalid regex '(': missing ): (",
        "processors.attributes/bad.actions[2]: insert needs one of value, from_attribute or default_value",
        "processors.attributes/bad.actions[3]: extract: every group of the pattern must be named, (?P<name>...)",
        "processors.attributes/bad.actions[4].converted_type: Input should be 'int', 'double' or 'string' "
        "(got 'bool')",
        "processors.attributes/bad.actions[5]: hash takes no value, from_attribute or default_value",
    ]
    assert problems("""
  attributes/bad:
    include:
      match_type: regexp
      services: ["auth("]
    exclude:
      match_type: regexp
      attributes: [{key: k, value: "(?<=x)y"}]
    actions:
      - {key: a, action: delete}
""", TRACES) == [
        "processors.attributes/bad.include: services[0]: invalid regex 'auth(': missing ): auth(",
        "processors.attributes/bad.exclude: attributes[0].value: invalid regex '(?<=x)y': invalid perl operator: "
        "(?<= (RE2 syntax, as in the Collector: no lookaround, backreferences or possessive repeats)",
    ]


async def test_patterns_run_in_linear_time_where_pythons_re_would_backtrack():
    # `^(a+)+$` against a long run of `a`s that fails at the end: Python's re would never finish.
    config = load("""
  attributes/linear:
    include:
      match_type: regexp
      span_names: ["^(a+)+$"]
      attributes: [{key: long, value: "^(a+)+$"}]
    actions:
      - {pattern: "^(a+)+$", action: delete}
      - {key: long, pattern: "^(?P<run>(?:a+)+)$", action: extract}
""", TRACES)
    long = "a" * 10_000 + "!"
    out = await run(config, "attributes/linear", Signal.TRACES,
                    spans(("api", long, {"long": long, "keep": 1}), ("api", "aaaa", {"long": "aaaa", "aaa": 1})))
    assert span_attributes(out) == [{"long": long, "keep": 1}, {"long": "aaaa", "run": "aaaa"}]


async def test_a_batch_no_action_changes_goes_on_as_the_bytes_it_came_with():
    config = load("""
  attributes/idle:
    actions:
      - {key: db.statement, action: delete}
      - {key: env, value: prod, action: upsert}
      - {key: region, value: eu, action: insert}
      - {key: missing, value: x, action: update}
      - {key: status, action: convert, converted_type: int}
      - {key: url, pattern: '^(?P<scheme>https?)://', action: extract}
      - {key: copy, from_attribute: absent, action: upsert}
""", TRACES)
    untouched = spans(("api", "op", {"env": "prod", "region": "us", "status": 200, "url": "ftp://x"}))
    wire = untouched.SerializeToString()
    down = InMemorySink()
    await make(config, "attributes/idle", Signal.TRACES, down).consume(Batch(Signal.TRACES, wire=wire))
    assert down.batches[0].wire() is wire

    changed = spans(("api", "op", {"env": "dev", "region": "us", "status": "200", "url": "https://x"}))
    wire = changed.SerializeToString()
    down = InMemorySink()
    await make(config, "attributes/idle", Signal.TRACES, down).consume(Batch(Signal.TRACES, wire=wire))
    out = ExportTraceServiceRequest.FromString(down.batches[0].wire())
    assert span_attributes(out) == [{"env": "prod", "region": "us", "status": 200, "url": "https://x",
                                     "scheme": "https"}]


def test_match_fields_of_another_signal_are_refused_by_pipeline():
    assert problems("""
  attributes/spans_only:
    include: {match_type: strict, span_names: [op], services: [api]}
    actions:
      - {key: a, action: delete}
""", (Signal.TRACES, Signal.METRICS)) == [
        "service.pipelines.metrics.processors[0]: processor 'attributes/spans_only': include.services, "
        "include.span_names: not for metrics"]
