"""OTLP/JSON read straight into protobuf wire bytes, one JSON value at a time.

`read(signal, body)` gives the bytes of the request the JSON body describes,
which the receiver then checks, counts and forwards like any protobuf body.
Only the text, the bytes being written and the one value being read are held:
`{"resourceSpans":[{},{},...]}` costs two wire bytes an element, not a Python
dict and a protobuf message each, and no value is nested in another's frame
deeper than the depth limit.

Values are read as protobuf's JSON parser reads them (`json_format` with
`ignore_unknown_fields`), with OTLP's one difference: trace and span ids are
hex. It is stricter in a few places, each refused with a `JsonDecodeError`:
a field given twice, a message given as anything but an object, and nesting
deeper than protobuf's own limit of 100 messages (unknown fields' values
count too). Every refusal names the field by its path and stays short.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import struct
from json.decoder import scanstring
from typing import Any, Callable

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from agent.signals import Signal

MAX_DEPTH = 100  # messages, the request being 1: protobuf's default for both its JSON and wire parsers


class JsonDecodeError(ValueError):
    """The body is not a valid OTLP/JSON request; the message names the field."""


def read(signal: Signal, body: bytes | str) -> bytes:
    """The wire bytes of the OTLP/JSON request `body` of `signal`; raises `JsonDecodeError`."""
    if isinstance(body, (bytes, bytearray)):
        encoding = json.detect_encoding(body)  # as json.loads reads bytes: UTF-8, -16 or -32
        try:
            text = body.decode(encoding, "surrogatepass")
        except UnicodeDecodeError as exc:
            raise JsonDecodeError(f"invalid JSON: not {encoding} at byte {exc.start}: {exc.reason}") from None
    else:
        text = body
    try:
        pos = _skip_space(text, 0)
        if text[pos] != "{":
            if text[pos] in _VALUE_STARTS:
                raise JsonDecodeError("invalid OTLP/JSON: the body must be a JSON object")
            raise _Syntax("expected a JSON object", pos)
        wire, pos = _read_object(text, pos, _plan(signal.request_type.DESCRIPTOR), 1)
        pos = _skip_space(text, pos)
        if pos != len(text):
            raise _Syntax("extra data after the object", pos)
    except IndexError:
        raise JsonDecodeError(f"invalid JSON: the body ends too soon{_where(text, len(text))}") from None
    except _Syntax as exc:
        raise JsonDecodeError(f"invalid JSON: {exc.problem}{_where(text, exc.pos)}") from None
    except _Invalid as exc:
        raise JsonDecodeError(f"invalid OTLP/JSON: {exc.where()}{exc.problem}") from None
    del text
    return bytes(wire)


# --- errors ------------------------------------------------------------------------------------------


class _Syntax(Exception):
    """The text is not JSON."""

    def __init__(self, problem: str, pos: int) -> None:
        self.problem, self.pos = problem, pos


class _Invalid(Exception):
    """The JSON is not an OTLP request; `path` is filled in, innermost first, as it unwinds."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        self.path: list[str | int] = []

    def where(self) -> str:
        """`resourceSpans[0].scopeSpans[0].spans[3].name: `, its middle cut out when it is long."""
        segments: list[str] = []
        for part in reversed(self.path):
            if isinstance(part, int) and segments:
                segments[-1] += f"[{part}]"
            else:
                segments.append(f"[{part}]" if isinstance(part, int) else part)
        if len(segments) > 8:
            segments = [*segments[:5], f"…{len(segments) - 8} more…", *segments[-3:]]
        return ".".join(segments) + ": " if segments else ""


def _where(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    column = pos - text.rfind("\n", 0, pos)
    return f" at line {line} column {column} (char {pos})"


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


# --- tokens ------------------------------------------------------------------------------------------

_SPACE = " \t\n\r"
_skip_space_re = re.compile(r"[ \t\n\r]*").match
_number = re.compile(r"(-?(?:0|[1-9][0-9]*))(\.[0-9]+)?([eE][-+]?[0-9]+)?").match
_VALUE_STARTS = frozenset('["-0123456789tfnNI')
_EMPTY_OR_SPACE = frozenset("} \t\n\r")
# At most 4,096 at a time: a regular expression holds the GIL until it returns.
_empty_run = re.compile(r"\{[ \t\n\r]*\}(?:[ \t\n\r]*,[ \t\n\r]*\{[ \t\n\r]*\}){0,4095}").match
# What Python's json module reads besides strings and numbers (NaN and the infinities are its extension).
_LITERALS = (("null", None), ("true", True), ("false", False), ("NaN", math.nan), ("Infinity", math.inf),
             ("-Infinity", -math.inf))
_NULL = object()


def _skip_space(text: str, pos: int) -> int:
    return _skip_space_re(text, pos).end()


def _scalar(text: str, pos: int) -> tuple[Any, int]:
    """The string, number or literal at `pos` (None for null), and the position after it."""
    if text[pos] == '"':
        try:
            return scanstring(text, pos + 1, True)
        except ValueError as exc:  # json.JSONDecodeError: unterminated, a control character, a bad escape
            raise _Syntax(exc.msg, exc.pos) from None
    match = _number(text, pos)
    if match is not None:
        integer, fraction, exponent = match.groups()
        try:
            value = float(match.group()) if fraction or exponent else int(integer)
        except ValueError:  # more digits than Python converts
            raise _Syntax("number too long", pos) from None
        return value, match.end()
    for literal, value in _LITERALS:
        if text.startswith(literal, pos):
            return value, pos + len(literal)
    raise _Syntax("expected a value", pos)


def _skip(text: str, pos: int, depth: int) -> int:
    """Past the value at `pos`, an unknown field's: read, checked as JSON, and dropped."""
    c = text[pos]
    if c not in "{[":
        return _scalar(text, pos)[1]
    if depth > MAX_DEPTH:
        raise _Invalid(f"nested deeper than {MAX_DEPTH} levels")
    close = "}" if c == "{" else "]"
    pos = _skip_space(text, pos + 1)
    if text[pos] == close:
        return pos + 1
    while True:
        if close == "}":
            if text[pos] != '"':
                raise _Syntax("expected a key in double quotes", pos)
            pos = _colon(text, _scalar(text, pos)[1])
        pos = _skip_space(text, _skip(text, pos, depth + 1))
        c = text[pos]
        if c == close:
            return pos + 1
        if c != ",":
            raise _Syntax(f"expected ',' or '{close}'", pos)
        pos = _skip_space(text, pos + 1)


def _colon(text: str, pos: int) -> int:
    """Past the ':' after a key (and the spaces around it)."""
    if text[pos] in _SPACE:
        pos = _skip_space(text, pos)
    if text[pos] != ":":
        raise _Syntax("expected ':'", pos)
    pos += 1
    return _skip_space(text, pos) if text[pos] in _SPACE else pos


def _not_scalar(c: str, expected: str) -> _Invalid:
    return _Invalid(f"expected {expected}, got {'an object' if c == '{' else 'an array'}")


# --- messages ----------------------------------------------------------------------------------------


class _Field:
    """How one field of a message is read from JSON and written as wire bytes."""

    __slots__ = ("name", "number", "tag", "read", "plan", "oneof", "presence", "convert", "encode",
                 "expected", "packed")

    def __init__(self, field: FieldDescriptor) -> None:
        self.name = field.json_name
        self.number = field.number
        self.oneof = field.containing_oneof.name if field.containing_oneof is not None else None
        self.presence = field.has_presence
        self.plan: dict[str, _Field] | None = None
        self.packed = False
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            self.tag = _tag(field.number, _LEN)
            self.read = _read_messages if field.is_repeated else _read_message
            return
        if field.type == FieldDescriptor.TYPE_ENUM:
            enum = field.enum_type
            self.convert = lambda value: _to_enum(value, enum)
            self.encode, wire_type, self.expected = _encode_int, _VARINT, "an enum name or number"
        elif field.type == FieldDescriptor.TYPE_BYTES and field.json_name in _ID_LENGTHS:
            length = _ID_LENGTHS[field.json_name]
            self.convert = lambda value: _hex_id(value, length)
            self.encode, wire_type, self.expected = _encode_bytes, _LEN, "a hex id"
        else:
            self.convert, self.encode, wire_type, self.expected = _SCALARS[field.type]
        self.packed = field.is_repeated and wire_type != _LEN
        self.tag = _tag(field.number, _LEN if self.packed else wire_type)
        self.read = _read_scalars if field.is_repeated else _read_scalar


_PLANS: dict[Descriptor, dict[str, _Field]] = {}


def _plan(descriptor: Descriptor) -> dict[str, _Field]:
    """A message's fields by their JSON names and their proto names, as json_format accepts both."""
    plan = _PLANS.get(descriptor)
    if plan is None:
        plan = _PLANS[descriptor] = {}
        for field in descriptor.fields:
            plan[field.json_name] = plan[field.name] = _Field(field)
        for field in descriptor.fields:  # after registering this plan: messages can nest themselves
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                plan[field.name].plan = _plan(field.message_type)
    return plan


def _read_object(text: str, pos: int, plan: dict[str, _Field], depth: int) -> tuple[bytearray, int]:
    """The message whose JSON object starts at `pos`, as wire bytes, and the position after it."""
    if depth > MAX_DEPTH:
        raise _Invalid(f"nested deeper than {MAX_DEPTH} messages")
    out = bytearray()
    pos += 1
    if text[pos] in _SPACE:
        pos = _skip_space(text, pos)
    if text[pos] == "}":
        return out, pos + 1
    seen: set = set()  # field numbers, and the oneofs a member was given for
    while True:
        if text[pos] != '"':
            raise _Syntax("expected a key in double quotes", pos)
        try:
            key, pos = scanstring(text, pos + 1, True)
        except ValueError as exc:
            raise _Syntax(exc.msg, exc.pos) from None
        if text[pos] == ":":  # compact JSON, as every SDK writes it
            pos += 1
            if text[pos] in _SPACE:
                pos = _skip_space(text, pos)
        else:
            pos = _colon(text, pos)
        field = plan.get(key)
        if field is None:
            pos = _skip(text, pos, depth + 1)
        else:
            try:
                if field.number in seen:
                    raise _Invalid("given more than once")
                seen.add(field.number)
                pos = field.read(text, pos, out, field, depth, seen)
            except _Invalid as exc:
                exc.path.append(key)
                raise
        c = text[pos]
        if c in _SPACE:
            pos = _skip_space(text, pos)
            c = text[pos]
        if c == ",":
            pos += 1
            if text[pos] in _SPACE:
                pos = _skip_space(text, pos)
        elif c == "}":
            return out, pos + 1
        else:
            raise _Syntax("expected ',' or '}'", pos)


def _one_of(field: _Field, seen: set) -> None:
    if field.oneof in seen:
        raise _Invalid(f"more than one field of the oneof {field.oneof!r}")
    seen.add(field.oneof)


def _null(text: str, pos: int) -> int | None:
    return pos + 4 if text.startswith("null", pos) else None


def _read_message(text: str, pos: int, out: bytearray, field: _Field, depth: int, seen: set) -> int:
    c = text[pos]
    if c == "n" and (after := _null(text, pos)) is not None:
        return after
    if c != "{":
        raise _Invalid(f"expected an object, got {_kind(text, pos)}")
    if field.oneof is not None:
        _one_of(field, seen)
    message, pos = _read_object(text, pos, field.plan, depth + 1)
    out += field.tag
    out += _varint(len(message))
    out += message
    return pos


def _open_array(text: str, pos: int) -> tuple[int, bool]:
    """Past a list's `[` and the blanks after it: (position, False); past a null or `[]`: (position, True)."""
    c = text[pos]
    if c == "n" and (after := _null(text, pos)) is not None:
        return after, True
    if c != "[":
        raise _Invalid(f"expected an array, got {_kind(text, pos)}")
    pos = _skip_space(text, pos + 1)
    if text[pos] == "]":
        return pos + 1, True
    return pos, False


def _read_messages(text: str, pos: int, out: bytearray, field: _Field, depth: int, seen: set) -> int:
    pos, done = _open_array(text, pos)
    if done:
        return pos
    if depth >= MAX_DEPTH:
        raise _Invalid(f"nested deeper than {MAX_DEPTH} messages")
    tag, plan, empty = field.tag, field.plan, field.tag + b"\0"
    index = 0
    while True:
        c = text[pos]
        if c == "{":
            if text[pos + 1] in _EMPTY_OR_SPACE and (run := _empty_run(text, pos)) is not None:
                # Empty messages, one after another (`[{},{},...]`): two bytes each, and no Python per element.
                count = run.group().count("{")
                out += empty * count
                index += count - 1
                pos = run.end()
            else:
                try:
                    message, pos = _read_object(text, pos, plan, depth + 1)
                except _Invalid as exc:
                    exc.path.append(index)
                    raise
                out += tag
                out += _varint(len(message))
                out += message
        else:
            problem = "null is not allowed in an array" if _null(text, pos) else \
                f"expected an object, got {_kind(text, pos)}"
            exc = _Invalid(problem)
            exc.path.append(index)
            raise exc
        c = text[pos]
        if c in _SPACE:
            pos = _skip_space(text, pos)
            c = text[pos]
        if c == ",":
            index += 1
            pos += 1
            if text[pos] in _SPACE:
                pos = _skip_space(text, pos)
        elif c == "]":
            return pos + 1
        else:
            raise _Syntax("expected ',' or ']'", pos)


def _read_scalar(text: str, pos: int, out: bytearray, field: _Field, depth: int, seen: set) -> int:
    c = text[pos]
    if c == '"':
        try:
            value, pos = scanstring(text, pos + 1, True)
        except ValueError as exc:
            raise _Syntax(exc.msg, exc.pos) from None
    elif c in "{[":
        raise _not_scalar(c, field.expected)
    else:
        value, pos = _scalar(text, pos)
        if value is None:
            return pos  # null: the field is left unset
    if field.oneof is not None:
        _one_of(field, seen)
    value = field.convert(value)
    if value is _NULL or (not field.presence and not value and _positive_zero(value)):
        return pos  # an unknown enum name (ignored, like an unknown field), or a default left out
    out += field.tag
    out += field.encode(value)
    return pos


def _read_scalars(text: str, pos: int, out: bytearray, field: _Field, depth: int, seen: set) -> int:
    pos, done = _open_array(text, pos)
    if done:
        return pos
    values = bytearray()
    index = 0
    try:
        while True:
            c = text[pos]
            if c in "{[":
                raise _not_scalar(c, field.expected)
            value, pos = _scalar(text, pos)
            if value is None:
                raise _Invalid("null is not allowed in an array")
            value = field.convert(value)
            if value is not _NULL:
                if not field.packed:
                    values += field.tag
                values += field.encode(value)
            pos = _skip_space(text, pos)
            c = text[pos]
            if c == ",":
                index += 1
                pos = _skip_space(text, pos + 1)
            elif c == "]":
                break
            else:
                raise _Syntax("expected ',' or ']'", pos)
    except _Invalid as exc:
        exc.path.append(index)
        raise
    if field.packed:
        out += field.tag
        out += _varint(len(values))
    out += values
    return pos + 1


def _kind(text: str, pos: int) -> str:
    c = text[pos]
    if c == "{":
        return "an object"
    if c == "[":
        return "an array"
    try:
        return _show(_scalar(text, pos)[0])
    except _Syntax:
        return "something else"


def _positive_zero(value: Any) -> bool:
    # -0.0 is not a default: protobuf writes it.
    return not isinstance(value, float) or math.copysign(1.0, value) > 0


# --- scalars, converted as json_format converts them --------------------------------------------------

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_SMALL = [bytes([n]) for n in range(128)]


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _encode_int(n: int) -> bytes:
    return _varint(n if n >= 0 else n + (1 << 64))  # negative int32 and int64 take ten bytes, as in protobuf


def _encode_bytes(data: bytes) -> bytes:
    return _varint(len(data)) + data


def _integer(lowest: int, highest: int, expected: str) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise _Invalid(f"expected {expected}, got {_show(value)}")
        if isinstance(value, float) and not value.is_integer():
            raise _Invalid(f"expected {expected}, got {_show(value)}")
        if isinstance(value, str) and " " in value:
            raise _Invalid(f"expected {expected}, got {_show(value)}")
        try:
            n = int(value)
        except ValueError:  # "1e3" is an integer too
            try:
                f = float(value)
            except ValueError:
                raise _Invalid(f"expected {expected}, got {_show(value)}") from None
            if not f.is_integer():
                raise _Invalid(f"expected {expected}, got {_show(value)}") from None
            n = int(f)
        if not lowest <= n <= highest:
            raise _Invalid(f"{_show(value)} is out of range for {expected}")
        return n

    return convert


def _to_double(value: Any) -> float:
    if isinstance(value, float) and not math.isfinite(value):
        raise _Invalid(f'{value!r} must be quoted: "NaN", "Infinity" or "-Infinity"')
    if value == "nan":
        raise _Invalid('expected a number, got \'nan\' (use "NaN")')
    try:
        return float(value)
    except (ValueError, OverflowError):
        raise _Invalid(f"expected a number, got {_show(value)}") from None


def _to_float(value: Any) -> float:
    number = _to_double(value)
    if math.isfinite(number) and abs(number) > 3.4028234663852886e38:
        raise _Invalid(f"{_show(value)} is out of range for a 32-bit float")
    return number


def _to_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_show(value)}")
    return value


def _to_string(value: Any) -> bytes:
    """A string field's UTF-8 bytes (what the wire holds)."""
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_show(value)}")
    try:
        return value.encode()
    except UnicodeEncodeError:
        raise _Invalid("unpaired surrogate in a string") from None


def _to_bytes(value: Any) -> bytes:
    if not isinstance(value, str):
        raise _Invalid(f"expected a base64 string, got {_show(value)}")
    try:
        encoded = value.encode()
        return base64.urlsafe_b64decode(encoded + b"=" * (4 - len(encoded) % 4))
    except ValueError:  # binascii.Error, or an unpaired surrogate
        raise _Invalid(f"{_show(value)} is not base64") from None


# The only OTLP fields that hold ids; the protobuf parser also takes the snake_case names (as the
# Collector does), and those are hex too.
_ID_LENGTHS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}


def _hex_id(value: Any, length: int) -> bytes:
    if not isinstance(value, str):
        raise _Invalid(f"expected a hex id, got {_show(value)}")
    if value == "":
        return b""
    try:
        raw = binascii.unhexlify(value)
    except (binascii.Error, ValueError):
        raise _Invalid(f"{_show(value)} is not a hex id") from None
    if len(raw) != length:
        raise _Invalid(f"expected {length * 2} hex digits, got {len(value)}")
    return raw


def _to_enum(value: Any, enum: Any) -> int | object:
    known = enum.values_by_name.get(value) if isinstance(value, str) else None
    if known is not None:
        return known.number
    try:
        number = int(value)
    except ValueError:
        return _NULL  # an unknown name: left out, as an unknown field is
    except OverflowError:
        raise _Invalid(f"expected an enum name or number, got {_show(value)}") from None
    if not -(1 << 31) <= number < 1 << 31:
        raise _Invalid(f"{_show(value)} is out of range for an enum")
    return number


_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT32 = (0, (1 << 32) - 1)
_UINT64 = (0, (1 << 64) - 1)
_T = FieldDescriptor
# field type: (convert, encode, wire type, what a refusal says was expected)
_SCALARS: dict[int, tuple[Callable, Callable, int, str]] = {
    _T.TYPE_INT32: (_integer(*_INT32, "a 32-bit integer"), _encode_int, _VARINT, "a 32-bit integer"),
    _T.TYPE_INT64: (_integer(*_INT64, "a 64-bit integer"), _encode_int, _VARINT, "a 64-bit integer"),
    _T.TYPE_UINT32: (_integer(*_UINT32, "an unsigned 32-bit integer"), _varint, _VARINT,
                     "an unsigned 32-bit integer"),
    _T.TYPE_UINT64: (_integer(*_UINT64, "an unsigned 64-bit integer"), _varint, _VARINT,
                     "an unsigned 64-bit integer"),
    _T.TYPE_SINT32: (_integer(*_INT32, "a 32-bit integer"), lambda n: _varint(n << 1 ^ n >> 31), _VARINT,
                     "a 32-bit integer"),
    _T.TYPE_SINT64: (_integer(*_INT64, "a 64-bit integer"), lambda n: _varint(n << 1 ^ n >> 63), _VARINT,
                     "a 64-bit integer"),
    _T.TYPE_FIXED32: (_integer(*_UINT32, "an unsigned 32-bit integer"), struct.Struct("<I").pack, _I32,
                      "an unsigned 32-bit integer"),
    _T.TYPE_SFIXED32: (_integer(*_INT32, "a 32-bit integer"), struct.Struct("<i").pack, _I32,
                       "a 32-bit integer"),
    _T.TYPE_FIXED64: (_integer(*_UINT64, "an unsigned 64-bit integer"), struct.Struct("<Q").pack, _I64,
                      "an unsigned 64-bit integer"),
    _T.TYPE_SFIXED64: (_integer(*_INT64, "a 64-bit integer"), struct.Struct("<q").pack, _I64,
                       "a 64-bit integer"),
    _T.TYPE_DOUBLE: (_to_double, struct.Struct("<d").pack, _I64, "a number"),
    _T.TYPE_FLOAT: (_to_float, struct.Struct("<f").pack, _I32, "a number"),
    _T.TYPE_BOOL: (_to_bool, lambda b: b"\x01" if b else b"\x00", _VARINT, "true or false"),
    _T.TYPE_STRING: (_to_string, _encode_bytes, _LEN, "a string"),
    _T.TYPE_BYTES: (_to_bytes, _encode_bytes, _LEN, "a base64 string"),
}
