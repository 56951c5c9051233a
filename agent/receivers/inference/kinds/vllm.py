"""vLLM: the `vllm:*` metrics on its API port (8000, `/metrics`).

Mapped from vllm-project/vllm@005a810bc40faa25b8870fbc8559c3462581eee3 vllm/v1/metrics/loggers.py (the
v0.10 series) and the v0.12 series' loggers.py, which renamed the inter-token latency and dropped
`vllm:gpu_cache_usage_perc`; both are read. Series carry `model_name` (the served model name) and
`engine` (a data-parallel engine's index: the engines of one model add up). vLLM has no error counter:
requests that finished with reason `abort` (or `error`) are its errors.
"""

from __future__ import annotations

from agent.ml import vocabulary as v
from agent.receivers.inference.kinds.base import Page, Readings, ServerKind, error_type, token_type

_FAILED = ("abort", "error")
_HISTOGRAMS = (
    ("vllm:e2e_request_latency_seconds", v.GENAI_SERVER_REQUEST_DURATION),
    ("vllm:time_to_first_token_seconds", v.GENAI_SERVER_TIME_TO_FIRST_TOKEN),
    ("vllm:request_queue_time_seconds", v.SERVER_QUEUE_DURATION),
)


def read(page: Page, _model: str | None) -> Readings:
    out = Readings()

    def reading(labels):
        return out.of(labels.get("model_name", ""))

    for labels, value in page.values("vllm:request_success_total"):
        r = reading(labels)
        r.add(v.METRIC_PREDICTIONS, value)
        reason = labels.get("finished_reason", "")
        if reason in _FAILED:
            r.add(v.METRIC_PREDICTION_ERRORS, value, error_type(reason))
    for exposed, metric in _HISTOGRAMS:
        for labels, histogram in page.histograms(exposed):
            reading(labels).histogram(metric, histogram)
    # Time per output token of each request (v0.12); before, only the inter-token latency was exposed.
    tpot = page.histograms("vllm:request_time_per_output_token_seconds") or page.histograms(
        "vllm:time_per_output_token_seconds")
    for labels, histogram in tpot:
        reading(labels).histogram(v.GENAI_SERVER_TIME_PER_OUTPUT_TOKEN, histogram)
    for exposed, kind in (("vllm:prompt_tokens_total", v.TOKEN_INPUT),
                          ("vllm:generation_tokens_total", v.TOKEN_OUTPUT)):
        for labels, value in page.values(exposed):
            reading(labels).add(v.SERVER_TOKENS, value, token_type(kind))
    for labels, value in page.values("vllm:num_preemptions_total"):
        reading(labels).add(v.SERVER_PREEMPTIONS, value)
    for labels, value in page.values("vllm:num_requests_running"):
        reading(labels).gauge(v.SERVER_REQUESTS_RUNNING, value)
    for labels, value in page.values("vllm:num_requests_waiting"):
        reading(labels).gauge(v.SERVER_REQUESTS_PENDING, value)
    usage = page.values("vllm:kv_cache_usage_perc") or page.values("vllm:gpu_cache_usage_perc")
    for labels, value in usage:  # a ratio, 1 = full; the fullest engine's
        reading(labels).gauge(v.SERVER_KV_CACHE_USAGE, value, max)
    return out


KIND = ServerKind(
    name="vllm",
    source="vllm-project/vllm@005a810bc40faa25b8870fbc8559c3462581eee3:vllm/v1/metrics/loggers.py",
    generative=True,
    prefixes=("vllm:",),
    read=read,
    latency=v.GENAI_SERVER_REQUEST_DURATION,
)
