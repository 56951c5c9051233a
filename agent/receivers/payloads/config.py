"""How request/response payloads of an inference server become prediction attributes.

One block, `payloads:`, shared by the `kserve` receiver and the `inference_proxy`
receiver: how wide inputs are read, which output plays which role, and the
limits past which a payload is skipped and counted rather than read.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agent.configmodel import StrictModel

InputRole = Literal["feature", "columns", "embedding", "ignore"]
OutputRole = Literal["label", "score", "probabilities", "value", "ignore"]


class PayloadConfig(StrictModel):
    """Reading V2 (Open Inference Protocol) and V1 (`instances` / `predictions`) payloads."""

    # An input of shape [N, D] with D >= this is one `ml.embedding` per row; a narrower one is D
    # features `ml.feature.<name>.<i>` (a tabular model's columns, drift-checked one by one).
    embedding_min_width: int = Field(32, ge=2)
    # Per input name: `feature` (one value per row), `columns` (one feature per column), `embedding`
    # or `ignore`; overrides the shape rule.
    inputs: dict[str, InputRole] = {}
    # Names for the columns of a [N, D] input read as columns (`{input: [sepal_length, ...]}`);
    # a column without a name is `<input>.<i>`.
    feature_names: dict[str, list[str]] = {}
    # Per output name: its role; overrides the guess from its datatype, shape and values.
    outputs: dict[str, OutputRole] = {}
    # The class names, in the order of a probabilities output's columns (`ml.model.classes`).
    classes: list[str] = []
    # A [N] float output in [0, 1] is a binary model's score when true, a regression value when false.
    binary: bool = True
    # A payload past these is skipped and counted, never read: bounded memory per request.
    max_rows: int = Field(10_000, gt=0)
    max_elements: int = Field(1_000_000, gt=0)  # numbers in all the tensors of one request
    max_features: int = Field(256, gt=0)  # feature attributes on one row
