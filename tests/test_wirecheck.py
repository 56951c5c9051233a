"""The compiled request check (agent/wirecheck.py) never vouches for bytes protobuf would refuse, and counts
items as the parsed message does: on generated requests of every signal, on damaged copies of them, and on
hand-made bytes at each rule protobuf's parser applies."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.signals import Batch, Signal, _WIRE_CHECKS, _checked_items
from tests.otlp_data import request
from tests.wire import field, varint

signals = st.sampled_from(list(Signal))


def parsed_items(signal: Signal, wire: bytes) -> int | None:
    """What protobuf makes of `wire`: its item count, or None when it refuses it."""
    try:
        message = signal.request_type()
        message.ParseFromString(wire)
    except DecodeError:
        return None
    return Batch(signal, message).items


def test_the_check_is_built():
    # `make test` builds agent/_otlpscan.c; without a compiler every request is parsed instead.
    assert all(check._schema is not None for check in _WIRE_CHECKS.values())


@settings(max_examples=300, deadline=None)
@given(signal=signals, items=st.integers(0, 40))
def test_valid_requests_are_vouched_for_with_their_item_count(signal, items):
    wire = request(signal, items).SerializeToString()
    assert _checked_items(signal, wire) == parsed_items(signal, wire)
    assert Batch.from_wire(signal, wire).items == parsed_items(signal, wire)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signal=signals, items=st.integers(1, 6), edits=st.lists(
    st.tuples(st.sampled_from(["set", "insert", "delete", "truncate"]), st.integers(0, 1 << 16),
              st.integers(0, 255)), min_size=1, max_size=4))
def test_damaged_requests_are_never_vouched_for_unless_protobuf_takes_them(signal, items, edits):
    wire = bytearray(request(signal, items).SerializeToString())
    for action, at, byte in edits:
        at %= max(len(wire), 1)
        if action == "set" and wire:
            wire[at] = byte
        elif action == "insert":
            wire[at:at] = bytes([byte])
        elif action == "delete" and wire:
            del wire[at]
        elif action == "truncate":
            del wire[at:]
    wire = bytes(wire)
    vouched = _checked_items(signal, wire)
    if vouched is not None:
        assert parsed_items(signal, wire) == vouched
    # Whatever the check says, the batch is what protobuf says.
    expected = parsed_items(signal, wire)
    if expected is None:
        with pytest.raises(DecodeError):
            Batch.from_wire(signal, wire)
    else:
        assert Batch.from_wire(signal, wire).items == expected


def span(*fields: bytes) -> bytes:
    """A traces request holding one span made of `fields`."""
    return field(1, field(2, field(2, b"".join(fields))))


@pytest.mark.parametrize("wire, protobuf_takes_it", [
    (span(field(5, "prédiction".encode())), True),  # a name in UTF-8
    (span(field(5, b"\xff\xfe")), False),  # a name that is not UTF-8
    (span(field(5, b"\xed\xa0\x80")), False),  # a surrogate
    (span(field(5, b"\xc0\xaf")), False),  # an overlong '/'
    (span(field(5, b"\xf4\x90\x80\x80")), False),  # beyond U+10FFFF
    (span(field(1, b"\xff\xfe")), True),  # trace_id: bytes, anything goes
    (span(field(5, b"\x07", wire_type=0)), True),  # the name as a varint: protobuf keeps it as an unknown field
    (span(field(99, b"\xff")), True),  # an unknown field's bytes are not text
    (span(field(6, b"\xff" * 9 + b"\x01", wire_type=0)), True),  # a ten-byte varint
    (span(field(6, b"\x80" * 10 + b"\x00", wire_type=0)), False),  # eleven bytes
    (span(b"\x00\x01"), False),  # field number 0
    (span(b"\xa8\x80\x80\x80\x00\x01"), True),  # a tag padded to 5 bytes
    (span(b"\xb0\x80\x80\x80\x80\x00\x01"), False),  # a tag padded to 6: refused, though small
    (span(b"\x2a\x82\x80\x80\x80\x00ab"), True),  # a name's length padded to 5 bytes
    (span(b"\x2a\x82\x80\x80\x80\x80\x00ab"), False),  # to 6
    (span(field(6, b"\x81" + b"\x80" * 8 + b"\x00", wire_type=0)), True),  # a value padded to 10 bytes
    (span(field(7, b"\x00" * 4, wire_type=1)), False),  # a fixed64 cut short
    (field(1, field(2, b"\x2a\x05ab")), False),  # a length beyond its message
])
def test_each_rule_is_protobufs(wire, protobuf_takes_it):
    assert (parsed_items(Signal.TRACES, wire) is not None) is protobuf_takes_it
    vouched = _WIRE_CHECKS[Signal.TRACES].items(wire)
    assert vouched is None if not protobuf_takes_it else vouched == 1


def test_packed_numbers_are_checked_like_protobuf():
    def histogram_point(*fields: bytes) -> bytes:  # a metrics request with one histogram data point
        return field(1, field(2, field(2, field(9, field(1, b"".join(fields))))))

    good = histogram_point(field(6, b"\x01" + b"\x00" * 7), field(7, b"\x00" * 16))
    bad = histogram_point(field(6, b"\x01\x02\x03"))  # bucket_counts: not whole fixed64s
    assert parsed_items(Signal.METRICS, good) == _WIRE_CHECKS[Signal.METRICS].items(good) is not None
    assert parsed_items(Signal.METRICS, bad) is None and _WIRE_CHECKS[Signal.METRICS].items(bad) is None


def test_deep_nesting_and_groups_are_left_to_protobuf():
    value = b""
    for _ in range(80):  # an attribute value of arrays in arrays, deeper than the check follows
        value = field(5, field(1, value))
    deep = span(field(9, field(1, b"k") + field(2, value)))
    group = span(field(99, b"", wire_type=3) + field(99, b"", wire_type=4))
    for wire in (deep, group):
        assert _WIRE_CHECKS[Signal.TRACES].items(wire) is None
        expected = parsed_items(Signal.TRACES, wire)
        if expected is None:
            with pytest.raises(DecodeError):
                Batch.from_wire(Signal.TRACES, wire)
        else:
            assert Batch.from_wire(Signal.TRACES, wire).items == expected


def padded(value: int, extra: int) -> bytes:
    """`value` as a varint written `extra` bytes longer than it needs (protobuf's parser has limits there)."""
    out = bytearray(varint(value))
    if extra:
        out[-1] |= 0x80
        out += b"\x80" * (extra - 1) + b"\x00"
    return bytes(out)


raw_fields = st.lists(st.tuples(
    st.sampled_from([1, 2, 5, 6, 7, 9, 11, 15, 99]), st.sampled_from([0, 1, 2, 5]),
    st.binary(max_size=12), st.integers(0, 6), st.integers(0, 6)), max_size=6)


@settings(max_examples=1500, deadline=None)
@given(fields=raw_fields)
def test_spans_of_any_fields_and_padding_are_vouched_for_only_as_protobuf_takes_them(fields):
    body = bytearray()
    for number, wire_type, payload, tag_pad, length_pad in fields:
        body += padded(number << 3 | wire_type, tag_pad)
        if wire_type == 0:
            body += padded(int.from_bytes(payload[:7] or b"\x00", "little"), length_pad)
        elif wire_type == 2:
            body += padded(len(payload), length_pad) + payload
        else:
            body += (payload + bytes(8))[:8 if wire_type == 1 else 4]
    wire = span(bytes(body))
    vouched = _checked_items(Signal.TRACES, wire)
    assert vouched is None or vouched == parsed_items(Signal.TRACES, wire)
