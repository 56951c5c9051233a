"""A real server in a process group of its own: started, waited for, and killed whole (with its workers)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVERS = Path(__file__).resolve().parent

REQUIRED = os.environ.get("VIGIL_REAL_SERVERS") == "1"
"""Set by `make test`, which installs the servers: a missing or broken server is then a failure."""


def server_venv(name: str) -> Path:
    """The venv `make test` installs a server in (`.venv-NAME`); outside `make test` a missing one skips."""
    venv = REPO / f".venv-{name}"
    if not (venv / ".deps").exists():
        message = f"{venv} is not installed (make test installs it)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return venv


class ServerProcess:
    """A started server; `log()` is what it has printed so far."""

    def __init__(self, proc: subprocess.Popen, log_path: Path, started: float) -> None:
        self.proc = proc
        self.log_path = log_path
        self.started = started
        self.startup_seconds: float | None = None

    def stop(self) -> None:
        """SIGTERM to the whole group, then SIGKILL to what is left; the server's own exit, as a user's."""
        _stop_group(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, url: str, timeout: float) -> None:
        """Until GET `url` answers 200; fails with the server's log if it exits or takes too long."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the server exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        self.startup_seconds = time.monotonic() - self.started
                        print(f"{Path(self.proc.args[0]).name} ready in {self.startup_seconds:.1f} s")  # pytest -s
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        pytest.fail(f"the server was not ready at {url} in {timeout}s:\n{self.log()[-4000:]}")


@contextlib.contextmanager
def server_process(args: list[str], log_path: Path, env: dict[str, str] | None = None,
                   cwd: Path | None = None) -> Iterator[ServerProcess]:
    """`args` in a new session; on exit SIGTERM to the whole group, then SIGKILL to what is left."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=cwd,
                                env=env, start_new_session=True)
    try:
        yield ServerProcess(proc, log_path, time.monotonic())
    finally:
        _stop_group(proc)  # again, for a test that stopped it: a group already gone is fine


def _stop_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    # The group outlives its leader when workers linger (MLServer's inference pool, Triton's stubs).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
