"""OTLP/JSON: the protobuf JSON mapping with the OTLP spec's differences.

Protobuf's JSON mapping already gives lowerCamelCase names and 64-bit integers
as strings. OTLP changes two things: trace and span ids are hex, not base64,
and enums are integers. Decoding ignores unknown fields, as the spec asks of
receivers.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from agent.signals import Signal

# The only keys in OTLP that hold ids; the names appear nowhere else in the schema. The protobuf
# parser also accepts the original snake_case names, so those are hex too (as the Collector reads
# them); left out, a hex `trace_id` was read as base64 and became a 24-byte id.
_ID_LENGTHS = {"traceId": 16, "spanId": 8, "parentSpanId": 8,
               "trace_id": 16, "span_id": 8, "parent_span_id": 8}


class JsonDecodeError(ValueError):
    """The body is not a valid OTLP/JSON request; the message names the field."""


def encode(message: Message) -> str:
    """The message as one line of OTLP/JSON."""
    data = json_format.MessageToDict(message, use_integers_for_enums=True)
    _ids_to_hex(data)
    return json.dumps(data, separators=(",", ":"))


def decode(signal: Signal, body: bytes | str) -> Message:
    """Parse an OTLP/JSON request body of `signal`."""
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
