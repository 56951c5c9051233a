"""What the example demos share: free ports, child processes that are always stopped, and readers
for the files Vigil's `file` exporters write (one OTLP/JSON export request per line)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")


@contextlib.contextmanager
def child(name: str, args: list[str], log_dir: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """A child process whose output goes to `log_dir/name.log`; SIGTERM (then SIGKILL) on exit."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"{name}.log", "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                            env={**os.environ, **(env or {})})
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def vigil(config: Path, log_dir: Path, env: dict[str, str]) -> contextlib.AbstractContextManager:
    """`vigil run -c config` as the same Python runs it (`python -m agent`)."""
    return child("vigil", [sys.executable, "-m", "agent", "run", "-c", str(config)], log_dir, env)


def show_status_page(admin_port: int) -> None:
    print(f"Vigil's status page: http://127.0.0.1:{admin_port}/  "
          f"(or: vigil status --endpoint 127.0.0.1:{admin_port})", flush=True)


def keep_running(agent: subprocess.Popen, admin_port: int) -> None:
    """Until Ctrl-C (or SIGTERM), with Vigil still serving its status page (`--keep`)."""
    print(f"\nVigil keeps running for a look: http://127.0.0.1:{admin_port}/ (Ctrl-C stops it)", flush=True)
    stop = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while agent.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, stop)


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a line being written
    return out


def attrs(items: list[dict[str, Any]]) -> dict[str, Any]:
    def value(v: dict[str, Any]) -> Any:
        if "arrayValue" in v:
            return [value(x) for x in v["arrayValue"].get("values", [])]
        for key in ("stringValue", "boolValue", "doubleValue"):
            if key in v:
                return v[key]
        if "intValue" in v:
            return int(v["intValue"])
        return None

    return {kv["key"]: value(kv.get("value", {})) for kv in items}


def metric_points(path: Path, name: str) -> list[tuple[dict[str, Any], Any]]:
    """(attributes, point) of every point of metric `name` in a metrics file."""
    out = []
    for request in read_lines(path):
        for rm in request.get("resourceMetrics", []):
            for sm in rm.get("scopeMetrics", []):
                for metric in sm.get("metrics", []):
                    if metric.get("name") != name:
                        continue
                    data = next((metric[k] for k in ("gauge", "sum", "histogram", "summary") if k in metric), {})
                    for point in data.get("dataPoints", []):
                        out.append((attrs(point.get("attributes", [])), point))
    return out


def metric_names(path: Path) -> set[str]:
    return {m.get("name") for r in read_lines(path) for rm in r.get("resourceMetrics", [])
            for sm in rm.get("scopeMetrics", []) for m in sm.get("metrics", [])}


def log_records(path: Path) -> list[dict[str, Any]]:
    return [{"body": r.get("body", {}).get("stringValue", ""), "attributes": attrs(r.get("attributes", [])),
             "severity": r.get("severityText", "")}
            for request in read_lines(path) for rl in request.get("resourceLogs", [])
            for sl in rl.get("scopeLogs", []) for r in sl.get("logRecords", [])]


def spans(path: Path) -> list[dict[str, Any]]:
    return [{"name": s.get("name"), "attributes": attrs(s.get("attributes", [])),
             "status": s.get("status", {}).get("code", 0)}
            for request in read_lines(path) for rs in request.get("resourceSpans", [])
            for ss in rs.get("scopeSpans", []) for s in ss.get("spans", [])]


def firing(alerts_path: Path) -> list[tuple[str, str]]:
    """(rule, summary) of every alert that went to firing, in order."""
    return [(r["attributes"].get("vigil.alert.name", ""), r["attributes"].get("vigil.alert.summary", ""))
            for r in log_records(alerts_path) if r["attributes"].get("vigil.alert.state") == "firing"]
