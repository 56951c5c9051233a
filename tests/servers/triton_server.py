"""NVIDIA Triton (the `tritonserver` binary PyPI's nvidia-pytriton ships) serving models/ on CPU."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.conftest import free_ports
from tests.servers.process import SERVERS, ServerProcess, server_process, server_venv

MODELS = SERVERS / "triton" / "models"


@dataclass
class Triton:
    process: ServerProcess
    http_url: str  # the inference API (V2 / Open Inference Protocol)
    metrics_endpoint: str  # host:port of /metrics


def _site_packages(venv: Path) -> Path:
    (site,) = (venv / "lib").glob("python3.*/site-packages")
    return site


@contextlib.contextmanager
def run_triton(tmp_path: Path, traces_url: str | None = None) -> Iterator[Triton]:
    """Triton with its HTTP API and metrics on free ports; with `traces_url`, its OpenTelemetry trace mode
    sends every request's spans there (OTLP/HTTP)."""
    venv = server_venv("triton")
    site = _site_packages(venv)
    dist = site / "pytriton" / "tritonserver"
    # As pytriton does: a backends folder with the Python-backend stub of the venv's Python beside it (the
    # stub embeds that Python, Debian's libpython), and the venv's bin first on PATH so the stub finds numpy.
    backends = tmp_path / "triton-backends"
    shutil.copytree(dist / "backends", backends)
    python_version = site.parent.name.removeprefix("python")
    shutil.copy(dist / "python_backend_stubs" / python_version / "triton_python_backend_stub", backends / "python")
    models = tmp_path / "triton-models"
    shutil.copytree(MODELS, models)  # the stub writes __pycache__ beside the model
    http_port, grpc_port, metrics_port = free_ports(3)
    args = [str(dist / "bin" / "tritonserver"), f"--model-repository={models}",
            f"--backend-directory={backends}", f"--cache-directory={dist / 'caches'}",
            "--http-address=127.0.0.1", f"--http-port={http_port}", "--grpc-address=127.0.0.1",
            f"--grpc-port={grpc_port}", "--allow-metrics=true", "--allow-gpu-metrics=false",
            "--metrics-address=127.0.0.1", f"--metrics-port={metrics_port}",
            "--pinned-memory-pool-byte-size=0"]  # no GPU to pin memory for
    if traces_url:
        # rate=1: every request; a short export delay so the test need not wait the default 5 s.
        args += ["--trace-config", "mode=opentelemetry", "--trace-config", f"opentelemetry,url={traces_url}",
                 "--trace-config", "level=TIMESTAMPS", "--trace-config", "rate=1",
                 "--trace-config", "opentelemetry,bsp_schedule_delay=200"]
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
           "LD_LIBRARY_PATH": str(site / "nvidia_pytriton.libs")}
    with server_process(args, tmp_path / "tritonserver.log", env=env) as process:
        http_url = f"http://127.0.0.1:{http_port}"
        process.wait_ready(f"{http_url}/v2/health/ready", timeout=90)
        yield Triton(process, http_url, f"127.0.0.1:{metrics_port}")
