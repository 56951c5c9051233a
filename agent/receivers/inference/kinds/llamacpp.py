"""llama.cpp's `llama-server`: the `llamacpp:*` metrics on its port (`/metrics`, with `--metrics`).

Mapped from ggml-org/llama.cpp@00dc8057ab28c9cb4c79a6dd6dfce07fe779f63b tools/server/README.md. One
model per process and no labels: the model is the config's `model`, else the id `GET /v1/models`
answers. llama.cpp counts no requests, only tokens and the seconds spent on them: the time per output
token is the mean from `tokens_predicted_seconds_total` over `tokens_predicted_total`. The KV cache's
use is exposed by older builds only.
"""

from __future__ import annotations

from typing import Any

from agent.ml import vocabulary as v
from agent.receivers.inference.kinds.base import Histogram, Page, Readings, ServerKind, token_type


def _one(page: Page, name: str) -> float | None:
    values = page.values(name)
    return values[0][1] if values else None


def read(page: Page, model: str | None) -> Readings:
    out = Readings()
    r = out.of(model or "")
    for exposed, kind in (("llamacpp:prompt_tokens_total", v.TOKEN_INPUT),
                          ("llamacpp:tokens_predicted_total", v.TOKEN_OUTPUT)):
        value = _one(page, exposed)
        if value is not None:
            r.add(v.SERVER_TOKENS, value, token_type(kind))
    predicted = _one(page, "llamacpp:tokens_predicted_total")
    seconds = _one(page, "llamacpp:tokens_predicted_seconds_total")
    if predicted is not None and seconds is not None:
        r.histogram(v.GENAI_SERVER_TIME_PER_OUTPUT_TOKEN, Histogram.mean_only(predicted, seconds))
    for exposed, metric in (("llamacpp:requests_processing", v.SERVER_REQUESTS_RUNNING),
                            ("llamacpp:requests_deferred", v.SERVER_REQUESTS_PENDING),
                            ("llamacpp:kv_cache_usage_ratio", v.SERVER_KV_CACHE_USAGE)):
        value = _one(page, exposed)
        if value is not None:
            r.gauge(metric, value)
    if not (r.counters or r.gauges or r.histograms):
        out.clear()
    return out


def _model_id(models: Any) -> str | None:
    data = models.get("data") if isinstance(models, dict) else None
    first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    model = first.get("id")
    return model if isinstance(model, str) and model else None


KIND = ServerKind(
    name="llamacpp",
    source="ggml-org/llama.cpp@00dc8057ab28c9cb4c79a6dd6dfce07fe779f63b:tools/server/README.md",
    generative=True,
    prefixes=("llamacpp:",),
    read=read,
    latency=v.GENAI_SERVER_REQUEST_DURATION,
    model_info=("/v1/models", _model_id),
)
