"""V2 and V1 payloads read into prediction rows: the shape rules, the output roles, the limits.

The V2 examples are shaped as KServe's sklearn-iris V2 example and the Open Inference Protocol's
REST spec write them (kserve/open-inference-protocol specification/protocol/inference_rest.md);
the V1 ones as KServe's sklearn-iris `{"instances": ...}` example. Random data is made with numpy
and every value read back is compared with it.
"""

from __future__ import annotations

import numpy as np
import pytest

from agent.ml import vocabulary as v
from agent.receivers.payloads import PayloadConfig, PayloadError, v1_rows, v2_rows

IRIS = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]


def tensor(name, array, datatype="FP32", nested=False):
    array = np.asarray(array)
    data = array.tolist() if nested else array.reshape(-1).tolist()
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}


def test_the_sklearn_iris_v2_example_gives_one_row_per_instance_with_its_columns_and_label():
    request = {"id": "823248cc", "inputs": [tensor("input-0", IRIS, nested=True)]}
    response = {"model_name": "sklearn-v2-iris", "model_version": "v3", "id": "823248cc",
                "outputs": [{"name": "output-0", "shape": [2], "datatype": "INT32", "data": [1, 1]}]}
    rows = v2_rows(request, response, model="sklearn-iris")
    assert rows == [
        {v.MODEL_NAME: "sklearn-iris", v.MODEL_VERSION: "v3", v.PREDICTION_ID: f"823248cc-{i}",
         **{f"{v.FEATURE_PREFIX}input-0.{j}": IRIS[i][j] for j in range(4)}, v.PREDICTION_LABEL: "1"}
        for i in range(2)]


def test_feature_names_name_the_columns_and_a_single_row_keeps_the_bare_request_id():
    config = PayloadConfig(feature_names={"input-0": ["sepal_length", "sepal_width"]})
    rows = v2_rows({"id": "r", "inputs": [tensor("input-0", [IRIS[0]])]}, None, model="m", config=config)
    assert rows == [{v.MODEL_NAME: "m", v.PREDICTION_ID: "r", "ml.feature.sepal_length": 6.8,
                     "ml.feature.sepal_width": 2.8, "ml.feature.input-0.2": 4.8, "ml.feature.input-0.3": 1.4}]


@pytest.mark.parametrize("shape", [[5], [5, 1]])
def test_an_n_or_n_by_1_input_is_one_feature_per_row(shape):
    values = np.random.default_rng(1).normal(size=5)
    rows = v2_rows({"inputs": [tensor("amount", values.reshape(shape), "FP64")]}, None, model="m")
    np.testing.assert_array_equal([r["ml.feature.amount"] for r in rows], values)


def test_a_wide_input_is_an_embedding_and_a_narrow_one_columns_with_the_width_configurable():
    rng = np.random.default_rng(2)
    wide, narrow = rng.normal(size=(3, 64)), rng.normal(size=(3, 8))
    request = {"inputs": [tensor("text", wide, "FP64"), tensor("tab", narrow, "FP64")]}
    rows = v2_rows(request, None, model="m")
    np.testing.assert_array_equal([r[v.EMBEDDING] for r in rows], wide)
    np.testing.assert_array_equal([[r[f"ml.feature.tab.{j}"] for j in range(8)] for r in rows], narrow)
    assert not any(k.startswith("ml.feature.text") for k in rows[0])

    rows = v2_rows(request, None, model="m", config=PayloadConfig(embedding_min_width=8))
    np.testing.assert_array_equal([r["ml.embedding.tab"] for r in rows], narrow)  # two embeddings: by name
    np.testing.assert_array_equal([r["ml.embedding.text"] for r in rows], wide)
    rows = v2_rows(request, None, model="m", config=PayloadConfig(inputs={"text": "columns", "tab": "ignore"}))
    assert sorted(rows[0]) == sorted([v.MODEL_NAME] + [f"ml.feature.text.{j}" for j in range(64)])


def test_bytes_inputs_are_categories_cut_to_the_vocabulary_length_and_never_an_embedding():
    long = "x" * 1000
    request = {"inputs": [{"name": "country", "shape": [2], "datatype": "BYTES", "data": ["fr", long]},
                          {"name": "tags", "shape": [2, 40], "datatype": "BYTES", "data": ["t"] * 80}]}
    rows = v2_rows(request, None, model="m")
    assert [r["ml.feature.country"] for r in rows] == ["fr", "x" * v.MAX_STRING_LENGTH]
    assert rows[0]["ml.feature.tags.39"] == "t" and v.EMBEDDING not in rows[0]


def test_images_are_not_read_unless_the_config_says_embedding():
    image = np.zeros((2, 3, 4, 4))
    assert v2_rows({"inputs": [tensor("pixels", image)]}, None, model="m")[0] == {v.MODEL_NAME: "m"}
    rows = v2_rows({"inputs": [tensor("pixels", image)]}, None, model="m",
                   config=PayloadConfig(inputs={"pixels": "embedding"}))
    assert len(rows[0][v.EMBEDDING]) == 48


def test_output_roles_are_guessed_from_datatype_shape_and_values():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(6, 3))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    score = rng.uniform(size=6)
    value = rng.normal(size=6) * 100
    request = {"inputs": [tensor("x", rng.normal(size=6), "FP64")]}
    response = {"outputs": [tensor("logits", logits, "FP64"), tensor("probs", probabilities.astype(np.float32)),
                            tensor("score", score, "FP64"), tensor("price", value, "FP64"),
                            {"name": "label", "shape": [6], "datatype": "BYTES", "data": list("abcabc")}]}
    rows = v2_rows(request, response, model="m", config=PayloadConfig(classes=["a", "b", "c"]))
    np.testing.assert_allclose([r[v.PREDICTION_PROBABILITIES] for r in rows], probabilities, rtol=1e-6)
    np.testing.assert_array_equal([r[v.PREDICTION_SCORE] for r in rows], score)
    np.testing.assert_array_equal([r[v.PREDICTION_VALUE] for r in rows], value)
    assert [r[v.PREDICTION_LABEL] for r in rows] == list("abcabc")
    assert rows[0][v.MODEL_CLASSES] == ["a", "b", "c"]  # (the logits, first, do not sum to one: not read)


def test_a_float_in_0_1_is_a_value_when_the_model_is_not_binary_and_config_roles_win():
    values = np.random.default_rng(4).uniform(size=4)
    response = {"outputs": [tensor("y", values, "FP64")]}
    request = {"inputs": [tensor("x", np.arange(4.0), "FP64")]}
    assert v.PREDICTION_VALUE in v2_rows(request, response, model="m", config=PayloadConfig(binary=False))[0]
    rows = v2_rows(request, response, model="m", config=PayloadConfig(outputs={"y": "label"}))
    assert [r[v.PREDICTION_LABEL] for r in rows] == [repr(float(x)) for x in values]
    rows = v2_rows(request, response, model="m", config=PayloadConfig(outputs={"y": "ignore"}))
    assert not any(k.startswith("ml.prediction.") for k in rows[0])


def test_nan_features_are_missing_and_ints_and_bools_keep_their_type():
    request = {"inputs": [tensor("a", [1.0, float("nan")], "FP64"), tensor("n", [3, 4], "INT64"),
                          tensor("flag", [True, False], "BOOL")]}
    rows = v2_rows(request, None, model="m")
    assert "ml.feature.a" not in rows[1] and rows[0]["ml.feature.a"] == 1.0
    assert rows[0]["ml.feature.n"] == 3 and type(rows[0]["ml.feature.n"]) is int
    assert rows[1]["ml.feature.flag"] is False


def test_an_error_response_gives_the_features_only():
    rows = v2_rows({"inputs": [tensor("x", [1.0])]}, {"error": "model not ready"}, model="m")
    assert rows == [{v.MODEL_NAME: "m", "ml.feature.x": 1.0}]


@pytest.mark.parametrize("request_, reason, field", [
    ({"inputs": {"x": 1}}, "malformed", "inputs"),
    ({"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}, "malformed", "inputs[0].name"),
    ({"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]}, "malformed", "inputs[0].shape"),
    ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP128", "data": [1]}]}, "datatype", "inputs[0].datatype"),
    ({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}]}, "shape", "inputs[0].data"),
    ({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [[1, 2], [3]]}]}, "shape", "inputs[0].data"),
    ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": ["a"]}]}, "shape", "inputs[0].data"),
    ({"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": [1]}]}, "datatype", "inputs[0].data"),
    ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32",
                  "parameters": {"binary_data_size": 4}}]}, "unsupported", "inputs[0].data"),
    ({"inputs": [tensor("x", [1.0, 2.0]), tensor("y", [1.0])]}, "shape", "inputs.y"),
    ({"inputs": [{"name": "x", "shape": [10**6, 10**6], "datatype": "FP32", "data": []}]}, "too_large",
     "inputs[0].shape"),
])
def test_a_payload_that_cannot_be_read_is_one_error_naming_the_field(request_, reason, field):
    with pytest.raises(PayloadError) as caught:
        v2_rows(request_, None, model="m")
    assert (caught.value.reason, caught.value.field) == (reason, field)
    assert str(caught.value).startswith(field + ": ")


def test_the_limits_stop_a_huge_request_before_its_rows_are_made():
    config = PayloadConfig(max_rows=10, max_elements=100, max_features=5)
    with pytest.raises(PayloadError, match="max_rows"):
        v2_rows({"inputs": [tensor("x", np.zeros(11))]}, None, model="m", config=config)
    with pytest.raises(PayloadError, match="max_elements"):
        v2_rows({"inputs": [tensor("x", np.zeros((10, 11)))]}, None, model="m", config=config)
    with pytest.raises(PayloadError, match="max_features"):
        v2_rows({"inputs": [tensor("x", np.zeros((2, 6)))]}, None, model="m", config=config)
    with pytest.raises(PayloadError, match="rows where the request has") as caught:
        v2_rows({"inputs": [tensor("x", np.zeros(3))]}, {"outputs": [tensor("y", np.zeros(2))]}, model="m")
    assert caught.value.field == "outputs.y"
    with pytest.raises(PayloadError, match="but classes names 2"):
        v2_rows({"inputs": [tensor("x", np.zeros(1))]}, {"outputs": [tensor("p", [[0.2, 0.3, 0.5]])]},
                model="m", config=PayloadConfig(classes=["a", "b"]))


# --- V1 -------------------------------------------------------------------------------------------------


def test_the_sklearn_iris_v1_example_reads_like_v2():
    rows = v1_rows({"instances": IRIS}, {"predictions": [1, 1]}, model="sklearn-iris", request_id="e1",
                   config=PayloadConfig(feature_names={"instances": ["sl", "sw", "pl", "pw"]}))
    assert rows[1] == {v.MODEL_NAME: "sklearn-iris", v.PREDICTION_ID: "e1-1", "ml.feature.sl": 6.0,
                       "ml.feature.sw": 3.4, "ml.feature.pl": 4.5, "ml.feature.pw": 1.6, v.PREDICTION_LABEL: "1"}


def test_v1_objects_are_named_inputs_and_named_outputs():
    rng = np.random.default_rng(5)
    p = rng.dirichlet([1, 1, 1], size=4)
    instances = [{"age": int(a), "city": c} for a, c in zip(rng.integers(18, 90, 4), "abab")]
    predictions = [{"probabilities": row.tolist(), "class": int(np.argmax(row))} for row in p]
    rows = v1_rows({"instances": instances}, {"predictions": predictions}, model="m")
    assert [r["ml.feature.age"] for r in rows] == [i["age"] for i in instances]
    assert [r["ml.feature.city"] for r in rows] == list("abab")
    np.testing.assert_array_equal([r[v.PREDICTION_PROBABILITIES] for r in rows], p)
    assert [r[v.PREDICTION_LABEL] for r in rows] == [str(int(np.argmax(row))) for row in p]


def test_v1_scalar_predictions_in_0_1_are_scores_and_probability_lists_are_probabilities():
    rows = v1_rows({"instances": [[1, 2], [3, 4]]}, {"predictions": [0.1, 0.9]}, model="m")
    assert [r[v.PREDICTION_SCORE] for r in rows] == [0.1, 0.9]
    rows = v1_rows({"instances": [[1, 2]]}, {"predictions": [[0.25, 0.75]]}, model="m")
    assert rows[0][v.PREDICTION_PROBABILITIES] == [0.25, 0.75]


@pytest.mark.parametrize("request_, response, field", [
    ({"instances": {"a": 1}}, None, "instances"),
    ({"instances": [[1, 2], [3]]}, None, "instances"),
    ({"instances": [{"a": 1}, {"b": 2}]}, None, "instances[].a"),
    ({"instances": [1, 2]}, {"predictions": [1]}, "predictions"),
    ({"instances": [None]}, None, "instances"),
])
def test_v1_payloads_that_cannot_be_read_name_the_field(request_, response, field):
    with pytest.raises(PayloadError) as caught:
        v1_rows(request_, response, model="m")
    assert caught.value.field == field
