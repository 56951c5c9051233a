"""The tgi kind on exposition text built from TGI's documented names
(huggingface/text-generation-inference@v3.3.7 docs/source/reference/metrics.md, router/src/server.rs),
because TGI needs a GPU and cannot run here: no model label, counters without `_total`, failures by `err`."""

from __future__ import annotations

import pytest

from agent.ml import vocabulary as v
from agent.receivers.inference.kinds import kind
from agent.receivers.inference.kinds.base import Page
from agent.receivers.inference.view import quantile

TGI = kind("tgi")
DURATION_BUCKETS = [0.0001 * 1.5 ** k for k in range(1, 36)]


def _histogram(name: str, bounds, counts, total) -> str:
    lines, running = [f"# TYPE {name} histogram"], 0
    for bound, count in zip(bounds, counts):
        running += count
        lines.append(f'{name}_bucket{{le="{bound}"}} {running}')
    lines += [f'{name}_bucket{{le="+Inf"}} {running}', f"{name}_sum {total}", f"{name}_count {running}"]
    return "\n".join(lines) + "\n"


PAGE = """\
# TYPE tgi_request_count counter
tgi_request_count 1210
# HELP tgi_request_success Number of successful requests
# TYPE tgi_request_success counter
tgi_request_success 1204
# TYPE tgi_request_failure counter
tgi_request_failure{err="validation"} 3
tgi_request_failure{err="overloaded"} 3
# TYPE tgi_queue_size gauge
tgi_queue_size 2
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 6
# TYPE tgi_batch_current_max_tokens gauge
tgi_batch_current_max_tokens 12000
# TYPE tgi_batch_max_total_tokens gauge
tgi_batch_max_total_tokens 16000
""" + _histogram("tgi_request_duration", DURATION_BUCKETS, [0] * 20 + [1204] + [0] * 14, 2210.5) \
    + _histogram("tgi_request_queue_duration", DURATION_BUCKETS, [1204] + [0] * 34, 0.1) \
    + _histogram("tgi_request_mean_time_per_token_duration", DURATION_BUCKETS, [0] * 12 + [1204] + [0] * 22, 30.0) \
    + _histogram("tgi_request_input_length", [100, 200, 300], [1000, 200, 4], 90000) \
    + _histogram("tgi_request_generated_tokens", [100, 200, 300], [1100, 100, 4], 60000) \
    + _histogram("tgi_batch_next_size", [1, 2, 4, 8], [10, 20, 30, 40], 500)


def test_the_mapping_names_tgis_version():
    assert TGI.source.startswith("huggingface/text-generation-inference@v3.3.7")


def test_the_one_model_is_the_configs_and_its_requests_errors_and_tokens_are_read():
    readings = TGI.read(Page(PAGE), "bigscience/bloom-560m")
    assert list(readings) == [("bigscience/bloom-560m", None)]
    r = readings[("bigscience/bloom-560m", None)]
    assert r.counters[(v.METRIC_PREDICTIONS, ())] == 1210
    assert r.counters[(v.METRIC_PREDICTION_ERRORS, (("error.type", "validation"),))] == 3
    assert r.counters[(v.METRIC_PREDICTION_ERRORS, (("error.type", "overloaded"),))] == 3
    # Token counts are the sums of the per-request length histograms.
    assert r.counters[(v.SERVER_TOKENS, (("gen_ai.token.type", "input"),))] == 90000
    assert r.counters[(v.SERVER_TOKENS, (("gen_ai.token.type", "output"),))] == 60000
    assert r.gauges == {v.SERVER_REQUESTS_PENDING: 2, v.SERVER_REQUESTS_RUNNING: 6, v.SERVER_KV_CACHE_USAGE: 0.75}


def test_latency_queue_time_per_token_and_batch_size_are_histograms():
    r = TGI.read(Page(PAGE), "m")[("m", None)]
    latency = r.histograms[v.GENAI_SERVER_REQUEST_DURATION]
    assert len(latency.bounds) == 35 and latency.count == 1204
    assert DURATION_BUCKETS[19] < quantile(latency, 0.95) <= DURATION_BUCKETS[20]
    assert r.histograms[v.SERVER_QUEUE_DURATION].count == 1204
    assert r.histograms[v.GENAI_SERVER_TIME_PER_OUTPUT_TOKEN].total == 30.0
    assert r.histograms[v.SERVER_BATCH_SIZE].bounds == (1, 2, 4, 8)


def test_a_summary_where_a_build_configured_no_buckets():
    page = "# TYPE tgi_request_duration summary\ntgi_request_duration{quantile=\"0.5\"} 1.5\n" \
           "tgi_request_duration_sum 30\ntgi_request_duration_count 20\n"
    latency = TGI.read(Page(page), "m")[("m", None)].histograms[v.GENAI_SERVER_REQUEST_DURATION]
    assert latency.bounds == () and latency.count == 20 and latency.total == 30


def test_tgi_answers_its_model_in_info():
    path, extract = TGI.model_info
    assert path == "/info"
    assert extract({"model_id": "bigscience/bloom-560m", "model_sha": "abc"}) == "bigscience/bloom-560m"
    assert extract({"no": "model"}) is None and extract([1]) is None


@pytest.mark.parametrize("text", ["", "# TYPE python_info gauge\npython_info{version=\"3\"} 1\n"])
def test_a_page_without_tgis_metrics_has_no_model(text):
    assert TGI.read(Page(text), "m") == {}
