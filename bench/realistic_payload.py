"""Prediction spans as instrumented apps send them, one serialised OTLP trace request at a time.

Shared by `passthrough.py --ml` and `steady_state.py`, so both measure the same bytes. A request
holds one resource per model version (as one app per model sends), each with an OpenTelemetry SDK
resource (`service.*`, `telemetry.sdk.*`, `host.*`, `process.*`). Its spans carry a trace and span
id, `ml.prediction.id` (for label joins; left out with `prediction_id=False`), a predicted label and
its confidence, 10 features (two categorical, the numeric ones missing now and then), five ordinary
attributes of mixed types (string, int, bool), and one span in 50 an exception event.
"""

from __future__ import annotations

import random
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent.attributes import set_any_value

MODELS = [("fraud", "v3"), ("fraud", "v4"), ("churn", "2024-06")]


def _set(attributes, key: str, value) -> None:
    set_any_value(attributes.add(key=key).value, value)


def make_request(spans: int, seed: int, prediction_id: bool = True) -> bytes:
    """One request of `spans` prediction spans over the three model versions of `MODELS`."""
    rng = random.Random(seed)
    message = ExportTraceServiceRequest()
    now = time.time_ns()
    per_model = [spans // len(MODELS) + (i < spans % len(MODELS)) for i in range(len(MODELS))]
    serial = 0
    for (model, version), count in zip(MODELS, per_model):
        resource = message.resource_spans.add()
        for key, value in (("service.name", f"{model}-api"), ("service.version", "1.8.2"),
                           ("service.instance.id", f"{model}-7f9c"), ("telemetry.sdk.name", "opentelemetry"),
                           ("telemetry.sdk.language", "python"), ("telemetry.sdk.version", "1.27.0"),
                           ("host.name", "ip-10-0-3-17"), ("host.arch", "amd64"), ("process.pid", 4211),
                           ("process.runtime.name", "cpython"), ("process.runtime.version", "3.11.7")):
            _set(resource.resource.attributes, key, value)
        scope = resource.scope_spans.add()
        scope.scope.name, scope.scope.version = "inference", "0.3.0"
        for _ in range(count):
            serial += 1
            span = scope.spans.add()
            span.trace_id, span.span_id = rng.randbytes(16), rng.randbytes(8)
            span.name, span.kind = "predict", 2
            span.start_time_unix_nano = now + serial * 100_000
            span.end_time_unix_nano = span.start_time_unix_nano + rng.randrange(2_000_000, 40_000_000)
            a = span.attributes
            _set(a, "ml.model.name", model)
            _set(a, "ml.model.version", version)
            # Drawn either way, so the rest of the request is the same with and without the id.
            pid = f"{seed:06d}-{serial:06d}-{rng.getrandbits(32):08x}"
            if prediction_id:
                _set(a, "ml.prediction.id", pid)
            _set(a, "ml.prediction.label", rng.choice(["approve", "review", "deny"]))
            _set(a, "ml.prediction.confidence", rng.uniform(0.5, 1.0))
            for f in range(8):
                if rng.random() > 0.03:  # some features missing
                    _set(a, f"ml.feature.f{f}", rng.gauss(f, 1.0 + f / 4))
            _set(a, "ml.feature.country", rng.choice(["de", "fr", "us", "br", "in"]))
            _set(a, "ml.feature.channel", rng.choice(["web", "app", "pos"]))
            _set(a, "http.route", "/v1/predict")
            _set(a, "http.status_code", 200)
            _set(a, "tier", rng.choice(["free", "pro"]))
            _set(a, "region", "eu-west-1")
            _set(a, "cache.hit", rng.random() < 0.3)
            if rng.random() < 0.02:
                event = span.events.add()
                event.name, event.time_unix_nano = "exception", span.end_time_unix_nano
                _set(event.attributes, "exception.type", "TimeoutError")
                _set(event.attributes, "exception.message", "feature store took too long")
    return message.SerializeToString()


def numbered(body: bytes, seed: int, number: int) -> bytes:
    """`body` (made by `make_request` with `seed`) as the run's request `number`: its prediction ids
    start with `number` instead of `seed`, so no id repeats within a run, as an app's never do."""
    # Only at the start of an id's string value (its tag and length before it); the same length after.
    id_start = b"\x0a\x16"
    return body.replace(id_start + b"%06d-" % seed, id_start + b"%06d-" % number)
