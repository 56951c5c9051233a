"""Inference payloads as predictions: V2 / V1 request and response JSON → one attribute dict per row → spans.

`v2_rows` reads the Open Inference Protocol (Triton, KServe, MLServer),
`v1_rows` KServe's V1 / TF-Serving `{"instances": ...}` / `{"predictions": ...}`;
both return one dict of `ml.*` attributes per row of the batch, or raise
`PayloadError` naming the field. `prediction_spans` writes those dicts as
OTLP spans, which the `ml` processor reads like an instrumented app's.
Shared by the `kserve` and `inference_proxy` receivers, configured by
`PayloadConfig`.
"""

from __future__ import annotations

from agent.receivers.payloads.config import PayloadConfig
from agent.receivers.payloads.errors import PayloadError
from agent.receivers.payloads.rows import v1_rows, v2_rows
from agent.receivers.payloads.spans import prediction_spans

__all__ = ["PayloadConfig", "PayloadError", "prediction_spans", "v1_rows", "v2_rows"]
