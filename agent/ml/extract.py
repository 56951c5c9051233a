"""Predictions out of OTLP batches: spans and log records carrying `ml.*` attributes.

One pass over a batch groups its predictions by model and version and builds
one `RawColumn` per feature and per prediction output. Each attribute is read
once; values go straight into per-column lists that become numpy arrays, so
the engine never sees one Python object per row.

The same pass picks out

- per prediction: its id, latency (a span's duration; on a log record the
  `ml.prediction.duration` attribute, in seconds), whether it failed (span
  status ERROR, or an `error.type` attribute; the type from `error.type`,
  else the `exception.type` of the span's exception event, else `_OTHER`), and
  class probabilities (`ml.prediction.probabilities`, with `ml.model.classes`);
- labels: items with `ml.label` and `ml.prediction.id` (and `ml.model.name`).
  An item that carries nothing else of a prediction (no output, no feature) is
  a label only, not a prediction;
- GenAI calls: spans with `gen_ai.*` attributes (the GenAI semantic
  conventions, and the older names OpenLLMetry sends: `gen_ai.system`,
  `gen_ai.usage.prompt_tokens`/`completion_tokens`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from agent.ml.columns import UNREADABLE, RawColumn, category_of
from agent.ml.labels import label_value
from agent.ml.vocabulary import MODEL_NAME
from agent.signals import Batch, Signal

# The scope of the log records the `alerts` processor writes for alert state changes.
ALERTS_SCOPE = "vigil.alerts"
MODEL_VERSION = "ml.model.version"
PREDICTION_ID = "ml.prediction.id"
TRUE_LABEL = "ml.label"
DURATION = "ml.prediction.duration"
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
_SCALAR_KINDS = frozenset(_SCALARS)
_ARRAYS = (PROBABILITIES, CLASSES)
ERROR_TYPE = "error.type"
OTHER_ERROR = "_OTHER"  # the semantic conventions' error.type when nothing more is known
_STATUS_ERROR = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR

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
    durations: list[float] = field(default_factory=list)  # seconds, NaN when unknown; one per row
    id_rows: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    error_rows: list[int] = field(default_factory=list)
    error_types: list[str] = field(default_factory=list)
    probability_rows: list[int] = field(default_factory=list)
    probabilities: list[list[float]] = field(default_factory=list)
    classes: list[list[str] | None] = field(default_factory=list)  # per row of probability_rows
    _columns: dict[str, _ColumnBuilder] = field(default_factory=dict)
    _probability_stats: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def features(self) -> dict[str, RawColumn]:
        return {name[len(FEATURE_PREFIX):]: c.build(self.rows) for name, c in self._columns.items()
                if name.startswith(FEATURE_PREFIX)}

    def outputs(self) -> dict[str, RawColumn]:
        columns = {name: c.build(self.rows) for name, c in self._columns.items() if name in OUTPUTS}
        if self.probability_rows:
            self._fill_from_probabilities(columns)
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

    def probability_stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the rows with probabilities (`probability_rows`): the top probability, the entropy
        (natural log, of the probabilities normalised to sum 1) and the index of the top class.
        Computed column-wise: all rows' probabilities as one flat array cut by `np.add.reduceat`."""
        if self._probability_stats is None:
            lengths = np.fromiter(map(len, self.probabilities), dtype=np.int64, count=len(self.probabilities))
            flat = np.fromiter((p for ps in self.probabilities for p in ps), dtype=float, count=int(lengths.sum()))
            flat = np.where(np.isfinite(flat) & (flat > 0), flat, 0.0)
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            totals = np.add.reduceat(flat, starts) if flat.size else np.zeros(lengths.size)
            top = np.maximum.reduceat(flat, starts) if flat.size else np.zeros(lengths.size)
            with np.errstate(divide="ignore", invalid="ignore"):
                share = flat / np.repeat(np.where(totals > 0, totals, 1.0), lengths)
                plogp = np.where(share > 0, share * np.log(share), 0.0)
            entropy = -np.add.reduceat(plogp, starts) if flat.size else np.zeros(lengths.size)
            # The first index of the top value within each row.
            is_top = flat == np.repeat(top, lengths)
            position = np.arange(flat.size) - np.repeat(starts, lengths)
            first = np.where(is_top, position, np.iinfo(np.int64).max)
            argmax = np.minimum.reduceat(first, starts) if flat.size else np.zeros(lengths.size, dtype=np.int64)
            bad = (lengths == 0) | (totals <= 0)
            top, entropy = np.where(bad, math.nan, top), np.where(bad, math.nan, entropy)
            self._probability_stats = (top, entropy, np.where(bad, -1, argmax))
        return self._probability_stats

    def _fill_from_probabilities(self, columns: dict[str, RawColumn]) -> None:
        """Confidence (the top probability) and the predicted class (the top class, when the classes
        are named) where the prediction did not give them."""
        rows = np.asarray(self.probability_rows)
        top, _, argmax = self.probability_stats()
        confidence = columns.get(CONFIDENCE)
        if confidence is None:
            confidence = columns[CONFIDENCE] = RawColumn.missing(self.rows)
        gaps = confidence.is_missing[rows]
        confidence.numbers[rows[gaps]] = top[gaps]
        names = [classes[i] if classes is not None and 0 <= i < len(classes) else None
                 for classes, i in zip(self.classes, argmax.tolist())]
        if not any(n is not None for n in names):
            return
        label = columns.get(LABEL)
        if label is None:
            label = columns[LABEL] = RawColumn.missing(self.rows)
        gaps = label.is_missing[rows]
        named = np.array(names, dtype=object)
        fill = gaps & (named != None)  # noqa: E711
        label.strings[rows[fill]] = named[fill]

    def duration_seconds(self) -> np.ndarray:
        return np.array(self.durations, dtype=float)


@dataclass
class Labels:
    """Ground-truth labels for one model found in one batch: `ml.prediction.id` → `ml.label`."""

    model: str
    ids: list[str] = field(default_factory=list)
    values: list[str | float] = field(default_factory=list)


@dataclass
class GenAiCalls:
    """GenAI operations (spans with `gen_ai.*` attributes) of one service in one batch, row by row."""

    service_name: str
    operation: list[str] = field(default_factory=list)
    provider: list[str] = field(default_factory=list)
    request_model: list[str] = field(default_factory=list)
    response_model: list[str] = field(default_factory=list)
    input_tokens: list[float] = field(default_factory=list)  # NaN when not reported
    output_tokens: list[float] = field(default_factory=list)
    duration: list[float] = field(default_factory=list)  # seconds
    error_type: list[str] = field(default_factory=list)  # "" when the call did not fail

    @property
    def rows(self) -> int:
        return len(self.operation)


@dataclass
class Extracted:
    predictions: list[Predictions]
    labels: list[Labels]
    genai: list[GenAiCalls]


class Extractor:
    """Finds predictions in batches. `attributes` maps `ml.*` names to the names an app uses.

    A mapping key ending in `*` maps a prefix: `{"ml.feature.*": "features.*"}`.
    """

    def __init__(self, attributes: Mapping[str, str] | None = None, max_features: int = 200,
                 use_scanner: bool = True) -> None:
        self._exact: dict[str, str] = {}
        self._prefixes: list[tuple[str, str]] = []
        for ml_name, source in (attributes or {}).items():
            if ml_name.endswith("*") and source.endswith("*"):
                self._prefixes.append((source[:-1], ml_name[:-1]))
            else:
                self._exact[source] = ml_name
        self.max_features = max_features
        self.dropped_features = 0  # feature values beyond max_features, since start
        # Per attribute key, what it is: (ml name, is an ml.* name, is a column) or None (not read).
        self._decisions: dict[str, tuple[str, bool, bool] | None] = {}
        # Bytes one of which a request must hold for anything in it to be read (see `_nothing_to_read`).
        # `ml.` first: a batch of predictions is then told apart after a few bytes, not a whole search.
        sources = {source.encode() for source in self._exact} | {source.encode() for source, _ in self._prefixes}
        self._markers = (b"ml.", b"gen_ai.", *sorted(sources - {b"ml.", b"gen_ai."}))
        # The keys the wire scanner hands back: those that `_decide` may read.
        self.scan_prefixes = (*self._markers, ERROR_TYPE.encode())
        self._scanned = None
        if use_scanner:
            from agent.ml import scanned  # it reads this module's types: imported once this one is loaded
            if scanned.available:
                self._scanned = scanned.read

    def _ml_name(self, key: str) -> str:
        if key in self._exact:
            return self._exact[key]
        for source, ml_prefix in self._prefixes:
            if key.startswith(source):
                return ml_prefix + key[len(source):]
        return key

    def _decide(self, key: str) -> tuple[str, bool, bool] | None:
        name = self._ml_name(key)
        if name.startswith("ml."):
            decision: tuple[str, bool, bool] | None = (name, True, name.startswith(FEATURE_PREFIX) or name in OUTPUTS)
        elif name.startswith("gen_ai.") or name == ERROR_TYPE:
            decision = (name, False, False)
        else:
            decision = None
        if len(self._decisions) < _MAX_DECISIONS:  # keys an app makes up per request must not grow it
            self._decisions[key] = decision
        return decision

    def decision(self, key: str) -> tuple[str, bool, bool] | None:
        decision = self._decisions.get(key, _UNSEEN)
        return self._decide(key) if decision is _UNSEEN else decision

    def _nothing_to_read(self, batch: Batch) -> bool:
        """True when the batch's wire bytes (if it still has those it arrived with) hold no key that
        could be read: no `ml.`, `gen_ai.` nor mapped source key anywhere in them (`error.type` alone
        is read only beside those)."""
        wire = batch._wire
        return wire is not None and not any(marker in wire for marker in self._markers)

    def extract(self, batch: Batch) -> list[Predictions]:
        return self.extract_all(batch).predictions

    def extract_all(self, batch: Batch) -> Extracted:
        found: dict[tuple[str, str], Predictions] = {}
        labels: dict[str, Labels] = {}
        genai: dict[str, GenAiCalls] = {}
        if self._nothing_to_read(batch):
            return Extracted([], [], [])
        if self._scanned is not None:
            extracted = self._scanned(self, batch)
            if extracted is not None:
                return extracted
        spans = batch.signal is Signal.TRACES
        for resource in batch.resources():
            service = ""
            for kv in resource.resource.attributes:
                if kv.key == "service.name":
                    service = kv.value.string_value
                    break
            for scope in (resource.scope_spans if spans else resource.scope_logs):
                if not spans and scope.scope.name == ALERTS_SCOPE:
                    continue  # alert notices carry a model's labels but are not predictions
                for item in (scope.spans if spans else scope.log_records):
                    self._extract_item(item, spans, service, found, labels, genai)
        return Extracted(list(found.values()), list(labels.values()), list(genai.values()))

    def _extract_item(self, item: Any, is_span: bool, service: str, found: dict[tuple[str, str], Predictions],
                      labels: dict[str, Labels], genai: dict[str, GenAiCalls]) -> None:
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
                elif kind == "array_value" and name in _ARRAYS:
                    read = [getattr(v, v.WhichOneof("value") or "string_value") for v in value.array_value.values]
                elif kind is not None:
                    read = _NOT_A_SCALAR  # a list or map where a scalar belongs
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
            _genai_call(item, other, service, genai)
        model = values.get(MODEL_NAME)
        if not isinstance(model, str) or not model:
            return
        model = model[:MAX_STRING_LENGTH]
        prediction_id = _id_text(values.get(PREDICTION_ID))
        if TRUE_LABEL in values:
            truth = label_value(values[TRUE_LABEL])
            if truth is not None and prediction_id is not None:
                record = labels.get(model)
                if record is None:
                    record = labels[model] = Labels(model)
                record.ids.append(prediction_id)
                record.values.append(truth[:MAX_STRING_LENGTH] if isinstance(truth, str) else truth)
            if not columns_found and PROBABILITIES not in values:
                return  # a label, not a prediction
        version = values.get(MODEL_VERSION)
        version = str(version) if version is not None and version is not _NOT_A_SCALAR else ""
        key = (model, version[:MAX_STRING_LENGTH])
        predictions = found.get(key)
        if predictions is None:
            predictions = found[key] = Predictions(key[0], key[1], service_name=service)
        row = predictions.rows
        predictions.rows += 1
        error_type = other.get(ERROR_TYPE) if other is not None else None
        if is_span:
            start, end = item.start_time_unix_nano, item.end_time_unix_nano
            predictions.durations.append((end - start) / 1e9 if end >= start > 0 else math.nan)
            if error_type is None and item.status.code == _STATUS_ERROR:
                error_type = _exception_type(item)
        else:
            duration = values.get(DURATION)
            predictions.durations.append(float(duration) if isinstance(duration, (int, float))
                                         and not isinstance(duration, bool) else math.nan)
        if error_type is not None:
            predictions.error_rows.append(row)
            predictions.error_types.append(str(error_type)[:MAX_STRING_LENGTH] or OTHER_ERROR)
        if prediction_id is not None:
            predictions.id_rows.append(row)
            predictions.ids.append(prediction_id)
        if PROBABILITIES in values:
            probabilities = values[PROBABILITIES]
            if isinstance(probabilities, list) and probabilities:
                numbers = [p for p in probabilities if isinstance(p, (int, float)) and not isinstance(p, bool)]
                if len(numbers) == len(probabilities):
                    classes = values.get(CLASSES)
                    predictions.probability_rows.append(row)
                    predictions.probabilities.append(numbers)
                    predictions.classes.append([category_of(c) if isinstance(c, (int, float))
                                                and not isinstance(c, bool) else str(c)[:MAX_STRING_LENGTH]
                                                for c in classes] if isinstance(classes, list) else None)
        columns = predictions._columns
        for name in columns_found:
            value = values[name]
            column = columns.get(name)
            if column is None:
                if name.startswith(FEATURE_PREFIX) and predictions.feature_count >= self.max_features:
                    self.dropped_features += 1
                    continue
                column = columns[name] = _ColumnBuilder()
                predictions.feature_count += name.startswith(FEATURE_PREFIX)
            if type(value) is float and name != LABEL:  # the common case, as `add` would take it
                column.number_rows.append(row)
                column.numbers.append(value)
            elif value is _NOT_A_SCALAR:
                column.string_rows.append(row)
                column.strings.append(UNREADABLE)
            elif name == LABEL and isinstance(value, (int, float)) and not isinstance(value, bool):
                column.add(row, category_of(value))  # a class is a category, even when it is a number
            else:
                column.add(row, value)


def _id_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value[:MAX_STRING_LENGTH] if value else None
    if isinstance(value, bool) or value is None or value is _NOT_A_SCALAR:
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return category_of(value)
    return None


def _exception_type(span: Any) -> str:
    """The `exception.type` of a failed span's exception event, else `_OTHER`."""
    for event in span.events:
        if event.name == "exception":
            for kv in event.attributes:
                if kv.key == "exception.type" and kv.value.string_value:
                    return kv.value.string_value
    return OTHER_ERROR


def _genai_call(span: Any, attributes: dict[str, Any], service: str, found: dict[str, GenAiCalls]) -> None:
    calls = found.get(service)
    if calls is None:
        calls = found[service] = GenAiCalls(service)

    def text(*names: str) -> str:
        for name in names:
            value = attributes.get(name)
            if isinstance(value, str) and value:
                return value[:MAX_STRING_LENGTH]
        return ""

    def count(*names: str) -> float:
        for name in names:
            value = attributes.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
                return float(value)
        return math.nan

    calls.operation.append(text("gen_ai.operation.name"))
    calls.provider.append(text("gen_ai.provider.name", "gen_ai.system"))
    calls.request_model.append(text("gen_ai.request.model"))
    calls.response_model.append(text("gen_ai.response.model"))
    calls.input_tokens.append(count("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"))
    calls.output_tokens.append(count("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"))
    calls.duration.append((span.end_time_unix_nano - span.start_time_unix_nano) / 1e9
                          if span.end_time_unix_nano >= span.start_time_unix_nano > 0 else math.nan)
    error = attributes.get(ERROR_TYPE)
    if error is None and span.status.code == _STATUS_ERROR:
        error = _exception_type(span)
    calls.error_type.append("" if error is None else (str(error)[:MAX_STRING_LENGTH] or OTHER_ERROR))


_NOT_A_SCALAR = object()  # a list or map where a scalar belongs; stored as the UNREADABLE text
_UNSEEN = object()
_MAX_DECISIONS = 10_000
