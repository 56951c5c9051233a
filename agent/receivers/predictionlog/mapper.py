"""One JSON line of a prediction log as one OTLP log record carrying the prediction convention's attributes.

An `ml` processor in the logs pipeline then treats the record exactly as it
treats a prediction span. The default field mapping reads lines such as

    {"timestamp": "2024-05-01T12:00:00Z", "model_version": "v1.0", "request_id": "r-17",
     "input": {"features": [1, 2, 3, 4]},
     "prediction": {"class": 0, "confidence": 0.95}, "latency_ms": 12.5}

with features as a list (named by `feature_names`, else `f0`, `f1`, ...) or
as an object (named by its keys). A line that is not a JSON object, is longer
than `max_line_size` or names no model is counted by reason and skipped.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1 import logs_pb2

from agent import __version__
from agent.attributes import set_any_value
from agent.ml import vocabulary as v
from agent.ml.columns import category_of
from agent.receivers.predictionlog.config import PredictionLogReceiverConfig

# The semantic conventions' attributes of a record read from a file.
LOG_FILE_NAME = "log.file.name"
LOG_FILE_PATH = "log.file.path"
SCOPE_NAME = "vigil.predictionlog"

_MISSING = object()
_SCALAR = (str, int, float, bool)
_INT64 = (-(2**63), 2**63 - 1)


class RecordMapper:
    """Turns a parsed JSON line into the `ml.*` attributes of one log record."""

    def __init__(self, config: PredictionLogReceiverConfig) -> None:
        def compile_(paths: list[str]) -> list[tuple[str, ...]]:
            return [tuple(p.split(".")) for p in paths if p]

        f = config.fields
        self._timestamp = compile_(f.timestamp)
        self._model_name = compile_(f.model_name)
        self._model_version = compile_(f.model_version)
        self._prediction_id = compile_(f.prediction_id)
        self._features = compile_(f.features)
        self._label = compile_(f.label)
        self._score = compile_(f.score)
        self._confidence = compile_(f.confidence)
        self._probabilities = compile_(f.probabilities)
        self._classes = compile_(f.classes)
        self._value = compile_(f.value)
        self._ground_truth = compile_(f.ground_truth)
        self._latency = compile_(f.latency_ms)
        self._error = compile_(f.error)
        self._extra = {name: compile_([path]) for name, path in config.attributes.items()}
        self._default_model = config.model_name
        self._default_version = config.model_version
        self._feature_names = list(config.feature_names)

    def fill(self, record: Any, obj: dict[str, Any], observed_ns: int) -> bool:
        """Fill `record` from `obj`; False (and `record` untouched) when the line names no model."""
        model = _text(_first(obj, self._model_name, scalar=True)) or self._default_model
        if not model:
            return False
        attributes: dict[str, Any] = {v.MODEL_NAME: model}
        version = _text(_first(obj, self._model_version, scalar=True)) or self._default_version
        if version:
            attributes[v.MODEL_VERSION] = version
        prediction_id = _first(obj, self._prediction_id, scalar=True)
        if prediction_id is not None:
            attributes[v.PREDICTION_ID] = _text(prediction_id)

        features = _first(obj, self._features)
        if isinstance(features, list):
            for i, value in enumerate(features):
                name = self._feature_names[i] if i < len(self._feature_names) else f"f{i}"
                _put(attributes, v.FEATURE_PREFIX + name, value)
        elif isinstance(features, dict):
            for name, value in features.items():
                _put(attributes, v.FEATURE_PREFIX + str(name), value)

        label = _first(obj, self._label, scalar=True)
        if label is not None:
            attributes[v.PREDICTION_LABEL] = _category(label)
        for key, paths in ((v.PREDICTION_SCORE, self._score), (v.PREDICTION_CONFIDENCE, self._confidence),
                           (v.PREDICTION_VALUE, self._value)):
            number = _number(_first(obj, paths, scalar=True))
            if number is not None:
                attributes[key] = number
        probabilities = _first(obj, self._probabilities)
        if isinstance(probabilities, list) and probabilities:
            numbers = [_number(p) for p in probabilities]
            if all(n is not None for n in numbers):
                attributes[v.PREDICTION_PROBABILITIES] = numbers
        classes = _first(obj, self._classes)
        if isinstance(classes, list) and classes and all(isinstance(c, _SCALAR) for c in classes):
            attributes[v.MODEL_CLASSES] = [_category(c) for c in classes]
        truth = _first(obj, self._ground_truth, scalar=True)
        if truth is not None:
            # A class is a category (0 and "0" join alike); a float is a regression target.
            attributes[v.TRUE_LABEL] = truth if isinstance(truth, float) else _category(truth)
        latency = _number(_first(obj, self._latency, scalar=True))
        if latency is not None:
            # Seconds, as the span duration that `ml.prediction.duration` is made from.
            attributes[v.PREDICTION_DURATION] = latency / 1000.0
        error = _first(obj, self._error)
        failed = error is not None and error is not False and error != ""
        if failed:
            attributes[v.ERROR_TYPE] = error[:v.MAX_STRING_LENGTH] if isinstance(error, str) else "error"
        for name, paths in self._extra.items():
            _put(attributes, name, _first(obj, paths))

        timestamp = _time_ns(_first(obj, self._timestamp, scalar=True))
        record.time_unix_nano = timestamp or observed_ns
        record.observed_time_unix_nano = observed_ns
        if failed:
            record.severity_number, record.severity_text = logs_pb2.SEVERITY_NUMBER_ERROR, "ERROR"
        else:
            record.severity_number, record.severity_text = logs_pb2.SEVERITY_NUMBER_INFO, "INFO"
        for key, value in attributes.items():
            set_any_value(record.attributes.add(key=key).value, value)
        return True


def _first(obj: Any, paths: list[tuple[str, ...]], scalar: bool = False) -> Any:
    for path in paths:
        value = obj
        for part in path:
            if isinstance(value, dict):
                value = value.get(part, _MISSING)
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                value = _MISSING
            if value is _MISSING:
                break
        if value is _MISSING or value is None or (scalar and not isinstance(value, _SCALAR)):
            continue
        return value
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)[:v.MAX_STRING_LENGTH]


def _category(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return category_of(value)
    return _text(value) or ""


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _put(attributes: dict[str, Any], key: str, value: Any) -> None:
    """A feature or extra attribute as its JSON type; null is left out (a missing value)."""
    if value is None:
        return
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
        value = float(value)
    elif isinstance(value, (list, dict)):
        # Kept as it came (the ml processor counts it as a type mismatch); nested too deep is text.
        value = _plain(value, 4)
    attributes[key] = value


def _plain(value: Any, depth: int) -> Any:
    if isinstance(value, (list, dict)):
        if depth == 0:
            return json.dumps(value)[:v.MAX_STRING_LENGTH]
        if isinstance(value, list):
            return [_plain(v, depth - 1) for v in value if v is not None]
        return {str(k): _plain(v, depth - 1) for k, v in value.items() if v is not None}
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
        return float(value)
    return value


def _time_ns(value: Any) -> int | None:
    """ISO 8601 text, or a number of epoch seconds, milliseconds, microseconds or nanoseconds."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            try:
                moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                return None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            return int(moment.timestamp() * 1e9)
    if isinstance(value, float) and (not math.isfinite(value) or value.is_integer()):
        value = int(value) if math.isfinite(value) else 0
    if value <= 0:
        return None
    # Which unit: the magnitude of a present-day epoch in each (integers stay exact).
    for limit, scale in ((10**11, 10**9), (10**14, 10**6), (10**17, 10**3)):
        if value < limit:
            return int(value * scale)
    return int(value) if value < 2**63 else None


class LogRecords:
    """The records one poll makes: one request on the configured resource, a record per prediction line."""

    def __init__(self, config: PredictionLogReceiverConfig, mapper: RecordMapper) -> None:
        self.request = ExportLogsServiceRequest()
        resource_logs = self.request.resource_logs.add()
        for key, value in config.resource.items():
            set_any_value(resource_logs.resource.attributes.add(key=key).value, value)
        self._scope = resource_logs.scope_logs.add()
        self._scope.scope.name = SCOPE_NAME
        self._scope.scope.version = __version__
        self._mapper = mapper
        self._max_line_size = config.max_line_size
        self._keep_body = config.keep_body
        self.malformed: Counter = Counter()  # lines skipped, by reason

    def __len__(self) -> int:
        return len(self._scope.log_records)

    def add(self, line: bytes, path: str, name: str, observed: int) -> None:
        """The record of one line of the file at `path` (`name`: its base name), unless it is no prediction."""
        line = line.rstrip(b"\r")
        if not line.strip():
            return
        if len(line) > self._max_line_size:
            self.malformed["too_long"] += 1
            return
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            self.malformed["json"] += 1
            return
        if not isinstance(obj, dict):
            self.malformed["not_object"] += 1
            return
        records = self._scope.log_records
        record = records.add()
        try:
            filled = self._mapper.fill(record, obj, observed)
        except (ValueError, TypeError, OverflowError, RecursionError):
            filled = False
            self.malformed["unmappable"] += 1
        else:
            if not filled:
                self.malformed["no_model"] += 1
        if not filled:
            del records[-1]
            return
        if self._keep_body:
            record.body.string_value = line.decode("utf-8", "replace")
        set_any_value(record.attributes.add(key=LOG_FILE_NAME).value, name)
        set_any_value(record.attributes.add(key=LOG_FILE_PATH).value, path)
