"""`vigil run` as systemd runs it: notify messages, SIGHUP reloads, watchdog pings, journald logs,
and `vigil status` against the running agent."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket

import yaml

from agent import logs
from agent.config import LogsTelemetryConfig
from tests.conftest import free_port, read_json_lines, wait_for
from tests.otlp_data import traces
from tests.vigil_cli import clean_env, run_cli, vigil_run


def _config(tmp_path, out: str, admin_port: int, encoding: str = "console") -> dict:
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{free_port()}"}}}},
        "exporters": {"file": {"path": str(tmp_path / out)}},
        "service": {"admin": {"endpoint": f"127.0.0.1:{admin_port}"},
                    "telemetry": {"logs": {"encoding": encoding}},
                    "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }


class NotifySocket:
    def __init__(self, tmp_path) -> None:
        self.path = str(tmp_path / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[dict[str, str]] = []

    def drain(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                return self.messages
            self.messages.append(dict(line.split("=", 1) for line in data.split("\n")))

    def wait_for(self, key: str, count: int = 1, timeout: float = 20) -> bool:
        return wait_for(lambda: sum(1 for m in self.drain() if key in m) >= count, timeout)


def _post(url: str, body: bytes, content_type: str = "application/x-protobuf") -> int:
    import urllib.request

    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_notify_reload_on_sighup_watchdog_and_stopping(tmp_path):
    notify = NotifySocket(tmp_path)
    admin = free_port()
    config = _config(tmp_path, "a.json", admin)
    path = tmp_path / "vigil.yaml"
    path.write_text(yaml.safe_dump(config))
    env = clean_env(NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="400000")
    with vigil_run(["-c", str(path)], tmp_path, env=env) as vigil:
        vigil.wait_running()
        assert notify.wait_for("READY")
        ready = next(m for m in notify.messages if "READY" in m)
        assert ready["STATUS"] == "running: 1 pipeline, 1 receiver, 1 exporter"
        assert notify.wait_for("WATCHDOG", count=3, timeout=5)  # every 0.2 s from the event loop

        # A changed config: reloaded on SIGHUP, bracketed by RELOADING=1 and READY=1.
        http = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
        config["exporters"]["file"]["path"] = str(tmp_path / "b.json")
        path.write_text(yaml.safe_dump(config))
        vigil.proc.send_signal(signal.SIGHUP)
        assert notify.wait_for("RELOADING")
        assert notify.wait_for("READY", count=2)
        assert wait_for(lambda: "reloaded " in vigil.stderr())
        assert _post(f"http://{http}/v1/traces", traces(2).SerializeToString()) == 200
        assert wait_for(lambda: len(read_json_lines(tmp_path / "b.json")) == 1)

        # An invalid one: logged, and the agent runs on as it was.
        path.write_text("receivers: [\n")
        vigil.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "the new config is invalid; still running the previous one" in vigil.stderr())
        assert _post(f"http://{http}/v1/traces", traces(1).SerializeToString()) == 200
        assert wait_for(lambda: len(read_json_lines(tmp_path / "b.json")) == 2)
        assert vigil.proc.poll() is None

        vigil.proc.send_signal(signal.SIGTERM)
        assert vigil.proc.wait(timeout=30) == 0, vigil.stderr()
    assert notify.wait_for("STOPPING")
    assert "Traceback" not in vigil.stderr()


def test_vigil_status_renders_the_running_agent_at_80_columns(tmp_path):
    admin = free_port()
    path = tmp_path / "vigil.yaml"
    config = _config(tmp_path, "a.json", admin)
    path.write_text(yaml.safe_dump(config))
    with vigil_run(["-c", str(path)], tmp_path) as vigil:
        vigil.wait_running()
        http = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
        assert _post(f"http://{http}/v1/traces", traces(3).SerializeToString()) == 200
        table = run_cli("status", "-c", str(path))
        as_json = run_cli("status", "--endpoint", f"127.0.0.1:{admin}", "--json")
        vigil.proc.send_signal(signal.SIGTERM)
        vigil.proc.wait(timeout=30)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), table.stdout
    assert lines[0].startswith(f"Vigil {json.loads(as_json.stdout)['version']}  running, ready  up ")
    assert "PIPELINE  RECEIVERS  PROCESSORS  EXPORTERS" in table.stdout
    assert any(line.split() == ["otlp", "running", "spans", "3", "0"] for line in lines), table.stdout
    assert any(line.split() == ["file", "running", "spans", "3", "0", "-"] for line in lines), table.stdout
    data = json.loads(as_json.stdout)
    assert data["components"]["receivers"]["otlp"]["items"]["spans"]["accepted"] == 3
    assert data["models"] == []


def test_vigil_status_shows_each_models_errors_and_error_rate(tmp_path):
    from tests.admin.traffic import prediction_spans

    admin = free_port()
    path = tmp_path / "vigil.yaml"
    config = _config(tmp_path, "a.json", admin)
    config["processors"] = {"ml": {}}
    config["service"]["pipelines"]["traces"]["processors"] = ["ml"]
    path.write_text(yaml.safe_dump(config))
    request = prediction_spans(200, seed=1)
    for span in request.resource_spans[0].scope_spans[0].spans[:15]:
        span.status.code = 2  # ERROR
    with vigil_run(["-c", str(path)], tmp_path) as vigil:
        vigil.wait_running()
        http = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
        assert _post(f"http://{http}/v1/traces", request.SerializeToString()) == 200
        assert wait_for(lambda: "fraud" in run_cli("status", "-c", str(path)).stdout, 10)
        table = run_cli("status", "-c", str(path))
    lines = table.stdout.splitlines()
    header = next(line for line in lines if line.startswith("MODEL"))
    assert header.split() == ["MODEL", "VERSION", "REQUESTS", "ERRORS", "WINDOWS", "DRIFT", "HEALTH", "REFERENCE"]
    row = next(line for line in lines if line.startswith("fraud "))
    assert row.split()[:5] == ["fraud", "3", "200", "15", "7.5%"], table.stdout
    assert all(len(line) <= 80 for line in lines), table.stdout


def test_vigil_status_says_when_nothing_answers():
    result = run_cli("status", "--endpoint", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert result.stderr.startswith("vigil status: cannot reach Vigil's admin endpoint at http://127.0.0.1:")


# --- logs ---------------------------------------------------------------------------------------------


def _log_lines(tmp_path, encoding: str, journal: bool) -> list[str]:
    path = tmp_path / f"{encoding}-{journal}.log"
    with open(path, "w") as stream:
        stat = os.fstat(stream.fileno())
        env_value = f"{stat.st_dev}:{stat.st_ino}" if journal else ""
        old = os.environ.get("JOURNAL_STREAM")
        os.environ["JOURNAL_STREAM"] = env_value
        root = logging.getLogger()
        saved = root.handlers[:], root.level
        try:
            logs.setup(LogsTelemetryConfig(level="info", encoding=encoding), stream)
            logging.getLogger("vigil.test").warning('queue "a b" is full')
            logging.getLogger("vigil.test").debug("not shown")
        finally:
            root.handlers[:], _ = saved
            root.setLevel(saved[1])
            if old is None:
                os.environ.pop("JOURNAL_STREAM", None)
            else:
                os.environ["JOURNAL_STREAM"] = old
    return path.read_text().splitlines()


def test_logs_in_each_encoding_and_under_journald(tmp_path):
    line, = _log_lines(tmp_path, "logfmt", journal=False)
    assert line.startswith("ts=20") and line.endswith(r' level=warning logger=vigil.test msg="queue \"a b\" is full"')
    assert _log_lines(tmp_path, "logfmt", journal=True) == [
        r'<4>level=warning logger=vigil.test msg="queue \"a b\" is full"']
    assert _log_lines(tmp_path, "json", journal=True) == [
        '<4>{"level": "warning", "logger": "vigil.test", "msg": "queue \\"a b\\" is full"}']
    assert _log_lines(tmp_path, "console", journal=True) == ['<4>WARNING vigil.test: queue "a b" is full']
    line, = _log_lines(tmp_path, "console", journal=False)
    assert line.endswith(' WARNING vigil.test: queue "a b" is full') and line[:4].isdigit()


def test_journal_stream_of_another_file_is_ignored(tmp_path):
    with open(tmp_path / "x", "w") as stream:
        assert not logs.under_journald(stream, {"JOURNAL_STREAM": "1:2"})
        stat = os.fstat(stream.fileno())
        assert logs.under_journald(stream, {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"})

