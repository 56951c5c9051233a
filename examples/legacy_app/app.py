"""A service as many are today: no OpenTelemetry, just JSON prediction logs and prometheus_client.

    python examples/legacy_app/app.py --log-file ./vigil-data/legacy/predictions.jsonl --metrics-port 8000

It trains a classifier on scikit-learn's bundled iris dataset, then predicts
a stream of incoming measurements (drawn from the dataset with a little
noise), writing one JSON line per prediction, rotated by size as Python's
logging does it:

    {"timestamp": "2024-05-01T12:00:00.123456+00:00", "model_version": "v1.0", "request_id": "…",
     "input": {"features": [5.1, 3.5, 1.4, 0.2]},
     "prediction": {"class": 0, "confidence": 0.95}, "latency_ms": 1.2}

and exposing on /metrics: `iris_predictions_total` (by class),
`iris_prediction_latency_seconds` (histogram), `iris_model_info` and
`iris_requests_in_flight`. After --drift-after predictions the petal
measurements grow (a feature shift); Vigil's `predictionlog` and `prometheus`
receivers watch both without a change to this code.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import random
import signal
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram, Info, start_http_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-file", default="./vigil-data/legacy/predictions.jsonl")
    parser.add_argument("--metrics-port", type=int, default=8000, help="0 picks a free port (printed at start)")
    parser.add_argument("--rate", type=float, default=50.0, help="predictions per second")
    parser.add_argument("--count", type=int, default=0, help="stop after this many (0: run until stopped)")
    parser.add_argument("--drift-after", type=int, default=0, help="shift the petal features after this many")
    parser.add_argument("--rotate-bytes", type=int, default=200_000, help="rotate the log at this size")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)

    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    iris = load_iris()
    model = RandomForestClassifier(n_estimators=30, random_state=0).fit(iris.data, iris.target)
    std = iris.data.std(axis=0)

    predictions = Counter("iris_predictions", "Predictions made", ["predicted_class"])
    latency = Histogram("iris_prediction_latency_seconds", "Time to predict",
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1))
    in_flight = Gauge("iris_requests_in_flight", "Predictions being computed")
    Info("iris_model", "The model being served").info({"version": "v1.0", "algorithm": "random_forest"})
    server, _ = start_http_server(args.metrics_port, addr="127.0.0.1")
    print(f"metrics on http://127.0.0.1:{server.server_port}/metrics, predictions to {args.log_file}", flush=True)

    Path(args.log_file).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(args.log_file, maxBytes=args.rotate_bytes, backupCount=3)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("predictions")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    rng = random.Random(args.seed)
    n = 0
    while not stop.is_set() and (args.count == 0 or n < args.count):
        i = rng.randrange(len(iris.data))
        x = [float(v + rng.gauss(0, 0.05 * s)) for v, s in zip(iris.data[i], std)]
        if args.drift_after and n >= args.drift_after:
            x[2] += 1.5 * std[2]  # petal length
            x[3] += 1.5 * std[3]  # petal width
        with in_flight.track_inprogress():
            started = time.perf_counter()
            probabilities = model.predict_proba([x])[0]
            seconds = time.perf_counter() - started
        predicted = int(probabilities.argmax())
        latency.observe(seconds)
        predictions.labels(str(iris.target_names[predicted])).inc()
        log.info(json.dumps({
            "timestamp": datetime.now(timezone.utc).isoformat(), "model_version": "v1.0",
            "request_id": uuid.uuid4().hex, "input": {"features": [round(v, 4) for v in x]},
            "prediction": {"class": predicted, "confidence": round(float(probabilities[predicted]), 4)},
            "latency_ms": round(seconds * 1000, 3)}))
        n += 1
        stop.wait(1.0 / args.rate)
    handler.close()
    print(f"made {n} predictions", flush=True)
    stop.wait(0 if args.count == 0 else 3600)  # with --count, keep serving /metrics until stopped
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
