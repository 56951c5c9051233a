"""What every prediction source produces, and the rules that make two sources agree.

`Predictions` (one model version's rows, as columns), `Labels`, `GenAiCalls`
and `Extracted` (all three of one batch) are the only things the ml processor
reads. A source (agent/ml/sources/) finds the values its own way and hands
each one through the normalisers below: ids, strings cut to MAX_STRING_LENGTH,
error types, class probabilities, labels and GenAI calls are each decided
here once, so the wire reader, the message reader and any later source give
equal results for equal input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Protocol

import numpy as np

from agent.ml.columns import RawColumn, category_of
from agent.ml.vocabulary import (
    ERROR_TYPE, FEATURE_PREFIX, GENAI_INPUT_TOKENS, GENAI_LATENCY_E2E, GENAI_LATENCY_QUEUE, GENAI_LATENCY_TTFT,
    GENAI_OPERATION, GENAI_OUTPUT_TOKENS, GENAI_PROVIDER, GENAI_REQUEST_MODEL, GENAI_RESPONSE_MODEL,
    MAX_STRING_LENGTH, OTHER_ERROR, OUTPUTS, PREDICTION_CONFIDENCE, PREDICTION_LABEL, PREDICTION_SCORE,
    SERVER_CALL_MARKS,
)

# A list or map where a scalar belongs: read as the UNREADABLE text in a column, as nothing elsewhere.
NOT_A_SCALAR: Any = object()
# A row's trace and span id as numpy keeps them: zero bytes where the row has none.
TRACE_ID = "S16"
SPAN_ID = "S8"


# -- the normalisers ---------------------------------------------------------------------------------


def id_text(value: Any) -> str | None:
    """An `ml.prediction.id` value as the label join matches it; None when it cannot be one."""
    if isinstance(value, str):
        return value[:MAX_STRING_LENGTH] if value else None
    if isinstance(value, bool) or value is None or value is NOT_A_SCALAR:
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return category_of(value)
    return None


def version_text(value: Any) -> str:
    """An `ml.model.version` value as a version; "" when there is none."""
    return "" if value is None or value is NOT_A_SCALAR else str(value)[:MAX_STRING_LENGTH]


def error_type_text(value: Any) -> str:
    """An error's type as reported: `error.type` (or the exception's type) as text, `_OTHER` when empty."""
    return str(value)[:MAX_STRING_LENGTH] or OTHER_ERROR


def label_value(value: Any) -> str | float | None:
    """An `ml.label` attribute value as the join keeps it: a string, or a float (a regression target or a
    numbered class); None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    return None


def probability_numbers(probabilities: Any) -> list[float] | None:
    """`ml.prediction.probabilities` when it is a non-empty list of numbers only; None otherwise."""
    if not isinstance(probabilities, list) or not probabilities:
        return None
    numbers = [p for p in probabilities if isinstance(p, (int, float)) and not isinstance(p, bool)]
    return numbers if len(numbers) == len(probabilities) else None


def class_names(classes: Any) -> list[str] | None:
    """`ml.model.classes` as class names (a numbered class as its category text); None unless a list."""
    if not isinstance(classes, list):
        return None
    return [category_of(c) if isinstance(c, (int, float)) and not isinstance(c, bool) else str(c)[:MAX_STRING_LENGTH]
            for c in classes]


def trace_id_bytes(value: bytes) -> bytes:
    """An item's trace id as a row keeps it: its 16 bytes, b"" when it has none or one of another length."""
    return value if len(value) == 16 else b""


def span_id_bytes(value: bytes) -> bytes:
    """An item's span id: its 8 bytes, b"" when it has none or one of another length."""
    return value if len(value) == 8 else b""


def is_embedding(value: Any) -> bool:
    """Whether an `ml.embedding` value (a list, as the readers give arrays) can be one: non-empty, ints and
    doubles only (the wire scanner says the same of an array as it reads it)."""
    return isinstance(value, list) and bool(value) and all(type(v) is float or type(v) is int for v in value)


def embedding_matrix(rows: int, at: list[int], vectors: list[list[float]]) -> np.ndarray | None:
    """The rows' embeddings as one float64 matrix (rows x width), None when no row has one. `vectors` (each an
    `is_embedding` value) belong to rows `at`. The width is the first vector's; a row whose vector has another
    width or a value that is not finite, or that has none, is a row of NaN (missing)."""
    if not vectors:
        return None
    width = len(vectors[0])
    same = np.fromiter(map(len, vectors), dtype=np.int64, count=len(vectors)) == width
    kept = vectors if bool(same.all()) else [v for v, ok in zip(vectors, same.tolist()) if ok]
    # OTLP's ints are int64: each fits a double.
    values = np.fromiter(chain.from_iterable(kept), dtype=np.float64, count=len(kept) * width)
    return _matrix(rows, at, same, values.reshape(-1, width))


def packed_embedding_matrix(rows: int, at: list[int], packed: list[bytes]) -> np.ndarray | None:
    """`embedding_matrix` of vectors the wire scanner packed (float64 bytes, `is_embedding` ones only)."""
    if not packed:
        return None
    size = len(packed[0])
    same = np.fromiter(map(len, packed), dtype=np.int64, count=len(packed)) == size
    kept = packed if bool(same.all()) else [v for v, ok in zip(packed, same.tolist()) if ok]
    return _matrix(rows, at, same, np.frombuffer(b"".join(kept), dtype=np.float64).reshape(-1, size // 8))


def _matrix(rows: int, at: list[int], same: np.ndarray, values: np.ndarray) -> np.ndarray:
    matrix = np.full((rows, values.shape[1]), math.nan)
    matrix[np.asarray(at, dtype=np.intp)[same]] = values
    matrix[~np.isfinite(matrix).all(axis=1)] = math.nan
    return matrix


def span_seconds(start_ns: int, end_ns: int) -> float:
    """A span's duration in seconds; NaN when its times do not give one."""
    return (end_ns - start_ns) / 1e9 if end_ns >= start_ns > 0 else math.nan


# -- the types ---------------------------------------------------------------------------------------


class ColumnSource(Protocol):
    """A column as a source gathered it; `build` gives it as arrays of the batch's rows (new ones each time)."""

    def build(self, rows: int) -> RawColumn: ...


@dataclass
class ColumnBuilder:
    """Values of one column as they are found, one at a time: (row, value) pairs, split by type."""

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


class BuiltColumn:
    """A column a source built whole; `build` gives a copy, as `ColumnBuilder.build` gives new arrays."""

    __slots__ = ("column",)

    def __init__(self, column: RawColumn) -> None:
        self.column = column

    def build(self, rows: int) -> RawColumn:
        return RawColumn(self.column.numbers.copy(), self.column.strings.copy())


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
    columns: dict[str, ColumnSource] = field(default_factory=dict)  # by ml name: features and outputs
    trace_ids: np.ndarray | None = None  # TRACE_ID per row (zeros: none); None when the source reads no ids
    span_ids: np.ndarray | None = None  # SPAN_ID per row
    embeddings: np.ndarray | None = None  # ml.embedding per row (embedding_matrix), None when no row has one
    _probability_stats: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def add_error(self, row: int, error_type: Any) -> None:
        self.error_rows.append(row)
        self.error_types.append(error_type_text(error_type))

    def add_probabilities(self, row: int, probabilities: Any, classes: Any) -> None:
        """Row `row`'s class probabilities, when they are a list of numbers (else the row has none)."""
        numbers = probability_numbers(probabilities)
        if numbers is not None:
            self.probability_rows.append(row)
            self.probabilities.append(numbers)
            self.classes.append(class_names(classes))

    def features(self) -> dict[str, RawColumn]:
        return {name[len(FEATURE_PREFIX):]: c.build(self.rows) for name, c in self.columns.items()
                if name.startswith(FEATURE_PREFIX)}

    def outputs(self) -> dict[str, RawColumn]:
        columns = {name: c.build(self.rows) for name, c in self.columns.items() if name in OUTPUTS}
        if self.probability_rows:
            self._fill_from_probabilities(columns)
        if PREDICTION_SCORE in columns:
            # A binary model's confidence is the probability of the class it predicted.
            score = columns[PREDICTION_SCORE].numbers
            derived = np.maximum(score, 1.0 - score)
            confidence = columns.get(PREDICTION_CONFIDENCE)
            if confidence is None:
                columns[PREDICTION_CONFIDENCE] = RawColumn(derived, np.full(self.rows, None, dtype=object))
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
        confidence = columns.get(PREDICTION_CONFIDENCE)
        if confidence is None:
            confidence = columns[PREDICTION_CONFIDENCE] = RawColumn.missing(self.rows)
        gaps = confidence.is_missing[rows]
        confidence.numbers[rows[gaps]] = top[gaps]
        names = [classes[i] if classes is not None and 0 <= i < len(classes) else None
                 for classes, i in zip(self.classes, argmax.tolist())]
        if not any(n is not None for n in names):
            return
        label = columns.get(PREDICTION_LABEL)
        if label is None:
            label = columns[PREDICTION_LABEL] = RawColumn.missing(self.rows)
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
    """GenAI operations (spans with `gen_ai.*` attributes) of one service in one batch, row by row.

    A row is a client call, or (`server`) a request an inference server served: vLLM's and SGLang's
    `llm_request` span, told apart by `is_server_call`. A server row's `duration` is its
    `gen_ai.latency.e2e` (the span's duration when it has none)."""

    service_name: str
    operation: list[str] = field(default_factory=list)
    provider: list[str] = field(default_factory=list)
    request_model: list[str] = field(default_factory=list)
    response_model: list[str] = field(default_factory=list)
    input_tokens: list[float] = field(default_factory=list)  # NaN when not reported
    output_tokens: list[float] = field(default_factory=list)
    duration: list[float] = field(default_factory=list)  # seconds
    error_type: list[str] = field(default_factory=list)  # "" when the call did not fail
    server: list[bool] = field(default_factory=list)
    time_to_first_token: list[float] = field(default_factory=list)  # seconds, NaN when not reported
    time_in_queue: list[float] = field(default_factory=list)  # seconds, NaN when not reported

    @property
    def rows(self) -> int:
        return len(self.operation)


@dataclass
class Extracted:
    """Everything a source found in one batch."""

    predictions: list[Predictions]
    labels: list[Labels]
    genai: list[GenAiCalls]


# -- records built from one item's values ------------------------------------------------------------


def add_label(found: dict[str, Labels], model: str, prediction_id: str | None, value: Any) -> None:
    """Records `value` (an `ml.label` attribute's) as the label of `prediction_id` (an `id_text`) for
    `model`, when both are usable."""
    truth = label_value(value)
    if truth is None or prediction_id is None:
        return
    record = found.get(model)
    if record is None:
        record = found[model] = Labels(model)
    record.ids.append(prediction_id)
    record.values.append(truth[:MAX_STRING_LENGTH] if isinstance(truth, str) else truth)


def is_server_call(attributes: dict[str, Any]) -> bool:
    """Whether a GenAI span is a request an inference server served rather than a client's call: it
    carries `gen_ai.latency.e2e` or `gen_ai.latency.time_to_first_token`, which vLLM and SGLang set on their
    SERVER span (and the inference proxy on its own) and no client instrumentation sets. The attributes,
    not the span kind: they are what the server metrics are made of, and the wire scanner reads no kind."""
    return any(name in attributes for name in SERVER_CALL_MARKS)


def seconds_value(value: Any) -> float:
    """A latency attribute (seconds) as a float; NaN unless a finite number >= 0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return math.nan


def add_genai_call(found: dict[str, GenAiCalls], service: str, attributes: dict[str, Any], seconds: float,
                   status_error: str | None) -> None:
    """One GenAI call of `service`, from its `gen_ai.*` (and `error.type`) scalar attributes, its duration
    and, for a span whose status is ERROR, the type its exception event gives (else None)."""
    calls = found.get(service)
    if calls is None:
        calls = found[service] = GenAiCalls(service)
    server = is_server_call(attributes)
    if server:
        e2e = seconds_value(attributes.get(GENAI_LATENCY_E2E))
        seconds = seconds if math.isnan(e2e) else e2e  # the span's own duration when e2e is absent
    calls.server.append(server)
    calls.time_to_first_token.append(seconds_value(attributes.get(GENAI_LATENCY_TTFT)) if server else math.nan)
    calls.time_in_queue.append(seconds_value(attributes.get(GENAI_LATENCY_QUEUE)) if server else math.nan)

    def text(names: tuple[str, ...]) -> str:
        for name in names:
            value = attributes.get(name)
            if isinstance(value, str) and value:
                return value[:MAX_STRING_LENGTH]
        return ""

    def count(names: tuple[str, ...]) -> float:
        for name in names:
            value = attributes.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
                return float(value)
        return math.nan

    calls.operation.append(text(GENAI_OPERATION))
    calls.provider.append(text(GENAI_PROVIDER))
    calls.request_model.append(text(GENAI_REQUEST_MODEL))
    calls.response_model.append(text(GENAI_RESPONSE_MODEL))
    calls.input_tokens.append(count(GENAI_INPUT_TOKENS))
    calls.output_tokens.append(count(GENAI_OUTPUT_TOKENS))
    calls.duration.append(seconds)
    error = attributes.get(ERROR_TYPE, status_error)
    calls.error_type.append("" if error is None else error_type_text(error))
