"""OTLP/JSON: the protobuf JSON mapping with the OTLP spec's differences.

Protobuf's JSON mapping already gives lowerCamelCase names and 64-bit integers
as strings. OTLP changes two things: trace and span ids are hex, not base64,
and enums are integers. Decoding ignores unknown fields, as the spec asks of
receivers; it is `agent.otlp_json_reader`'s, which reads a body straight into
wire bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message

from agent.otlp_json_reader import JsonDecodeError, read
from agent.signals import Signal

# The only keys in OTLP that hold ids; the names appear nowhere else in the schema. The protobuf
# parser also accepts the original snake_case names, so those are hex too (as the Collector reads
# them); left out, a hex `trace_id` was read as base64 and became a 24-byte id.
_ID_LENGTHS = {"traceId": 16, "spanId": 8, "parentSpanId": 8,
               "trace_id": 16, "span_id": 8, "parent_span_id": 8}


def encode(message: Message) -> str:
    """The message as one line of OTLP/JSON."""
    try:
        data = _to_dict(message)
    except _NotOtlp:
        return encode_with_json_format(message)
    return json.dumps(data, separators=(",", ":"))


def encode_with_json_format(message: Message) -> str:
    """`encode` by way of protobuf's own JSON printer: the reference `encode` is tested against."""
    data = json_format.MessageToDict(message, use_integers_for_enums=True)
    _ids_to_hex(data)
    return json.dumps(data, separators=(",", ":"))


# What protobuf's JSON printer does, for the field types OTLP has, at under half its cost: the
# printer checks each field for well-known types, maps and options OTLP never uses. Fields come
# from ListFields, so, as with the printer, a field at its default is left out unless it has
# presence (a set oneof member).
_INT64_TYPES = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64,
                FieldDescriptor.TYPE_SFIXED64, FieldDescriptor.TYPE_SINT64}
_FLOAT_TYPES = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}


def _to_dict(message: Message) -> dict[str, Any]:
    out = {}
    for field, value in message.ListFields():
        plan = _PLANS.get(field)
        if plan is None:
            plan = _PLANS[field] = (field.json_name, _converter(field), field.is_repeated)
        name, convert, repeated = plan
        if convert is None:
            out[name] = list(value) if repeated else value
        else:
            out[name] = [convert(v) for v in value] if repeated else convert(value)
    return out


class _NotOtlp(Exception):
    """A field type OTLP does not have."""


# Per field: its JSON name, how to convert a value, and whether it is repeated.
_PLANS: dict[FieldDescriptor, tuple[str, Any | None, bool]] = {}


def _converter(field: FieldDescriptor) -> Any | None:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.GetOptions().map_entry or field.message_type.full_name.startswith("google.protobuf."):
            raise _NotOtlp(field.full_name)  # maps and well-known types: the printer knows their forms
        return _to_dict
    if field.type == FieldDescriptor.TYPE_BYTES:
        if field.json_name in _ID_LENGTHS:
            return bytes.hex
        return lambda value: base64.b64encode(value).decode()
    if field.type in _INT64_TYPES:
        return str
    if field.type in _FLOAT_TYPES:
        single = field.type == FieldDescriptor.TYPE_FLOAT
        return lambda value: _float(value, single)
    return None  # as they are: strings, booleans, 32-bit integers, and enums as integers


def _float(value: float, single: bool) -> float | str:
    if math.isfinite(value):
        return type_checkers.ToShortestFloat(value) if single else value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def decode(signal: Signal, body: bytes | str) -> Message:
    """Parse an OTLP/JSON request body of `signal`; raises `JsonDecodeError`."""
    message = signal.request_type()
    message.ParseFromString(read(signal, body))
    return message


def decode_with_json_format(signal: Signal, body: bytes | str) -> Message:
    """`decode` by way of json.loads and protobuf's own JSON parser: the reference `decode` is tested
    against (it holds the whole document as Python objects, and recurses as deep as it is nested)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise JsonDecodeError(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise JsonDecodeError("invalid OTLP/JSON: the body must be a JSON object")
    _ids_to_base64(data, "")
    message = signal.request_type()
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise JsonDecodeError(f"invalid OTLP/JSON: {exc}") from None
    return message


def _ids_to_hex(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_LENGTHS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _ids_to_hex(value)
    elif isinstance(node, list):
        for value in node:
            _ids_to_hex(value)


def _ids_to_base64(node: Any, path: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else key
            if key in _ID_LENGTHS and isinstance(value, str):
                node[key] = _hex_id_to_base64(value, _ID_LENGTHS[key], here)
            elif isinstance(value, (dict, list)):
                _ids_to_base64(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            if isinstance(value, (dict, list)):
                _ids_to_base64(value, f"{path}[{i}]")


def _hex_id_to_base64(value: str, length: int, path: str) -> str:
    if value == "":
        return ""
    try:
        raw = binascii.unhexlify(value)
    except (binascii.Error, ValueError):
        raise JsonDecodeError(f"{path}: {value!r} is not a hex id") from None
    if len(raw) != length:
        raise JsonDecodeError(f"{path}: expected {length * 2} hex digits, got {len(value)}")
    return base64.b64encode(raw).decode()
