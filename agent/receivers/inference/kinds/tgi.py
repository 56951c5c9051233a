"""Hugging Face TGI (text-generation-inference): the `tgi_*` metrics on its port (`/metrics`).

Mapped from huggingface/text-generation-inference@v3.3.7 docs/source/reference/metrics.md and
router/src/server.rs (bucket setup). TGI serves one model and its metrics name none: the model is the
config's `model`, else the `model_id` its `GET /info` answers. Counters have no `_total`; histograms
have buckets (a summary, count and sum, is read where a build has none). Token counts are the sums of
the per-request input-length and generated-token histograms; the KV cache's use is the current batch's
tokens over `max_batch_total_tokens`, the token budget TGI sizes from free GPU memory.
"""

from __future__ import annotations

from typing import Any

from agent.ml import vocabulary as v
from agent.receivers.inference.kinds.base import Page, Readings, ServerKind, error_type, token_type

_HISTOGRAMS = (
    ("tgi_request_duration", v.GENAI_SERVER_REQUEST_DURATION),
    ("tgi_request_queue_duration", v.SERVER_QUEUE_DURATION),
    ("tgi_request_mean_time_per_token_duration", v.GENAI_SERVER_TIME_PER_OUTPUT_TOKEN),
    ("tgi_batch_next_size", v.SERVER_BATCH_SIZE),
)


def read(page: Page, model: str | None) -> Readings:
    out = Readings()
    r = out.of(model or "")
    for _, value in page.values("tgi_request_count"):
        r.add(v.METRIC_PREDICTIONS, value)
    for labels, value in page.values("tgi_request_failure"):
        r.add(v.METRIC_PREDICTION_ERRORS, value, error_type(labels.get("err", v.OTHER_ERROR)))
    for exposed, metric in _HISTOGRAMS:
        for _, histogram in page.histograms(exposed) or page.summaries(exposed):
            r.histogram(metric, histogram)
    for exposed, kind in (("tgi_request_input_length", v.TOKEN_INPUT),
                          ("tgi_request_generated_tokens", v.TOKEN_OUTPUT)):
        for _, histogram in page.histograms(exposed) or page.summaries(exposed):
            r.add(v.SERVER_TOKENS, histogram.total, token_type(kind))
    for exposed, metric in (("tgi_queue_size", v.SERVER_REQUESTS_PENDING),
                            ("tgi_batch_current_size", v.SERVER_REQUESTS_RUNNING)):
        for _, value in page.values(exposed):
            r.gauge(metric, value)
    used = sum(value for _, value in page.values("tgi_batch_current_max_tokens"))
    budget = sum(value for _, value in page.values("tgi_batch_max_total_tokens"))
    if budget > 0:
        r.gauge(v.SERVER_KV_CACHE_USAGE, min(1.0, used / budget))
    if not any(reading.counters or reading.gauges or reading.histograms for reading in out.values()):
        out.clear()
    return out


def _model_id(info: Any) -> str | None:
    model = info.get("model_id") if isinstance(info, dict) else None
    return model if isinstance(model, str) and model else None


KIND = ServerKind(
    name="tgi",
    source="huggingface/text-generation-inference@v3.3.7:docs/source/reference/metrics.md",
    generative=True,
    prefixes=("tgi_",),
    read=read,
    latency=v.GENAI_SERVER_REQUEST_DURATION,
    model_info=("/info", _model_id),
)
