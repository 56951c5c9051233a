"""OTLP/JSON of a request written a piece at a time, read straight off its wire bytes.

`agent.otlp_json.encode` builds the whole request as Python objects first: for
a request of millions of tiny resources that is gigabytes. `pieces` yields the
same text (character for character) in pieces that each cover a bounded slice
of the wire, so memory stays a small multiple of that slice:

    request ─ resources ─ scopes ─ items (spans, metrics, log records)

At each level, children are walked on the wire; small ones are encoded a group
at a time (up to `_GROUP_BYTES`), and a large one is opened and walked in turn.
Items are the leaves: a single item is never split. A group's children are
written straight from their bytes (`json_wire`); a group in a layout
`json_wire` leaves to protobuf is parsed and encoded by `otlp_json.encode`.
"""

from __future__ import annotations

import json
from typing import Iterator

from google.protobuf import message_factory
from google.protobuf.message import Message

from agent import otlp_json
from agent.exporters import json_wire
from agent.signals import Signal

# Up to this much wire is parsed and encoded at once; a child larger than this is opened instead.
_GROUP_BYTES = 256 * 1024
_GROUP_CHILDREN = 4096
_LENGTH_DELIMITED = 2


class _Level:
    """One level of the tree: the message type, and its repeated field holding the next level."""

    def __init__(self, message_type: type[Message], child_field: str) -> None:
        field = message_type.DESCRIPTOR.fields_by_name[child_field]
        self.message_type = message_type
        self.child_number = field.number
        self.child_key = json.dumps(field.json_name)
        self.prefix = "{" + self.child_key + ":["  # what encode() writes before the children
        self.numbers = {f.json_name: f.number for f in message_type.DESCRIPTOR.fields}
        self.child_type = (message_factory.GetMessageClass(field.message_type) if field.message_type
                           else None)
        self.child_plan = json_wire.plan_of(self.child_type) if self.child_type else None


def _levels(signal: Signal) -> list[_Level]:
    names = {Signal.TRACES: ("resource_spans", "scope_spans", "spans"),
             Signal.METRICS: ("resource_metrics", "scope_metrics", "metrics"),
             Signal.LOGS: ("resource_logs", "scope_logs", "log_records")}[signal]
    levels, message_type = [], signal.request_type
    for name in names:
        level = _Level(message_type, name)
        levels.append(level)
        message_type = level.child_type
    return levels


_LEVELS = {signal: _levels(signal) for signal in Signal}


def pieces(signal: Signal, wire: bytes) -> Iterator[str]:
    """The OTLP/JSON of the request `wire` (what `otlp_json.encode` gives), in pieces.

    Raises ValueError where the bytes are not well formed (the caller parses them instead).
    """
    levels = _LEVELS[signal]
    # The request's only field is its resources: any other field is unknown, and JSON leaves it out.
    children = _children(levels, 0, wire, 0, len(wire))
    first = next(children, None)
    if first is None:
        yield "{}"
        return
    yield levels[0].prefix
    yield first
    yield from children
    yield "]}"


def _children(levels: list[_Level], depth: int, wire: bytes, start: int, end: int) -> Iterator[str]:
    """The JSON of each child at `depth` in wire[start:end], comma-separated, without brackets."""
    level = levels[depth]
    leaf = depth == len(levels) - 1
    child_tag = level.child_number << 3 | _LENGTH_DELIMITED
    group_start = -1  # the run of small children not yet encoded: wire[group_start:pos]
    count = 0
    wrote = False
    pos = start
    while pos < end:
        field_start = pos
        if wire[pos] == child_tag and pos + 1 < end and wire[pos + 1] < 0x80:  # most children: short
            value_start = pos + 2
            pos = value_start + wire[pos + 1]
            if pos > end:
                raise ValueError(f"malformed field at byte {field_start}")
        else:
            number, wire_type, _, value_start, pos = _field(wire, pos, end)
            if number != level.child_number or wire_type != _LENGTH_DELIMITED:
                # Not a child: the caller encodes this level's other fields. It ends the run.
                if group_start >= 0:
                    yield ("," if wrote else "") + _group(level, wire, group_start, field_start)
                    wrote, group_start = True, -1
                continue
        if group_start >= 0:
            if count < _GROUP_CHILDREN and pos - group_start <= _GROUP_BYTES:
                count += 1
                continue
            yield ("," if wrote else "") + _group(level, wire, group_start, field_start)
            wrote, group_start = True, -1
        if leaf or pos - value_start <= _GROUP_BYTES:
            group_start, count = field_start, 1
            continue
        if wrote:
            yield ","
        yield from _opened(levels, depth + 1, wire, value_start, pos)  # too big for a group: opened
        wrote = True
    if group_start >= 0:
        yield ("," if wrote else "") + _group(level, wire, group_start, pos)


def _group(level: _Level, wire: bytes, start: int, end: int) -> str:
    """Consecutive child fields, encoded as one message of this level would be; without brackets."""
    if level.child_plan is not None:
        text = json_wire.messages(level.child_plan, wire, start, end)
        if text is not None:
            return text
        # A layout protobuf merges, drops or refuses: it parses the group.
    text = otlp_json.encode(level.message_type.FromString(wire[start:end]))
    assert text.startswith(level.prefix) and text.endswith("]}"), text[:80]
    return text[len(level.prefix):-2]


def _opened(levels: list[_Level], depth: int, wire: bytes, start: int, end: int) -> Iterator[str]:
    """The JSON object of the message at `depth` in wire[start:end], its children streamed."""
    level = levels[depth]
    others = bytearray()
    has_children = False
    for number, wire_type, field_start, _, field_end in _fields(wire, start, end):
        if number == level.child_number and wire_type == _LENGTH_DELIMITED:
            has_children = True
        else:
            others += wire[field_start:field_end]
    # Its other fields (resource, scope, schema URL) are small: encoded as a whole, then placed
    # around the children in field-number order, as encode() orders them.
    rest = json.loads(otlp_json.encode(level.message_type.FromString(bytes(others))))
    members = [(level.numbers[k], f"{json.dumps(k)}:{json.dumps(v, separators=(',', ':'))}")
               for k, v in rest.items()]
    head = ",".join(text for number, text in members if number < level.child_number)
    tail = ",".join(text for number, text in members if number > level.child_number)
    yield "{" + head
    if has_children:
        yield ("," if head else "") + level.child_key + ":["
        yield from _children(levels, depth, wire, start, end)
        yield "]"
    yield ("," if tail and (head or has_children) else "") + tail + "}"


def _fields(wire: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(number, wire type, field start, value start, field end) of each field in wire[start:end]."""
    pos = start
    while pos < end:
        field = _field(wire, pos, end)
        pos = field[4]
        yield field


def _field(wire: bytes, pos: int, end: int) -> tuple[int, int, int, int, int]:
    """(number, wire type, field start, value start, field end) of the field at `pos`."""
    field_start = pos
    tag = wire[pos]
    if tag < 0x80:
        pos += 1
    else:
        tag, pos = _varint(wire, pos, end)
        if pos - field_start > 5:  # protobuf refuses a tag padded beyond 5 bytes
            raise ValueError(f"malformed field at byte {field_start}")
    wire_type = tag & 7
    if wire_type == _LENGTH_DELIMITED:
        length_start = pos
        length, pos = _varint(wire, pos, end)
        if pos - length_start > 5:  # and a length
            raise ValueError(f"malformed field at byte {field_start}")
        value_start, pos = pos, pos + length
    elif wire_type == 0:
        value_start = pos
        _, pos = _varint(wire, pos, end)
    elif wire_type == 1:
        value_start, pos = pos, pos + 8
    elif wire_type == 5:
        value_start, pos = pos, pos + 4
    else:
        raise ValueError(f"wire type {wire_type} at byte {field_start}")  # groups: not in OTLP
    if pos > end or not 0 < tag >> 3 < 1 << 29:  # field numbers are 1 to 2^29 - 1
        raise ValueError(f"malformed field at byte {field_start}")
    return tag >> 3, wire_type, field_start, value_start, pos


def _varint(wire: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError(f"malformed varint at byte {pos}")
        byte = wire[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7
