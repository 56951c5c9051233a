"""Reading and writing OTLP attributes (`repeated KeyValue`) with plain Python values."""

from __future__ import annotations

import base64
import json
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


def set_any_value(target: AnyValue, value: Any) -> None:
    """Store a Python scalar or list in `target`, keeping its type (bool before int: bool is an int)."""
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, (list, tuple)):
        target.array_value.SetInParent()
        for item in value:
            set_any_value(target.array_value.values.add(), item)
    elif isinstance(value, dict):
        target.kvlist_value.SetInParent()
        for key, item in value.items():
            set_any_value(target.kvlist_value.values.add(key=key).value, item)
    else:
        raise TypeError(f"cannot store {type(value).__name__} as an attribute value")


def any_value(value: AnyValue) -> Any:
    """The Python value held by `value` (None when it holds nothing)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def find(attributes: Any, key: str) -> KeyValue | None:
    """The first KeyValue named `key` in a repeated KeyValue field, or None."""
    for kv in attributes:
        if kv.key == key:
            return kv
    return None


def as_dict(attributes: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in attributes}


def as_string(value: Any) -> str:
    """A plain value (as `any_value` gives) as the Collector's pdata AsString writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return format_number(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else value


def format_number(value: int | float) -> str:
    """A number as Go's strconv formats it in the Collector (`1.5`, `100000000000000000000`, `1e+21`)."""
    if isinstance(value, int):
        return str(value)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else "+"
        return f"{mantissa}e{sign}{abs(int(exponent)):02d}"
    return text
