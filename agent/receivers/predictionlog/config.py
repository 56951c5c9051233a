"""The `predictionlog` receiver's config: which files to tail, and where each part of a prediction is in a line.

Every field is a list of dotted paths, the first one present wins, so one
config reads several log formats.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from agent.configmodel import Duration, StrictModel


def _paths(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Paths = Annotated[list[str], BeforeValidator(_paths)]
"""Dotted paths into a JSON line (`prediction.class`, `inputs.0.features`); the first one present wins."""


class FieldsConfig(StrictModel):
    """Where each part of a prediction is in a line. An empty list turns a field off."""

    timestamp: Paths = ["timestamp", "time", "ts"]  # ISO 8601, or epoch seconds / ms / µs / ns
    model_name: Paths = ["model_name", "model.name", "model"]
    model_version: Paths = ["model_version", "model.version", "version"]
    prediction_id: Paths = ["prediction_id", "request_id", "id"]
    features: Paths = ["input.features", "features", "inputs"]  # a list or an object
    label: Paths = ["prediction.class", "prediction.label", "prediction"]  # the predicted class
    score: Paths = ["prediction.score", "score"]  # binary positive-class probability
    confidence: Paths = ["prediction.confidence", "confidence"]
    probabilities: Paths = ["prediction.probabilities", "probabilities"]
    classes: Paths = ["prediction.classes", "classes"]
    value: Paths = ["prediction.value"]  # a regression output (map `prediction` here for a regressor)
    ground_truth: Paths = ["label", "ground_truth"]  # a later true label, joined on the prediction id
    latency_ms: Paths = ["latency_ms"]
    error: Paths = ["error"]  # present and not false/null: the prediction failed


_MIB = 1024 * 1024


class PredictionLogReceiverConfig(StrictModel):
    include: list[str] = Field(min_length=1)  # glob patterns (`**` spans directories)
    exclude: list[str] = []  # fnmatch patterns on the path
    # Where to begin in files found on the very first run; files that appear later (a rotation, a
    # new log) and files of a later run are read from the position kept in state_dir or their start.
    start_at: Literal["end", "beginning"] = "end"
    poll_interval: Annotated[Duration, Field(gt=0)] = 1.0
    model_name: str | None = None  # for lines that name no model
    model_version: str | None = None  # for lines that name no version
    feature_names: list[str] = []  # names of features logged as a list, in order; the rest are f<i>
    fields: FieldsConfig = FieldsConfig()
    attributes: dict[str, str] = {}  # more log record attributes: {attribute name: path}
    resource: dict[str, str | int | float | bool] = {}  # resource attributes, e.g. service.name
    # A longer line is skipped and counted: it is a writer gone wrong, not a prediction.
    max_line_size: int = Field(_MIB, gt=0)
    keep_body: bool = True  # the line itself as the record's body
