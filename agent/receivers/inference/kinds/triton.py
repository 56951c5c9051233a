"""NVIDIA Triton Inference Server: the `nv_inference_*` per-model metrics on its metrics port (8002).

Mapped from triton-inference-server/server@v2.71.0 docs/user_guide/metrics.md and the names and labels
in triton-inference-server/core@r26.06 src/metrics.cc, src/constants.h. Series carry `model` and
`version`; counters have no `_total`. Latency, queue time and batch size are means from cumulative
counters (a count and a sum, no buckets); the first-response histogram (`--metrics-config
histogram_latencies=true`, milliseconds) is passed on, in seconds, where the server has it on.
"""

from __future__ import annotations

from agent.ml import vocabulary as v
from agent.receivers.inference.kinds.base import Histogram, Page, Readings, ServerKind, error_type

_US = 1e-6


def read(page: Page, _model: str | None) -> Readings:
    out = Readings()

    def reading(labels):
        return out.of(labels.get("model", ""), labels.get("version"))

    requests: dict[tuple, float] = {}
    for labels, value in page.values("nv_inference_request_success"):
        reading(labels).add(v.METRIC_PREDICTIONS, value)
        requests[_key(labels)] = requests.get(_key(labels), 0.0) + value
    for labels, value in page.values("nv_inference_request_failure"):
        r = reading(labels)
        r.add(v.METRIC_PREDICTION_ERRORS, value, error_type(labels.get("reason", v.OTHER_ERROR)))
        # A model's requests are its successes and failures together, read only beside its successes:
        # Triton, unloading a model as it stops, drops the success series first, and failures alone
        # would read as a fall of the request count (a restart) and be counted again.
        if _key(labels) in requests:
            r.add(v.METRIC_PREDICTIONS, value)
            requests[_key(labels)] += value
    for exposed, metric in (("nv_inference_request_duration_us", v.METRIC_PREDICTION_DURATION),
                            ("nv_inference_queue_duration_us", v.SERVER_QUEUE_DURATION)):
        for labels, value in page.values(exposed):
            if _key(labels) in requests:
                reading(labels).histogram(metric, Histogram.mean_only(requests[_key(labels)], value * _US))
    executions = {_key(labels): value for labels, value in page.values("nv_inference_exec_count")}
    for labels, inferences in page.values("nv_inference_count"):
        # The mean batch: inferences (a batch of n counts n) per execution.
        reading(labels).histogram(v.SERVER_BATCH_SIZE, Histogram.mean_only(executions.get(_key(labels), 0.0),
                                                                           inferences))
    for labels, value in page.values("nv_inference_pending_request_count"):
        reading(labels).gauge(v.SERVER_REQUESTS_PENDING, value)
    for labels, histogram in page.histograms("nv_inference_first_response_histogram_ms", scale=1e-3):
        reading(labels).histogram(v.SERVER_FIRST_RESPONSE_DURATION, histogram)
    return out


def _key(labels: dict[str, str]) -> tuple:
    return labels.get("model"), labels.get("version")


KIND = ServerKind(
    name="triton",
    source="triton-inference-server/server@v2.71.0:docs/user_guide/metrics.md",
    generative=False,
    prefixes=("nv_",),
    read=read,
    latency=v.METRIC_PREDICTION_DURATION,
)
