"""V2 and V1 payloads → one dict of prediction attributes per row.

Inputs: a [N] or [N, 1] tensor is one feature `ml.feature.<input>`; a
[N, D] one is D features `ml.feature.<input>.<i>` (or the names in
`feature_names`) when D < `embedding_min_width`, else one `ml.embedding`
(`ml.embedding.<input>` when a request has several); a BYTES tensor is
categorical and never an embedding; a tensor of more dimensions (an image)
is not read unless `inputs` says `embedding`. Outputs, unless `outputs`
names their role: strings, integers or booleans are the label; a [N, C]
float tensor whose rows sum to 1 is the probabilities; a [N] float in [0, 1]
is a binary model's score (a regression value when `binary` is false);
another [N] float is a value; anything else is not read. The first output of
each role wins.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from agent.ml import vocabulary as v
from agent.receivers.payloads.config import PayloadConfig
from agent.receivers.payloads.errors import PayloadError
from agent.receivers.payloads.tensors import Budget, json_tensor, v2_tensors

_DEFAULT = PayloadConfig()
_ROLE_KEYS = {"label": v.PREDICTION_LABEL, "score": v.PREDICTION_SCORE, "value": v.PREDICTION_VALUE,
              "probabilities": v.PREDICTION_PROBABILITIES}
_SUMS_TO_ONE = 1e-3  # float32 softmax rows sum to 1 within this


def v2_rows(request: Mapping[str, Any], response: Mapping[str, Any] | None, *, model: str, version: str = "",
            config: PayloadConfig = _DEFAULT) -> list[dict[str, Any]]:
    """The rows of one Open Inference Protocol call: its inputs as features, its outputs as predictions.

    `response` None (the server failed, or it is not in yet) gives rows of features only. The rows'
    `ml.prediction.id` is the request's (else the response's) `id`, with `-<row>` after it when the
    batch has more than one row. `version` empty: the response's `model_version`. Raises `PayloadError`.
    """
    if not isinstance(request, Mapping):
        raise PayloadError("malformed", "request", "must be a JSON object")
    budget = Budget(config)
    inputs = v2_tensors(request.get("inputs"), "inputs", budget)
    outputs: dict[str, np.ndarray] = {}
    if response is not None:
        if not isinstance(response, Mapping):
            raise PayloadError("malformed", "response", "must be a JSON object")
        if "outputs" in response:  # an error answer ({"error": ...}) has none: features only
            outputs = v2_tensors(response["outputs"], "outputs", budget)
        version = version or _text(response.get("model_version"))
    request_id = _text(request.get("id")) or (_text(response.get("id")) if response is not None else "")
    return _rows(inputs, outputs, "inputs", "outputs", model=model, version=version, request_id=request_id,
                 config=config)


def v1_rows(request: Mapping[str, Any], response: Mapping[str, Any] | None, *, model: str, version: str = "",
            config: PayloadConfig = _DEFAULT, request_id: str = "") -> list[dict[str, Any]]:
    """The rows of one V1 call (`{"instances": [...]}` → `{"predictions": [...]}`); `request_id` names them.

    An instance is a list (an input named `instances`: columns or an embedding), an object (one input
    per key) or a scalar; a prediction likewise (an object: one output per key). Raises `PayloadError`.
    """
    if not isinstance(request, Mapping):
        raise PayloadError("malformed", "request", "must be a JSON object")
    budget = Budget(config)
    inputs = _json_columns(request.get("instances"), "instances", budget, config)
    outputs: dict[str, np.ndarray] = {}
    if response is not None:
        if not isinstance(response, Mapping):
            raise PayloadError("malformed", "response", "must be a JSON object")
        if "predictions" in response:
            outputs = _json_columns(response["predictions"], "predictions", budget, config)
    return _rows(inputs, outputs, "instances", "predictions", model=model, version=version,
                 request_id=request_id, config=config)


def _json_columns(items: Any, field: str, budget: Budget, config: PayloadConfig) -> dict[str, np.ndarray]:
    """V1 instances or predictions as named columns: objects by key, anything else as one column `field`."""
    if not isinstance(items, list):
        raise PayloadError("malformed", field, "must be a list")
    if len(items) > config.max_rows:
        raise PayloadError("too_large", field, f"{len(items)} rows, more than max_rows {config.max_rows}")
    if items and all(isinstance(item, Mapping) for item in items):
        keys = list(dict.fromkeys(k for item in items for k in item))
        missing = next((k for k in keys for item in items if k not in item), None)
        if missing is not None:
            raise PayloadError("shape", f"{field}[].{missing}", "present in some rows, not in all")
        return {str(k): json_tensor([item[k] for item in items], f"{field}[].{k}", budget) for k in keys}
    return {field: json_tensor(items, field, budget)}


def _rows(inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], inputs_field: str, outputs_field: str,
          *, model: str, version: str, request_id: str, config: PayloadConfig) -> list[dict[str, Any]]:
    count = _row_count(inputs, inputs_field, None, config)
    if outputs:
        _row_count(outputs, outputs_field, count, config)
    common: dict[str, Any] = {v.MODEL_NAME: _cut(model)}
    if version:
        common[v.MODEL_VERSION] = _cut(version)
    columns = _feature_columns(inputs, count, inputs_field, config)
    if len(columns) > config.max_features:
        raise PayloadError("too_large", inputs_field, f"{len(columns)} features a row, more than max_features "
                                                      f"{config.max_features}")
    columns.update(_prediction_columns(outputs, count, outputs_field, config))
    if v.PREDICTION_PROBABILITIES in columns and config.classes:
        width = len(columns[v.PREDICTION_PROBABILITIES][0]) if count else 0
        if count and width != len(config.classes):
            raise PayloadError("shape", outputs_field, f"{width} probabilities a row, but classes names "
                                                       f"{len(config.classes)}")
        common[v.MODEL_CLASSES] = [_cut(c) for c in config.classes]
    rows = []
    for i in range(count):
        row = dict(common)
        if request_id:
            row[v.PREDICTION_ID] = _cut(request_id if count == 1 else f"{request_id}-{i}")
        for key, values in columns.items():
            value = values[i]
            if value is not None:
                row[key] = value
        rows.append(row)
    return rows


def _row_count(tensors: dict[str, np.ndarray], field: str, expected: int | None, config: PayloadConfig) -> int:
    """The batch size all `tensors` share (their first dimension; a scalar is one row)."""
    count = expected
    for name, array in tensors.items():
        where = field if name == field else f"{field}.{name}"  # a V1 list is one tensor named as its field
        rows = array.shape[0] if array.ndim else 1
        if count is None:
            count = rows
            if count > config.max_rows:
                raise PayloadError("too_large", where, f"{count} rows, more than max_rows {config.max_rows}")
        elif rows != count:
            raise PayloadError("shape", where, f"{rows} rows where the request has {count}")
    return count or 0


def _feature_columns(inputs: dict[str, np.ndarray], count: int, field: str,
                     config: PayloadConfig) -> dict[str, list[Any]]:
    """{attribute name: one value per row} for every input read, by the rule in the module docstring."""
    roles = {name: _input_role(name, array, config) for name, array in inputs.items()}
    embeddings = [name for name, role in roles.items() if role == "embedding"]
    columns: dict[str, list[Any]] = {}
    for name, array in inputs.items():
        role = roles[name]
        rows = array.reshape(count, -1) if count else array.reshape(0, 0)
        if role == "feature":
            if rows.shape[1] != 1:
                raise PayloadError("shape", f"{field}.{name}", f"read as one feature, but each row has "
                                                               f"{rows.shape[1]} values")
            columns[v.FEATURE_PREFIX + name] = _values(rows[:, 0])
        elif role == "columns":
            names = config.feature_names.get(name, [])
            for i in range(rows.shape[1]):
                column = names[i] if i < len(names) else f"{name}.{i}"
                columns[v.FEATURE_PREFIX + column] = _values(rows[:, i])
        elif role == "embedding":
            if rows.dtype == object:
                raise PayloadError("datatype", f"{field}.{name}", "strings cannot be an embedding")
            key = v.EMBEDDING if len(embeddings) == 1 else f"{v.EMBEDDING}.{name}"
            columns[key] = rows.astype(np.float64).tolist()
    return columns


def _input_role(name: str, array: np.ndarray, config: PayloadConfig) -> str:
    if name in config.inputs:
        return config.inputs[name]
    width = math.prod(array.shape[1:]) if array.ndim > 1 else 1
    if array.ndim <= 1 or width == 1:
        return "feature"
    if array.ndim > 2:
        return "ignore"
    return "columns" if array.dtype == object or width < config.embedding_min_width else "embedding"


def _prediction_columns(outputs: dict[str, np.ndarray], count: int, field: str,
                        config: PayloadConfig) -> dict[str, list[Any]]:
    """{ml.prediction.*: one value per row}: each role from the first output that plays it."""
    columns: dict[str, list[Any]] = {}
    named = [n for n in outputs if n in config.outputs]  # the configured roles first
    for name in named + [n for n in outputs if n not in config.outputs]:
        array = outputs[name]
        role = config.outputs.get(name) or _output_role(array, count, config)
        if role == "ignore" or _ROLE_KEYS[role] in columns:
            continue
        rows = array.reshape(count, -1) if count else array.reshape(0, 1)
        where = f"{field}.{name}"
        if role == "probabilities":
            if rows.dtype == object:
                raise PayloadError("datatype", where, "probabilities must be numbers")
            columns[v.PREDICTION_PROBABILITIES] = rows.astype(np.float64).tolist()
            continue
        if rows.shape[1] != 1:
            raise PayloadError("shape", where, f"read as the {role}, but each row has {rows.shape[1]} values")
        if role == "label":
            columns[v.PREDICTION_LABEL] = [_category(x) for x in rows[:, 0]]
        else:
            if rows.dtype == object:
                raise PayloadError("datatype", where, f"the {role} must be a number")
            columns[_ROLE_KEYS[role]] = _values(rows[:, 0].astype(np.float64))
    return columns


def _output_role(array: np.ndarray, count: int, config: PayloadConfig) -> str:
    width = math.prod(array.shape[1:]) if array.ndim > 1 else 1
    if array.dtype.kind in "biuO":
        return "label" if width == 1 else "ignore"
    if width == 1:
        if config.binary and count and np.all((array >= 0) & (array <= 1)):
            return "score"
        return "value"
    if array.ndim == 2 and count and np.all(array >= 0) and np.all(np.abs(array.sum(axis=1) - 1) <= _SUMS_TO_ONE):
        return "probabilities"
    return "ignore"


def _values(column: np.ndarray) -> list[Any]:
    """A column's values as attributes: strings cut, numbers as Python numbers, None (missing) for NaN and
    infinities."""
    if column.dtype == object:
        return [_cut(x) for x in column]
    values = column.tolist()
    if column.dtype.kind == "f" and not np.isfinite(column).all():
        finite = np.isfinite(column).tolist()
        values = [x if ok else None for x, ok in zip(values, finite)]
    return values


def _category(x: Any) -> str:
    if isinstance(x, str):
        return _cut(x)
    if isinstance(x, (np.bool_, bool)):
        return "true" if x else "false"
    number = float(x)
    return str(int(number)) if number.is_integer() else _cut(repr(number))


def _cut(text: str) -> str:
    return text[:v.MAX_STRING_LENGTH]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None or isinstance(value, (dict, list)) else str(value)
