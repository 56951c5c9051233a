"""The llamacpp kind on exposition text built from llama.cpp's documented names
(ggml-org/llama.cpp@00dc8057 tools/server/README.md; no labels, `--metrics`), because a llama-server
build with a model is not available here."""

from __future__ import annotations

import pytest

from agent.ml import vocabulary as v
from agent.receivers.inference.kinds import kind
from agent.receivers.inference.kinds.base import Page
from agent.receivers.inference.view import mean

LLAMACPP = kind("llamacpp")

PAGE = """\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 48213
# HELP llamacpp:prompt_seconds_total Prompt process time
# TYPE llamacpp:prompt_seconds_total counter
llamacpp:prompt_seconds_total 12.5
# HELP llamacpp:tokens_predicted_total Number of generation tokens processed.
# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total 20000
# HELP llamacpp:tokens_predicted_seconds_total Predict process time
# TYPE llamacpp:tokens_predicted_seconds_total counter
llamacpp:tokens_predicted_seconds_total 500
# HELP llamacpp:predicted_tokens_seconds Average generation throughput in tokens/s.
# TYPE llamacpp:predicted_tokens_seconds gauge
llamacpp:predicted_tokens_seconds 41.27
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 2
# HELP llamacpp:requests_deferred Number of requests deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 1
# HELP llamacpp:n_decode_total Total number of llama_decode() calls
# TYPE llamacpp:n_decode_total counter
llamacpp:n_decode_total 900
"""


def test_the_mapping_names_llamacpps_version():
    assert "ggml-org/llama.cpp@00dc8057ab28c9cb4c79a6dd6dfce07fe779f63b" in LLAMACPP.source


def test_tokens_time_per_token_and_requests_of_the_one_model():
    readings = LLAMACPP.read(Page(PAGE), "qwen2-0.5b.gguf")
    assert list(readings) == [("qwen2-0.5b.gguf", None)]
    r = readings[("qwen2-0.5b.gguf", None)]
    assert r.counters == {(v.SERVER_TOKENS, (("gen_ai.token.type", "input"),)): 48213,
                          (v.SERVER_TOKENS, (("gen_ai.token.type", "output"),)): 20000}
    assert mean(r.histograms[v.GENAI_SERVER_TIME_PER_OUTPUT_TOKEN]) == pytest.approx(0.025)
    assert r.gauges == {v.SERVER_REQUESTS_RUNNING: 2, v.SERVER_REQUESTS_PENDING: 1}


def test_older_builds_kv_cache_ratio():
    page = PAGE + "# TYPE llamacpp:kv_cache_usage_ratio gauge\nllamacpp:kv_cache_usage_ratio 0.4\n"
    assert LLAMACPP.read(Page(page), "m")[("m", None)].gauges[v.SERVER_KV_CACHE_USAGE] == 0.4


def test_the_model_comes_from_v1_models():
    path, extract = LLAMACPP.model_info
    assert path == "/v1/models"
    assert extract({"object": "list", "data": [{"id": "qwen2-0.5b", "object": "model"}]}) == "qwen2-0.5b"
    assert extract({"data": []}) is None
