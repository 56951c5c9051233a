"""The mlserver kind on exposition text built from MLServer's documented names (SeldonIO/MLServer@1.7.1
docs/user-guide/metrics.md, mlserver/metrics/context.py): counters with `_total` labelled `model` and
`version`, the infer duration a summary. A real MLServer runs in test_real_servers.py."""

from __future__ import annotations

import pytest

from agent.ml import vocabulary as v
from agent.receivers.inference.kinds import kind
from agent.receivers.inference.kinds.base import Page
from agent.receivers.inference.view import mean

MLSERVER = kind("mlserver")

PAGE = """\
# HELP model_infer_request_success_total Model infer request success count
# TYPE model_infer_request_success_total counter
model_infer_request_success_total{model="iris-sklearn",version="v1"} 532.0
# HELP model_infer_request_success_created Model infer request success count
# TYPE model_infer_request_success_created gauge
model_infer_request_success_created{model="iris-sklearn",version="v1"} 1.7e9
# HELP model_infer_request_failure_total Model infer request failure count
# TYPE model_infer_request_failure_total counter
model_infer_request_failure_total{model="iris-sklearn",version="v1"} 8.0
# HELP model_infer_request_duration Model infer request duration
# TYPE model_infer_request_duration summary
model_infer_request_duration_count{model="iris-sklearn",version="v1"} 540.0
model_infer_request_duration_sum{model="iris-sklearn",version="v1"} 3.94
# HELP batch_request_queue counter of request queue batch size
# TYPE batch_request_queue histogram
batch_request_queue_bucket{le="5.0",model_name="iris-sklearn",model_version="v1"} 77.0
batch_request_queue_bucket{le="+Inf",model_name="iris-sklearn",model_version="v1"} 77.0
"""


def test_the_mapping_names_mlservers_version():
    assert MLSERVER.source.startswith("SeldonIO/MLServer@1.7.1")


def test_requests_failures_and_the_mean_latency_per_model_version():
    readings = MLSERVER.read(Page(PAGE), None)
    assert list(readings) == [("iris-sklearn", "v1")]
    r = readings[("iris-sklearn", "v1")]
    assert r.counters[(v.METRIC_PREDICTIONS, ())] == 540
    assert r.counters[(v.METRIC_PREDICTION_ERRORS, (("error.type", "_OTHER"),))] == 8
    latency = r.histograms[v.METRIC_PREDICTION_DURATION]
    assert latency.bounds == () and mean(latency) == pytest.approx(3.94 / 540)


def test_the_docs_label_names_are_read_too():
    page = PAGE.replace('model="', 'model_name="').replace('version="', 'model_version="')
    assert list(MLSERVER.read(Page(page), None)) == [("iris-sklearn", "v1")]


def test_an_idle_mlserver_page_is_not_a_wrong_kind():
    # Its request counters appear with the first request; before that the page has only the process's.
    assert not MLSERVER.idle_page_has_metrics
    assert MLSERVER.read(Page("# TYPE python_info gauge\npython_info{version=\"3.11\"} 1\n"), None) == {}


def test_a_request_that_named_no_version_is_no_version():
    # As MLServer 1.7.1 labels a request to /v2/models/{name}/infer: version="None".
    page = PAGE.replace('version="v1"', 'version="None"')
    assert list(MLSERVER.read(Page(page), None)) == [("iris-sklearn", None)]
