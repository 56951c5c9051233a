"""OTLP/JSON of one message read straight off its wire bytes, without protobuf objects in between.

`agent.otlp_json.encode` parses a message, turns it into dicts and lists and dumps those; for a
span of 25 attributes that is about a hundred Python objects. Here each field is read from the
bytes and written as its JSON text at once, and an attribute's text (a `KeyValue`'s) is kept by
its bytes, since most attributes repeat from span to span (`service.name`, `http.route`, a
model's name). The text is `encode`'s, character for character.

Only the wire layout protobuf itself writes is taken: fields in number order, a singular field
once, one member per oneof, no unknown fields, valid UTF-8, tags and lengths of at most 5 bytes.
Anything else raises `Unusual`, and the caller parses the message instead (protobuf then merges,
drops or refuses what it must).

The plans are built here, from the descriptors; agent/_otlpjson.c, where it is built, walks the
bytes by them in C (`messages`, `message_text`) and writes the same text. Where it is not (no C
compiler), or `COMPILED` is set False, the Python writer below does.
"""

from __future__ import annotations

import base64
import math
import struct
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message

try:
    from agent import _otlpjson
except ImportError:  # built without a C compiler: the Python writer below
    _otlpjson = None

# Whether the compiled writer writes, where it is built (the tests run both writers).
COMPILED = _otlpjson is not None

# A KeyValue's text is kept by its bytes up to this size; the cache is emptied when this full.
_CACHE_KEY_BYTES = 160
_CACHE_ENTRIES = 4096
_MAX_DEPTH = 32  # messages within messages, from the one encoded
# The only bytes fields written as hex (OTLP's ids); every other bytes field is base64.
_ID_NAMES = frozenset({"traceId", "spanId", "parentSpanId"})

# How a field's value is read and written.
(_MESSAGE, _STRING, _BYTES, _ID, _DOUBLE, _FLOAT, _FIXED64, _SFIXED64, _FIXED32, _SFIXED32,
 _INT64, _UINT64, _INT32, _UINT32, _BOOL, _SINT64, _SINT32) = range(17)
_PACKED = 100  # + the element's kind: a packed run of a repeated number field

_UNPACK_DOUBLE = struct.Struct("<d").unpack_from
_UNPACK_FLOAT = struct.Struct("<f").unpack_from
_UNPACK_Q = struct.Struct("<Q").unpack_from
_UNPACK_q = struct.Struct("<q").unpack_from
_UNPACK_I = struct.Struct("<I").unpack_from
_UNPACK_i = struct.Struct("<i").unpack_from
_32_BIT = frozenset({_INT32, _UINT32, _SINT32})
_ZERO8 = bytes(8)
_ZERO4 = bytes(4)


class Unusual(Exception):
    """A wire layout or field type this reader leaves to protobuf."""


class _Plan:
    """Per message type: each field by its tag (number and wire type)."""

    def __init__(self) -> None:
        # tag -> (number, kind, '"jsonName":', repeated, has presence, plan of a message field,
        #         oneof index or -1, whether a message field's text is cached by its bytes)
        self.fields: dict[int, tuple] = {}
        self.compiled: Any = None  # agent._otlpjson's table of this type and those within it; False: none


_PLANS: dict[str, _Plan] = {}
_CACHE: dict[bytes, str] = {}
_KEYS: dict[bytes, str] = {}  # a KeyValue's key field -> the text before its value
_DOUBLE_HEADS: dict[bytes, str] = {}  # the same, with the start of a double's value

_SCALARS = {
    FieldDescriptor.TYPE_DOUBLE: (_DOUBLE, 1), FieldDescriptor.TYPE_FLOAT: (_FLOAT, 5),
    FieldDescriptor.TYPE_FIXED64: (_FIXED64, 1), FieldDescriptor.TYPE_SFIXED64: (_SFIXED64, 1),
    FieldDescriptor.TYPE_FIXED32: (_FIXED32, 5), FieldDescriptor.TYPE_SFIXED32: (_SFIXED32, 5),
    FieldDescriptor.TYPE_INT64: (_INT64, 0), FieldDescriptor.TYPE_UINT64: (_UINT64, 0),
    FieldDescriptor.TYPE_INT32: (_INT32, 0), FieldDescriptor.TYPE_ENUM: (_INT32, 0),
    FieldDescriptor.TYPE_UINT32: (_UINT32, 0), FieldDescriptor.TYPE_BOOL: (_BOOL, 0),
    FieldDescriptor.TYPE_SINT64: (_SINT64, 0), FieldDescriptor.TYPE_SINT32: (_SINT32, 0),
}


def plan(descriptor: Descriptor) -> _Plan | None:
    """The plan of a message type; None where a field is one protobuf's printer writes otherwise
    (maps, well-known types) or one OTLP does not have (groups)."""
    found = _PLANS.get(descriptor.full_name)
    if found is not None or descriptor.full_name in _PLANS:
        return found
    if descriptor.GetOptions().map_entry or descriptor.full_name.startswith("google.protobuf."):
        _PLANS[descriptor.full_name] = None
        return None
    result = _PLANS[descriptor.full_name] = _Plan()  # before the fields: a type may contain itself
    for field in descriptor.fields:
        key = _json_string(field.json_name) + ":"
        oneof = field.containing_oneof.index if field.containing_oneof is not None else -1
        entry = (field.number, key, field.is_repeated, field.has_presence, oneof)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            sub = plan(field.message_type)
            if sub is None:
                _PLANS[descriptor.full_name] = None
                return None
            cached = field.is_repeated and field.message_type.full_name == "opentelemetry.proto.common.v1.KeyValue"
            result.fields[field.number << 3 | 2] = _entry(entry, _MESSAGE, sub, cached)
        elif field.type == FieldDescriptor.TYPE_STRING:
            result.fields[field.number << 3 | 2] = _entry(entry, _STRING)
        elif field.type == FieldDescriptor.TYPE_BYTES:
            result.fields[field.number << 3 | 2] = _entry(entry, _ID if field.json_name in _ID_NAMES else _BYTES)
        elif field.type in _SCALARS:
            kind, wire_type = _SCALARS[field.type]
            result.fields[field.number << 3 | wire_type] = _entry(entry, kind)
            if field.is_repeated:  # packed or not, protobuf reads both
                result.fields[field.number << 3 | 2] = _entry(entry, _PACKED + kind)
        else:
            _PLANS[descriptor.full_name] = None
            return None
    return result


def _entry(entry: tuple, kind: int, sub: _Plan | None = None, cached: bool = False) -> tuple:
    number, key, repeated, presence, oneof = entry
    return (number, kind, key, repeated, presence, sub, oneof, cached)


def plan_of(message_type: type[Message]) -> _Plan | None:
    return plan(message_type.DESCRIPTOR)


def message(p: _Plan, wire: bytes, pos: int, end: int) -> str:
    """The JSON object of the message of plan `p` in wire[pos:end]; raises Unusual."""
    try:
        return _message(p, wire, pos, end, 0)
    except (IndexError, UnicodeDecodeError, struct.error) as exc:  # bytes cut short, bad UTF-8
        raise Unusual(str(exc)) from None


def _message(p: _Plan, wire: bytes, pos: int, end: int, depth: int) -> str:
    if depth > _MAX_DEPTH:
        raise Unusual("nested too deep")  # protobuf refuses 100 levels; before that, let it judge
    fields = p.fields
    out = []
    last = 0
    items = None  # the texts of the repeated field being read
    repeated_key = None
    oneofs = 0  # a bit per oneof already set
    while pos < end:
        tag = wire[pos]
        pos += 1
        if tag >= 0x80:
            tag, pos = _short_varint(wire, pos - 1, end)
        f = fields.get(tag)
        if f is None:
            raise Unusual(f"field tag {tag}")
        number, kind, key, repeated, presence, sub, oneof, cached = f
        if number != last:
            if number < last:
                raise Unusual("fields out of order")
            if items is not None:
                out.append(repeated_key + "[" + ",".join(items) + "]")
                items = None
            last = number
            if repeated:
                items, repeated_key = [], key
        elif not repeated:
            raise Unusual("a singular field twice")
        if oneof >= 0:
            if oneofs >> oneof & 1:
                raise Unusual("two members of a oneof")
            oneofs |= 1 << oneof
        # The value: length-delimited kinds first (most fields), then the numbers.
        if kind <= _ID:
            length = wire[pos]
            pos += 1
            if length >= 0x80:
                length, pos = _short_varint(wire, pos - 1, end)
            start, pos = pos, pos + length
            if pos > end:
                raise Unusual("truncated")
            if kind == _MESSAGE:
                if cached:  # attributes: the whole run of them at once
                    pos = _key_values(sub, wire, start, pos, end, tag, items, depth + 1)
                    continue
                text = _message(sub, wire, start, pos, depth + 1)
            elif length == 0 and not presence and not repeated:
                continue  # a string or bytes field at its default is left out
            elif kind == _STRING:
                text = _json_string(wire[start:pos].decode())
            elif kind == _ID:
                text = '"' + wire[start:pos].hex() + '"'
            else:
                text = '"' + base64.b64encode(wire[start:pos]).decode() + '"'
        elif kind >= _PACKED:
            length, pos = _short_varint(wire, pos, end)
            start, pos = pos, pos + length
            if pos > end or length == 0:
                raise Unusual("a packed run cut short or empty")
            items.extend(_packed(kind - _PACKED, wire, start, pos))
            continue
        else:
            text, pos = _number(kind, wire, pos, end, presence or repeated)
            if text is None:
                continue  # at its default and without presence: left out
        if items is not None:
            items.append(text)
        else:
            out.append(key + text)
    if pos != end:
        raise Unusual("truncated")
    if items is not None:
        out.append(repeated_key + "[" + ",".join(items) + "]")
    return "{" + ",".join(out) + "}"


def _key_values(p: _Plan, wire: bytes, start: int, pos: int, end: int, tag: int, items: list[str],
                depth: int) -> int:
    """The texts of a run of KeyValue fields (`tag`), the first in wire[start:pos]; where the run ends.

    A double's text is made each time (such values seldom repeat); any other KeyValue's is kept by
    its bytes. The usual layouts (a non-empty key, then a double or a string) are read here directly."""
    get, double_heads, append, unpack, text_of = _CACHE.get, _DOUBLE_HEADS, items.append, _UNPACK_DOUBLE, float.__repr__
    while True:
        value = pos - 11  # where a double's AnyValue field would start
        if wire[value:pos - 8] == b"\x12\x09\x21" and wire[start] == 0x0A \
                and 0 < wire[start + 1] == value - start - 2 < 0x80:
            head = double_heads.get(wire[start:value])
            if head is None:
                head = _key_head(wire, start, value) + '{"doubleValue":'
                if len(_DOUBLE_HEADS) >= _CACHE_ENTRIES:
                    _DOUBLE_HEADS.clear()
                _DOUBLE_HEADS[wire[start:value]] = head
            number = unpack(wire, pos - 8)[0]
            append(head + (text_of(number) if number - number == 0 else _double(number)) + "}}")
        elif pos - start > _CACHE_KEY_BYTES:
            append(_message(p, wire, start, pos, depth))
        else:
            chunk = wire[start:pos]
            text = get(chunk)
            if text is None:
                text = _key_value(p, wire, start, pos, depth)
                if len(_CACHE) >= _CACHE_ENTRIES:
                    _CACHE.clear()
                _CACHE[chunk] = text
            append(text)
        if pos >= end or wire[pos] != tag or tag >= 0x80:
            return pos
        length = wire[pos + 1]
        pos += 2
        if length >= 0x80:
            length, pos = _short_varint(wire, pos - 1, end)
        start, pos = pos, pos + length
        if pos > end:
            raise Unusual("truncated")


def _key_head(wire: bytes, start: int, value: int) -> str:
    """The text before a KeyValue's value, for its key field wire[start:value]."""
    head = '{"key":' + _json_string(wire[start + 2:value].decode()) + ',"value":'
    if len(_KEYS) >= _CACHE_ENTRIES:
        _KEYS.clear()
    _KEYS[wire[start:value]] = head
    return head


def _key_value(p: _Plan, wire: bytes, start: int, end: int, depth: int) -> str:
    """A KeyValue's text; one with a non-empty key and a string value read here directly."""
    length = wire[start + 1]
    value = start + 2 + length
    if wire[start] == 0x0A and 0 < length < 0x80 and value + 4 <= end and wire[value] == 0x12 \
            and wire[value + 1] < 0x80 and value + 2 + wire[value + 1] == end \
            and wire[value + 2] == 0x0A and wire[value + 3] < 0x80 and value + 4 + wire[value + 3] == end:
        head = _KEYS.get(wire[start:value]) or _key_head(wire, start, value)
        return head + '{"stringValue":' + _json_string(wire[value + 4:end].decode()) + "}}"
    return _message(p, wire, start, end, depth)


def _number(kind: int, wire: bytes, pos: int, end: int, keep_default: bool) -> tuple[str | None, int]:
    """The JSON of a number field's value at `pos` and where it ends; None for a default left out."""
    if kind == _DOUBLE or kind == _FIXED64 or kind == _SFIXED64:
        if pos + 8 > end:
            raise Unusual("truncated")
        if not keep_default and wire[pos:pos + 8] == _ZERO8:
            return None, pos + 8  # +0.0 only: -0.0 is not the default
        if kind == _DOUBLE:
            return _double(_UNPACK_DOUBLE(wire, pos)[0]), pos + 8
        value = (_UNPACK_Q if kind == _FIXED64 else _UNPACK_q)(wire, pos)[0]
        return '"' + str(value) + '"', pos + 8
    if kind == _FLOAT or kind == _FIXED32 or kind == _SFIXED32:
        if pos + 4 > end:
            raise Unusual("truncated")
        if not keep_default and wire[pos:pos + 4] == _ZERO4:
            return None, pos + 4
        if kind == _FLOAT:
            return _single(_UNPACK_FLOAT(wire, pos)[0]), pos + 4
        return str((_UNPACK_I if kind == _FIXED32 else _UNPACK_i)(wire, pos)[0]), pos + 4
    value = wire[pos]
    if value < 0x80:
        pos += 1
    else:
        value, pos = _varint(wire, pos, end)
    if not keep_default and (value == 0 or kind in _32_BIT and value & 0xFFFFFFFF == 0):
        return None, pos  # a 32-bit field's default is judged on the bits protobuf keeps
    return _varint_text(kind, value), pos


def _varint_text(kind: int, value: int) -> str:
    if kind == _INT64:
        return '"' + str(value - (1 << 64) if value >= 1 << 63 else value) + '"'
    if kind == _UINT64:
        return '"' + str(value) + '"'
    if kind == _BOOL:
        return "true" if value else "false"
    if kind == _SINT64:
        return '"' + str(value >> 1 ^ -(value & 1)) + '"'
    value &= 0xFFFFFFFF  # 32-bit fields keep the low bits, as protobuf reads them
    if kind == _INT32 and value >= 1 << 31:
        value -= 1 << 32
    elif kind == _SINT32:
        value = value >> 1 ^ -(value & 1)
    return str(value)


def _packed(kind: int, wire: bytes, pos: int, end: int) -> list[str]:
    if kind in (_DOUBLE, _FIXED64, _SFIXED64, _FLOAT, _FIXED32, _SFIXED32):
        size = 8 if kind in (_DOUBLE, _FIXED64, _SFIXED64) else 4
        if (end - pos) % size:
            raise Unusual("a packed run of the wrong length")
        code = {_DOUBLE: "d", _FIXED64: "Q", _SFIXED64: "q", _FLOAT: "f", _FIXED32: "I", _SFIXED32: "i"}[kind]
        values = struct.unpack_from(f"<{(end - pos) // size}{code}", wire, pos)
        if kind == _DOUBLE:
            return [_double(v) for v in values]
        if kind == _FLOAT:
            return [_single(v) for v in values]
        if size == 8:
            return ['"' + str(v) + '"' for v in values]
        return [str(v) for v in values]
    texts = []
    while pos < end:
        value, pos = _varint(wire, pos, end)
        texts.append(_varint_text(kind, value))
    if pos != end:
        raise Unusual("a packed run of the wrong length")
    return texts


def _double(value: float) -> str:
    if math.isfinite(value):
        return repr(value)
    return '"NaN"' if math.isnan(value) else ('"Infinity"' if value > 0 else '"-Infinity"')


def _single(value: float) -> str:
    if math.isfinite(value):
        return repr(type_checkers.ToShortestFloat(value))
    return _double(value)


def _short_varint(wire: bytes, pos: int, end: int) -> tuple[int, int]:
    """A tag or a length: protobuf refuses either padded beyond 5 bytes, and a tag beyond 32 bits."""
    value, after = _varint(wire, pos, end)
    if after - pos > 5 or value > 0xFFFFFFFF:
        raise Unusual("a tag or length of more than 5 bytes")
    return value, after


def _varint(wire: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise Unusual("a varint cut short")
        byte = wire[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7


def message_text(message_type: type[Message], wire: bytes) -> str | None:
    """The JSON of a whole message's bytes, or None where the plan or the layout is not taken."""
    p = plan_of(message_type)
    if p is None:
        return None
    table = _compiled(p)
    if table:
        return _otlpjson.message(table, 0, wire, 0, len(wire))
    try:
        return message(p, wire, 0, len(wire))
    except Unusual:
        return None


def messages(p: _Plan, wire: bytes, start: int, end: int) -> str | None:
    """The JSON objects of the messages (of plan `p`) in the length-delimited fields that make up
    wire[start:end], comma-separated; None where a layout is not taken."""
    table = _compiled(p)
    if table:
        return _otlpjson.messages(table, 0, wire, start, end)
    texts = []
    pos = start
    try:
        while pos < end:
            tag, pos = _short_varint(wire, pos, end)
            length, pos = _short_varint(wire, pos, end)
            if tag & 7 != 2 or pos + length > end:
                return None
            texts.append(message(p, wire, pos, pos + length))
            pos += length
    except Unusual:
        return None
    return ",".join(texts)


def _compiled(p: _Plan) -> Any:
    """agent._otlpjson's table for `p` (its type first, then every type within it); None or False where
    the Python writer writes."""
    if not COMPILED:
        return None
    if p.compiled is None:
        order, index = [p], {id(p): 0}
        for q in order:  # grows as it goes: every type reached from `p`
            for f in q.fields.values():
                sub = f[5]
                if sub is not None and id(sub) not in index:
                    index[id(sub)] = len(order)
                    order.append(sub)
        types = [[(tag, number, kind, key.encode(), repeated, presence, index[id(sub)] if sub else -1, oneof)
                  for tag, (number, kind, key, repeated, presence, sub, oneof, _) in q.fields.items()]
                 for q in order]
        try:
            p.compiled = _otlpjson.table(types)
        except ValueError:  # a type the table cannot hold: the Python writer writes it
            p.compiled = False
    return p.compiled

