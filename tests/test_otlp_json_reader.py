"""The OTLP/JSON reader against protobuf's own JSON parser, and what it refuses that the parser could not.

Generated documents follow the OTLP schema (each field present or not, under its
JSON or its proto name, with a value of its type or of some other), and unknown
fields; the reader must accept exactly what `json_format` accepts (by way of
`otlp_json.decode_with_json_format`) and give the same message. Then the cases
the parser got wrong: nesting it recursed into, error messages as long as the
document.
"""

from __future__ import annotations

import base64
import json
import time

import pytest
from google.protobuf.descriptor import FieldDescriptor as F
from hypothesis import given, strategies as st

from agent import otlp_json, otlp_json_reader
from agent.otlp_json_reader import JsonDecodeError
from agent.signals import Signal
from tests.fuzz.conftest import cases, count
from tests.otlp_data import logs, metrics, traces

_INTEGERS = {F.TYPE_INT32: (-(2 ** 31), 2 ** 31 - 1), F.TYPE_SINT32: (-(2 ** 31), 2 ** 31 - 1),
             F.TYPE_INT64: (-(2 ** 63), 2 ** 63 - 1), F.TYPE_SFIXED64: (-(2 ** 63), 2 ** 63 - 1),
             F.TYPE_UINT32: (0, 2 ** 32 - 1), F.TYPE_FIXED32: (0, 2 ** 32 - 1),
             F.TYPE_UINT64: (0, 2 ** 64 - 1), F.TYPE_FIXED64: (0, 2 ** 64 - 1)}
_ODD_NUMBERS = st.sampled_from(["1e3", "12.5", " 1", "\t7", "x", "-0", "1_0", "0x10", "", "NaN", "Infinity",
                                "-Infinity", "nan", "inf", 1.0, 2.5, -0.0, 1e300, True, 10 ** 30])
_WRONG = st.integers(-3, 3) | st.booleans() | st.lists(st.integers(0, 3), min_size=1, max_size=2)
_IDS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}


def mostly(usual: st.SearchStrategy, odd: st.SearchStrategy) -> st.SearchStrategy:
    """`usual` nine times in ten, else `odd`: one odd value anywhere refuses the whole document."""
    return st.integers(0, 9).flatmap(lambda k: usual if k else odd)


def _scalar(field) -> st.SearchStrategy:
    if field.type in _INTEGERS:
        low, high = _INTEGERS[field.type]
        return mostly(st.integers(low, high) | st.integers(low, high).map(str),
                      st.integers(high, high + 5) | _ODD_NUMBERS)
    if field.type == F.TYPE_DOUBLE:
        return mostly(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10, 10), _ODD_NUMBERS)
    if field.type == F.TYPE_BOOL:
        return mostly(st.booleans(), st.sampled_from(["true", 0, 1]))
    if field.type == F.TYPE_STRING:
        return mostly(st.text(max_size=12), st.sampled_from(["\ud800", "a\udfffb", "é✓", 3]))
    if field.type == F.TYPE_ENUM:
        return mostly(st.sampled_from([v.name for v in field.enum_type.values]) | st.integers(-3, 30),
                      st.sampled_from(["NO_SUCH_NAME", "3", 2.0, 2.5, 2 ** 40, True]))
    if field.json_name in _IDS:
        length = _IDS[field.json_name]
        return mostly(st.binary(min_size=length, max_size=length).map(bytes.hex)
                      | st.binary(min_size=length, max_size=length).map(lambda b: b.hex().upper()),
                      st.sampled_from(["", "zz" * length, "abcd", "0" * (2 * length + 2), 7]))
    assert field.type == F.TYPE_BYTES, field.full_name
    return mostly(st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode())
                  | st.binary(max_size=12).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")),
                  st.sampled_from(["!!!!", "abc", "a", "====", 3]))


def _value(field, depth: int) -> st.SearchStrategy:
    if field.type == F.TYPE_MESSAGE:
        if depth > 6:
            one = st.just({})
        else:
            one = st.deferred(lambda: document(field.message_type, depth + 1))
        if field.is_repeated:
            return mostly(st.lists(one, max_size=3),
                          st.none() | st.integers(-3, 3) | st.booleans() | st.just([None]) | st.just([1]))
        return mostly(one, st.none() | st.integers(-3, 3) | st.booleans())
    if field.is_repeated:
        return mostly(st.lists(_scalar(field), max_size=4), st.none() | st.just("x") | st.just([None]))
    return mostly(_scalar(field), st.none())


@st.composite
def document(draw, descriptor, depth: int = 1) -> dict:
    """A JSON object for a message of `descriptor`: some of its fields, each under one of its names."""
    out = {}
    for field in descriptor.fields:
        if depth == 1 or draw(st.integers(0, 2)) == 0:
            key = draw(st.sampled_from([field.json_name, field.name]))
            out[key] = draw(_value(field, depth))
    names = {f.json_name for f in descriptor.fields} | {f.name for f in descriptor.fields}
    unknown = st.text("abcxyz", min_size=1, max_size=4).filter(lambda key: key not in names)
    out.update(draw(st.dictionaries(unknown, st.none() | st.integers() | st.text(max_size=5)
                                    | st.lists(st.integers(), max_size=3), max_size=2)))
    return dict(draw(st.permutations(list(out.items()))))


def outcome(decode, signal: Signal, text: str):
    try:
        return decode(signal, text.encode()).SerializeToString(deterministic=True)
    except Exception:  # json_format also raises OverflowError and RecursionError; the reader never does
        return None


@cases(1500)
@given(st.data())
def test_reader_accepts_what_protobufs_json_parser_accepts_and_reads_it_the_same(data):
    count("OTLP/JSON reader vs json_format: schema-shaped documents")
    signal = data.draw(st.sampled_from(list(Signal)))
    text = json.dumps(data.draw(document(signal.request_type.DESCRIPTOR)))
    try:
        ours = otlp_json.decode(signal, text.encode()).SerializeToString(deterministic=True)
    except JsonDecodeError as exc:
        assert len(str(exc)) < 400
        ours = None
    assert ours == outcome(otlp_json.decode_with_json_format, signal, text), text


@pytest.mark.parametrize("request_", [traces(3, resources=2, scopes=2, payload="é✓"), metrics(3, points=2),
                                      logs(3, resources=2)], ids=["traces", "metrics", "logs"])
def test_what_the_agent_writes_reads_back_as_the_same_bytes(request_):
    signal = {"ExportTraceServiceRequest": Signal.TRACES, "ExportMetricsServiceRequest": Signal.METRICS,
              "ExportLogsServiceRequest": Signal.LOGS}[type(request_).__name__]
    text = otlp_json.encode(request_)
    assert otlp_json_reader.read(signal, text.encode()) == request_.SerializeToString()
    # Spaces anywhere JSON allows them change nothing.
    spaced = json.dumps(json.loads(text), indent=2)
    assert otlp_json_reader.read(signal, spaced) == request_.SerializeToString()


def nested_any_value(levels: int) -> str:
    value = '{"arrayValue":{"values":[' * levels + '{"stringValue":"x"}' + "]}}" * levels
    return ('{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"deep","attributes":[{"key":"k","value":'
            + value + "}]}]}]}]}")


def test_nesting_up_to_protobufs_limit_is_read_and_deeper_is_refused_shortly():
    # The request is message 1 and the innermost AnyValue of 47 nested arrays is message 100.
    message = otlp_json.decode(Signal.TRACES, nested_any_value(47))
    assert message.resource_spans[0].scope_spans[0].spans[0].name == "deep"
    for levels in (48, 500, 100_000):
        with pytest.raises(JsonDecodeError) as info:
            otlp_json.decode(Signal.TRACES, nested_any_value(levels))
        message = str(info.value)
        assert "nested deeper than 100 messages" in message
        assert message.startswith("invalid OTLP/JSON: resourceSpans[0].scopeSpans[0].spans[0].attributes[0]")
        assert len(message) < 250 and message.count("arrayValue") <= 3


@pytest.mark.parametrize("deep", ['[' * 100_000, '{"a":' * 100_000, '{"resourceSpans":' + '[' * 100_000])
def test_deep_nesting_in_unknown_fields_or_the_wrong_place_is_refused_without_recursing(deep):
    with pytest.raises(JsonDecodeError) as info:
        otlp_json.decode(Signal.TRACES, '{"unknown":' + deep)
    assert len(str(info.value)) < 250


def test_errors_name_the_field_and_stay_short():
    body = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{}, {"traceId": "ab" * 15, "body": {}}]}]}]}
    with pytest.raises(JsonDecodeError) as info:
        otlp_json.decode(Signal.LOGS, json.dumps(body))
    assert str(info.value) == ("invalid OTLP/JSON: resourceLogs[0].scopeLogs[0].logRecords[1].traceId: "
                               "expected 32 hex digits, got 30")
    long_name = {"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "n" * 100_000, "kind": "x" * 10_000}]}]}]}
    otlp_json.decode(Signal.TRACES, json.dumps(long_name))  # an unknown enum name is ignored, as json_format does
    long_name["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["kind"] = ["x" * 10_000]
    with pytest.raises(JsonDecodeError) as info:
        otlp_json.decode(Signal.TRACES, json.dumps(long_name))
    assert str(info.value).endswith("spans[0].kind: expected an enum name or number, got an array")
    for bad, words in [('{"resourceSpans":[{"resource":{}, "resource":{}}]}', "resource: given more than once"),
                       ('{"resourceSpans":[{"scopeSpans":[],"scope_spans":[]}]}', "given more than once"),
                       ('{"resourceSpans":[{"resource":{"attributes":[{"value":{"intValue":"1","stringValue":'
                        '"a"}}]}}]}', "more than one field of the oneof 'value'"),
                       ('{"resourceSpans":[{"resource":"abc"}]}', "resource: expected an object, got 'abc'"),
                       ('{"resourceSpans":[null]}', "resourceSpans[0]: null is not allowed in an array"),
                       ('{"resourceSpans":[{}] ', "invalid JSON: the body ends too soon"),
                       ('{"resourceSpans":[{}]} x', "invalid JSON: extra data after the object"),
                       ('{"resourceSpans":[{}}', "invalid JSON: expected ',' or ']' at line 1 column 21"),
                       ("[1, 2]", "invalid OTLP/JSON: the body must be a JSON object"),
                       (b'{"a": "\xff"}', "invalid JSON: not utf-8 at byte 7")]:
        with pytest.raises(JsonDecodeError) as info:
            otlp_json.decode(Signal.TRACES, bad)
        assert words in str(info.value)


def test_millions_of_empty_messages_cost_their_wire_size_and_little_time():
    for separator in (",", " ,\n "):
        body = '{"resourceSpans":[' + separator.join(["{}"] * 2_000_000) + "]}"
        started = time.process_time()
        wire = otlp_json_reader.read(Signal.TRACES, body)
        took = time.process_time() - started
        assert wire == b"\n\0" * 2_000_000
        assert took < 2.0  # about 0.1 s here: no Python object per element
