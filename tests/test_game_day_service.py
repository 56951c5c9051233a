"""Game day for the service around the pipelines: reloads that cannot bind, and the admin endpoint
as a web page in a browser would see it. Real `vigil run` subprocesses on 127.0.0.1.

    sender (gRPC, HTTP) ─▶ vigil run (otlp ─▶ file)      curl-like admin requests ─▶ /-/reload
                                  ▲ a port held by another process, asked for by the new config
"""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import yaml

from tests.conftest import free_port, read_json_lines, wait_for
from tests.otlp_data import traces
from tests.vigil_cli import run_cli, vigil_run

TRACES_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def agent_config(grpc_port: int, http_port: int, admin_port: int, out: Path) -> dict:
    return {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                                                 "http": {"endpoint": f"127.0.0.1:{http_port}"}}}},
            "exporters": {"file": {"path": str(out)}},
            "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}},
                        "admin": {"endpoint": f"127.0.0.1:{admin_port}"},
                        "state_dir": str(out.parent / "state")}}


def post(url: str, headers: dict | None = None, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def send_grpc(port: int, name: str) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        channel.unary_unary(TRACES_METHOD)(traces(1, prefix=name).SerializeToString(), timeout=10)


def send_http(port: int, name: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/traces", method="POST",
                                     data=traces(1, prefix=name).SerializeToString(),
                                     headers={"Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def span_names(path: Path) -> list[str]:
    return [span["name"] for line in read_json_lines(path) for rs in line["resourceSpans"]
            for ss in rs["scopeSpans"] for span in ss["spans"]]


def test_a_reload_whose_receiver_cannot_bind_keeps_the_old_receivers_serving(tmp_path):
    """Defect 7: the new config's gRPC port is held by another process. Both POST /-/reload and
    SIGHUP must answer (or log) the failure, and the old gRPC and HTTP endpoints keep taking data."""
    grpc_port, http_port, admin_port = free_port(), free_port(), free_port()
    out = tmp_path / "out.json"
    config_path = tmp_path / "vigil.yaml"
    config_path.write_text(yaml.safe_dump(agent_config(grpc_port, http_port, admin_port, out)))
    admin = f"http://127.0.0.1:{admin_port}"
    with socket.socket() as holder, vigil_run(["-c", str(config_path)], tmp_path) as vigil:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        vigil.wait_running()
        send_grpc(grpc_port, "before")

        changed = agent_config(taken, http_port, admin_port, out)
        config_path.write_text(yaml.safe_dump(changed))
        started = time.monotonic()
        code, answer = post(admin + "/-/reload")
        print(f"\nPOST /-/reload to a held port: HTTP {code} in {time.monotonic() - started:.2f} s: {answer}")
        assert code == 500 and answer["status"] == "failed", answer
        assert any(str(taken) in problem for problem in answer["problems"]), answer
        send_grpc(grpc_port, "after-post")
        assert send_http(http_port, "after-post-http") == 200
        with urllib.request.urlopen(admin + "/-/ready", timeout=10) as ready:
            assert ready.status == 200

        vigil.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: vigil.stderr().count("reload abandoned") >= 2, 30), vigil.stderr()
        send_grpc(grpc_port, "after-sighup")
        assert send_http(http_port, "after-sighup-http") == 200

        # Once the port is free, the same config reloads.
        holder.close()
        code, answer = post(admin + "/-/reload")
        assert code == 200 and answer["status"] == "reloaded", answer
        send_grpc(taken, "on-the-new-port")
        assert send_http(http_port, "after-reload-http") == 200
        vigil.proc.terminate()
        assert vigil.proc.wait(30) == 0, vigil.stderr()
    assert wait_for(lambda: len(span_names(out)) == 7, 10)
    assert sorted(span_names(out)) == sorted(
        ["before-0", "after-post-0", "after-post-http-0", "after-sighup-0", "after-sighup-http-0",
         "on-the-new-port-0", "after-reload-http-0"])


def test_a_web_page_cannot_reload_the_agent_or_silence_its_alerts(tmp_path):
    """Defect 13: what a page in a browser on the host can send to the admin endpoint (a fetch with
    its Origin, a simple form POST) is refused with 403 and changes nothing; `vigil alerts` and a
    plain POST (curl, a config-management hook) still work."""
    grpc_port, http_port, admin_port = free_port(), free_port(), free_port()
    out = tmp_path / "out.json"
    config = agent_config(grpc_port, http_port, admin_port, out)
    config["processors"] = {"alerts": {"rules": [{"name": "Up", "metric": "up", "op": ">", "threshold": 0}]}}
    config["service"]["pipelines"]["metrics"] = {"receivers": ["otlp"], "processors": ["alerts"],
                                                 "exporters": ["file"]}
    config_path = tmp_path / "vigil.yaml"
    config_path.write_text(yaml.safe_dump(config))
    admin = f"http://127.0.0.1:{admin_port}"
    browser = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # a <form method=post>, old browsers
    silence = json.dumps({"matchers": ['alertname="Up"'], "duration": "1h"}).encode()
    with vigil_run(["-c", str(config_path)], tmp_path) as vigil:
        vigil.wait_running()
        codes = [post(admin + "/-/reload", browser)[0], post(admin + "/-/reload", form, b"a=1")[0],
                 post(admin + "/api/v1/alerts/silences", {**browser, "Content-Type": "text/plain"}, silence)[0],
                 post(admin + "/api/v1/alerts/silences", form, silence)[0]]
        print(f"\ncross-site admin requests answered {codes}")
        assert codes == [403, 403, 403, 403]
        assert "reloading the config" not in vigil.stderr()
        listed = run_cli("alerts", "--endpoint", f"127.0.0.1:{admin_port}", "silences")
        assert listed.returncode == 0 and listed.stdout.strip() == "no silences", listed

        made = run_cli("alerts", "silence", 'alertname="Up"', "--duration", "1h", "--endpoint",
                       f"127.0.0.1:{admin_port}")
        assert made.returncode == 0, made.stderr
        expired = run_cli("alerts", "expire", made.stdout.split()[1], "--endpoint", f"127.0.0.1:{admin_port}")
        assert expired.returncode == 0, expired.stderr
        code, answer = post(admin + "/-/reload")
        assert code == 200 and answer["status"] == "reloaded" and answer["started"] == 0, answer
        with urllib.request.urlopen(admin + "/metrics", timeout=10) as response:
            refused = [line for line in response.read().decode().splitlines()
                       if line.startswith("vigil_admin_refused_requests_total{")]
        assert len(refused) == 1 and 'method="POST"' in refused[0] and refused[0].endswith(" 4.0"), refused
