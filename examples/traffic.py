"""Drives the example inference app: normal traffic, then a game day, then late ground truth.

    python examples/traffic.py --url http://127.0.0.1:8080 [--quick]

Phases, in order (request counts for the full run; --quick runs fewer):

1. normal     rows of the wine dataset with a little noise: the reference Vigil learns from
2. shift      alcohol, color_intensity and proline move by about two standard deviations
3. missing    20% of all values are null (the app imputes them; Vigil counts them missing)
4. strings    a third of the requests carry text where numbers belong ("n/a", "12,5")
5. malformed  bodies that are not JSON, or not {"features": {...}}
6. burst      the normal mix from 32 concurrent clients at once
7. labels     the true class of every prediction of phases 1-2, as OTLP log records carrying
              ml.model.name, ml.prediction.id and ml.label (ground truth arrives late)

Vigil's `ml` processor turns phases 2-4 into drift and data-health metrics, and
the example's alert rules (examples/inference_app/vigil.yaml) fire for each;
the README next to the app says what to expect and where to see it.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

MODEL_NAME = "wine-classifier"
SHIFTED = {"alcohol": 2.0, "color_intensity": 2.0, "proline": 2.0}  # in standard deviations
STRING_FEATURES = ("magnesium", "hue")


@dataclass
class Phase:
    name: str
    requests: int
    workers: int = 4


@dataclass
class Outcome:
    ok: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    predictions: list[tuple[str, str]] = field(default_factory=list)  # (prediction id, true class)


class Data:
    """Rows drawn from the wine dataset, with noise, and their true classes."""

    def __init__(self, seed: int) -> None:
        from sklearn.datasets import load_wine

        data = load_wine()
        self.names = [_name(n) for n in data.feature_names]
        self.rows = data.data.tolist()
        self.targets = [str(data.target_names[t]) for t in data.target]
        self.std = [float(s) for s in data.data.std(axis=0)]
        self.rng = random.Random(seed)

    def sample(self) -> tuple[dict[str, Any], str]:
        i = self.rng.randrange(len(self.rows))
        features = {n: v + self.rng.gauss(0, 0.05 * s) for n, v, s in zip(self.names, self.rows[i], self.std)}
        return features, self.targets[i]


def _name(raw: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_]+", "_", raw).strip("_")


def body_for(phase: str, data: Data, n: int) -> tuple[bytes, str | None, str]:
    """The request body of the n-th request of `phase`, its id and true class."""
    features, truth = data.sample()
    if phase == "shift":
        index = {name: i for i, name in enumerate(data.names)}
        for name, k in SHIFTED.items():
            features[name] += k * data.std[index[name]]
    elif phase == "missing":
        features = {k: (None if data.rng.random() < 0.2 else v) for k, v in features.items()}
    elif phase == "strings" and n % 3 == 0:
        for name in STRING_FEATURES:
            features[name] = data.rng.choice(["n/a", "12,5", "unknown"])
    elif phase == "malformed":
        return [b"{not json", b"[]", b'{"features": 3}', b"\xff\xfe"][n % 4], None, truth
    prediction_id = f"{phase}-{n}"
    return json.dumps({"id": prediction_id, "features": features}).encode(), prediction_id, truth


def send(url: str, body: bytes, timeout: float = 10.0) -> tuple[int, float]:
    request = urllib.request.Request(url + "/predict", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        exc.read()
        status = exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        status = 0  # refused, reset or timed out: a failure the client saw, not an answer
    return status, time.perf_counter() - started


def run_phase(url: str, phase: Phase, data: Data) -> Outcome:
    outcome = Outcome()
    requests = [body_for(phase.name, data, n) for n in range(phase.requests)]

    def one(request: tuple[bytes, str | None, str]) -> None:
        body, prediction_id, truth = request
        status, seconds = send(url, body)
        outcome.latencies.append(seconds)
        if status == 200:
            outcome.ok += 1
            if prediction_id is not None:
                outcome.predictions.append((prediction_id, truth))
        else:
            outcome.failed += 1

    with ThreadPoolExecutor(phase.workers) as pool:
        list(pool.map(one, requests))
    return outcome


def send_labels(endpoint: str, predictions: list[tuple[str, str]], service: str) -> None:
    """Ground truth as OTLP log records, the way a labelling job would send it."""
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True)))
    logger = provider.get_logger("wine-labels")
    for prediction_id, truth in predictions:
        logger.emit(body=f"label for {prediction_id}", severity_number=SeverityNumber.INFO,
                    timestamp=time.time_ns(),
                    attributes={"ml.model.name": MODEL_NAME, "ml.prediction.id": prediction_id, "ml.label": truth})
    provider.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the inference app")
    parser.add_argument("--otlp-endpoint", default="http://127.0.0.1:4317", help="where labels go (Vigil)")
    parser.add_argument("--quick", action="store_true", help="fewer requests per phase (a demo in seconds)")
    parser.add_argument("--pause", type=float, default=None,
                        help="seconds between phases (default 5, 1 with --quick)")
    parser.add_argument("--labels-delay", type=float, default=None,
                        help="seconds before ground truth is sent (default 10, 1 with --quick)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    pause = args.pause if args.pause is not None else (2.0 if args.quick else 5.0)
    labels_delay = args.labels_delay if args.labels_delay is not None else (1.0 if args.quick else 10.0)
    # (full, quick) requests: with the demo's windows of 200, each game-day phase fills two windows
    # even in a quick run, so its effect stays visible across more than one alert evaluation.
    sizes = {"normal": (1500, 600), "shift": (600, 420), "missing": (600, 420), "strings": (600, 420),
             "malformed": (100, 60), "burst": (1500, 600)}
    phases = [Phase(name, quick if args.quick else full, workers=32 if name == "burst" else 4)
              for name, (full, quick) in sizes.items()]
    data = Data(args.seed)
    labelled: list[tuple[str, str]] = []
    print(f"{'phase':<10} {'requests':>8} {'ok':>6} {'failed':>6} {'p95 ms':>8}")
    for i, phase in enumerate(phases):
        if i:
            time.sleep(pause)
        outcome = run_phase(args.url, phase, data)
        latencies = sorted(outcome.latencies)
        p95 = latencies[int(0.95 * (len(latencies) - 1))] * 1000 if latencies else 0.0
        print(f"{phase.name:<10} {phase.requests:>8} {outcome.ok:>6} {outcome.failed:>6} {p95:>8.1f}", flush=True)
        if phase.name in ("normal", "shift"):
            labelled += outcome.predictions
    time.sleep(labels_delay)
    send_labels(args.otlp_endpoint, labelled, "wine-labels")
    print(f"labels     {len(labelled):>8} sent as OTLP log records", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
