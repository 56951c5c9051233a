"""Payload JSON → named numpy arrays, every shape and datatype checked before any row is read."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from agent.receivers.payloads.config import PayloadConfig
from agent.receivers.payloads.errors import PayloadError

# The Open Inference Protocol's tensor datatypes (kserve/open-inference-protocol
# specification/protocol/inference_rest.md, "Tensor Data Types"), as numpy reads their JSON values.
V2_DTYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.int64, "UINT16": np.int64, "UINT32": np.int64, "UINT64": np.float64,
    "INT8": np.int64, "INT16": np.int64, "INT32": np.int64, "INT64": np.int64,
    "FP16": np.float64, "FP32": np.float64, "FP64": np.float64, "BYTES": object,
}


class Budget:
    """The numbers one request may hold (`max_elements`), spent tensor by tensor."""

    def __init__(self, config: PayloadConfig) -> None:
        self.left = config.max_elements
        self.max_elements = config.max_elements

    def spend(self, count: int, field: str) -> None:
        if count > self.left:
            raise PayloadError("too_large", field, f"the request holds more than {self.max_elements} values "
                                                   f"(max_elements)")
        self.left -= count


def v2_tensors(tensors: Any, field: str, budget: Budget) -> dict[str, np.ndarray]:
    """The `inputs` or `outputs` list of a V2 request or response as {name: array of its shape}."""
    if not isinstance(tensors, list):
        raise PayloadError("malformed", field, "must be a list of tensors")
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(tensors):
        where = f"{field}[{i}]"
        if not isinstance(tensor, Mapping):
            raise PayloadError("malformed", where, "must be an object with name, shape, datatype and data")
        name = tensor.get("name")
        if not isinstance(name, str) or not name:
            raise PayloadError("malformed", f"{where}.name", "must be a non-empty string")
        arrays[name] = v2_tensor(tensor, where, budget)
    return arrays


def v2_tensor(tensor: Mapping[str, Any], where: str, budget: Budget) -> np.ndarray:
    shape = tensor.get("shape")
    if (not isinstance(shape, list)
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise PayloadError("malformed", f"{where}.shape", "must be a list of non-negative integers")
    datatype = tensor.get("datatype")
    if datatype not in V2_DTYPES:
        raise PayloadError("datatype", f"{where}.datatype",
                           f"unknown datatype {str(datatype)[:40]!r}: one of {', '.join(V2_DTYPES)}")
    count = math.prod(shape)
    budget.spend(count, f"{where}.shape")  # before the data is read: a claimed size is checked first
    data = tensor.get("data")
    if data is None:
        binary = isinstance(tensor.get("parameters"), Mapping) and "binary_data_size" in tensor["parameters"]
        raise PayloadError("unsupported" if binary else "malformed", f"{where}.data",
                           "binary tensor data is not read" if binary else "is missing")
    return _array(data, V2_DTYPES[datatype], shape, f"{where}.data")


def _array(data: Any, dtype: Any, shape: list[int], where: str) -> np.ndarray:
    """`data` (flat or nested, as the protocol allows) as an array of `shape`."""
    if not isinstance(data, list):
        data = [data]
    try:
        array = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise PayloadError("shape", where, f"not a regular array of that datatype ({_short(exc)})") from None
    if dtype is object:
        if array.dtype != object or not all(isinstance(x, str) for x in array.flat):
            raise PayloadError("datatype", where, "a BYTES tensor must hold strings")
    if array.size != math.prod(shape):
        raise PayloadError("shape", where, f"holds {array.size} values, the shape {shape} has "
                                           f"{math.prod(shape)}")
    return array.reshape(shape)


def json_tensor(values: list[Any], where: str, budget: Budget) -> np.ndarray:
    """A V1 column (one value per row: numbers, strings or lists of numbers) as an array."""
    budget.spend(len(values), where)
    strings = all(isinstance(x, str) for x in values)
    try:
        array = np.asarray(values, dtype=object if strings else None)
    except (ValueError, TypeError, OverflowError) as exc:
        raise PayloadError("shape", where, f"rows of different lengths ({_short(exc)})") from None
    if array.dtype == object and not strings:
        raise PayloadError("shape", where, "rows of different lengths, or values that are not numbers, "
                                           "strings or lists of numbers")
    if array.dtype.kind not in "biufO":
        raise PayloadError("datatype", where, f"values that are not numbers or strings ({array.dtype})")
    if array.dtype.kind in "iu" and array.dtype.itemsize > 8:
        array = array.astype(np.float64)
    budget.spend(max(0, array.size - len(values)), where)
    return array


def _short(exc: Exception) -> str:
    return str(exc).split("\n")[0][:120]
