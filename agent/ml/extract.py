"""Predictions out of OTLP batches: spans and log records carrying `ml.*` attributes.

One pass over a batch groups its predictions by model and version and builds
one `RawColumn` per feature and per prediction output. Each attribute is read
once; values go straight into per-column lists that become numpy arrays, so
the engine never sees one Python object per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from agent.ml.columns import RawColumn, category_of
from agent.signals import Batch, Signal

MODEL_NAME = "ml.model.name"
MODEL_VERSION = "ml.model.version"
PREDICTION_ID = "ml.prediction.id"
LABEL = "ml.prediction.label"
SCORE = "ml.prediction.score"
CONFIDENCE = "ml.prediction.confidence"
PROBABILITIES = "ml.prediction.probabilities"
CLASSES = "ml.model.classes"
VALUE = "ml.prediction.value"
FEATURE_PREFIX = "ml.feature."
# The prediction outputs compared like features, by these names.
OUTPUTS = (LABEL, SCORE, CONFIDENCE, VALUE)
_SCALARS = ("string_value", "double_value", "int_value", "bool_value")

# Longer strings are cut: a feature value is a category, not a document.
MAX_STRING_LENGTH = 256


@dataclass
class _ColumnBuilder:
    """Values of one column as they are found: (row, value) pairs, split by type."""

    number_rows: list[int] = field(default_factory=list)
    numbers: list[float] = field(default_factory=list)
    string_rows: list[int] = field(default_factory=list)
    strings: list[str] = field(default_factory=list)

    def add(self, row: int, value: Any) -> None:
        if isinstance(value, str):
            self.string_rows.append(row)
            self.strings.append(value[:MAX_STRING_LENGTH])
        elif isinstance(value, bool):
            self.string_rows.append(row)
            self.strings.append("true" if value else "false")
        elif value is not None:
            self.number_rows.append(row)
            self.numbers.append(value)

    def build(self, rows: int) -> RawColumn:
        numbers = np.full(rows, math.nan)
        numbers[self.number_rows] = self.numbers
        strings = np.full(rows, None, dtype=object)
        strings[self.string_rows] = self.strings
        return RawColumn(numbers, strings)


@dataclass
class Predictions:
    """The predictions of one model version found in one batch, as columns."""

    model: str
    version: str
    rows: int = 0
    service_name: str = ""
    feature_count: int = 0
    start_ns: list[int] = field(default_factory=list)
    end_ns: list[int] = field(default_factory=list)
    _columns: dict[str, _ColumnBuilder] = field(default_factory=dict)

    def features(self) -> dict[str, RawColumn]:
        return {name[len(FEATURE_PREFIX):]: c.build(self.rows) for name, c in self._columns.items()
                if name.startswith(FEATURE_PREFIX)}

    def outputs(self) -> dict[str, RawColumn]:
        columns = {name: c.build(self.rows) for name, c in self._columns.items() if name in OUTPUTS}
        if SCORE in columns:
            # A binary model's confidence is the probability of the class it predicted.
            score = columns[SCORE].numbers
            derived = np.maximum(score, 1.0 - score)
            confidence = columns.get(CONFIDENCE)
            if confidence is None:
                columns[CONFIDENCE] = RawColumn(derived, np.full(self.rows, None, dtype=object))
            else:
                gaps = np.isnan(confidence.numbers) & confidence.is_missing
                confidence.numbers[gaps] = derived[gaps]
        return columns


class Extractor:
    """Finds predictions in batches. `attributes` maps `ml.*` names to the names an app uses.

    A mapping key ending in `*` maps a prefix: `{"ml.feature.*": "features.*"}`.
    """

    def __init__(self, attributes: Mapping[str, str] | None = None, max_features: int = 200) -> None:
        self._exact: dict[str, str] = {}
        self._prefixes: list[tuple[str, str]] = []
        for ml_name, source in (attributes or {}).items():
            if ml_name.endswith("*") and source.endswith("*"):
                self._prefixes.append((source[:-1], ml_name[:-1]))
            else:
                self._exact[source] = ml_name
        self._max_features = max_features
        self.dropped_features = 0  # feature values beyond max_features, since start

    def _ml_name(self, key: str) -> str:
        if key in self._exact:
            return self._exact[key]
        for source, ml_prefix in self._prefixes:
            if key.startswith(source):
                return ml_prefix + key[len(source):]
        return key

    def extract(self, batch: Batch) -> list[Predictions]:
        found: dict[tuple[str, str], Predictions] = {}
        spans = batch.signal is Signal.TRACES
        for resource in batch.resources():
            service = ""
            for kv in resource.resource.attributes:
                if kv.key == "service.name":
                    service = kv.value.string_value
                    break
            for scope in (resource.scope_spans if spans else resource.scope_logs):
                for item in (scope.spans if spans else scope.log_records):
                    self._extract_item(item, spans, service, found)
        return list(found.values())

    def _extract_item(self, item: Any, is_span: bool, service: str,
                      found: dict[tuple[str, str], Predictions]) -> None:
        values: dict[str, Any] = {}
        for kv in item.attributes:
            name = self._ml_name(kv.key)
            if not name.startswith("ml."):
                continue
            kind = kv.value.WhichOneof("value")
            if kind in _SCALARS:
                values[name] = getattr(kv.value, kind)
            elif kind is not None:
                values[name] = _UNREADABLE  # a list or map where a scalar belongs
        model = values.get(MODEL_NAME)
        if not isinstance(model, str) or not model:
            return
        version = values.get(MODEL_VERSION)
        version = str(version) if version is not None and version is not _UNREADABLE else ""
        key = (model[:MAX_STRING_LENGTH], version[:MAX_STRING_LENGTH])
        predictions = found.get(key)
        if predictions is None:
            predictions = found[key] = Predictions(key[0], key[1], service_name=service)
        row = predictions.rows
        predictions.rows += 1
        if is_span:
            predictions.start_ns.append(item.start_time_unix_nano)
            predictions.end_ns.append(item.end_time_unix_nano)
        columns = predictions._columns
        for name, value in values.items():
            if not (name.startswith(FEATURE_PREFIX) or name in OUTPUTS):
                continue
            column = columns.get(name)
            if column is None:
                if name.startswith(FEATURE_PREFIX) and predictions.feature_count >= self._max_features:
                    self.dropped_features += 1
                    continue
                column = columns[name] = _ColumnBuilder()
                predictions.feature_count += name.startswith(FEATURE_PREFIX)
            if value is _UNREADABLE:
                column.string_rows.append(row)
                column.strings.append(_UNREADABLE_TEXT)
            elif name == LABEL and isinstance(value, (int, float)) and not isinstance(value, bool):
                column.add(row, category_of(value))  # a class is a category, even when it is a number
            else:
                column.add(row, value)


_UNREADABLE = object()
_UNREADABLE_TEXT = "\x00unreadable"
