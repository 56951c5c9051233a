"""The normalisers every prediction source hands its values through (agent/ml/predictions.py)."""

from __future__ import annotations

import math

import pytest

from agent.ml.predictions import (
    NOT_A_SCALAR, GenAiCalls, Labels, Predictions, add_genai_call, add_label, class_names, error_type_text, id_text,
    probability_numbers, span_seconds, version_text,
)
from agent.ml.vocabulary import MAX_STRING_LENGTH, OTHER_ERROR


@pytest.mark.parametrize("value, expected", [("r1", "r1"), ("", None), (42, "42"), (2.0, "2"), (True, None),
                                             (math.nan, None), (None, None), (NOT_A_SCALAR, None),
                                             ("x" * 300, "x" * MAX_STRING_LENGTH)])
def test_id_text(value, expected):
    assert id_text(value) == expected


def test_version_error_type_and_span_times():
    assert (version_text(None), version_text(NOT_A_SCALAR), version_text(3), version_text("v" * 300)) == \
        ("", "", "3", "v" * MAX_STRING_LENGTH)
    assert (error_type_text(""), error_type_text(503)) == (OTHER_ERROR, "503")
    assert span_seconds(1_000, 2_501_000) == 0.0025
    assert math.isnan(span_seconds(0, 5)) and math.isnan(span_seconds(5, 4))


def test_probabilities_are_numbers_only_and_classes_are_texts():
    assert probability_numbers([0.2, 0.8]) == [0.2, 0.8]
    assert probability_numbers([]) is None and probability_numbers([0.2, "x"]) is None
    assert probability_numbers([True, 0.5]) is None and probability_numbers(0.5) is None
    assert class_names([0, 1.0, "b", True]) == ["0", "1", "b", "True"] and class_names("ab") is None
    predictions = Predictions("m", "1", rows=2)
    predictions.add_probabilities(0, [0.3, 0.7], ["no", "yes"])
    predictions.add_probabilities(1, ["x"], None)
    assert (predictions.probability_rows, predictions.classes) == ([0], [["no", "yes"]])


def test_a_label_needs_an_id_and_a_usable_value():
    found: dict[str, Labels] = {}
    add_label(found, "m", "a", "fraud")
    add_label(found, "m", None, "no id")
    add_label(found, "m", "b", [1])
    add_label(found, "m", "c", 1)
    assert (found["m"].ids, found["m"].values) == (["a", "c"], ["fraud", 1.0])


def test_a_genai_call_takes_error_type_before_what_its_status_says():
    found: dict[str, GenAiCalls] = {}
    add_genai_call(found, "svc", {"gen_ai.system": "openai", "gen_ai.usage.prompt_tokens": 12}, 0.5, None)
    add_genai_call(found, "svc", {"gen_ai.operation.name": "chat", "error.type": "rate_limited"}, 0.1, "APIError")
    add_genai_call(found, "svc", {"gen_ai.operation.name": "chat"}, math.nan, "APIError")
    calls = found["svc"]
    assert calls.provider == ["openai", "", ""] and calls.input_tokens[0] == 12.0
    assert calls.error_type == ["", "rate_limited", "APIError"]
