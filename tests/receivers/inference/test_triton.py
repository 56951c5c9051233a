"""The triton kind on exposition text built from Triton's documented names and labels
(triton-inference-server/server@v2.71.0 docs/user_guide/metrics.md, core@r26.06 src/metrics.cc): counters
without `_total`, labels `model` and `version`, failures by `reason`. A real Triton runs in
test_real_servers.py; here each mapping is checked value by value."""

from __future__ import annotations

import pytest

from agent.ml import vocabulary as v
from agent.receivers.inference.kinds import kind
from agent.receivers.inference.kinds.base import Page
from agent.receivers.inference.view import mean, quantile

TRITON = kind("triton")

PAGE = """\
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="resnet50",version="1"} 1542
nv_inference_request_success{model="resnet50",version="2"} 10
# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="resnet50",reason="REJECTED",version="1"} 0
nv_inference_request_failure{model="resnet50",reason="CANCELED",version="1"} 1
nv_inference_request_failure{model="resnet50",reason="BACKEND",version="1"} 3
nv_inference_request_failure{model="resnet50",reason="OTHER",version="1"} 0
# HELP nv_inference_count Number of inferences performed (does not include cached requests)
# TYPE nv_inference_count counter
nv_inference_count{model="resnet50",version="1"} 6000
# HELP nv_inference_exec_count Number of model executions performed (does not include cached requests)
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="resnet50",version="1"} 1500
# HELP nv_inference_pending_request_count Instantaneous number of pending requests awaiting execution per-model.
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="resnet50",version="1"} 7
# HELP nv_inference_request_duration_us Cumulative inference request duration in microseconds (includes cached requests)
# TYPE nv_inference_request_duration_us counter
nv_inference_request_duration_us{model="resnet50",version="1"} 15460000
# HELP nv_inference_queue_duration_us Cumulative inference queuing duration in microseconds (includes cached requests)
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="resnet50",version="1"} 918233
# HELP nv_inference_compute_infer_duration_us Cumulative compute inference duration in microseconds
# TYPE nv_inference_compute_infer_duration_us counter
nv_inference_compute_infer_duration_us{model="resnet50",version="1"} 9000000
# HELP nv_inference_first_response_histogram_ms Duration from request to first response in milliseconds
# TYPE nv_inference_first_response_histogram_ms histogram
nv_inference_first_response_histogram_ms_bucket{model="resnet50",version="1",le="100"} 1000
nv_inference_first_response_histogram_ms_bucket{model="resnet50",version="1",le="500"} 1500
nv_inference_first_response_histogram_ms_bucket{model="resnet50",version="1",le="2000"} 1540
nv_inference_first_response_histogram_ms_bucket{model="resnet50",version="1",le="5000"} 1546
nv_inference_first_response_histogram_ms_bucket{model="resnet50",version="1",le="+Inf"} 1546
nv_inference_first_response_histogram_ms_sum{model="resnet50",version="1"} 150000
nv_inference_first_response_histogram_ms_count{model="resnet50",version="1"} 1546
# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{gpu_uuid="GPU-1"} 0.5
"""


def test_the_mapping_follows_tritons_documentation_version():
    assert TRITON.source.startswith("triton-inference-server/server@v2.71.0")


def test_each_model_version_is_its_own_view_with_requests_and_errors_by_reason():
    readings = TRITON.read(Page(PAGE), None)
    assert set(readings) == {("resnet50", "1"), ("resnet50", "2")}
    one = readings[("resnet50", "1")]
    # Requests are successes and failures; counters without `_total` are read all the same.
    assert one.counters[(v.METRIC_PREDICTIONS, ())] == 1542 + 4
    errors = {dict(attrs)["error.type"]: value for (name, attrs), value in one.counters.items()
              if name == v.METRIC_PREDICTION_ERRORS}
    assert errors == {"REJECTED": 0, "CANCELED": 1, "BACKEND": 3, "OTHER": 0}
    assert readings[("resnet50", "2")].counters[(v.METRIC_PREDICTIONS, ())] == 10


def test_latency_queue_and_batch_are_means_of_the_cumulative_counters():
    one = TRITON.read(Page(PAGE), None)[("resnet50", "1")]
    latency = one.histograms[v.METRIC_PREDICTION_DURATION]
    assert latency.bounds == ()  # no buckets: a mean, said so in status as latency_from "mean"
    assert mean(latency) == pytest.approx(15.46 / 1546)
    assert mean(one.histograms[v.SERVER_QUEUE_DURATION]) == pytest.approx(0.918233 / 1546)
    assert mean(one.histograms[v.SERVER_BATCH_SIZE]) == pytest.approx(4.0)  # 6000 inferences in 1500 runs
    assert one.gauges[v.SERVER_REQUESTS_PENDING] == 7


def test_the_first_response_histogram_is_in_seconds():
    first = TRITON.read(Page(PAGE), None)[("resnet50", "1")].histograms[v.SERVER_FIRST_RESPONSE_DURATION]
    assert first.bounds == pytest.approx((0.1, 0.5, 2.0, 5.0))
    assert first.count == 1546 and first.total == pytest.approx(150.0)
    # p95: rank 1468.7 falls in (0.1, 0.5], interpolated as Prometheus's histogram_quantile does.
    assert quantile(first, 0.95) == pytest.approx(0.1 + 0.4 * (1468.7 - 1000) / 500)


def test_the_page_is_recognised_as_tritons_and_gpu_series_are_no_model():
    page = Page(PAGE)
    assert TRITON.recognises(page.names)
    assert not kind("vllm").recognises(page.names)
    assert ("", None) not in TRITON.read(page, None)
