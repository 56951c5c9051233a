"""MLServer (Seldon): the per-model request metrics on its metrics port (8082, `/metrics`).

Mapped from SeldonIO/MLServer@1.7.1 docs/user-guide/metrics.md and mlserver/handlers/dataplane.py,
mlserver/metrics/context.py. The request counters carry `model` and `version` (the docs' `model_name`
and `model_version` label only the custom metrics; both are read). The infer duration is a summary (a
count and a sum): latency is its mean; a build exposing it as a histogram has it with buckets.
MLServer has no failure reason. A request that named no version is counted under version "None": no
version.
"""

from __future__ import annotations

from agent.ml import vocabulary as v
from agent.receivers.inference.kinds.base import Page, Readings, ServerKind, error_type


def _model(labels: dict[str, str]) -> tuple[str, str | None]:
    version = labels.get("version", labels.get("model_version"))
    # A request that named no version is labelled "None" (Python's str of it), whatever the model's settings say.
    return labels.get("model", labels.get("model_name", "")), None if version in (None, "", "None") else version


def read(page: Page, _model_name: str | None) -> Readings:
    out = Readings()
    for labels, value in page.values("model_infer_request_success_total"):
        out.of(*_model(labels)).add(v.METRIC_PREDICTIONS, value)
    for labels, value in page.values("model_infer_request_failure_total"):
        r = out.of(*_model(labels))
        r.add(v.METRIC_PREDICTIONS, value)
        r.add(v.METRIC_PREDICTION_ERRORS, value, error_type(v.OTHER_ERROR))
    name = "model_infer_request_duration"
    for labels, histogram in page.histograms(name) or page.summaries(name):
        out.of(*_model(labels)).histogram(v.METRIC_PREDICTION_DURATION, histogram)
    return out


KIND = ServerKind(
    name="mlserver",
    source="SeldonIO/MLServer@1.7.1:docs/user-guide/metrics.md",
    generative=False,
    prefixes=("model_infer_", "batch_request_queue", "parallel_request_queue", "rest_server_", "grpc_server_"),
    read=read,
    latency=v.METRIC_PREDICTION_DURATION,
    # Its request counters appear with a model's first request; an idle server's page may have none.
    idle_page_has_metrics=False,
)
