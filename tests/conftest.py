"""Shared fixtures: Vigil running in-process on free ports, rotel as a real peer, file readers."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from agent import config as config_module
from agent.service import Service


def free_port() -> int:
    """A port that was free a moment ago, for peers that cannot bind port 0 themselves."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` distinct ports that were free a moment ago: held open together while they are chosen, since
    one port closed and asked for again may be given again."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def otlp_receiver_config(grpc: bool = True, http: bool = True) -> dict[str, Any]:
    """An `otlp` receiver on port 0 (ask the running receiver for its ports)."""
    protocols: dict[str, Any] = {}
    if grpc:
        protocols["grpc"] = {"endpoint": "127.0.0.1:0"}
    if http:
        protocols["http"] = {"endpoint": "127.0.0.1:0"}
    return {"protocols": protocols}


class RunningVigil:
    """A Vigil service running in the test's event loop."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def receiver(self, name: str = "otlp"):
        from agent.component import ComponentId

        return self.service.graph.receivers[ComponentId.parse(name)]

    def grpc_endpoint(self, name: str = "otlp") -> str:
        return f"127.0.0.1:{self.receiver(name).grpc_port}"

    def http_url(self, path: str = "", name: str = "otlp") -> str:
        return f"http://127.0.0.1:{self.receiver(name).http_port}{path}"

    def counter(self, metric: str, **attributes: str) -> float:
        return self.service.telemetry.total(metric, **attributes)

    async def counter_when(self, expected: float, metric: str, timeout: float = 5.0, **attributes: str) -> float:
        """The counter once it reads `expected`, or when `timeout` passes: the `ml` processor reads small
        requests in runs (up to 0.2 s), so what it counts of a request comes a little after its reply."""
        await async_wait_for(lambda: self.counter(metric, **attributes) == expected, timeout)
        return self.counter(metric, **attributes)

    def admin_url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.service.admin.port}{path}"


@contextlib.asynccontextmanager
async def running_vigil(config: dict[str, Any]) -> AsyncIterator[RunningVigil]:
    """Start Vigil with `config` (a dict, as YAML would give) and shut it down afterwards.

    The admin endpoint listens on a free port unless the config says otherwise.
    """
    service_section = config.get("service", {})
    if "admin" not in service_section:
        config = {**config, "service": {**service_section, "admin": {"endpoint": "127.0.0.1:0"}}}
    service = Service(config_module.from_dict(config, "<test>"))
    await service.start()
    try:
        yield RunningVigil(service)
    finally:
        await service.shutdown()


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """The export requests a `file` exporter wrote, one per line."""
    if not path.exists():
        return []
    # A line is whole once its newline is written: the exporter streams a large one in pieces.
    text = path.read_text()
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines() if line.strip()]


def mount_tmpfs(where: Path, size: str) -> bool:
    """A tmpfs of `size` mounted at `where` (made here), for a test of a full disk; False where this
    machine does not let the test mount one (it needs root). The test unmounts it."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    where.mkdir(parents=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll `predicate` (blocking) until it is true or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def debian_binary(package: str, *commands: str) -> str:
    """The path of the first of `commands` (default: the package's name) on PATH; the test fails, saying
    which Debian package `make test` installs for it, when none is there."""
    for command in commands or (package,):
        path = shutil.which(command)
        if path:
            return path
    pytest.fail(f"{' or '.join(commands or (package,))} is not installed: `make test` installs Debian's "
                f"`{package}` package (apt-get install {package})")


async def async_wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll `predicate` (a plain function, or one returning an awaitable: an HTTP call to the agent
    running on this loop) without blocking the event loop."""
    import asyncio
    import inspect

    async def holds() -> bool:
        result = predicate()
        return bool(await result if inspect.isawaitable(result) else result)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await holds():
            return True
        await asyncio.sleep(interval)
    return await holds()


@pytest.fixture(scope="session")
def rotel_binary() -> str:
    """The `rotel-agent` binary shipped in the `rotel` PyPI package (a test dependency)."""
    import rotel

    path = Path(rotel.__file__).parent / "rotel-agent"
    assert path.exists(), f"rotel-agent not found at {path}: is the `rotel` package installed?"
    return str(path)


@contextlib.contextmanager
def rotel_process(binary: str, tmp_path: Path, exporter_endpoint: str):
    """rotel receiving OTLP gRPC on a free port and exporting OTLP gRPC to `exporter_endpoint`.

    Yields the gRPC endpoint it listens on; the process is killed on exit.
    """
    grpc_port, http_port = free_port(), free_port()
    log = open(tmp_path / "rotel.log", "wb")
    proc = subprocess.Popen(
        [binary, "start",
         "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
         "--otlp-http-endpoint", f"127.0.0.1:{http_port}",
         "--exporter", "otlp",
         "--otlp-exporter-endpoint", exporter_endpoint,
         "--otlp-exporter-protocol", "grpc",
         "--batch-timeout", "100ms",
         "--pid-file", str(tmp_path / "rotel.pid"),
         "--log-file", str(tmp_path / "rotel-daemon.log")],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "info"},
    )
    try:
        up = wait_for(lambda: _port_open(grpc_port) or proc.poll() is not None, timeout=15)
        if proc.poll() is not None or not up:
            raise RuntimeError(f"rotel did not start: {(tmp_path / 'rotel.log').read_text()}")
        yield f"127.0.0.1:{grpc_port}"
    finally:
        stop_process(proc)
        log.close()


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Stop a process the test started: asked to end, killed if still there after `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0
