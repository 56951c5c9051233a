"""V2 and V1 payloads → one dict of prediction attributes per row."""

from __future__ import annotations

from typing import Any, Mapping

from agent.receivers.payloads.config import PayloadConfig

_DEFAULT = PayloadConfig()


def v2_rows(request: Mapping[str, Any], response: Mapping[str, Any] | None, *, model: str, version: str = "",
            config: PayloadConfig = _DEFAULT) -> list[dict[str, Any]]:
    """The rows of one Open Inference Protocol call: its inputs as features, its outputs as predictions.

    `response` None (the server failed, or it is not in yet) gives rows of features only. A row's
    `ml.prediction.id` is the request's `id` and the row index (`<id>-<i>`). Raises `PayloadError`.
    """
    raise NotImplementedError


def v1_rows(request: Mapping[str, Any], response: Mapping[str, Any] | None, *, model: str, version: str = "",
            config: PayloadConfig = _DEFAULT, request_id: str = "") -> list[dict[str, Any]]:
    """The rows of one V1 call (`{"instances": [...]}` → `{"predictions": [...]}`); `request_id` names them.

    An instance is a list (columns, names from `feature_names["instances"]`), an object (named
    features) or a scalar. Raises `PayloadError`.
    """
    raise NotImplementedError
