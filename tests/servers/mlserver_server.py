"""Seldon's MLServer (PyPI mlserver + mlserver-sklearn) serving a scikit-learn iris classifier."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.conftest import free_ports
from tests.servers.process import SERVERS, ServerProcess, server_process, server_venv
from tests.vigil_cli import clean_env

MODEL = SERVERS / "mlserver" / "iris"


@dataclass
class MLServer:
    process: ServerProcess
    http_url: str  # the inference API (V2 / Open Inference Protocol)
    metrics_endpoint: str  # host:port of /metrics


@contextlib.contextmanager
def run_mlserver(tmp_path: Path) -> Iterator[MLServer]:
    """`mlserver start` on free ports, with its default inference worker pool (one worker process)."""
    venv = server_venv("mlserver")
    root = tmp_path / "mlserver"
    shutil.copytree(MODEL, root / "iris")
    subprocess.run([str(venv / "bin" / "python"), str(SERVERS / "mlserver" / "train_iris.py"),
                    str(root / "iris" / "model.joblib")], check=True, timeout=120)
    http_port, grpc_port, metrics_port = free_ports(3)
    (root / "settings.json").write_text(json.dumps(
        {"host": "127.0.0.1", "http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port}))
    # MLServer reads MLSERVER_* variables as settings; the test's own environment must not leak in.
    env = {k: v for k, v in clean_env().items() if not k.startswith("MLSERVER")}
    with server_process([str(venv / "bin" / "mlserver"), "start", str(root)], tmp_path / "mlserver.log",
                        env=env, cwd=root) as process:
        http_url = f"http://127.0.0.1:{http_port}"
        process.wait_ready(f"{http_url}/v2/models/iris/ready", timeout=120)
        yield MLServer(process, http_url, f"127.0.0.1:{metrics_port}")
