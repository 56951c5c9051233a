"""The file exporter's piecewise OTLP/JSON: the same text as `otlp_json.encode`, off the wire bytes."""

from __future__ import annotations

import pytest

from agent import otlp_json
from agent.exporters import json_stream
from agent.signals import Signal
from tests.otlp_data import logs, metrics, traces


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (numbers and lengths below 128 here, so one byte each)."""
    assert number < 16 and len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def _expected(signal: Signal, wire: bytes) -> str:
    return otlp_json.encode(signal.request_type.FromString(wire))


MESSAGES = [
    (Signal.TRACES, traces(4, resources=3, scopes=2)),
    (Signal.TRACES, traces(0)),
    (Signal.TRACES, traces(2, payload="é\"\\\n" * 50)),
    (Signal.METRICS, metrics(3, points=2)),
    (Signal.LOGS, logs(3)),
]


@pytest.mark.parametrize("group_bytes", [256 * 1024, 64, 1])
@pytest.mark.parametrize("signal,message", MESSAGES, ids=lambda v: getattr(v, "value", None) or "")
def test_pieces_are_what_the_whole_message_encodes_to(monkeypatch, signal, message, group_bytes):
    # Small groups open every resource and scope: the walker's own layout is exercised, not protobuf's.
    monkeypatch.setattr(json_stream, "_GROUP_BYTES", group_bytes)
    wire = message.SerializeToString()
    assert "".join(json_stream.pieces(signal, wire)) == otlp_json.encode(message)


@pytest.mark.parametrize("group_bytes", [256 * 1024, 1])
def test_wire_layouts_protobuf_accepts_come_out_the_same(monkeypatch, group_bytes):
    monkeypatch.setattr(json_stream, "_GROUP_BYTES", group_bytes)
    span = _field(5, b"span-0")  # Span.name
    scope = _field(1, _field(1, b"lib"))  # ScopeSpans.scope.name
    resource_a = _field(1, _field(1, _field(1, b"service.name")))  # Resource.attributes[0].key
    resource_b = _field(1, _field(1, _field(1, b"host.name")))
    layouts = {
        # schema_url before the scopes, and the resource field twice (protobuf merges the two).
        "out of order, merged": _field(1, _field(3, b"https://s") + resource_a + _field(2, scope + _field(2, span))
                                       + resource_b),
        "an empty resource, an empty scope": _field(1, b"") + _field(1, _field(2, b"")),
        "unknown fields at every level": b"\x10\x07" + _field(1, b"\x78\x01" + _field(2, _field(9, b"?") + span)),
        "the child number with another wire type": _field(1, b"\x10\x05" + _field(2, _field(2, span))),
        "no resources at all": b"",
        "only unknown fields": b"\x10\x07" + _field(9, b"x"),
    }
    for name, wire in layouts.items():
        assert "".join(json_stream.pieces(Signal.TRACES, wire)) == _expected(Signal.TRACES, wire), name


@pytest.mark.parametrize("wire", [b"\x0a\x05ab", b"\x0a", b"\x0b\x0c", b"\x00\x01", b"\x0a\xff\xff\xff\xff\xff"
                                  b"\xff\xff\xff\xff\xff\x01"])
def test_bytes_that_are_not_a_message_raise_value_error(wire):
    with pytest.raises(ValueError):
        "".join(json_stream.pieces(Signal.TRACES, wire))


def test_millions_of_empty_resources_stay_small():
    """The issue's request: 20 MiB of empty ResourceSpans. No piece covers more than a group."""
    wire = b"\n\0" * (1 << 20)  # 2 MiB here, the same shape
    longest = 0
    total = 0
    for piece in json_stream.pieces(Signal.TRACES, wire):
        longest = max(longest, len(piece))
        total += len(piece)
    assert total == len('{"resourceSpans":[]}') + 3 * (1 << 20) - 1
    assert longest <= 3 * json_stream._GROUP_CHILDREN
