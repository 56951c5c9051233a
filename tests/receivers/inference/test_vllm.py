"""The vllm kind on exposition text built from vLLM's documented names (vllm-project/vllm@005a810b
vllm/v1/metrics/loggers.py, the v0.10 series, and the v0.12 series' renames), because vLLM needs a GPU
and cannot run here: `model_name` and `engine` labels, counters with `_total`, the documented buckets."""

from __future__ import annotations

import pytest

from agent.ml import vocabulary as v
from agent.receivers.inference.kinds import kind
from agent.receivers.inference.kinds.base import Page
from agent.receivers.inference.metrics import rebucket
from agent.receivers.inference.view import quantile

VLLM = kind("vllm")
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0)


def _histogram(name: str, bounds, counts, total, engine="0") -> str:
    labels = f'engine="{engine}",model_name="{MODEL}"'
    lines = [f"# TYPE {name} histogram"]
    running = 0
    for bound, count in zip(bounds, counts):
        running += count
        lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {float(running)}')
    lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {float(running)}')
    lines.append(f"{name}_count{{{labels}}} {float(running)}")
    lines.append(f"{name}_sum{{{labels}}} {total}")
    return "\n".join(lines) + "\n"


def page(engines=("0",), kv_name="vllm:kv_cache_usage_perc", tpot="vllm:request_time_per_output_token_seconds") -> str:
    text = ""
    for engine in engines:
        labels = f'engine="{engine}",model_name="{MODEL}"'
        text += f"""\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{{labels}}} 4.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{{labels}}} 2.0
# TYPE {kv_name} gauge
{kv_name}{{{labels}}} {0.5 if engine == "0" else 0.9}
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{{{labels}}} 3.0
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{{{labels}}} 183042.0
vllm:prompt_tokens_created{{{labels}}} 1.7e9
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{{{labels}}} 51000.0
# TYPE vllm:request_success_total counter
vllm:request_success_total{{{labels},finished_reason="stop"}} 380.0
vllm:request_success_total{{{labels},finished_reason="length"}} 20.0
vllm:request_success_total{{{labels},finished_reason="abort"}} 2.0
"""
        counts = [0, 0, 0, 0, 0, 0, 0, 311, 60, 20, 5, 3, 2, 1] + [0] * 8
        text += _histogram("vllm:time_to_first_token_seconds", TTFT_BUCKETS, counts, 41.7, engine)
        text += _histogram(tpot, (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
                                  7.5, 10.0, 20.0, 40.0, 80.0), [0, 100, 250, 40, 10] + [0] * 14, 16.0, engine)
        text += _histogram("vllm:e2e_request_latency_seconds", (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0),
                           [0, 0, 10, 100, 200, 80, 10, 2, 0], 600.0, engine)
        text += _histogram("vllm:request_queue_time_seconds", (0.3, 0.5, 0.8), [400, 2, 0], 12.0, engine)
    return text


def test_the_mapping_names_vllms_version():
    assert "vllm-project/vllm@005a810bc40faa25b8870fbc8559c3462581eee3" in VLLM.source


def test_one_view_per_served_model_with_requests_errors_and_tokens():
    readings = VLLM.read(Page(page()), None)
    assert list(readings) == [(MODEL, None)]  # vLLM has no version label
    r = readings[(MODEL, None)]
    assert r.counters[(v.METRIC_PREDICTIONS, ())] == 402
    assert r.counters[(v.METRIC_PREDICTION_ERRORS, (("error.type", "abort"),))] == 2
    assert r.counters[(v.SERVER_TOKENS, (("gen_ai.token.type", "input"),))] == 183042
    assert r.counters[(v.SERVER_TOKENS, (("gen_ai.token.type", "output"),))] == 51000
    assert r.counters[(v.SERVER_PREEMPTIONS, ())] == 3
    assert r.gauges == {v.SERVER_REQUESTS_RUNNING: 4, v.SERVER_REQUESTS_PENDING: 2, v.SERVER_KV_CACHE_USAGE: 0.5}


def test_ttft_tpot_e2e_and_queue_come_from_the_histograms():
    r = VLLM.read(Page(page()), None)[(MODEL, None)]
    ttft = r.histograms[v.GENAI_SERVER_TIME_TO_FIRST_TOKEN]
    assert ttft.bounds == TTFT_BUCKETS and ttft.count == 402 and ttft.total == 41.7
    assert 0.25 < quantile(ttft, 0.95) <= 0.5
    assert r.histograms[v.GENAI_SERVER_TIME_PER_OUTPUT_TOKEN].count == 400
    assert r.histograms[v.GENAI_SERVER_REQUEST_DURATION].count == 402
    assert r.histograms[v.SERVER_QUEUE_DURATION].total == 12.0


def test_ttft_is_reaggregated_exactly_onto_the_conventions_buckets():
    ttft = VLLM.read(Page(page()), None)[(MODEL, None)].histograms[v.GENAI_SERVER_TIME_TO_FIRST_TOKEN]
    advised = rebucket(ttft, v.GENAI_SERVER_TIME_TO_FIRST_TOKEN_BUCKETS)
    assert advised.bounds == v.GENAI_SERVER_TIME_TO_FIRST_TOKEN_BUCKETS
    assert advised.count == ttft.count and advised.total == ttft.total
    assert advised.cumulative[7] == 311  # le=0.1, the same count on both
    # The request latency's buckets hold none of the advised bounds: it keeps its own.
    e2e = VLLM.read(Page(page()), None)[(MODEL, None)].histograms[v.GENAI_SERVER_REQUEST_DURATION]
    assert rebucket(e2e, v.GENAI_SERVER_REQUEST_DURATION_BUCKETS) is e2e


def test_data_parallel_engines_add_up_and_the_fullest_kv_cache_speaks():
    r = VLLM.read(Page(page(engines=("0", "1"))), None)[(MODEL, None)]
    assert r.counters[(v.METRIC_PREDICTIONS, ())] == 804
    assert r.gauges[v.SERVER_REQUESTS_RUNNING] == 8
    assert r.gauges[v.SERVER_KV_CACHE_USAGE] == 0.9
    assert r.histograms[v.GENAI_SERVER_TIME_TO_FIRST_TOKEN].count == 804


def test_the_older_names_of_the_v0_10_series_are_read():
    r = VLLM.read(Page(page(kv_name="vllm:gpu_cache_usage_perc", tpot="vllm:time_per_output_token_seconds")),
                  None)[(MODEL, None)]
    assert r.gauges[v.SERVER_KV_CACHE_USAGE] == 0.5
    assert r.histograms[v.GENAI_SERVER_TIME_PER_OUTPUT_TOKEN].count == 400


@pytest.mark.parametrize("other", ["sglang", "tgi", "triton", "mlserver", "llamacpp"])
def test_a_vllm_page_is_no_other_kinds(other):
    assert VLLM.recognises(Page(page()).names)
    assert not kind(other).recognises(Page(page()).names)
