"""Predictions from the wire scanner's records: the ml processor's fast path.

`agent._otlpscan` (C) walks a request's bytes once and hands back one record
per attribute whose key could matter (`ml.*`, `gen_ai.*`, `error.type`, mapped
names): the item it belongs to, its key, the kind of its value and the value,
numbers in flat arrays (agent/_otlpscan.pyi lists them). This module turns
those records into `Extracted` a column at a time with numpy: per span it
costs a few Python operations, not one per attribute. Values go through the
same normalisers (agent/ml/predictions.py) as the message reader's, and
tests/ml/sources/test_wire_reader.py checks that both give equal results.

When the scanner is not built, or raises `Unsupported` for a request it leaves
to protobuf (a value given twice, which protobuf merges; too many distinct
keys), `read` returns None and the caller reads the parsed message.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from agent.ml.columns import UNREADABLE, RawColumn, category_of
from agent.ml.predictions import (
    NOT_A_SCALAR, SPAN_ID, TRACE_ID, BuiltColumn, Extracted, GenAiCalls, Labels, Predictions, add_genai_call,
    add_label, id_text, packed_embedding_matrix, span_seconds, version_text,
)
from agent.ml.sources.mapping import AttributeMapping
from agent.ml.vocabulary import (
    ALERTS_SCOPE, EMBEDDING, ERROR_TYPE, FEATURE_PREFIX, MAX_STRING_LENGTH, MODEL_CLASSES, MODEL_NAME, MODEL_VERSION,
    OTHER_ERROR, PREDICTION_DURATION, PREDICTION_ID, PREDICTION_LABEL, PREDICTION_PROBABILITIES, TRITON_MODEL_NAME,
    TRITON_MODEL_VERSION, TRUE_LABEL,
)
from agent.signals import Batch, Signal

if TYPE_CHECKING:
    from agent._otlpscan import ScanResult

try:
    from agent import _otlpscan
except ImportError:  # built without a C compiler: the message reader does all the work
    _otlpscan = None

available = _otlpscan is not None
# Value kinds, as the scanner numbers them: the scalars first, so `kind <= DOUBLE` is a scalar.
STRING, BOOL, INT, DOUBLE, ARRAY = ((_otlpscan.STRING, _otlpscan.BOOL, _otlpscan.INT, _otlpscan.DOUBLE,
                                     _otlpscan.ARRAY) if _otlpscan is not None else range(1, 6))
_ALERTS_SCOPE = ALERTS_SCOPE.encode()
_STATUS_ERROR = Status.STATUS_CODE_ERROR


class WireReader:
    """Reads a batch's wire bytes through the scanner; counts the feature values it leaves out beyond
    `max_features`."""

    def __init__(self, mapping: AttributeMapping, max_features: int) -> None:
        self.mapping = mapping
        self.max_features = max_features
        self.dropped_features = 0

    def read(self, batch: Batch) -> Extracted | None:
        """The batch's predictions, labels and GenAI calls, or None when the scanner cannot read it."""
        if _otlpscan is None:
            return None
        logs = batch.signal is Signal.LOGS
        try:
            raw = _otlpscan.scan(batch.wire(), logs, self.mapping.scan_prefixes, _ALERTS_SCOPE if logs else b"",
                                 self.mapping.vector_keys)
        except ValueError:  # Unsupported, or text that is not UTF-8: protobuf's parser says what is wrong
            return None
        return _Reading(self, raw, logs).extracted()


class _Records:
    """The scanner's output as numpy views, with lookups by name."""

    def __init__(self, raw: ScanResult, names: dict[str, list[int]]) -> None:
        self.item = np.frombuffer(raw["item"], dtype=np.int32)
        self.key = np.frombuffer(raw["key"], dtype=np.int32)
        self.kind = np.frombuffer(raw["kind"], dtype=np.uint8)
        self.number = np.frombuffer(raw["number"], dtype=np.float64)
        self.int = np.frombuffer(raw["int"], dtype=np.int64)
        self.object: list[Any] = raw["object"]
        self.repeated: bool = raw["repeated"]  # some item gives a key twice: keep the last
        self.plain_strings: bool = raw["plain_strings"]  # every string is 1 to MAX_STRING_LENGTH bytes: nothing to cut
        self._by_key: list[bytes] = raw["by_key"]
        self._names = names
        self._all: dict[str, np.ndarray] = {}

    def all_of(self, name: str) -> np.ndarray:
        """Indices of every record of `name` (several keys may map to it), in wire order."""
        found = self._all.get(name)
        if found is None:
            ids = self._names.get(name)
            if not ids:
                found = np.empty(0, dtype=np.intp)
            elif len(ids) == 1:
                found = np.frombuffer(self._by_key[ids[0]], dtype=np.int32)
            else:
                found = np.sort(np.concatenate([np.frombuffer(self._by_key[i], dtype=np.int32) for i in ids]))
            self._all[name] = found
        return found

    def last_of(self, name: str, scalars_only: bool = False) -> np.ndarray:
        """Per item, the record that counts: the last one of `name` (an item may repeat a key)."""
        found = self.all_of(name)
        if scalars_only and found.size:
            found = found[self.kind[found] <= DOUBLE]
        return self.last(found, name)

    def last(self, records: np.ndarray, name: str) -> np.ndarray:
        """`records` of `name`, one per item: the last. An item may repeat a key, or give two keys
        that map to the same name (`pid` and `ml.prediction.id`)."""
        if self.repeated or len(self._names.get(name, ())) > 1:
            return last_per_item(self.item, records)
        return records

    def texts(self, records: np.ndarray) -> list[str]:
        """The string values of `records`, cut to MAX_STRING_LENGTH."""
        texts = list(map(self.object.__getitem__, records.tolist()))
        return texts if self.plain_strings else [t[:MAX_STRING_LENGTH] for t in texts]

    def value(self, i: int, arrays: bool) -> Any:
        """Record `i`'s value as the parsed-message path reads it; lists only where `arrays`."""
        kind = self.kind[i]
        if kind == STRING:
            return self.object[i]
        if kind == DOUBLE:
            return float(self.number[i])
        if kind == INT:
            return int(self.int[i])
        if kind == BOOL:
            return bool(self.int[i])
        if kind == ARRAY and arrays:
            return self.object[i]
        return NOT_A_SCALAR


def last_per_item(items: np.ndarray, records: np.ndarray) -> np.ndarray:
    if records.size < 2:
        return records
    of = items[records]
    keep = np.empty(records.size, dtype=bool)
    np.not_equal(of[1:], of[:-1], out=keep[:-1])
    keep[-1] = True
    return records if keep.all() else records[keep]


class _Reading:
    """One batch's records turned into `Extracted`."""

    def __init__(self, reader: WireReader, raw: ScanResult, logs: bool) -> None:
        self.reader = reader
        self.logs = logs
        self.n = raw["items"]
        self.services: list[str] = raw["services"]
        self.item_resource = np.frombuffer(raw["item_resource"], dtype=np.int32)
        self.status = np.frombuffer(raw["status"], dtype=np.int32)
        self.start = np.frombuffer(raw["start"], dtype=np.uint64)
        self.end = np.frombuffer(raw["end"], dtype=np.uint64)
        self.trace_ids = np.frombuffer(raw["trace_id"], dtype=TRACE_ID)
        self.span_ids = np.frombuffer(raw["span_id"], dtype=SPAN_ID)
        self.exceptions: dict[int, str] = raw["exceptions"]
        ml_names: dict[str, list[int]] = {}
        self.columns: list[str] = []  # ml names that are columns (features, outputs)
        self.other: list[str] = []  # gen_ai.* and error.type
        for key_id, key in enumerate(raw["keys"]):
            decision = reader.mapping.decision(key)
            if decision is None:
                continue
            name, is_ml, is_column = decision
            if name not in ml_names:
                ml_names[name] = []
                if is_column:
                    self.columns.append(name)
                elif not is_ml:
                    self.other.append(name)
            ml_names[name].append(key_id)
        self.records = _Records(raw, ml_names)

    def extracted(self) -> Extracted:
        genai = [] if self.logs else self._genai()
        predictions, labels = self._predictions_and_labels()
        return Extracted(predictions, labels, genai)

    # -- per item: model, version, the label-only test ------------------------------------------

    def _predictions_and_labels(self) -> tuple[list[Predictions], list[Labels]]:
        r = self.records
        n = self.n
        model_records = r.last_of(MODEL_NAME)
        model_records = model_records[r.kind[model_records] == STRING]
        server_records = r.last_of(TRITON_MODEL_NAME)  # none unless a server sent its own names
        if model_records.size == 0 and server_records.size == 0:
            return [], []
        model_of = np.full(n, None, dtype=object)
        model_of[r.item[model_records]] = self._names(model_records)
        has_model = model_of != None  # noqa: E711
        server_named = None
        if server_records.size:
            server_named = self._server_models(server_records, model_of, has_model)
            has_model = model_of != None  # noqa: E711
        has_column = np.zeros(n, dtype=bool)
        for name in self.columns:
            has_column[r.item[r.all_of(name)]] = True
        has_truth = np.zeros(n, dtype=bool)
        has_truth[r.item[r.all_of(TRUE_LABEL)]] = True
        has_probabilities = np.zeros(n, dtype=bool)
        has_probabilities[r.item[r.all_of(PREDICTION_PROBABILITIES)]] = True
        labels = self._labels(np.flatnonzero(has_model & has_truth), model_of) if has_truth.any() else []
        is_prediction = has_model & ~(has_truth & ~has_column & ~has_probabilities)
        items = np.flatnonzero(is_prediction)
        if items.size == 0:
            return [], labels
        version_of = self._versions(n, server_named)
        keys = list(zip(model_of[items].tolist(), version_of[items].tolist()))
        groups = dict.fromkeys(keys)
        group_of = np.full(n, -1, dtype=np.intp)  # each item's group; -1: not a prediction
        if len(groups) == 1:
            group_items = {keys[0]: items}
            group_of[items] = 0
        else:
            group_index = {key: g for g, key in enumerate(groups)}
            of = np.fromiter((group_index[k] for k in keys), dtype=np.intp, count=len(keys))
            group_of[items] = of
            group_items = {key: items[of == g] for key, g in group_index.items()}
        self._group_of = group_of
        self._first_records = self._columns_first_records(group_of, len(group_items))
        self._whole_columns: dict[int, RawColumn] = {}
        return [self._group(g, model, version, its)
                for g, ((model, version), its) in enumerate(group_items.items())], labels

    def _names(self, records: np.ndarray) -> list[str | None]:
        """The string values of `records` as model names (None for an empty one)."""
        r = self.records
        return r.texts(records) if r.plain_strings else [m or None for m in r.texts(records)]

    def _server_models(self, records: np.ndarray, model_of: np.ndarray, has_model: np.ndarray) -> np.ndarray:
        """Fills `model_of` with `triton.model_name` where an item has no usable ml.model.name; per item,
        whether its model came from there."""
        r = self.records
        records = records[(r.kind[records] == STRING) & ~has_model[r.item[records]]]
        named = np.zeros(self.n, dtype=bool)
        if records.size:
            names = np.array(self._names(records), dtype=object)
            usable = names != None  # noqa: E711
            model_of[r.item[records[usable]]] = names[usable]
            named[r.item[records[usable]]] = True
        return named

    def _versions(self, n: int, server_named: np.ndarray | None) -> np.ndarray:
        r = self.records
        version_of = np.full(n, "", dtype=object)
        found = r.last_of(MODEL_VERSION)
        if found.size and bool((r.kind[found] == STRING).all()):
            version_of[r.item[found]] = r.texts(found)
        elif found.size:
            version_of[r.item[found]] = [version_text(r.value(i, False)) for i in found.tolist()]
        if server_named is not None:  # a model named by the server has the server's version, or none
            version_of[server_named] = ""
            found = r.last_of(TRITON_MODEL_VERSION)
            found = found[server_named[r.item[found]]]
            version_of[r.item[found]] = [version_text(r.value(i, False)) for i in found.tolist()]
        return version_of

    def _labels(self, items: np.ndarray, model_of: np.ndarray) -> list[Labels]:
        truths = self._values_by_item(TRUE_LABEL)
        ids = self._values_by_item(PREDICTION_ID)
        found: dict[str, Labels] = {}
        for item in items.tolist():
            add_label(found, model_of[item], id_text(ids.get(item)), truths[item])
        return list(found.values())

    def _values_by_item(self, name: str, arrays: bool = False) -> dict[int, Any]:
        r = self.records
        found = r.last_of(name)
        return {item: r.value(i, arrays) for item, i in zip(r.item[found].tolist(), found.tolist())}

    # -- one model version's predictions ---------------------------------------------------------

    def _group(self, group: int, model: str, version: str, items: np.ndarray) -> Predictions:
        rows = items.size
        row_of = np.full(self.n, -1, dtype=np.intp)
        row_of[items] = np.arange(rows)
        self._whole = rows == self.n  # the usual batch: one model version, every item a prediction
        predictions = Predictions(model, version, rows=rows,
                                  service_name=self.services[self.item_resource[items[0]]])
        predictions.durations = self._durations(items).tolist()
        predictions.trace_ids = self.trace_ids[items]
        predictions.span_ids = self.span_ids[items]
        self._ids(predictions, items, row_of)
        self._errors(predictions, items, row_of)
        self._probabilities(predictions, items, row_of)
        self._columns(predictions, group, items)
        self._embeddings(predictions, row_of)
        return predictions

    def _of_group(self, records: np.ndarray, row_of: np.ndarray) -> np.ndarray:
        """Those of `records` whose items are predictions of the group `row_of` numbers."""
        return records if self._whole else records[row_of[self.records.item[records]] >= 0]

    def _rows(self, records: np.ndarray, row_of: np.ndarray) -> np.ndarray:
        """The group's row of each record's item."""
        return self.records.item[records] if self._whole else row_of[self.records.item[records]]

    def _durations(self, items: np.ndarray) -> np.ndarray:
        if not self.logs:
            start, end = self.start[items], self.end[items]
            with np.errstate(invalid="ignore"):
                seconds = (end - start).astype(np.float64) / 1e9
            return np.where((end >= start) & (start > 0), seconds, math.nan)
        r = self.records
        durations = np.full(self.n, math.nan)
        found = r.last_of(PREDICTION_DURATION)
        numeric = found[(r.kind[found] == INT) | (r.kind[found] == DOUBLE)]
        durations[r.item[numeric]] = r.number[numeric]
        return durations[items]

    def _ids(self, predictions: Predictions, items: np.ndarray, row_of: np.ndarray) -> None:
        r = self.records
        found = self._of_group(r.last_of(PREDICTION_ID), row_of)
        if not found.size:
            return
        if bool((r.kind[found] == STRING).all()):
            texts = r.texts(found) if r.plain_strings else [t or None for t in r.texts(found)]
        else:
            texts = [id_text(r.value(i, False)) for i in found.tolist()]
        rows = self._rows(found, row_of).tolist()
        predictions.id_rows = [row for row, text in zip(rows, texts) if text is not None]
        predictions.ids = [text for text in texts if text is not None]

    def _errors(self, predictions: Predictions, items: np.ndarray, row_of: np.ndarray) -> None:
        """Failed predictions: an `error.type` attribute, else (spans) status ERROR, typed by the span's
        exception event."""
        r = self.records
        found = self._of_group(r.last_of(ERROR_TYPE, scalars_only=True), row_of)
        failed = items[self.status[items] == _STATUS_ERROR] if not self.logs else items[:0]
        if not found.size:  # the usual case: failures known by their status alone
            exceptions = self.exceptions
            predictions.error_rows = row_of[failed].tolist()
            predictions.error_types = ([exceptions.get(item, OTHER_ERROR) for item in failed.tolist()]
                                       if exceptions else [OTHER_ERROR] * failed.size)
            return
        error_of: dict[int, Any] = {item: r.value(i, False) for item, i in zip(r.item[found].tolist(), found.tolist())}
        for item in failed.tolist():
            if item not in error_of:
                error_of[item] = self.exceptions.get(item, OTHER_ERROR)
        for item in sorted(error_of):
            predictions.add_error(int(row_of[item]), error_of[item])

    def _probabilities(self, predictions: Predictions, items: np.ndarray, row_of: np.ndarray) -> None:
        r = self.records
        found = r.last_of(PREDICTION_PROBABILITIES)
        found = found[(row_of[r.item[found]] >= 0) & (r.kind[found] == ARRAY)]
        if not found.size:
            return
        classes_of = self._values_by_item(MODEL_CLASSES, arrays=True)
        for item, i in zip(r.item[found].tolist(), found.tolist()):
            predictions.add_probabilities(int(row_of[item]), r.object[i], classes_of.get(item))

    def _embeddings(self, predictions: Predictions, row_of: np.ndarray) -> None:
        """`ml.embedding`: the arrays the scanner found to be non-empty and all numbers (`is_embedding`), which
        it hands back packed (the mapping's `vector_keys`)."""
        r = self.records
        found = self._of_group(r.last_of(EMBEDDING), row_of)
        found = found[(r.kind[found] == ARRAY) & (r.int[found] == 1)]
        if found.size:
            predictions.embeddings = packed_embedding_matrix(predictions.rows, self._rows(found, row_of).tolist(),
                                                             list(map(r.object.__getitem__, found.tolist())))

    def _columns_first_records(self, group_of: np.ndarray, groups: int) -> np.ndarray:
        """Per group and column, the column's first record among the group's items (-1: none), so that
        each group orders its columns as a row-by-row reading meets them, in a few passes per batch."""
        r = self.records
        count = len(self.columns)
        per_column = [r.all_of(name) for name in self.columns]
        if not count:
            return np.empty((groups, 0), dtype=np.int64)
        records = np.concatenate(per_column)
        column = np.repeat(np.arange(count), [found.size for found in per_column])
        group = group_of[r.item[records]]
        kept = group >= 0
        none = np.iinfo(np.int64).max
        first = np.full(groups * count, none, dtype=np.int64)
        # Records as int64, first's type: ufunc.at casting each value costs some 30 times more.
        np.minimum.at(first, group[kept] * count + column[kept], records[kept].astype(np.int64))
        first[first == none] = -1
        return first.reshape(groups, count)

    def _columns(self, predictions: Predictions, group: int, items: np.ndarray) -> None:
        """Features and outputs, in the order a row-by-row reading meets them first, capped at
        `max_features` features (the values of features beyond it are counted as dropped). Each column
        is read once for the whole batch; a group takes its rows of it."""
        firsts = self._first_records[group].tolist()
        reader = self.reader
        for _, index in sorted((first, index) for index, first in enumerate(firsts) if first >= 0):
            name = self.columns[index]
            if name.startswith(FEATURE_PREFIX):
                if predictions.feature_count >= reader.max_features:
                    found = self.records.last(self.records.all_of(name), name)
                    reader.dropped_features += int(np.count_nonzero(self._group_of[self.records.item[found]] == group))
                    continue
                predictions.feature_count += 1
            whole = self._whole_column(index)
            predictions.columns[name] = BuiltColumn(
                whole if self._whole else RawColumn(whole.numbers[items], whole.strings[items]))

    def _whole_column(self, index: int) -> RawColumn:
        """Column `index` over every item of the batch."""
        column = self._whole_columns.get(index)
        if column is None:
            r = self.records
            name = self.columns[index]
            found = r.last(r.all_of(name), name)
            column = self._whole_columns[index] = self._column(name, found, r.item[found], self.n)
        return column

    def _column(self, name: str, found: np.ndarray, at: np.ndarray, rows: int) -> RawColumn:
        """The values of `found`, one record per row, at rows `at` of a column of `rows`."""
        r = self.records
        numbers = np.full(rows, math.nan)
        strings = np.full(rows, None, dtype=object)
        kind = r.kind[found]
        numeric = (kind == INT) | (kind == DOUBLE)
        if name == PREDICTION_LABEL:  # a class is a category, even when it is a number
            if numeric.any():
                strings[at[numeric]] = [category_of(r.value(i, False))[:MAX_STRING_LENGTH]
                                        for i in found[numeric].tolist()]
        elif numeric.all():
            numbers[at] = r.number[found]
            return RawColumn(numbers, strings)
        else:
            numbers[at[numeric]] = r.number[found[numeric]]
        text = kind == STRING
        if text.any():
            strings[at[text]] = r.texts(found[text])
        flags = kind == BOOL
        if flags.any():
            strings[at[flags]] = ["true" if v else "false" for v in r.int[found[flags]].tolist()]
        unreadable = kind > DOUBLE
        if unreadable.any():
            strings[at[unreadable]] = UNREADABLE
        return RawColumn(numbers, strings)

    # -- GenAI calls ------------------------------------------------------------------------------

    def _genai(self) -> list[GenAiCalls]:
        r = self.records
        names = [name for name in self.other if name != ERROR_TYPE]
        if not names:
            return []
        attributes: dict[int, dict[str, Any]] = {}
        found = np.sort(np.concatenate([r.all_of(name) for name in self.other]))
        found = found[r.kind[found] <= DOUBLE]  # scalars only
        keys = {key_id: name for name in self.other for key_id in r._names[name]}
        for item, i in zip(r.item[found].tolist(), found.tolist()):
            attributes.setdefault(item, {})[keys[int(r.key[i])]] = r.value(i, False)
        calls: dict[str, GenAiCalls] = {}
        for item, other in attributes.items():
            if len(other) > (ERROR_TYPE in other):
                service = self.services[self.item_resource[item]]
                failed = ERROR_TYPE not in other and self.status[item] == _STATUS_ERROR
                add_genai_call(calls, service, other, span_seconds(int(self.start[item]), int(self.end[item])),
                               self.exceptions.get(item, OTHER_ERROR) if failed else None)
        return list(calls.values())
