"""SGLang: the `sglang:*` metrics on its HTTP port (`/metrics`, with `--enable-metrics`).

Mapped from sgl-project/sglang@00ae9c1590d2d0bb6c0bfff39e312c34ae3dd538
python/sglang/srt/metrics/collector.py. Series carry `model_name` (the served model name); the
scheduler's gauges also carry tensor/pipeline-parallel ranks, of which rank 0 speaks for the model
(every rank reports the same batch) while data-parallel ranks add up. Aborted requests are the errors.
The inter-token latency histogram counts tokens, not requests: its mean is the time per output token.
"""

from __future__ import annotations

from agent.ml import vocabulary as v
from agent.receivers.inference.kinds.base import Page, Readings, ServerKind, error_type, token_type

_HISTOGRAMS = (
    ("sglang:e2e_request_latency_seconds", v.GENAI_SERVER_REQUEST_DURATION),
    ("sglang:time_to_first_token_seconds", v.GENAI_SERVER_TIME_TO_FIRST_TOKEN),
    ("sglang:inter_token_latency_seconds", v.GENAI_SERVER_TIME_PER_OUTPUT_TOKEN),
)
_GAUGES = (
    ("sglang:num_running_reqs", v.SERVER_REQUESTS_RUNNING),
    ("sglang:num_queue_reqs", v.SERVER_REQUESTS_PENDING),
)


def _first_rank(labels: dict[str, str]) -> bool:
    return all(labels.get(rank, "0") == "0" for rank in ("tp_rank", "pp_rank", "moe_ep_rank"))


def read(page: Page, _model: str | None) -> Readings:
    out = Readings()

    def reading(labels):
        return out.of(labels.get("model_name", ""))

    for labels, value in page.values("sglang:num_requests_total"):
        reading(labels).add(v.METRIC_PREDICTIONS, value)
    for labels, value in page.values("sglang:num_aborted_requests_total"):
        reading(labels).add(v.METRIC_PREDICTION_ERRORS, value, error_type("aborted"))
    for exposed, metric in _HISTOGRAMS:
        for labels, histogram in page.histograms(exposed):
            reading(labels).histogram(metric, histogram)
    for exposed, kind in (("sglang:prompt_tokens_total", v.TOKEN_INPUT),
                          ("sglang:generation_tokens_total", v.TOKEN_OUTPUT)):
        for labels, value in page.values(exposed):
            reading(labels).add(v.SERVER_TOKENS, value, token_type(kind))
    for exposed, metric in _GAUGES:
        for labels, value in page.values(exposed):
            if _first_rank(labels):
                reading(labels).gauge(metric, value)
    for labels, value in page.values("sglang:token_usage"):  # the KV pool's used share
        if _first_rank(labels):
            reading(labels).gauge(v.SERVER_KV_CACHE_USAGE, value, max)
    return out


KIND = ServerKind(
    name="sglang",
    source="sgl-project/sglang@00ae9c1590d2d0bb6c0bfff39e312c34ae3dd538:python/sglang/srt/metrics/collector.py",
    generative=True,
    prefixes=("sglang:",),
    read=read,
    latency=v.GENAI_SERVER_REQUEST_DURATION,
)
