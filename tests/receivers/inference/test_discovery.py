"""Discovery: real child processes that look like inference servers, found among the host's processes.

No inference server runs here, so each "server" is a small Python program (`FAKE_SERVER` below) started
under the server's own process name or as its console script, with the flags the server's documentation
names (Triton v2.71.0 `--metrics-port`, vLLM `vllm serve --port`, TGI v3.3.7 launcher → router,
MLServer 1.7.1 `mlserver start <dir>` + settings.json, llama.cpp `llama-server --metrics`). It listens
on 127.0.0.1 ports it is given or picks (port 0) and prints them; closing its stdin ends it.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from agent.receivers.inference import discovery
from agent.receivers.inference.discovery import FoundServer, Scanner, discover
from tests.conftest import free_port

FAKE_SERVER = r'''
import json, os, socket, subprocess, sys
sockets, ports = [], []
for spec in filter(None, os.environ.get("FAKE_LISTEN", "").split(",")):
    host, port = spec.rsplit(":", 1)
    host = host.strip("[]")
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen()
    sockets.append(s)
    ports.append(s.getsockname()[1])
child = os.environ.get("FAKE_CHILD")  # a process this one starts (TGI's launcher starts the router)
if child:
    spec = json.loads(child)
    env = {k: v for k, v in os.environ.items() if k not in ("FAKE_CHILD", "FAKE_LISTEN")}
    env.update(spec["env"])
    router = subprocess.Popen(spec["argv"], executable=spec["executable"], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    ports = json.loads(router.stdout.readline())
if os.environ.get("FAKE_FORK") and os.fork() == 0:  # a forked worker, same command line
    sys.stdin.read()
    os._exit(0)
print(json.dumps(ports), flush=True)
sys.stdin.read()
'''


class Servers:
    """Starts fake servers in their own sessions and ends every one of them (and their children)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.script = directory / "fake_server.py"
        self.script.write_text(FAKE_SERVER)
        self.processes: list[subprocess.Popen] = []

    def start(self, argv: list[str], listen: str = "127.0.0.1:0", script_name: str | None = None,
              cwd: Path | None = None, **env: str) -> tuple[subprocess.Popen, list[int]]:
        """`argv[0]` is the process name; with `script_name` the program is a console script of that name
        run by Python (as pip installs `vllm` and `mlserver`); `python3 -m module ...` runs that module."""
        if argv[0] == "python3" and argv[1:2] == ["-m"]:
            module = argv[2]
            package = self.directory / "modules"
            path = package.joinpath(*module.split("."))
            path.parent.mkdir(parents=True, exist_ok=True)
            for folder in path.relative_to(package).parents:
                (package / folder / "__init__.py").touch()
            path.with_suffix(".py").write_text(FAKE_SERVER)
            command, executable = [sys.executable, *argv[1:]], None
            env = {**env, "PYTHONPATH": str(package)}
        elif script_name is None:
            command, executable = [argv[0], str(self.script), *argv[1:]], sys.executable
        else:
            console_script = self.directory / script_name
            console_script.write_text(FAKE_SERVER)
            command, executable = [sys.executable, str(console_script), *argv[1:]], None
        process = subprocess.Popen(command, executable=executable, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   text=True, cwd=cwd, start_new_session=True,
                                   env={**os.environ, "FAKE_LISTEN": listen, **env})
        self.processes.append(process)
        ready, _, _ = select.select([process.stdout], [], [], 20)
        assert ready, f"{argv[0]} did not start"
        return process, json.loads(process.stdout.readline())

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
            process.stdout.close()
            process.stdin.close()


@pytest.fixture
def servers(tmp_path):
    started = Servers(tmp_path)
    yield started
    started.stop()


def found_of(found: list[FoundServer], *processes: subprocess.Popen) -> list[FoundServer]:
    """Only what these tests started: other programs may run on the host."""
    pids = {p.pid for p in processes}
    return [f for f in found if f.pid in pids]


def test_triton_is_found_on_its_metrics_port_among_its_ports(servers):
    metrics_port = free_port()
    process, ports = servers.start(["tritonserver", "--model-repository=/models", "--metrics-port", str(metrics_port)],
                                   listen=f"127.0.0.1:0,127.0.0.1:{metrics_port},127.0.0.1:0")
    assert len(ports) == 3
    [server] = found_of(discover(), process)
    assert server == FoundServer("triton", f"127.0.0.1:{metrics_port}", "/metrics", process.pid, server.command)
    assert server.command.startswith("tritonserver ") and f"--metrics-port {metrics_port}" in server.command


def test_vllm_console_script_is_found_on_the_port_it_listens_on_not_the_default(servers):
    # No --port: vLLM would take 8000, but a config file or the environment may have moved it.
    process, [port] = servers.start(["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct"], script_name="vllm")
    [server] = found_of(discover(), process)
    assert (server.kind, server.endpoint, server.metrics_path) == ("vllm", f"127.0.0.1:{port}", "/metrics")
    assert "vllm serve meta-llama/Llama-3.1-8B-Instruct" in server.command


def test_a_server_on_every_address_is_scraped_on_localhost_and_one_on_ipv6_loopback_in_brackets(servers):
    any_address, [port] = servers.start(["llama-server", "-m", "m.gguf", "--metrics", "--host", "0.0.0.0"],
                                        listen="0.0.0.0:0")
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")  # the IPv4 half is asserted in the other tests
    v6, [port6] = servers.start(["llama-server", "-m", "m.gguf", "--metrics"], listen="[::1]:0")
    by_pid = {s.pid: s for s in found_of(discover(), any_address, v6)}
    assert by_pid[any_address.pid].endpoint == f"127.0.0.1:{port}"
    assert by_pid[v6.pid].endpoint == f"[::1]:{port6}"


def test_the_port_on_the_command_line_is_used_when_the_server_is_not_listening_yet(servers):
    process, _ = servers.start(["python3", "-m", "sglang.launch_server", "--model-path", "m", "--port", "31234",
                                "--enable-metrics"], listen="")
    [server] = found_of(discover(), process)
    assert (server.kind, server.endpoint) == ("sglang", "127.0.0.1:31234")


def test_default_ports_when_the_command_line_names_none(servers):
    triton, _ = servers.start(["tritonserver", "--model-repository=/models"], listen="")
    sglang, _ = servers.start(["python3", "-m", "sglang.launch_server", "--enable-metrics"], listen="")
    llama, _ = servers.start(["llama-server", "--metrics"], listen="")
    endpoints = {s.kind: s.endpoint for s in found_of(discover(), triton, sglang, llama)}
    assert endpoints == {"triton": "127.0.0.1:8002", "sglang": "127.0.0.1:30000", "llamacpp": "127.0.0.1:8080"}


def test_tgi_is_the_launcher_with_its_routers_port(servers):
    router_port = free_port()
    router = {"argv": ["text-generation-router", str(servers.script), "--port", str(router_port)],
              "env": {"FAKE_LISTEN": f"127.0.0.1:{router_port}"}, "executable": sys.executable}
    launcher, [port] = servers.start(["text-generation-launcher", "--model-id", "bigscience/bloom-560m"],
                                     listen="", FAKE_CHILD=json.dumps(router))
    assert port == router_port
    found = [s for s in discover() if s.kind == "tgi" and s.endpoint == f"127.0.0.1:{router_port}"]
    assert [(s.pid, s.command.split()[0]) for s in found] == [(launcher.pid, "text-generation-launcher")]
    assert "--model-id bigscience/bloom-560m" in found[0].command


def test_mlserver_metrics_port_and_path_come_from_its_settings_file(servers, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    metrics_port = free_port()
    (models / "settings.json").write_text(json.dumps({"metrics_port": metrics_port,
                                                      "metrics_endpoint": "/prometheus"}))
    process, _ = servers.start(["mlserver", "start", "."], script_name="mlserver", cwd=models,
                               listen=f"127.0.0.1:0,127.0.0.1:{metrics_port}")
    [server] = found_of(discover(), process)
    assert (server.kind, server.endpoint, server.metrics_path) == (
        "mlserver", f"127.0.0.1:{metrics_port}", "/prometheus")


def test_a_forked_worker_with_the_same_command_line_is_part_of_its_server(servers, tmp_path):
    process, [port] = servers.start(["mlserver", "start", str(tmp_path)], script_name="mlserver",
                                    listen="127.0.0.1:0", FAKE_FORK="1")
    workers = psutil.Process(process.pid).children()
    assert len(workers) == 1 and workers[0].cmdline() == psutil.Process(process.pid).cmdline()
    found = [s for s in discover() if s.pid in (process.pid, workers[0].pid)]
    assert [s.pid for s in found] == [process.pid]


def test_servers_with_metrics_switched_off_are_left_out_and_said_once(servers, caplog):
    llama, _ = servers.start(["llama-server", "-m", "m.gguf"])
    sglang, _ = servers.start(["python3", "-m", "sglang.launch_server", "--model-path", "m"])
    triton, _ = servers.start(["tritonserver", "--allow-metrics=false"])
    scanner = Scanner()
    with caplog.at_level(logging.INFO, logger="vigil.inference.discovery"):
        assert found_of(scanner.scan(), llama, sglang, triton) == []
        assert found_of(scanner.scan(), llama, sglang, triton) == []
    said = [r.getMessage() for r in caplog.records if f"pid {llama.pid}" in r.getMessage()]
    assert len(said) == 1 and "--metrics" in said[0]
    assert any(f"pid {sglang.pid}" in r.getMessage() and "--enable-metrics" in r.getMessage()
               for r in caplog.records)
    assert any(f"pid {triton.pid}" in r.getMessage() and "--allow-metrics=false" in r.getMessage()
               for r in caplog.records)


def test_llama_server_with_metrics_from_its_environment_is_found(servers, monkeypatch):
    # As llama.cpp's Docker images are configured: every flag has a LLAMA_ARG_* variable.
    monkeypatch.delenv("LLAMA_ARG_ENDPOINT_METRICS", raising=False)
    on, [port] = servers.start(["llama-server", "-m", "m.gguf"], LLAMA_ARG_ENDPOINT_METRICS="1")
    off, _ = servers.start(["llama-server", "-m", "m.gguf"], LLAMA_ARG_ENDPOINT_METRICS="0")
    assert [(s.pid, s.endpoint) for s in found_of(Scanner().scan(), on, off)] == [(on.pid, f"127.0.0.1:{port}")]


def test_only_the_kinds_asked_for(servers):
    triton, _ = servers.start(["tritonserver"], listen="")
    llama, _ = servers.start(["llama-server", "--metrics"], listen="")
    assert [s.kind for s in found_of(discover(["llamacpp"]), triton, llama)] == ["llamacpp"]
    assert found_of(discover([]), triton, llama) == []


def test_a_process_that_exits_during_the_scan_is_left_out_and_the_others_are_found(servers, monkeypatch):
    leaving, _ = servers.start(["llama-server", "--metrics", "--port", "1"])
    staying, [port] = servers.start(["llama-server", "--metrics"])
    read_sockets = psutil.Process.net_connections

    def exit_first(self, kind="inet"):
        if self.pid == leaving.pid:  # it ends after its command line was read, before its sockets are
            os.killpg(leaving.pid, signal.SIGKILL)
            leaving.wait(10)
        return read_sockets(self, kind)

    monkeypatch.setattr(psutil.Process, "net_connections", exit_first)
    found = found_of(discover(), leaving, staying)
    assert [(s.pid, s.endpoint) for s in found] == [(staying.pid, f"127.0.0.1:{port}")]


def test_sockets_that_may_not_be_read_leave_the_command_lines_port(servers, monkeypatch):
    # As for another user's process when Vigil does not run as root.
    process, [listening] = servers.start(["vllm", "serve", "m", "--port", "18000"], script_name="vllm")

    def denied(self, kind="inet"):
        raise psutil.AccessDenied(self.pid)

    monkeypatch.setattr(psutil.Process, "net_connections", denied)
    [server] = found_of(discover(), process)
    assert server.endpoint == "127.0.0.1:18000" != f"127.0.0.1:{listening}"


def test_recognises_the_documented_command_lines():
    cases = {
        ("/opt/tritonserver/bin/tritonserver", "--model-repository=/m"): "triton",
        ("/usr/bin/python3", "-m", "vllm.entrypoints.openai.api_server", "--model", "m"): "vllm",
        ("/venv/bin/python", "/venv/bin/vllm", "serve", "m"): "vllm",
        ("python3", "-u", "-m", "sglang.launch_server", "--model-path", "m"): "sglang",
        ("/venv/bin/python3", "/venv/bin/sglang", "serve", "--model-path", "m"): "sglang",
        ("text-generation-launcher", "--model-id", "m"): "tgi",
        ("/usr/local/bin/text-generation-router", "--port", "80"): "tgi",
        ("/venv/bin/python3", "/venv/bin/mlserver", "start", "."): "mlserver",
        ("./build/bin/llama-server", "-m", "m.gguf", "--metrics"): "llamacpp",
    }
    for cmdline, kind in cases.items():
        assert discovery.recognise(cmdline)[0] == kind, cmdline
    for cmdline in (("vllm", "bench", "serve"), ("sglang", "version"), ("mlserver", "build", "."),
                    ("python3", "-c", "tritonserver"), ("python3", "-m", "pytest", "tritonserver"),
                    ("tritonserver-client",), ("bash",)):
        assert discovery.recognise(cmdline) is None, cmdline


# --- the real servers that run here (the venvs `make test` installs; see tests/servers/) -----------------


def test_a_real_tritonserver_is_found_on_its_metrics_port_among_its_three(tmp_path):
    from tests.servers.triton_server import run_triton

    with run_triton(tmp_path) as triton:
        listening = {c.laddr.port for c in psutil.Process(triton.process.proc.pid).net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN}
        assert len(listening) >= 3  # HTTP, gRPC, metrics
        found = [s for s in discover(["triton"]) if s.pid == triton.process.proc.pid]
        assert [(s.kind, s.endpoint, s.metrics_path) for s in found] == [
            ("triton", triton.metrics_endpoint, "/metrics")]


def test_a_real_mlserver_and_its_worker_are_one_server_on_its_settings_metrics_port(tmp_path):
    from tests.servers.mlserver_server import run_mlserver

    with run_mlserver(tmp_path) as mlserver:
        tree = {mlserver.process.proc.pid} | {p.pid for p in
                                              psutil.Process(mlserver.process.proc.pid).children(recursive=True)}
        found = [s for s in discover() if s.pid in tree]
        assert [(s.kind, s.endpoint, s.pid) for s in found] == [
            ("mlserver", mlserver.metrics_endpoint, mlserver.process.proc.pid)]
