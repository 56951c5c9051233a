"""The `vigil` command: version, components, run (real subprocesses, real SDK), and the built-in default."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import agent
from agent import config as config_module
from agent.component import ComponentId, Kind
from agent.default_config import default_config
from tests.conftest import free_port, read_json_lines
from tests.sdk_apps import by_span_id, logs_in, metric_totals_in, send_telemetry, spans_in
from tests.vigil_cli import REPO, clean_env, run_cli, vigil_run

CASES = Path(__file__).parent / "testdata" / "config"


# --- version, components, help -----------------------------------------------------------------------


def test_version():
    result = run_cli("version")
    assert result.returncode == 0
    assert result.stdout == (f"vigil {agent.__version__}\nwire reader: compiled (agent/_otlpscan.c)\n"
                             "json writer: compiled (agent/_otlpjson.c)\n")
    assert result.stderr == ""


def test_version_through_python_dash_m():
    result = subprocess.run([sys.executable, "-m", "agent", "version"], capture_output=True, text=True,
                            timeout=60, env=clean_env(), cwd=REPO)
    assert result.returncode == 0
    assert result.stdout.startswith(f"vigil {agent.__version__}\n")


def test_components_lists_every_built_in_type():
    result = run_cli("components")
    assert result.returncode == 0
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in result.stdout.splitlines():
        if not line.startswith(" "):
            current = sections.setdefault(line.rstrip(":"), {})
        else:
            type_, _, rest = line.strip().partition(" ")
            current[type_] = rest.strip()
    assert list(sections) == ["receivers", "processors", "exporters", "extensions"]
    assert {"otlp"} <= set(sections["receivers"])
    assert {"batch", "resource"} <= set(sections["processors"])
    assert {"otlp", "otlphttp", "file", "debug"} <= set(sections["exporters"])
    # Each line says what the component does and which signals it takes.
    assert sections["receivers"]["otlp"].startswith("OTLP over gRPC and HTTP")
    for section, type_ in [("receivers", "otlp"), ("processors", "batch"), ("processors", "resource"),
                           ("exporters", "otlp"), ("exporters", "otlphttp"), ("exporters", "file"),
                           ("exporters", "debug")]:
        assert sections[section][type_].endswith(" [logs, metrics, traces]"), (section, type_)
    for types in sections.values():
        assert list(types) == sorted(types)
    # Descriptions start in one column, whatever the length of the names (predictionlog, memory_limiter).
    lines = [line for line in result.stdout.splitlines() if line.startswith("  ")]
    starts = {len(line) - len(line[2:].split(" ", 1)[1].lstrip()) for line in lines}
    assert len(starts) == 1, result.stdout


def test_no_command_prints_help_and_fails():
    result = run_cli()
    assert result.returncode == 2
    for command in ("run", "validate", "components", "version"):
        assert command in result.stdout


def test_unknown_command_fails():
    result = run_cli("start")
    assert result.returncode == 2
    assert "invalid choice: 'start'" in result.stderr


# --- vigil run: refusing to start --------------------------------------------------------------------


def test_run_with_an_invalid_config_exits_with_the_validation_message():
    path = CASES / "invalid_bad_duration.yaml"
    result = run_cli("run", "-c", str(path), timeout=30)
    assert result.returncode == 1
    assert result.stderr == (f"{path}: processors.batch.timeout: invalid duration '5x': use a number with a "
                             f"unit, e.g. 200ms, 10s, 5m\n")


def test_run_with_a_missing_config_file(tmp_path):
    result = run_cli("run", "-c", str(tmp_path / "missing.yaml"), timeout=30)
    assert result.returncode == 1
    assert result.stderr == f"{tmp_path / 'missing.yaml'}: cannot read the file: No such file or directory\n"


def _write_config(tmp_path: Path, config: dict, name: str = "vigil.yaml") -> Path:
    """`config` as a YAML file; its admin endpoint on a free port unless it names one."""
    config = {**config, "service": {"admin": {"endpoint": "127.0.0.1:0"}, **config.get("service", {})}}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _receiver_config(grpc_port: int, http_port: int) -> dict:
    return {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                          "http": {"endpoint": f"127.0.0.1:{http_port}"}}}


@pytest.mark.parametrize("busy", ["grpc", "http"])
def test_run_with_a_port_in_use_exits_naming_the_receiver(tmp_path, busy):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        other = free_port()
        ports = (taken, other) if busy == "grpc" else (other, taken)
        path = _write_config(tmp_path, {
            "receivers": {"otlp/apps": _receiver_config(*ports)},
            "exporters": {"file": {"path": str(tmp_path / "out.json")}},
            "service": {"pipelines": {"traces": {"receivers": ["otlp/apps"], "exporters": ["file"]}}},
        })
        started = time.monotonic()
        result = run_cli("run", "-c", str(path), cwd=tmp_path, timeout=60)
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 30
    errors = [line for line in result.stderr.splitlines() if " ERROR vigil." in line]
    # One line, naming the receiver and the port, and why.
    assert len(errors) == 1, result.stderr
    if busy == "grpc":
        assert f"ERROR vigil.service: cannot start receivers.otlp/apps: cannot listen for gRPC on " \
               f"127.0.0.1:{taken}: " in errors[0]
    else:
        assert "ERROR vigil.service: cannot start receivers.otlp/apps: " in errors[0]
        assert f"('127.0.0.1', {taken})" in errors[0] and "address already in use" in errors[0]
    assert "Vigil is running" not in result.stderr


# --- vigil run: serving, then stopping on a signal ------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_run_accepts_sdk_data_and_stops_in_order(tmp_path, sig):
    grpc_port, http_port = free_port(), free_port()
    out = tmp_path / "data"
    path = _write_config(tmp_path, {
        "receivers": {"otlp/apps": _receiver_config(grpc_port, http_port)},
        # The batch processor answers a sender once its data is written, so a sender that exports
        # one span at a time (the SDK's SimpleSpanProcessor) waits for the timer on each.
        "processors": {"batch": {"timeout": "100ms", "send_batch_size": 10000}},
        "exporters": {f"file/{s}": {"path": str(out / f"{s}.json")} for s in ("traces", "metrics", "logs")},
        "service": {"pipelines": {s: {"receivers": ["otlp/apps"], "processors": ["batch"],
                                      "exporters": [f"file/{s}"]} for s in ("traces", "metrics", "logs")}},
    })
    with vigil_run(["-c", str(path)], tmp_path) as vigil:
        vigil.wait_running()
        grpc_sent = send_telemetry(grpc_endpoint=f"127.0.0.1:{grpc_port}", service="grpc-app")
        http_sent = send_telemetry(http_url=f"http://127.0.0.1:{http_port}", service="http-app", predictions=2)
        # Acknowledged means written: nothing the senders were told is safe waits in a batch.
        for s in ("traces", "metrics", "logs"):
            assert read_json_lines(out / f"{s}.json"), f"{s} acknowledged but not written"
        stopped = time.monotonic()
        vigil.proc.send_signal(sig)
        assert vigil.proc.wait(timeout=30) == 0, vigil.stderr()
        assert time.monotonic() - stopped < 8
    stderr = vigil.stderr()
    assert "INFO vigil.service: shutting down" in stderr
    assert "INFO vigil.service: Vigil stopped" in stderr
    assert "Traceback" not in stderr

    traces, metrics, logs = (read_json_lines(out / f"{s}.json") for s in ("traces", "metrics", "logs"))
    for sent in (grpc_sent, http_sent):
        assert by_span_id(spans_in(traces, sent.service)) == by_span_id(sent.spans)
        assert metric_totals_in(metrics, sent.service) == sent.metrics
        assert by_span_id(logs_in(logs, sent.service)) == by_span_id(sent.logs)
    assert len(spans_in(traces)) == len(grpc_sent.spans) + len(http_sent.spans) == 5 + 3


def test_run_logs_as_json_when_configured(tmp_path):
    path = _write_config(tmp_path, {
        "receivers": {"otlp": _receiver_config(free_port(), free_port())},
        "exporters": {"debug": None, "debug/spare": None},
        "service": {"pipelines": {"logs": {"receivers": ["otlp"], "exporters": ["debug"]}},
                    "telemetry": {"logs": {"encoding": "json"}}},
    })
    with vigil_run(["-c", str(path)], tmp_path) as vigil:
        vigil.wait_running()
        vigil.proc.send_signal(signal.SIGTERM)
        assert vigil.proc.wait(timeout=30) == 0, vigil.stderr()
    entries = [json.loads(line) for line in vigil.stderr().splitlines() if line.startswith("{")]
    messages = [(e["level"], e["logger"], e["msg"]) for e in entries]
    assert ("warning", "vigil.config", f"{path}: exporters.debug/spare: defined but not used in any pipeline") \
        in messages
    assert ("info", "vigil.service", "Vigil is running: 1 pipeline, 1 receiver, 1 exporter") in messages
    assert messages[-1] == ("info", "vigil.service", "Vigil stopped")
    assert all(set(e) == {"ts", "level", "logger", "msg"} for e in entries)


# --- vigil run with no -c: the built-in default ------------------------------------------------------------


def test_run_without_config_uses_the_built_in_default(tmp_path):
    # Without -c, Vigil builds its config from the environment: a bad backend endpoint is reported
    # against the built-in default (and nothing is bound, so this needs no free 4317/4318).
    env = clean_env(OTEL_EXPORTER_OTLP_ENDPOINT="collector:4318", OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf")
    result = run_cli("run", env=env, cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    assert result.stderr == ("<built-in default>: exporters.otlphttp: endpoint 'collector:4318' must start "
                             "with http:// or https://\n")
    assert not (tmp_path / "vigil-data").exists()


def test_default_config_needs_no_backend():
    raw = default_config({})
    assert raw["receivers"] == {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:4317"},
                                                       "http": {"endpoint": "127.0.0.1:4318"}}}}
    assert raw["exporters"] == {
        f"file/{s}": {"path": f"./vigil-data/{s}.json", "rotation": {"max_megabytes": 100, "max_backups": 5}}
        for s in ("traces", "metrics", "logs")}
    # Model monitoring and alerts are on (tests/test_shipped_configs.py); every pipeline ends in a file.
    assert {pid: p["exporters"] for pid, p in raw["service"]["pipelines"].items()} == {
        "traces": ["file/traces"], "metrics": ["file/metrics"], "logs": ["file/logs"], "logs/alerts": ["file/logs"]}
    config = config_module.from_dict(raw, "<built-in default>")
    assert [str(p) for p in config.pipelines] == ["traces", "metrics", "logs", "logs/alerts"]
    assert config.warnings == []
    assert default_config({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}) == raw


@pytest.mark.parametrize("protocol", [None, "grpc"])
def test_default_config_sends_to_the_otlp_endpoint_over_grpc(protocol):
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}
    if protocol:
        environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol
    raw = default_config(environ)
    assert raw["exporters"]["otlp"] == {"endpoint": "http://collector:4317", "headers": {}}
    for s in ("traces", "metrics", "logs"):
        assert raw["service"]["pipelines"][s]["exporters"] == [f"file/{s}", "otlp"]
    assert raw["service"]["pipelines"]["logs/alerts"]["exporters"] == ["file/logs", "otlp"]
    config = config_module.from_dict(raw, "<built-in default>")
    assert config.component(Kind.EXPORTER, ComponentId("otlp")).config.endpoint == "http://collector:4317"
    assert config.warnings == []


@pytest.mark.parametrize("protocol, encoding", [("http/protobuf", "proto"), ("http/json", "json")])
def test_default_config_sends_to_the_otlp_endpoint_over_http(protocol, encoding):
    raw = default_config({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otlp.example.com",
                          "OTEL_EXPORTER_OTLP_PROTOCOL": protocol})
    assert raw["exporters"]["otlphttp"] == {"endpoint": "https://otlp.example.com", "headers": {},
                                            "encoding": encoding}
    assert "otlp" not in raw["exporters"]
    config = config_module.from_dict(raw, "<built-in default>")
    exporter = config.component(Kind.EXPORTER, ComponentId("otlphttp")).config
    assert exporter.encoding == encoding
    assert exporter.endpoint == "https://otlp.example.com"
    assert all(p.exporters[-1] == ComponentId("otlphttp") for p in config.pipelines.values())


def test_default_config_reads_otlp_headers():
    raw = default_config({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
                          "OTEL_EXPORTER_OTLP_HEADERS": "signoz-ingestion-key=a%2Fb%3Dc, x-team = ml ,,junk,"
                                                        "authorization=Basic%20dXNlcg=="})
    headers = {"signoz-ingestion-key": "a/b=c", "x-team": "ml", "authorization": "Basic dXNlcg=="}
    assert raw["exporters"]["otlp"]["headers"] == headers
    config = config_module.from_dict(raw)
    assert config.component(Kind.EXPORTER, ComponentId("otlp")).config.headers == headers


def test_a_host_only_config_does_not_load_grpc_or_numpy(tmp_path):
    # The registry imports a component's module only when a config uses its type.
    config = tmp_path / "vigil.yaml"
    config.write_text("receivers: {hostmetrics: }\nexporters: {debug: }\n"
                      "service: {pipelines: {metrics: {receivers: [hostmetrics], exporters: [debug]}}}\n")
    code = ("import sys; from agent import config; config.load(sys.argv[1]); "
            "print(sorted(m for m in ('grpc', 'numpy', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_run_caps_malloc_arenas_unless_the_environment_does(monkeypatch):
    from agent import cli

    calls = []

    class Libc:
        def mallopt(self, option, value):
            calls.append((option, value))

    monkeypatch.setattr("ctypes.CDLL", lambda name: Libc())
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    cli._limit_malloc_arenas()
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    cli._limit_malloc_arenas()
    assert calls == ([(-8, 2)] if sys.platform.startswith("linux") else [])


# --- service.admin: null ------------------------------------------------------------------------------


def test_admin_null_turns_the_admin_endpoint_off_as_the_readme_says(tmp_path):
    path = tmp_path / "vigil.yaml"
    path.write_text(yaml.safe_dump({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "exporters": {"debug": {}},
        "service": {"admin": None, "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}}}}))
    assert "  admin: null\n" in path.read_text()
    result = run_cli("validate", "-c", str(path))
    assert result.returncode == 0, result.stderr
    result = run_cli("status", "-c", str(path))
    assert result.returncode == 1
    assert result.stderr == f"{path}: service.admin.endpoint is off, so there is no status to ask\n"
    with vigil_run(["-c", str(path)], tmp_path) as vigil:
        vigil.wait_running()
        assert "admin endpoint" not in vigil.stderr()
