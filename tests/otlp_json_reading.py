"""Reading OTLP/JSON back: the lines a `file` exporter wrote, as plain Python values.

`any_value` and `attributes_of` turn AnyValues and key-value lists into Python
values, `items` walks requests down to their spans, metrics or log records,
`metric_points` flattens a metrics request into one `Point` per number data
point (gauges and sums, as scrapers write them), and `complete_json_lines`
reads a file that is still being written (unlike `conftest.read_json_lines`,
it leaves out a last line not yet finished).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

COUNTER, UPDOWN, GAUGE = "counter", "updowncounter", "gauge"

_SCALARS = (("stringValue", str), ("intValue", int), ("doubleValue", float), ("boolValue", bool))

# signal -> (resource list, scope list, item list) keys of an export request
_LEVELS = {
    "traces": ("resourceSpans", "scopeSpans", "spans"),
    "metrics": ("resourceMetrics", "scopeMetrics", "metrics"),
    "logs": ("resourceLogs", "scopeLogs", "logRecords"),
}


def any_value(value: dict[str, Any], *, scalars_only: bool = False) -> Any:
    """An OTLP/JSON AnyValue as a Python value: str, int, float, bool, list or dict; None for any other.

    With `scalars_only` (what scrapers write), anything but a str, int, float or bool fails.
    """
    for key, convert in _SCALARS:
        if key in value:
            return convert(value[key])
    if scalars_only:
        raise AssertionError(f"unexpected attribute value {value}")
    if "arrayValue" in value:
        return [any_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return attributes_of(value["kvlistValue"].get("values", []))
    return None


def attributes_of(key_values: list[dict[str, Any]] | None, *, scalars_only: bool = False) -> dict[str, Any]:
    """OTLP/JSON attributes (a list of KeyValues, or None for none) as a dict."""
    if scalars_only:
        return {kv["key"]: any_value(kv["value"], scalars_only=True) for kv in key_values or []}
    return {kv["key"]: any_value(kv.get("value", {})) for kv in key_values or []}


def items(requests: list[dict[str, Any]], signal: str, *,
          scalars_only: bool = False) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(resource attributes, scope, item) for every span, metric or log record (`signal` is traces,
    metrics or logs) of `requests`, in order. Items of one resource share one attributes dict."""
    top, middle, bottom = _LEVELS[signal]
    for request in requests:
        for resource in request.get(top, []):
            resource_attributes = attributes_of(resource.get("resource", {}).get("attributes"),
                                                scalars_only=scalars_only)
            for scope in resource.get(middle, []):
                for item in scope.get(bottom, []):
                    yield resource_attributes, scope.get("scope", {}), item


def number_value(point: dict[str, Any]) -> float:
    """A number data point's value: an int for `asInt`, a float for `asDouble`."""
    return float(point["asDouble"]) if "asDouble" in point else int(point["asInt"])


@dataclass(frozen=True)
class Point:
    """One number data point with what it belongs to; `temporality` is None for a gauge."""

    resource: dict[str, Any]
    name: str
    unit: str
    instrument: str
    temporality: int | None
    attributes: dict[str, Any]
    value: float
    start_ns: int
    time_ns: int


def metric_points(request: dict[str, Any]) -> list[Point]:
    """Every data point of the gauges and sums of a metrics request (scalar attributes only), in order."""
    out = []
    for resource, _, metric in items([request], "metrics", scalars_only=True):
        if "gauge" in metric:
            instrument, temporality, data = GAUGE, None, metric["gauge"]
        else:
            data = metric["sum"]
            instrument = COUNTER if data.get("isMonotonic", False) else UPDOWN
            temporality = data.get("aggregationTemporality")
        for p in data.get("dataPoints", []):
            out.append(Point(resource, metric["name"], metric.get("unit", ""), instrument, temporality,
                             attributes_of(p.get("attributes"), scalars_only=True), number_value(p),
                             int(p.get("startTimeUnixNano", 0)), int(p.get("timeUnixNano", 0))))
    return out


def complete_json_lines(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a file still being written, parsed: the last piece (empty, or a line
    being written) and blank lines are left out; no file, no lines."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line.strip()]
