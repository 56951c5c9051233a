"""What an `ml.embedding` costs the ml processor's extraction, per prediction span.

Requests of `--items` prediction spans as the OpenTelemetry SDK sends them (SDK resource, trace and
span ids, model name and version, a prediction id, a confidence, 10 features, an `http.route`), once
without an embedding and once with a `--dims`-dimensional `ml.embedding` double array on every span.
Timed: `Extractor.extract_all` (the wire reader, as the ml processor runs it) and the message reader on
the same requests (parsed before the clock starts), CPU time per span, median of `--repeat` rounds.

    .venv/bin/python bench/embedding_extract.py
    .venv/bin/python bench/embedding_extract.py --dims 768 --repeat 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.ml.sources.otlp import Extractor  # noqa: E402
from agent.signals import Batch, Signal  # noqa: E402

RESOURCE = {"service.name": "search-api", "service.version": "1.4.2", "telemetry.sdk.name": "opentelemetry",
            "telemetry.sdk.language": "python", "telemetry.sdk.version": "1.38.0", "host.name": "gpu-node-7",
            "process.pid": 4242}


def request(items: int, dims: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    out = ExportTraceServiceRequest()
    resource = out.resource_spans.add()
    for key, value in RESOURCE.items():
        kv = resource.resource.attributes.add(key=key)
        if isinstance(value, int):
            kv.value.int_value = value
        else:
            kv.value.string_value = value
    scope = resource.scope_spans.add()
    scope.scope.name = "inference-app"
    for i in range(items):
        span = scope.spans.add(name="predict", trace_id=rng.bytes(16), span_id=rng.bytes(8), kind=2,
                               start_time_unix_nano=1_700_000_000_000_000_000 + i,
                               end_time_unix_nano=1_700_000_000_004_000_000 + i)
        span.attributes.add(key="http.route").value.string_value = "/v1/search"
        span.attributes.add(key="ml.model.name").value.string_value = "search"
        span.attributes.add(key="ml.model.version").value.string_value = "v3"
        span.attributes.add(key="ml.prediction.id").value.string_value = f"req-{seed}-{i}"
        span.attributes.add(key="ml.prediction.confidence").value.double_value = float(rng.uniform(0.5, 1))
        for f in range(10):
            span.attributes.add(key=f"ml.feature.f{f}").value.double_value = float(rng.normal())
        if dims:
            array = span.attributes.add(key="ml.embedding").value.array_value
            for x in rng.normal(size=dims):
                array.values.add().double_value = float(x)
    return out.SerializeToString()


def per_span(bodies: list[bytes], items: int, use_scanner: bool, repeat: int) -> float:
    """Median µs of CPU per span of extracting `bodies`."""
    rounds = []
    for _ in range(repeat):
        extractor = Extractor(use_scanner=use_scanner)
        batches = [Batch(Signal.TRACES, wire=body) for body in bodies]
        if not use_scanner:
            for b in batches:
                b.resources()  # parsed before the clock: the receiver has parsed it when the message reader runs
        start = time.process_time()
        for b in batches:
            extracted = extractor.extract_all(b)
        rounds.append((time.process_time() - start) / (len(bodies) * items) * 1e6)
        assert extracted.predictions[0].rows == items
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=512, help="spans per request (default 512)")
    parser.add_argument("--requests", type=int, default=20, help="requests per round (default 20)")
    parser.add_argument("--dims", type=int, default=384, help="embedding dimensions (default 384)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (default 5)")
    args = parser.parse_args()
    print(f"{args.items} spans a request, {args.requests} requests, median of {args.repeat} rounds, µs CPU per span")
    for dims in (0, args.dims):
        bodies = [request(args.items, dims, seed) for seed in range(args.requests)]
        wire = per_span(bodies, args.items, True, args.repeat)
        message = per_span(bodies, args.items, False, args.repeat)
        label = f"ml.embedding of {dims}" if dims else "no embedding"
        print(f"  {label:<22} wire reader {wire:7.2f}   message reader {message:7.2f}   "
              f"({len(bodies[0]) / args.items:,.0f} bytes a span)")


if __name__ == "__main__":
    main()
