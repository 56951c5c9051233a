"""A small wine classifier served over HTTP, instrumented with the OpenTelemetry SDK only.

    python examples/inference_app/app.py --port 8080 --otlp-endpoint http://127.0.0.1:4317

At start-up it trains a scikit-learn pipeline (median imputation, scaling,
logistic regression) on the wine dataset that ships with scikit-learn, then
serves

    POST /predict  {"features": {"alcohol": 13.2, "malic_acid": 1.8, ...}, "id": "optional"}
                   -> {"prediction_id": "...", "label": "class_0", "confidence": 0.97,
                       "probabilities": [...], "classes": [...]}
    GET  /healthz

Each request is a SERVER span with a child prediction span that carries the
`ml.*` attributes Vigil reads (docs/DESIGN.md): the model name and version, a
prediction id, every feature as it arrived (a missing one is left out, a
string stays a string), the predicted label, its confidence and the class
probabilities. A failure (a body that is not JSON, a value that is not a
number) is span status ERROR with the exception recorded, and a 4xx answer.
Nothing here is Vigil-specific but those attribute names: the spans go to any
OTLP endpoint (Vigil on localhost:4317 by default).

The model runs as `--instances` instances (1 by default), each prediction
holding one for at least `--compute-ms` (3 ms), as a model on a GPU would:
a burst of clients queues for an instance, and the prediction span includes
that wait, as an inference server's request latency includes its queue time.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

MODEL_NAME = "wine-classifier"


def feature_name(raw: str) -> str:
    """scikit-learn's wine column names as attribute-friendly names (`od280/od315_...` has a slash)."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", raw).strip("_")


class Model:
    """The classifier, trained on the bundled wine dataset when the app starts."""

    def __init__(self, version: str, instances: int = 1, compute_seconds: float = 0.003) -> None:
        from sklearn.datasets import load_wine
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        data = load_wine()
        self.version = version
        self.features = [feature_name(n) for n in data.feature_names]
        self.classes = [str(c) for c in data.target_names]
        self.pipeline = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                                      LogisticRegression(max_iter=2000))
        self.pipeline.fit(data.data, data.target)
        self._instances = threading.Semaphore(instances)
        self._compute_seconds = compute_seconds

    def predict(self, row: list[float]) -> tuple[str, float, list[float]]:
        with self._instances:  # waits for a free instance
            started = time.perf_counter()
            probabilities = self.pipeline.predict_proba([row])[0]
            time.sleep(max(0.0, self._compute_seconds - (time.perf_counter() - started)))
        best = int(probabilities.argmax())
        return self.classes[best], float(probabilities[best]), [float(p) for p in probabilities]


class BadRequest(Exception):
    """The request cannot be served as sent (a 4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def make_handler(model: Model, tracer: trace.Tracer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the spans are the log
            pass

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._answer(200, {"status": "ok", "model": MODEL_NAME, "version": model.version})
            else:
                self._answer(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path != "/predict":
                self._answer(404, {"error": "not found"})
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with tracer.start_as_current_span("POST /predict", kind=trace.SpanKind.SERVER,
                                              attributes={"http.request.method": "POST",
                                                          "url.path": "/predict"}) as server_span:
                status, answer = self._predict(body)
                server_span.set_attribute("http.response.status_code", status)
                if status >= 400:
                    server_span.set_status(Status(StatusCode.ERROR, answer["error"]))
            self._answer(status, answer)

        def _predict(self, body: bytes) -> tuple[int, dict[str, Any]]:
            with tracer.start_as_current_span(f"{MODEL_NAME}.predict") as span:
                span.set_attribute("ml.model.name", MODEL_NAME)
                span.set_attribute("ml.model.version", model.version)
                try:
                    request = json.loads(body)
                    if not isinstance(request, dict) or not isinstance(request.get("features"), dict):
                        raise BadRequest('the body must be {"features": {name: value, ...}}')
                    prediction_id = str(request.get("id") or uuid.uuid4().hex)
                    span.set_attribute("ml.prediction.id", prediction_id)
                    features = request["features"]
                    # Every feature as it came, before any check, so Vigil sees missing values and
                    # wrong types even in requests that fail.
                    for name in model.features:
                        value = features.get(name)
                        if isinstance(value, (int, float, str, bool)):
                            span.set_attribute(f"ml.feature.{name}", value)
                    row = []
                    for name in model.features:
                        value = features.get(name)
                        if value is None:
                            row.append(math.nan)  # the pipeline imputes it
                        elif isinstance(value, (int, float)) and not isinstance(value, bool):
                            row.append(float(value))
                        else:
                            raise BadRequest(f"feature {name} must be a number, got {value!r}", 422)
                    label, confidence, probabilities = model.predict(row)
                except (ValueError, BadRequest) as exc:
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, str(exc)))
                    return (exc.status if isinstance(exc, BadRequest) else 400), {"error": str(exc)}
                span.set_attribute("ml.prediction.label", label)
                span.set_attribute("ml.prediction.confidence", confidence)
                span.set_attribute("ml.prediction.probabilities", probabilities)
                span.set_attribute("ml.model.classes", model.classes)
                return 200, {"prediction_id": prediction_id, "label": label, "confidence": confidence,
                             "probabilities": probabilities, "classes": model.classes}

        def _answer(self, status: int, answer: dict[str, Any]) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port (printed at start)")
    parser.add_argument("--otlp-endpoint", default="http://127.0.0.1:4317", help="OTLP/gRPC endpoint (Vigil)")
    parser.add_argument("--service-name", default="wine-api")
    parser.add_argument("--model-version", default="1.0")
    parser.add_argument("--instances", type=int, default=1, help="predictions served at once (default 1)")
    parser.add_argument("--compute-ms", type=float, default=3.0,
                        help="the least time a prediction holds an instance (default 3)")
    args = parser.parse_args(argv)

    provider = TracerProvider(resource=Resource.create({"service.name": args.service_name,
                                                        "deployment.environment": "demo"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=args.otlp_endpoint, insecure=True),
                                                   schedule_delay_millis=500))
    tracer = provider.get_tracer("wine-api", "1.0")
    model = Model(args.model_version, args.instances, args.compute_ms / 1000)
    class Server(ThreadingHTTPServer):
        request_queue_size = 256  # the default backlog of 5 resets connections in a burst
        daemon_threads = True

    server = Server((args.host, args.port), make_handler(model, tracer))

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"serving {MODEL_NAME} {model.version} on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        provider.shutdown()  # flushes the spans not yet sent
    return 0


if __name__ == "__main__":
    sys.exit(main())
