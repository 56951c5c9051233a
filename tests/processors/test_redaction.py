"""The `redaction` processor with the Collector's own configs, as written.

The blocks are copied from opentelemetry-collector-contrib's processor/redactionprocessor: testdata/config.yaml
(commit 01e977cf) and the README.md example (commit 05df7eb5); what each does follows that version's
processor.go (commit 8dfdf20f): resource, span, span event, data point and log attributes and log bodies.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent import attributes
from agent.signals import Batch, Signal
from tests.processors.collector_docs import load, make, problems, run, set_attributes
from tests.sink import InMemorySink

TESTDATA = """
redaction:
  # Flag to allow all span attribute keys. Setting this to true disables the
  # allowed_keys list. The list of blocked_values is applied regardless. If
  # you just want to block values, set this to true.
  allow_all_keys: false
  # Allowlist for span attribute keys. The list is designed to fail closed.
  # If allowed_keys is empty, no span attributes are allowed and all span
  # attributes are removed. To allow all keys, set allow_all_keys to true.
  # To allow the span attributes you know are good, add them to the list.
  allowed_keys:
    - description
    - group
    - id
    - name
  # BlockedValues is a list of regular expressions for blocking values of
  # allowed span attributes. Values that match are masked
  blocked_values:
    - "4[0-9]{12}(?:[0-9]{3})?" ## Visa credit card number
    - "(5[1-5][0-9]{14})"       ## MasterCard number
  # Summary controls the verbosity level of the diagnostic attributes that
  # the processor adds to the spans when it redacts or masks other
  # attributes. In some contexts a list of redacted attributes leaks
  # information, while it is valuable when integrating and testing a new
  # configuration. Possible values are `debug`, `info`, and `silent`.
  summary: debug

redaction/empty:
"""

README_EXAMPLE = """
processors:
  redaction:
    allow_all_keys: false
    allowed_keys:
      - description
      - group
      - id
      - name
    ignored_keys:
      - safe_attribute
    redact_all_types: true
    blocked_key_patterns:
      - ".*token.*"
      - ".*api_key.*"
    blocked_values:
      - "4[0-9]{12}(?:[0-9]{3})?" ## Visa credit card number
      - "(5[1-5][0-9]{14})"       ## MasterCard number
    allowed_values:
      - ".+@mycompany.com"
    hash_function: md5
    summary: debug
    url_sanitizer:
      enabled: true
      attributes: ["http.url", "url"]
"""


def one_span(values: dict, resource: dict | None = None) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    set_attributes(resource_spans.resource.attributes, resource or {})
    set_attributes(resource_spans.scope_spans.add().spans.add(name="op").attributes, values)
    return request


def span_of(message):
    return message.resource_spans[0].scope_spans[0].spans[0]


async def test_the_testdata_config_removes_what_is_not_allowed_and_masks_card_numbers():
    config = load(TESTDATA)
    out = await run(config, "redaction", Signal.TRACES, one_span(
        {"id": 5, "name": "checkout", "description": "paid with 4111111111111111 and 5500000000000004",
         "group": "g", "birth_date": "1970-01-01", "mothers_maiden_name": "x"},
        resource={"service.name": "shop"}))
    assert attributes.as_dict(span_of(out).attributes) == {
        "id": 5, "name": "checkout", "description": "paid with **** and ****", "group": "g",
        "redaction.redacted.keys": "birth_date,mothers_maiden_name", "redaction.redacted.count": 2,
        "redaction.masked.keys": "description", "redaction.masked.count": 1}
    # Resource attributes go through the same rules (service.name is not on the list).
    assert attributes.as_dict(out.resource_spans[0].resource.attributes) == {
        "redaction.redacted.keys": "service.name", "redaction.redacted.count": 1}


async def test_the_empty_config_fails_closed():
    out = await run(load(TESTDATA), "redaction/empty", Signal.TRACES, one_span({"a": 1, "b": "x"}))
    assert attributes.as_dict(span_of(out).attributes) == {}  # summary defaults to none at all


def test_the_readme_example_is_refused_for_its_url_sanitizer_only():
    assert problems(README_EXAMPLE) == [
        "processors.redaction: url_sanitizer: not supported by Vigil; with it on, what it would sanitize would "
        "pass as it is (switch it off, or mask with blocked_values)"]


async def test_the_readme_example_without_the_url_sanitizer():
    config = load(README_EXAMPLE.replace("enabled: true", "enabled: false"))
    card = "4111111111111111"
    out = await run(config, "redaction", Signal.TRACES, one_span({
        "name": f"card {card}", "id": int(card), "description": "ann@mycompany.com paid with " + card,
        "group": "ok", "safe_attribute": card, "api_key": "k", "other": "x"}))
    md5 = hashlib.md5(card.encode()).hexdigest()
    assert attributes.as_dict(span_of(out).attributes) == {
        "name": f"card {md5}",
        "id": md5,  # redact_all_types reads the int as its text; masked, it becomes a string
        "description": "ann@mycompany.com paid with " + card,  # allowed_values wins over blocked_values
        "group": "ok", "safe_attribute": card,
        "redaction.redacted.keys": "api_key,other", "redaction.redacted.count": 2,
        "redaction.masked.keys": "id,name", "redaction.masked.count": 2,
        "redaction.allowed.keys": "description", "redaction.allowed.count": 1,
        "redaction.ignored.count": 1}


@pytest.mark.parametrize("name,digest", [("md5", hashlib.md5), ("sha1", hashlib.sha1), ("sha3", hashlib.sha3_256),
                                         ("none", None)])
async def test_hash_functions_and_blocked_key_patterns(name, digest):
    config = load(f"""
  redaction:
    allow_all_keys: true
    blocked_key_patterns: [".*token.*"]
    hash_function: {name}
""")
    out = await run(config, "redaction", Signal.TRACES, one_span({"auth_token": "abc", "count": 3, "plain": "abc"}))
    expected = digest(b"abc").hexdigest() if digest else "****"
    assert attributes.as_dict(span_of(out).attributes) == {"auth_token": expected, "count": 3, "plain": "abc"}


@pytest.mark.parametrize("summary,expected", [
    ("debug", {"redaction.masked.keys": "note", "redaction.masked.count": 1}),
    ("info", {"redaction.masked.count": 1}),
    ("silent", {}),
])
async def test_summary_levels(summary, expected):
    config = load(f"""
  redaction:
    allow_all_keys: true
    blocked_values: ["secret"]
    summary: {summary}
""")
    out = await run(config, "redaction", Signal.TRACES, one_span({"note": "a secret here"}))
    assert attributes.as_dict(span_of(out).attributes) == {"note": "a **** here", **expected}


GENAI = """
  redaction/genai:
    allow_all_keys: true
    blocked_values:
      - '[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}'
      - '\\b(?:\\d[ -]?){13,16}\\b'
      - 'sk-[A-Za-z0-9_-]{20,}'
    summary: info
"""


async def test_masks_inside_the_json_of_gen_ai_messages_and_span_events():
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content":
                           "I am bob@example.com, card 4111 1111 1111 1111, key sk-abcdefghijklmnopqrstuvwx"}]}])
    request = one_span({"gen_ai.input.messages": messages, "gen_ai.request.model": "gpt-4o"})
    event = request.resource_spans[0].scope_spans[0].spans[0].events.add(name="gen_ai.user.message")
    set_attributes(event.attributes, {"content": "mail me at bob@example.com"})
    out = await run(load(GENAI), "redaction/genai", Signal.TRACES, request)
    span = span_of(out)
    values = attributes.as_dict(span.attributes)
    assert json.loads(values["gen_ai.input.messages"]) == [{"role": "user", "parts": [
        {"type": "text", "content": "I am ****, card ****, key ****"}]}]
    assert values["gen_ai.request.model"] == "gpt-4o" and values["redaction.masked.count"] == 1
    assert attributes.as_dict(span.events[0].attributes) == {"content": "mail me at ****",
                                                            "redaction.masked.count": 1}


async def test_log_bodies_string_and_structured():
    config = load(GENAI.replace("summary: info", "summary: debug"))
    request = ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    records.add().body.string_value = "contact bob@example.com"
    structured = records.add()
    attributes.set_any_value(structured.body, {"gen_ai.output.messages": [{"content": "call sk-" + "x" * 24}],
                                               "user": {"email": "ann@example.com", "id": 7}})
    out = await run(config, "redaction/genai", Signal.LOGS, request)
    first, second = out.resource_logs[0].scope_logs[0].log_records
    assert first.body.string_value == "contact ****"
    assert attributes.as_dict(first.attributes) == {"redaction.body.masked.keys": "body",
                                                    "redaction.body.masked.count": 1}
    assert attributes.any_value(second.body) == {"gen_ai.output.messages": [{"content": "call ****"}],
                                                 "user": {"email": "****", "id": 7}}
    assert attributes.as_dict(second.attributes) == {
        "redaction.body.masked.keys": "gen_ai.output.messages.[0].content,user.email",
        "redaction.body.masked.count": 2}


async def test_a_second_redaction_processor_keeps_the_first_ones_summary():
    config = load("""
  redaction/first:
    allowed_keys: [name, email, card, note, mail]
    blocked_values: ["4[0-9]{12}(?:[0-9]{3})?"]
    allowed_values: [".+@mycompany.com"]
    summary: debug
  redaction/second:
    allowed_keys: [name, card, note, mail]
    blocked_values: ["secret|mycompany"]
    summary: debug
""", (Signal.LOGS,))
    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    set_attributes(record.attributes, {"name": "x", "email": "ann@mycompany.com", "secret": "s"})
    attributes.set_any_value(record.body, {"card": "4111111111111111", "note": "hi", "mail": "bob@mycompany.com"})
    once = await run(config, "redaction/first", Signal.LOGS, request)
    twice = await run(config, "redaction/second", Signal.LOGS, once)
    allowed = {"redaction.allowed.keys": "email", "redaction.allowed.count": 1,
               "redaction.body.allowed.keys": "mail", "redaction.body.allowed.count": 1}
    (record,) = once.resource_logs[0].scope_logs[0].log_records
    assert attributes.as_dict(record.attributes) == {
        "name": "x", "email": "ann@mycompany.com", "redaction.redacted.keys": "secret",
        "redaction.redacted.count": 1, "redaction.body.masked.keys": "card", "redaction.body.masked.count": 1,
        **allowed}
    # The second adds what it removed and masked to the first's summary, which its own rules leave alone
    # (not removed though not allowed, "secret" in redacted.keys not masked).
    (record,) = twice.resource_logs[0].scope_logs[0].log_records
    assert attributes.any_value(record.body) == {"card": "****", "note": "hi", "mail": "bob@****.com"}
    assert attributes.as_dict(record.attributes) == {
        "name": "x", "redaction.redacted.keys": "email,secret", "redaction.redacted.count": 2,
        "redaction.body.masked.keys": "card,mail", "redaction.body.masked.count": 2, **allowed}


async def test_a_log_body_follows_contribs_body_rules_not_its_attribute_rules():
    # processor.go (commit 8dfdf20f, and still at 051a8b70): in a body, a blocked key is masked before
    # allowed_values is read, and every scalar is read as its AsString text without redact_all_types.
    config = load("""
  redaction:
    allow_all_keys: true
    blocked_key_patterns: ["token"]
    allowed_values: ['@mycompany\\.com$']
    blocked_values: ["4[0-9]{15}"]
    summary: debug
""", (Signal.LOGS,))
    values = {"api_token": "ops@mycompany.com", "card": 4111111111111111, "ok": True}
    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    set_attributes(record.attributes, values)
    attributes.set_any_value(record.body, values)
    out = await run(config, "redaction", Signal.LOGS, request)
    (record,) = out.resource_logs[0].scope_logs[0].log_records
    assert attributes.any_value(record.body) == {"api_token": "****", "card": "****", "ok": True}
    assert attributes.as_dict(record.attributes) == {
        **values, "redaction.allowed.keys": "api_token", "redaction.allowed.count": 1,
        "redaction.body.masked.keys": "api_token,card", "redaction.body.masked.count": 2}


async def test_data_point_attributes_and_ml_feature_strings():
    config = load("""
  redaction:
    allow_all_keys: true
    blocked_values: ['[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}']
""")
    request = ExportMetricsServiceRequest()
    point = request.resource_metrics.add().scope_metrics.add().metrics.add(name="m").sum.data_points.add(as_int=1)
    set_attributes(point.attributes, {"ml.feature.email": "ann@example.com", "ml.feature.age": 40})
    out = await run(config, "redaction", Signal.METRICS, request)
    (point,) = out.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points
    assert attributes.as_dict(point.attributes) == {"ml.feature.email": "****", "ml.feature.age": 40}


def test_bad_settings_are_refused_by_field():
    assert problems("""
  redaction:
    blocked_values: ["ok", "(unclosed"]
    allowed_values: ["[z-a]"]
    hash_function: sha256
    summary: loud
""") == [
        "processors.redaction.blocked_values[1]: invalid regex '(unclosed': missing ): (unclosed",
        "processors.redaction.allowed_values[0]: invalid regex '[z-a]': invalid character class range: z-a",
        "processors.redaction.hash_function: Input should be 'md5', 'sha1', 'sha3', 'none' or '' (got 'sha256')",
        "processors.redaction.summary: Input should be 'debug', 'info', 'silent' or '' (got 'loud')",
    ]


def test_patterns_that_need_backtracking_are_refused_as_the_collector_refuses_them():
    # RE2's syntax, as Go's regexp: no lookaround, no backreferences.
    assert problems("""
  redaction:
    allow_all_keys: true
    blocked_values: ["(?=4[0-9]{15})"]
    blocked_key_patterns: ["(a)\\\\1"]
""") == [
        "processors.redaction.blocked_key_patterns[0]: invalid regex '(a)\\\\1': invalid escape sequence: \\1 (RE2 "
        "syntax, as in the Collector: no lookaround, backreferences or possessive repeats)",
        "processors.redaction.blocked_values[0]: invalid regex '(?=4[0-9]{15})': invalid perl operator: (?= (RE2 "
        "syntax, as in the Collector: no lookaround, backreferences or possessive repeats)",
    ]


async def test_a_pattern_that_backtracks_in_pythons_re_runs_in_linear_time():
    # With backtracking, `(a+)+$` on a long run of `a`s that fails at the end would never finish.
    config = load("""
  redaction:
    allow_all_keys: true
    blocked_values: ["^(a+)+$"]
    blocked_key_patterns: ["^(a+)+$"]
""")
    long = "a" * 10_000 + "!"
    out = await run(config, "redaction", Signal.TRACES, one_span({long: long, "k": "a" * 50}))
    assert attributes.as_dict(span_of(out).attributes) == {long: long, "k": "****"}


async def test_a_batch_with_nothing_to_redact_goes_on_as_the_bytes_it_came_with():
    config = load(GENAI)
    wire = one_span({"gen_ai.request.model": "gpt-4o", "ml.feature.country": "NZ"}).SerializeToString()
    down = InMemorySink()
    await make(config, "redaction/genai", Signal.TRACES, down).consume(Batch(Signal.TRACES, wire=wire))
    assert down.batches[0].wire() is wire
