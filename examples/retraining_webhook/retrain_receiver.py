"""A webhook receiver that starts a model's retraining pipeline when Vigil says the model drifted.

Vigil's `webhook` notifier POSTs Alertmanager's JSON body (version 4), so this
works behind Alertmanager too. For each alert that fires and names a model
(`ml.model.name`, `ml.model.version`), it runs the retraining command once per
model version within a cool-down, however many notifications repeat it;
resolved alerts are only logged. Standard library only.

    RETRAIN_TOKEN=change-me python retrain_receiver.py --port 8080 \\
        --command 'python train.py --model {model} --base-version {version}'

The command is a template: `{model}`, `{version}` and `{alertname}` are
filled in, and it runs without a shell, so a label cannot inject one.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import shlex
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

log = logging.getLogger("retrain")

# The alerts that mean "this model no longer fits its data".
RETRAIN_ON = {"FeatureDrift", "PredictionDrift", "ModelInputDrift", "EstimatedAccuracyDrop", "RealizedAccuracyDrop"}


class Retrainer:
    def __init__(self, command: str, cooldown: float = 6 * 3600,
                 launch: Callable[[list[str]], Any] = subprocess.Popen) -> None:
        self.command = command
        self.cooldown = cooldown
        self.launch = launch
        self.started: dict[tuple[str, str], float] = {}  # (model, version) -> when its retraining started
        self._lock = threading.Lock()

    def handle(self, body: dict[str, Any]) -> list[tuple[str, str]]:
        """Act on one notification; the model versions whose retraining it started."""
        started = []
        for alert in body.get("alerts", []):
            labels = alert.get("labels", {})
            name, model = labels.get("alertname", ""), labels.get("ml.model.name")
            if alert.get("status") != "firing":
                log.info("resolved: %s %s %s", name, model or "", labels.get("ml.model.version", ""))
                continue
            if name not in RETRAIN_ON or not model:
                continue
            key = (model, labels.get("ml.model.version", ""))
            with self._lock:
                last = self.started.get(key)
                if last is not None and time.time() - last < self.cooldown:
                    continue  # a repeat, or another feature of the same drift: one retraining is enough
                self.started[key] = time.time()
            argv = [part.format(model=key[0], version=key[1], alertname=name) for part in shlex.split(self.command)]
            log.info("%s fired for %s %s: starting %s", name, key[0], key[1], argv)
            self.launch(argv)
            started.append(key)
        return started


def serve(retrainer: Retrainer, host: str, port: int, token: str = "") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            if token and not hmac.compare_digest(self.headers.get("Authorization", ""), f"Bearer {token}"):
                self._answer(401, {"error": "unauthorized"})
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(min(length, 10 * 1024 * 1024)))
            except ValueError:
                self._answer(400, {"error": "expected JSON"})
                return
            started = retrainer.handle(body)
            self._answer(200, {"started": [list(k) for k in started]})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

    return ThreadingHTTPServer((host, port), Handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--command", required=True, help="retraining command template ({model}, {version})")
    parser.add_argument("--cooldown", type=float, default=6 * 3600, help="seconds between retrainings of a version")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = serve(Retrainer(args.command, args.cooldown), args.host, args.port, os.environ.get("RETRAIN_TOKEN", ""))
    log.info("listening on http://%s:%d/", args.host, server.server_address[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
