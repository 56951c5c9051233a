"""The sglang kind on exposition text built from SGLang's documented names (sgl-project/sglang@00ae9c15
python/sglang/srt/metrics/collector.py), because SGLang needs a GPU and cannot run here: `model_name`
everywhere, the scheduler's gauges per tensor/pipeline-parallel rank."""

from __future__ import annotations

from agent.ml import vocabulary as v
from agent.receivers.inference.kinds import kind
from agent.receivers.inference.kinds.base import Page
from agent.receivers.inference.view import quantile

SGLANG = kind("sglang")
TOKENIZER = 'engine_type="unified",model_name="qwen2.5-7b"'


def _gauges(tp_rank: str) -> str:
    ranks = f'engine_type="unified",model_name="qwen2.5-7b",moe_ep_rank="0",pp_rank="0",tp_rank="{tp_rank}"'
    return f"""\
# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{{{ranks}}} 12.0
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{{{ranks}}} 5.0
# TYPE sglang:token_usage gauge
sglang:token_usage{{{ranks}}} 0.96
"""


PAGE = _gauges("0") + _gauges("1") + f"""\
# HELP sglang:prompt_tokens_total Number of prefill tokens processed.
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{{{TOKENIZER}}} 90211.0
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{{{TOKENIZER}}} 40000.0
# TYPE sglang:num_requests_total counter
sglang:num_requests_total{{{TOKENIZER}}} 900.0
# TYPE sglang:num_aborted_requests_total counter
sglang:num_aborted_requests_total{{{TOKENIZER}}} 9.0
# HELP sglang:e2e_request_latency_seconds Histogram of End-to-end request latency in seconds
# TYPE sglang:e2e_request_latency_seconds histogram
sglang:e2e_request_latency_seconds_bucket{{{TOKENIZER},le="1.0"}} 100.0
sglang:e2e_request_latency_seconds_bucket{{{TOKENIZER},le="2.0"}} 840.0
sglang:e2e_request_latency_seconds_bucket{{{TOKENIZER},le="4.0"}} 900.0
sglang:e2e_request_latency_seconds_bucket{{{TOKENIZER},le="+Inf"}} 900.0
sglang:e2e_request_latency_seconds_sum{{{TOKENIZER}}} 1300.0
sglang:e2e_request_latency_seconds_count{{{TOKENIZER}}} 900.0
# TYPE sglang:time_to_first_token_seconds histogram
sglang:time_to_first_token_seconds_bucket{{{TOKENIZER},le="0.1"}} 300.0
sglang:time_to_first_token_seconds_bucket{{{TOKENIZER},le="0.2"}} 890.0
sglang:time_to_first_token_seconds_bucket{{{TOKENIZER},le="+Inf"}} 900.0
sglang:time_to_first_token_seconds_sum{{{TOKENIZER}}} 110.0
sglang:time_to_first_token_seconds_count{{{TOKENIZER}}} 900.0
# TYPE sglang:inter_token_latency_seconds histogram
sglang:inter_token_latency_seconds_bucket{{{TOKENIZER},le="0.02"}} 39000.0
sglang:inter_token_latency_seconds_bucket{{{TOKENIZER},le="+Inf"}} 40000.0
sglang:inter_token_latency_seconds_sum{{{TOKENIZER}}} 600.0
sglang:inter_token_latency_seconds_count{{{TOKENIZER}}} 40000.0
"""


def test_the_mapping_names_sglangs_version():
    assert "sgl-project/sglang@00ae9c1590d2d0bb6c0bfff39e312c34ae3dd538" in SGLANG.source


def test_requests_aborts_tokens_and_latencies_of_the_served_model():
    readings = SGLANG.read(Page(PAGE), None)
    assert list(readings) == [("qwen2.5-7b", None)]
    r = readings[("qwen2.5-7b", None)]
    assert r.counters[(v.METRIC_PREDICTIONS, ())] == 900
    assert r.counters[(v.METRIC_PREDICTION_ERRORS, (("error.type", "aborted"),))] == 9
    assert r.counters[(v.SERVER_TOKENS, (("gen_ai.token.type", "input"),))] == 90211
    assert r.counters[(v.SERVER_TOKENS, (("gen_ai.token.type", "output"),))] == 40000
    assert 0.1 < quantile(r.histograms[v.GENAI_SERVER_TIME_TO_FIRST_TOKEN], 0.95) <= 0.2
    assert 1.0 < quantile(r.histograms[v.GENAI_SERVER_REQUEST_DURATION], 0.5) <= 2.0
    # Inter-token latency counts tokens: its mean is the time per output token.
    tpot = r.histograms[v.GENAI_SERVER_TIME_PER_OUTPUT_TOKEN]
    assert tpot.total / tpot.count == 0.015


def test_every_tensor_parallel_rank_reports_the_same_batch_so_rank_0_speaks():
    r = SGLANG.read(Page(PAGE), None)[("qwen2.5-7b", None)]
    assert r.gauges == {v.SERVER_REQUESTS_RUNNING: 12, v.SERVER_REQUESTS_PENDING: 5, v.SERVER_KV_CACHE_USAGE: 0.96}
