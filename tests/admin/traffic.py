"""Prediction spans for the admin tests: a model `fraud` version `3` with one numeric and one
categorical feature, whose `age` can be shifted to make a window drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent import attributes
from tests.conftest import otlp_receiver_config

MODEL, VERSION = "fraud", "3"


def prediction_spans(n: int, *, seed: int, shift: float = 0.0, start: int = 0,
                     model: str = MODEL, version: str = VERSION) -> ExportTraceServiceRequest:
    rng = np.random.default_rng(seed)
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    attributes.set_any_value(rs.resource.attributes.add(key="service.name").value, "fraud-api")
    spans = rs.scope_spans.add().spans
    ages = rng.normal(40 + shift, 10, n)
    cities = rng.choice(["paris", "berlin", "rome"], n, p=[0.5, 0.3, 0.2])
    for i in range(n):
        k = start + i
        span = spans.add(name="predict", trace_id=k.to_bytes(16, "big"), span_id=(k + 1).to_bytes(8, "big"),
                         start_time_unix_nano=1_700_000_000_000_000_000 + k,
                         end_time_unix_nano=1_700_000_000_010_000_000 + k)
        for key, value in (("ml.model.name", model), ("ml.model.version", version),
                           ("ml.feature.age", float(ages[i])), ("ml.feature.city", str(cities[i])),
                           ("ml.prediction.label", "fraud" if ages[i] > 55 else "ok")):
            attributes.set_any_value(span.attributes.add(key=key).value, value)
    return request


def ml_vigil_config(tmp: Path, **admin: Any) -> dict[str, Any]:
    return {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "processors": {"ml": {"reference": {"warmup": 400}, "window": {"size": 400, "min_size": 100}}},
        "exporters": {"file": {"path": str(tmp / "traces.json")}, "file/metrics": {"path": str(tmp / "metrics.json")}},
        "service": {"state_dir": str(tmp / "state"), "admin": {"endpoint": "127.0.0.1:0", **admin},
                    "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["ml"], "exporters": ["file"]},
                                  "metrics": {"receivers": ["ml"], "exporters": ["file/metrics"]}}},
    }
