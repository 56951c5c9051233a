"""Reading and writing OTLP attributes (`repeated KeyValue`) with plain Python values."""

from __future__ import annotations

import base64
import decimal
import json
import math
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
        try:
            return _go_json(value)
        except ValueError:
            return ""  # a NaN or infinity inside: Go's json.Marshal fails and AsString gives ""
    return "" if value is None else value


# What Go's json.Marshal escapes beyond what Python's json does with ensure_ascii=False.
_GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                             "\u2029": "\\u2029"})


def _go_json(value: Any) -> str:
    """`value` as Go's encoding/json writes it (map keys sorted, HTML characters escaped, numbers as
    format_number); ValueError for a NaN or an infinity, which it refuses."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError("unsupported value")
        return format_number(value)
    if isinstance(value, bytes):
        return '"' + base64.b64encode(value).decode() + '"'
    if isinstance(value, list):
        return "[" + ",".join(_go_json(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_go_json(key)}:{_go_json(value[key])}" for key in sorted(value)) + "}"
    return json.dumps(value, ensure_ascii=False).translate(_GO_ESCAPES)


def format_number(value: int | float) -> str:
    """A number as pdata's AsString writes it: an int in decimal, a double as Go's float64AsString (the
    shortest digits that read back the same; fixed point unless below 1e-6 or from 1e21 up, `1e-7`,
    `1e+21`; NaN and infinities as the JSON encoder's refusal the Collector keeps)."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value) or math.isinf(value):
        return "json: unsupported value: " + ("NaN" if math.isnan(value) else "+Inf" if value > 0 else "-Inf")
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        return repr(value).replace("e-0", "e-")  # repr: the shortest round trip, in e form at these sizes
    return format(decimal.Decimal(repr(value)).normalize(), "f")
