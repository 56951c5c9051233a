"""Predictions from parsed OTLP messages: spans and log records read one attribute at a time.

The path every batch can take (the wire reader hands back what it cannot read,
and Vigil built without a C compiler has only this one). One pass over a batch
groups its predictions by model and version; each attribute is read once and
its value goes straight into per-column lists that become numpy arrays, so the
engine never sees one Python object per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from agent.ml.columns import UNREADABLE, category_of
from agent.ml.predictions import (
    NOT_A_SCALAR, SPAN_ID, TRACE_ID, ColumnBuilder, Extracted, GenAiCalls, Labels, Predictions, add_genai_call,
    add_label, embedding_matrix, id_text, is_embedding, span_id_bytes, span_seconds, trace_id_bytes, version_text,
)
from agent.ml.sources.mapping import AttributeMapping
from agent.ml.vocabulary import (
    ALERTS_SCOPE, ARRAYS, EMBEDDING, ERROR_TYPE, EXCEPTION_EVENT, EXCEPTION_TYPE, FEATURE_PREFIX, MAX_STRING_LENGTH, MODEL_CLASSES,
    MODEL_NAME, MODEL_VERSION, OTHER_ERROR, PREDICTION_DURATION, PREDICTION_ID, PREDICTION_LABEL,
    PREDICTION_PROBABILITIES, SERVICE_NAME, TRITON_MODEL_NAME, TRITON_MODEL_VERSION, TRUE_LABEL,
)
from agent.signals import Batch, Signal

_SCALAR_KINDS = frozenset(("string_value", "double_value", "int_value", "bool_value"))
_UNSEEN = object()
_STATUS_ERROR = Status.STATUS_CODE_ERROR


@dataclass
class _Rows:
    """One model version's per-row values that become arrays once the batch is read."""

    trace_ids: list[bytes] = field(default_factory=list)
    span_ids: list[bytes] = field(default_factory=list)
    embedding_rows: list[int] = field(default_factory=list)
    embeddings: list[list[float]] = field(default_factory=list)

    def finish(self, predictions: Predictions) -> None:
        predictions.trace_ids = np.array(self.trace_ids, dtype=TRACE_ID)
        predictions.span_ids = np.array(self.span_ids, dtype=SPAN_ID)
        predictions.embeddings = embedding_matrix(predictions.rows, self.embedding_rows, self.embeddings)


class MessageReader:
    """Reads a batch's parsed messages; counts the feature values it leaves out beyond `max_features`."""

    def __init__(self, mapping: AttributeMapping, max_features: int) -> None:
        self.max_features = max_features
        self.dropped_features = 0
        self._decisions = mapping.decisions
        self._decide = mapping.decide

    def read(self, batch: Batch) -> Extracted:
        found: dict[tuple[str, str], Predictions] = {}
        labels: dict[str, Labels] = {}
        genai: dict[str, GenAiCalls] = {}
        rows: dict[tuple[str, str], _Rows] = {}
        spans = batch.signal is Signal.TRACES
        for resource in batch.resources():
            service = ""
            for kv in resource.resource.attributes:
                if kv.key == SERVICE_NAME:
                    service = kv.value.string_value
                    break
            for scope in (resource.scope_spans if spans else resource.scope_logs):
                if not spans and scope.scope.name == ALERTS_SCOPE:
                    continue  # alert notices carry a model's labels but are not predictions
                for item in (scope.spans if spans else scope.log_records):
                    self._item(item, spans, service, found, rows, labels, genai)
        for key, predictions in found.items():
            rows[key].finish(predictions)
        return Extracted(list(found.values()), list(labels.values()), list(genai.values()))

    def _item(self, item: Any, is_span: bool, service: str, found: dict[tuple[str, str], Predictions],
              rows: dict[tuple[str, str], _Rows], labels: dict[str, Labels], genai: dict[str, GenAiCalls]) -> None:
        values: dict[str, Any] = {}
        columns_found: list[str] = []  # the names in `values` that are columns (features, outputs), in order
        other: dict[str, Any] | None = None  # gen_ai.* and error.type
        decisions = self._decisions
        for kv in item.attributes:
            key = kv.key
            decision = decisions.get(key, _UNSEEN)
            if decision is _UNSEEN:
                decision = self._decide(key)
            if decision is None:
                continue
            name, is_ml, is_column = decision
            value = kv.value
            kind = value.WhichOneof("value")
            if is_ml:
                if kind in _SCALAR_KINDS:
                    read = getattr(value, kind)
                elif kind == "array_value" and name in ARRAYS:
                    read = [getattr(v, v.WhichOneof("value") or "string_value") for v in value.array_value.values]
                elif kind is not None:
                    read = NOT_A_SCALAR
                else:
                    continue
                if is_column and name not in values:
                    columns_found.append(name)
                values[name] = read
            elif kind in _SCALAR_KINDS:
                if other is None:
                    other = {}
                other[name] = getattr(value, kind)
        if is_span and other is not None and len(other) > (ERROR_TYPE in other):
            failed = ERROR_TYPE not in other and item.status.code == _STATUS_ERROR
            add_genai_call(genai, service, other, span_seconds(item.start_time_unix_nano, item.end_time_unix_nano),
                           exception_type(item) if failed else None)
        model = values.get(MODEL_NAME)
        version = MODEL_VERSION
        if not isinstance(model, str) or not model:
            model, version = values.get(TRITON_MODEL_NAME), TRITON_MODEL_VERSION  # a server's own names
            if not isinstance(model, str) or not model:
                return
        model = model[:MAX_STRING_LENGTH]
        prediction_id = id_text(values.get(PREDICTION_ID))
        if TRUE_LABEL in values:
            add_label(labels, model, prediction_id, values[TRUE_LABEL])
            if not columns_found and PREDICTION_PROBABILITIES not in values:
                return  # a label, not a prediction
        key = (model, version_text(values.get(version)))
        predictions = found.get(key)
        if predictions is None:
            predictions = found[key] = Predictions(key[0], key[1], service_name=service)
            rows[key] = _Rows()
        row = predictions.rows
        predictions.rows += 1
        per_row = rows[key]
        per_row.trace_ids.append(trace_id_bytes(item.trace_id))
        per_row.span_ids.append(span_id_bytes(item.span_id))
        embedding = values.get(EMBEDDING)
        if embedding is not None and is_embedding(embedding):
            per_row.embedding_rows.append(row)
            per_row.embeddings.append(embedding)
        error_type = other.get(ERROR_TYPE) if other is not None else None
        if is_span:
            predictions.durations.append(span_seconds(item.start_time_unix_nano, item.end_time_unix_nano))
            if error_type is None and item.status.code == _STATUS_ERROR:
                error_type = exception_type(item)
        else:
            duration = values.get(PREDICTION_DURATION)
            predictions.durations.append(float(duration) if isinstance(duration, (int, float))
                                         and not isinstance(duration, bool) else math.nan)
        if error_type is not None:
            predictions.add_error(row, error_type)
        if prediction_id is not None:
            predictions.id_rows.append(row)
            predictions.ids.append(prediction_id)
        if PREDICTION_PROBABILITIES in values:
            predictions.add_probabilities(row, values[PREDICTION_PROBABILITIES], values.get(MODEL_CLASSES))
        columns = predictions.columns
        for name in columns_found:
            value = values[name]
            column = columns.get(name)
            if column is None:
                if name.startswith(FEATURE_PREFIX) and predictions.feature_count >= self.max_features:
                    self.dropped_features += 1
                    continue
                column = columns[name] = ColumnBuilder()
                predictions.feature_count += name.startswith(FEATURE_PREFIX)
            if type(value) is float and name != PREDICTION_LABEL:  # the common case, as `add` would take it
                column.number_rows.append(row)
                column.numbers.append(value)
            elif value is NOT_A_SCALAR:
                column.string_rows.append(row)
                column.strings.append(UNREADABLE)
            elif name == PREDICTION_LABEL and isinstance(value, (int, float)) and not isinstance(value, bool):
                column.add(row, category_of(value))  # a class is a category, even when it is a number
            else:
                column.add(row, value)


def exception_type(span: Any) -> str:
    """The `exception.type` of a failed span's exception event, else `_OTHER`."""
    for event in span.events:
        if event.name == EXCEPTION_EVENT:
            for kv in event.attributes:
                if kv.key == EXCEPTION_TYPE and kv.value.string_value:
                    return kv.value.string_value
    return OTHER_ERROR
