"""Running the real `vigil` command in a subprocess, as a user or systemd would."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

from tests.conftest import wait_for

VIGIL = str(Path(sys.executable).parent / "vigil")
"""The console script installed with the package, next to the interpreter running the tests."""

REPO = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without OTEL_* and VIGIL_* variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VIGIL_"))}
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: str | Path | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    """`vigil ARGS...` to completion; stdout and stderr as text."""
    assert Path(VIGIL).exists(), f"the vigil console script is not installed at {VIGIL}"
    return subprocess.run([VIGIL, *args], capture_output=True, text=True, timeout=timeout,
                          env=clean_env() if env is None else env, cwd=cwd)


class VigilProcess:
    """A `vigil run` subprocess whose stderr goes to a file the test can read at any time."""

    def __init__(self, proc: subprocess.Popen, stderr_path: Path) -> None:
        self.proc = proc
        self.stderr_path = stderr_path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def wait_running(self, timeout: float = 30) -> None:
        """Until Vigil logs that it runs; fails with its stderr if it exits or takes too long."""
        wait_for(lambda: "Vigil is running" in self.stderr() or self.proc.poll() is not None, timeout)
        assert self.proc.poll() is None, f"vigil exited with {self.proc.returncode}:\n{self.stderr()}"
        assert "Vigil is running" in self.stderr(), f"vigil did not start in {timeout}s:\n{self.stderr()}"


@contextlib.contextmanager
def vigil_run(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> Iterator[VigilProcess]:
    """`vigil run ARGS...` in `tmp_path`; killed on exit if it still runs."""
    stderr_path = tmp_path / f"vigil-{len(list(tmp_path.glob('vigil-*.stderr')))}.stderr"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen([VIGIL, "run", *args], stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                cwd=tmp_path, env=clean_env() if env is None else env)
    try:
        yield VigilProcess(proc, stderr_path)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
