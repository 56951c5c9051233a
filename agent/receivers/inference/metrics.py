"""Every metric the `inference` receiver writes, and how a model's delta becomes OTLP points.

Counters are delta sums (what the interval added), histograms delta explicit-bucket histograms; a
server's histogram keeps its own bounds, re-aggregated exactly onto the semantic conventions' advised
ones where those are a subset of them (vLLM's TTFT and TPOT). A mean from cumulative counters is a
histogram with no bounds: its count and sum.
"""

from __future__ import annotations

from typing import Any, Mapping

from agent.metrics_builder import Instrument, MetricSpec, ResourceMetrics
from agent.ml import vocabulary as v
from agent.receivers.inference.kinds.base import Histogram
from agent.receivers.inference.view import Delta

C, G, H = Instrument.DELTA_COUNTER, Instrument.GAUGE, Instrument.HISTOGRAM
SPECS = {spec.name: spec for spec in (
    MetricSpec(v.METRIC_PREDICTIONS, "{prediction}", C, "Requests the server answered, failed ones included"),
    MetricSpec(v.METRIC_PREDICTION_ERRORS, "{prediction}", C, "Failed requests, by error.type (the server's reason)"),
    MetricSpec(v.METRIC_PREDICTION_DURATION, "s", H, "Request latency (no buckets: the mean of the server's counters)"),
    MetricSpec(v.GENAI_SERVER_REQUEST_DURATION, "s", H, "Generative AI server request duration"),
    MetricSpec(v.GENAI_SERVER_TIME_TO_FIRST_TOKEN, "s", H, "Time to generate first token for successful responses"),
    MetricSpec(v.GENAI_SERVER_TIME_PER_OUTPUT_TOKEN, "s", H, "Time per output token generated after the first token"),
    MetricSpec(v.SERVER_TOKENS, "{token}", C, "Tokens processed, by gen_ai.token.type (input, output)"),
    MetricSpec(v.SERVER_QUEUE_DURATION, "s", H, "Time requests waited in the server's queue"),
    MetricSpec(v.SERVER_FIRST_RESPONSE_DURATION, "s", H, "Time from a request to its first response"),
    MetricSpec(v.SERVER_BATCH_SIZE, "{request}", H, "Requests per batch the server executed"),
    MetricSpec(v.SERVER_REQUESTS_PENDING, "{request}", G, "Requests waiting to be executed"),
    MetricSpec(v.SERVER_REQUESTS_RUNNING, "{request}", G, "Requests being executed"),
    MetricSpec(v.SERVER_KV_CACHE_USAGE, "1", G, "Share of the KV cache in use (1 = full)"),
    MetricSpec(v.SERVER_PREEMPTIONS, "{preemption}", C, "Requests preempted to free KV cache"),
    MetricSpec(v.SERVER_GPU_MEMORY, "By", G, "GPU memory the server's processes hold"),
    MetricSpec(v.SERVER_GPU_UTILIZATION, "1", G, "GPU utilisation of the server's processes"),
    MetricSpec(v.SERVER_GPU_ENERGY, "J", C, "Energy of the GPUs the server owns (uses alone) over the interval"),
)}
UP = MetricSpec(v.SERVER_UP, "1", G, "1 when the server's metrics were scraped, 0 when the scrape failed")
ADVISED_BOUNDS = {
    v.GENAI_SERVER_REQUEST_DURATION: v.GENAI_SERVER_REQUEST_DURATION_BUCKETS,
    v.GENAI_SERVER_TIME_TO_FIRST_TOKEN: v.GENAI_SERVER_TIME_TO_FIRST_TOKEN_BUCKETS,
    v.GENAI_SERVER_TIME_PER_OUTPUT_TOKEN: v.GENAI_SERVER_TIME_PER_OUTPUT_TOKEN_BUCKETS,
}


def write(out: ResourceMetrics, delta: Delta, start_ns: int, model: Mapping[str, str]) -> None:
    """One model's points for one interval, on its resource.

    `model` (its `ml.model.name` and `ml.model.version`) goes on every point too, as on the ml
    processor's metrics: the same rules and queries find both, and a backend that drops resource
    attributes (Prometheus without resource_to_telemetry_conversion) keeps the models apart.
    """
    for (name, attributes), value in delta.counters.items():
        out.record(SPECS[name], round(value), {**model, **dict(attributes)}, start_ns=start_ns)
    for name, value in delta.gauges.items():
        out.record(SPECS[name], value, model)
    for name, histogram in delta.histograms.items():
        histogram = rebucket(histogram, ADVISED_BOUNDS.get(name))
        out.record_histogram(SPECS[name], histogram.bounds, bucket_counts(histogram), histogram.total, model,
                             start_ns=start_ns)


def write_gpu(out: ResourceMetrics, use: Any, start_ns: int, model: Mapping[str, str] | None = None) -> None:
    out.record(SPECS[v.SERVER_GPU_MEMORY], int(use.memory_bytes), model)
    if use.utilization is not None:
        out.record(SPECS[v.SERVER_GPU_UTILIZATION], float(use.utilization), model)
    if use.energy_joules is not None:
        out.record(SPECS[v.SERVER_GPU_ENERGY], float(use.energy_joules), model, start_ns=start_ns)


def bucket_counts(histogram: Histogram) -> list[int]:
    """Per-bucket counts (len(bounds) + 1) from cumulative ones."""
    counts, below = [], 0.0
    for cumulative in histogram.cumulative:
        counts.append(max(0, round(cumulative - below)))
        below = cumulative
    return counts


def rebucket(histogram: Histogram, bounds: tuple[float, ...] | None) -> Histogram:
    """`histogram` on `bounds` when each is one of its own (exact: whole buckets merge), else as it is."""
    if not bounds or not histogram.bounds:
        return histogram
    at = {bound: cumulative for bound, cumulative in zip(histogram.bounds, histogram.cumulative)}
    if not all(bound in at for bound in bounds):
        return histogram
    return Histogram(tuple(bounds), tuple(at[b] for b in bounds) + (histogram.count,), histogram.total)
