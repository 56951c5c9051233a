"""Game day for the `otlp` receiver: hostile senders against a real `vigil run` on 127.0.0.1.

    hostile sender ─┐
    probes ─────────┼─▶ vigil run (otlp receiver ─▶ otlp exporter) ─▶ sink (a gRPC server in this process)
    systemd socket ◀┘   (WATCHDOG=1 pings)

While one sender does its worst, probes keep asking the admin endpoint's /-/healthy
and sending small OTLP/gRPC exports, and the agent's systemd watchdog pings are
timed: every one of them must keep answering within a second, and the agent's
peak RSS (VmHWM) must stay a small multiple of what the sender sent.

Figures are printed (run with -s).
"""

from __future__ import annotations

import asyncio
import http.client
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import yaml

from agent import otlp_json
from agent.signals import Batch, Signal
from tests.conftest import free_port, wait_for
from tests.http2 import StallingClient
from tests.otlp_data import traces
from tests.vigil_cli import clean_env, vigil_run

MIB = 1024 * 1024


class Sink:
    """An OTLP/gRPC trace backend in this process that accepts everything and counts requests and spans."""

    def __init__(self) -> None:
        self.requests = 0
        self.spans = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(4),
                                  options=[("grpc.max_receive_message_length", 256 * MIB)])
        service, method = Signal.TRACES.grpc_method.lstrip("/").split("/")

        def export(request: bytes, context) -> bytes:
            self.requests += 1
            self.spans += Batch.from_wire(Signal.TRACES, request).items
            return b""

        handler = grpc.unary_unary_rpc_method_handler(export)
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, {method: handler})])
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def __enter__(self) -> Sink:
        self.server.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop(0)


class Watchdog:
    """A systemd notify socket that records when each WATCHDOG=1 ping arrives."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = str(tmp_path / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.pings: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            if b"WATCHDOG=1" in data:
                self.pings.append(time.monotonic())

    def longest_gap(self, start: float, end: float) -> float:
        """The longest time without a ping between `start` and `end`."""
        marks = [start, *(t for t in self.pings if start < t < end), end]
        return max(b - a for a, b in zip(marks, marks[1:]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


class Probes:
    """Threads that ask /-/healthy and send one small gRPC export, over and over, timing each answer."""

    NAMES = ("healthy", "grpc export")

    def __init__(self, admin: str, grpc_endpoint: str) -> None:
        self.admin = admin
        self.channel = grpc.insecure_channel(grpc_endpoint)
        self.export = self.channel.unary_unary(Signal.TRACES.grpc_method)
        self.asked: list[tuple[str, float, float, str | None]] = []  # (probe, start, end, error)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(name,), daemon=True) for name in self.NAMES]

    def __enter__(self) -> Probes:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        self.channel.close()

    def during(self, start: float, end: float) -> tuple[dict[str, float], list[str], int]:
        """The slowest answer of each probe asked while [start, end] lasted, the failures, and how many."""
        overlapping = [a for a in self.asked if a[1] < end and a[2] > start]
        slowest = {name: max((e - s for n, s, e, _ in overlapping if n == name), default=0.0)
                   for name in self.NAMES}
        return slowest, [f"{n}: {error}" for n, _, _, error in overlapping if error], len(overlapping)

    def _ask(self, name: str) -> None:
        if name == "healthy":
            with urllib.request.urlopen(f"http://{self.admin}/-/healthy", timeout=20) as response:
                assert response.status == 200
        else:
            self.export(traces(1).SerializeToString(), timeout=20)

    def _run(self, name: str) -> None:
        while not self._stop.is_set():
            started, error = time.monotonic(), None
            try:
                self._ask(name)
            except Exception as exc:  # the test fails on those asked while it measured
                error = repr(exc)[:200]
            self.asked.append((name, started, time.monotonic(), error))
            time.sleep(0.05)


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of `pid` in MiB: now, and the peak so far."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def agent_config(tmp_path: Path, sink_port: int, http: dict | None = None, grpc_: dict | None = None) -> dict:
    return {"receivers": {"otlp": {"protocols": {
                "grpc": {"endpoint": f"127.0.0.1:{free_port()}", **(grpc_ or {})},
                "http": {"endpoint": f"127.0.0.1:{free_port()}", **(http or {})}}}},
            "exporters": {"otlp": {"endpoint": f"http://127.0.0.1:{sink_port}", "compression": "none",
                                   "sending_queue": {"queue_size": 100}}},
            "service": {"admin": {"endpoint": f"127.0.0.1:{free_port()}"},
                        "state_dir": str(tmp_path / "state"),
                        "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp"]}}}}


class Agent:
    """`vigil run` with `config`, its watchdog socket and its endpoints."""

    def __init__(self, config: dict, tmp_path: Path) -> None:
        self.config = config
        self.tmp_path = tmp_path
        protocols = config["receivers"]["otlp"]["protocols"]
        self.grpc = protocols["grpc"]["endpoint"]
        self.http = protocols["http"]["endpoint"]
        self.admin = config["service"]["admin"]["endpoint"]

    def run(self):
        path = self.tmp_path / "vigil.yaml"
        path.write_text(yaml.safe_dump(self.config))
        self.watchdog = Watchdog(self.tmp_path)
        env = clean_env(NOTIFY_SOCKET=self.watchdog.path, WATCHDOG_USEC="500000")  # a ping every 0.25 s
        return vigil_run(["-c", str(path)], self.tmp_path, env=env)


def post(endpoint: str, path: str, body: bytes, content_type: str, timeout: float = 120) -> tuple[int, bytes]:
    host, port = endpoint.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --- defect 1: one OTLP/JSON request froze the whole agent ----------------------------------------


def empty_resources_json(size: int) -> bytes:
    """`{"resourceSpans":[{},{},...]}` of about `size` bytes: millions of JSON objects."""
    return b'{"resourceSpans":[' + b",".join([b"{}"] * (size // 3)) + b"]}"


def realistic_json(size: int) -> bytes:
    """A batch of real-looking spans (ids, times, a few attributes) of about `size` bytes."""
    per_span = len(otlp_json.encode(traces(100, payload="p" * 200))) / 100
    return otlp_json.encode(traces(int(size / per_span), payload="p" * 200)).encode()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["empty resources", "realistic spans"])
def test_one_huge_json_request_leaves_every_other_endpoint_answering(tmp_path, kind):
    body = (empty_resources_json if kind == "empty resources" else realistic_json)(20 * MIB - 64)
    with Sink() as sink:
        agent = Agent(agent_config(tmp_path, sink.port), tmp_path)
        with agent.run() as vigil:
            with Probes(agent.admin, agent.grpc) as probes:
                vigil.wait_running()
                assert wait_for(lambda: sink.requests >= 2, timeout=20)  # the probes' exports get through
                rss_before, _ = rss_mib(vigil.proc.pid)
                started = time.monotonic()
                status, answer = post(agent.http, "/v1/traces", body, "application/json", timeout=240)
                answered = time.monotonic() - started
                _, peak = rss_mib(vigil.proc.pid)
            slowest, failures, asked = probes.during(started, started + answered)
            watchdog_gap = agent.watchdog.longest_gap(started, started + answered)
            agent.watchdog.close()
            stderr = vigil.stderr()
    growth = peak - rss_before
    print(f"\n{kind}: {len(body) / MIB:.1f} MiB of OTLP/JSON answered {status} after {answered:.1f} s; "
          f"slowest other answers {slowest} over {asked} probes; longest watchdog gap {watchdog_gap:.2f} s; "
          f"RSS {rss_before:.0f} MiB before, peak {peak:.0f} MiB (+{growth:.0f} MiB, "
          f"{growth * MIB / len(body):.1f}x the body)")
    assert status == 200, answer
    assert not failures, failures[:3]
    assert max(slowest.values()) < 1.0, slowest
    assert watchdog_gap < 1.0  # pings every 0.25 s; systemd's WatchdogSec=30s is far off
    assert growth * MIB < 5 * len(body)
    assert "Traceback" not in stderr


# --- defect 2: stalled HTTP uploads took every concurrency slot; a huge Content-Length waited ---------


def stalled_upload(endpoint: str, declared: int, sent: bytes = b"\x0a" * 1000) -> socket.socket:
    """A connection that sent a POST's headers, declaring `declared` body bytes, and `sent` of them."""
    host, port = endpoint.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(f"POST /v1/traces HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-protobuf\r\n"
                 f"Content-Length: {declared}\r\n\r\n".encode() + sent)
    return sock


def status_line(sock: socket.socket, timeout: float) -> str:
    sock.settimeout(timeout)
    return sock.recv(4096).split(b"\r\n", 1)[0].decode()


@pytest.mark.timeout(240)
def test_a_thousand_stalled_uploads_lock_out_no_one_and_time_out(tmp_path):
    with Sink() as sink:
        agent = Agent(agent_config(tmp_path, sink.port, http={"read_timeout": "5s"}), tmp_path)
        with agent.run() as vigil:
            vigil.wait_running()
            stalled = [stalled_upload(agent.http, 1_000_000) for _ in range(1024)]  # max_concurrent_requests
            try:
                time.sleep(1.0)
                # Well-behaved senders are served all the while, over both protocols.
                body = traces(10).SerializeToString()
                timings = []
                for _ in range(20):
                    started = time.monotonic()
                    status, answer = post(agent.http, "/v1/traces", body, "application/x-protobuf", timeout=30)
                    timings.append(time.monotonic() - started)
                    assert status == 200, (status, answer)
                with grpc.insecure_channel(agent.grpc) as channel:
                    channel.unary_unary(Signal.TRACES.grpc_method)(body, timeout=10)
                assert wait_for(lambda: sink.requests >= 21, timeout=10)  # and their spans are delivered
                # A body declared over the limit is refused at once, unread.
                started = time.monotonic()
                huge = stalled_upload(agent.http, 500_000_000, b"")
                refused = status_line(huge, timeout=10)
                refused_after = time.monotonic() - started
                huge.close()
                # And the stalled ones are answered 408 once read_timeout passes.
                timed_out = [status_line(sock, timeout=30) for sock in stalled[:10]]
            finally:
                for sock in stalled:
                    sock.close()
            stderr = vigil.stderr()
    print(f"\n1024 stalled uploads: 20 exports answered 200 in at most {max(timings):.2f} s; "
          f"Content-Length 500000000 answered {refused!r} after {refused_after:.2f} s; stalled ones: {timed_out[0]!r}")
    assert max(timings) < 1.0
    assert refused == "HTTP/1.1 413 Request Entity Too Large" and refused_after < 1.0
    assert timed_out == ["HTTP/1.1 408 Request Timeout"] * 10
    assert "Traceback" not in stderr
    assert stderr.count("did not arrive whole") <= 2, stderr[-2000:]


# --- defect 3: partial gRPC messages were buffered without limit, and the memory stayed -----------------


async def stall_grpc_calls(endpoint: str, connections: int, calls: int) -> list[StallingClient]:
    host, port = endpoint.rsplit(":", 1)
    clients = [await StallingClient(host, int(port), Signal.TRACES.grpc_method).connect() for _ in range(connections)]
    await asyncio.gather(*(c.start_calls(calls, 4_000_000, 3_900_000, patience=2.0) for c in clients))
    return clients


@pytest.mark.timeout(240)
def test_stalled_grpc_messages_hold_bounded_memory_which_is_released_when_they_end(tmp_path):
    with Sink() as sink:
        agent = Agent(agent_config(tmp_path, sink.port, grpc_={"read_timeout": "6s"}), tmp_path)
        with agent.run() as vigil:
            with Probes(agent.admin, agent.grpc) as probes:
                vigil.wait_running()
                assert wait_for(lambda: sink.requests >= 2, timeout=20)
                rss_before, _ = rss_mib(vigil.proc.pid)
                started = time.monotonic()

                async def attack() -> tuple[int, float]:
                    # 200 calls on 2 connections, each sending most of a 4 MB message, then nothing.
                    clients = await stall_grpc_calls(agent.grpc, 2, 100)
                    stalled_at = rss_mib(vigil.proc.pid)[0]
                    await asyncio.sleep(7.0)  # past read_timeout: every call is cancelled
                    reset = sum(len(c.reset) for c in clients)
                    for c in clients:
                        await c.close()
                    return reset, stalled_at

                reset, stalled_at = asyncio.run(attack())
                ended = time.monotonic()
                _, peak = rss_mib(vigil.proc.pid)
                released = wait_for(lambda: rss_mib(vigil.proc.pid)[0] < rss_before + 48, timeout=20)
                rss_after, _ = rss_mib(vigil.proc.pid)
            slowest, failures, asked = probes.during(started, ended)
            stderr = vigil.stderr()
    print(f"\n200 stalled gRPC calls: RSS {rss_before:.0f} MiB before, {stalled_at:.0f} MiB stalled, peak {peak:.0f} "
          f"MiB, {rss_after:.0f} MiB once they ended; {reset} calls cancelled; other answers {slowest} over "
          f"{asked} probes")
    assert reset == 200
    assert peak - rss_before < 400  # at most max_receiving_calls (64) x 4 MiB waiting, and as many held by gRPC
    assert released, rss_after
    assert not failures and max(slowest.values()) < 1.0, (failures[:3], slowest)
    assert "Traceback" not in stderr


# --- also in scope: TLS and bearer tokens under load ---------------------------------------------------

TOKEN = "game-day-t0ken-0123456789"


def make_certs(d: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 it signed, made with the openssl command."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=game day CA",
        "-keyout", "ca.key", "-out", "ca.pem")
    (d / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=server", "-keyout", "server.key", "-out", "server.csr")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "san.cnf", "-out", "server.pem")
    return {n: d / n for n in ("ca.pem", "server.pem", "server.key")}


class SecureSenders:
    """Threads sending OTLP over TLS, with a bearer token (or a wrong one), counting every answer."""

    def __init__(self, agent: Agent, certs: dict[str, Path]) -> None:
        self.agent, self.certs = agent, certs
        self.answers: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def _count(self, who: str, answer: str) -> None:
        with self._lock:
            self.answers.setdefault(who, {})
            self.answers[who][answer] = self.answers[who].get(answer, 0) + 1

    def grpc(self, who: str, token: str, requests: int, spans: int) -> None:
        credentials = grpc.ssl_channel_credentials(self.certs["ca.pem"].read_bytes())
        with grpc.secure_channel(self.agent.grpc, credentials) as channel:
            export = channel.unary_unary(Signal.TRACES.grpc_method)
            body = traces(spans).SerializeToString()
            for _ in range(requests):
                try:
                    export(body, metadata=(("authorization", f"Bearer {token}"),), timeout=20)
                    self._count(who, "OK")
                except grpc.RpcError as exc:
                    self._count(who, exc.code().name)

    def http(self, who: str, token: str, requests: int, spans: int, new_connection_each: bool = False) -> None:
        context = ssl.create_default_context(cafile=str(self.certs["ca.pem"]))
        host, port = self.agent.http.rsplit(":", 1)
        body = traces(spans).SerializeToString()
        connection = None
        for _ in range(requests):
            if connection is None or new_connection_each:
                if connection is not None:
                    connection.close()
                connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=20)
            try:
                connection.request("POST", "/v1/traces", body=body, headers={
                    "Content-Type": "application/x-protobuf", "Authorization": f"Bearer {token}"})
                response = connection.getresponse()
                response.read()
                self._count(who, str(response.status))
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                self._count(who, type(exc).__name__)
                connection.close()
                connection = None
        if connection is not None:
            connection.close()


@pytest.mark.timeout(300)
def test_tls_and_bearer_tokens_hold_under_load(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    certs = make_certs(tmp_path)
    protection = {"tls": {"cert_file": str(certs["server.pem"]), "key_file": str(certs["server.key"])},
                  "auth": {"bearer_tokens": [TOKEN]}}
    with Sink() as sink:
        config = agent_config(tmp_path, sink.port, http=protection, grpc_=protection)
        # Room for every good export at once: this is about TLS and tokens, not the queue's backpressure,
        # which answered a few 503s on a loaded machine whenever the sink fell 100 requests behind.
        config["exporters"]["otlp"]["sending_queue"]["queue_size"] = 10_000
        agent = Agent(config, tmp_path)
        with agent.run() as vigil:
            vigil.wait_running()
            with Probes(agent.admin, agent.grpc) as probes:  # its plaintext gRPC export is refused: not counted
                senders = SecureSenders(agent, certs)
                host, port = agent.http.rsplit(":", 1)
                # Connections that open and never say a word of TLS: each holds a handshake, nothing more.
                silent = [socket.create_connection((host, int(port))) for _ in range(200)]
                work = [threading.Thread(target=senders.grpc, args=("grpc", TOKEN, 500, 50)) for _ in range(4)]
                work += [threading.Thread(target=senders.http, args=("https", TOKEN, 200, 50)) for _ in range(2)]
                work += [threading.Thread(target=senders.http, args=("https, a new TLS connection each", TOKEN,
                                                                     300, 10, True))]
                work += [threading.Thread(target=senders.grpc, args=("grpc, wrong token", "nope", 1000, 1)),
                         threading.Thread(target=senders.http, args=("https, wrong token", "nope", 1000, 1))]
                started = time.monotonic()
                for t in work:
                    t.start()
                for t in work:
                    t.join(240)
                ended = time.monotonic()
                for sock in silent:
                    sock.close()
                delivered = 4 * 500 * 50 + 2 * 200 * 50 + 300 * 10
                spans_delivered = wait_for(lambda: sink.spans >= delivered, timeout=30)
                metrics = urllib.request.urlopen(f"http://{agent.admin}/metrics", timeout=10).read().decode()
            slowest, _, _ = probes.during(started, ended)
            stderr = vigil.stderr()
    took = ended - started
    print(f"\nTLS and tokens under load, {took:.1f} s: {senders.answers}; {sink.spans} spans delivered; "
          f"slowest /-/healthy {slowest['healthy']:.3f} s")
    assert senders.answers["grpc"] == {"OK": 2000}
    assert senders.answers["https"] == {"200": 400}
    assert senders.answers["https, a new TLS connection each"] == {"200": 300}
    assert senders.answers["grpc, wrong token"] == {"UNAUTHENTICATED": 1000}
    assert senders.answers["https, wrong token"] == {"401": 1000}
    assert spans_delivered and sink.spans == delivered  # nothing of the refused senders got through
    unauthenticated = {line.split('transport="')[1].split('"')[0]: line.rsplit(" ", 1)[1]
                       for line in metrics.splitlines() if line.startswith("vigil_receiver_unauthenticated_requests_total")}
    assert unauthenticated == {"grpc": "1000.0", "http": "1000.0"}
    assert slowest["healthy"] < 1.0
    assert TOKEN not in stderr and "Traceback" not in stderr
