"""Game day for exporters and their queues: real `vigil run` processes on 127.0.0.1.

    senders (gRPC / HTTP) ─▶ vigil run "agent" (exporter + sending queue) ─▶ backend (a Vigil, or a server here)

Faults played: a request that balloons in the `file` exporter, a disk too small for one segment,
a record stuck in retry while the rest drains (then kill -9), a backend that comes back after an
outage, a slow backend with the in-memory byte bound, and a power cut under each fsync policy.
Figures are printed (run with -s).
"""

from __future__ import annotations

import collections
import gzip
import http.server
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import yaml

from agent import otlp_json
from agent.signals import Signal
from tests.conftest import free_port, mount_tmpfs, wait_for
from tests.otlp_data import item_names, logs, metrics, traces
from tests.test_game_day import Senders, Vigil, requests
from tests.vigil_cli import clean_env, vigil_run

MIB = 1024 * 1024


class Sink:
    """An OTLP/gRPC backend in this process that counts every item by name; `refuse(names)` makes it
    answer UNAVAILABLE. It can stop and start again on the same port, as a backend in an outage does."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: collections.Counter[str] = collections.Counter()
        self.refuse = lambda names: False
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None

    def start(self) -> Sink:
        server = grpc.server(futures.ThreadPoolExecutor(8), options=[("grpc.max_receive_message_length", 64 * MIB)])
        for signal in Signal:
            service, method = signal.grpc_method.lstrip("/").split("/")
            handler = grpc.unary_unary_rpc_method_handler(self._export(signal))
            server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, {method: handler})])
        server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(0).wait(10)
            self._server = None

    def _export(self, signal: Signal):
        def export(body: bytes, context) -> bytes:
            names = item_names(signal, signal.request_type.FromString(body))
            if self.refuse(names):
                context.abort(grpc.StatusCode.UNAVAILABLE, "not now")
            with self._lock:
                self.received.update(names)
            return b""

        return export

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.received.values())


def agent_config(grpc_port: int, backend_port: int, state_dir: Path, sending_queue: dict, **exporter) -> dict:
    """An agent: OTLP/gRPC in, straight to an `otlp` exporter (no batching: one request, one record)."""
    return {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}}}},
            "exporters": {"otlp": {"endpoint": f"http://127.0.0.1:{backend_port}", "compression": "none",
                                   "timeout": "5s", "retry_on_failure": {"initial_interval": "100ms",
                                                                         "max_interval": "500ms"},
                                   "sending_queue": {"num_consumers": 4, **sending_queue}, **exporter}},
            "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp"]}},
                        "state_dir": str(state_dir), "admin": {"endpoint": "127.0.0.1:0"}}}


def span_names(first_ids: set[int], per_request: int, prefix: str = "gd") -> set[str]:
    return {f"{prefix}-{k}" for first in first_ids for k in range(first, first + per_request)}


def _memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of `pid`, in MiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields


def _config_args(tmp_path: Path, config: dict) -> list[str]:
    path = tmp_path / "vigil.yaml"
    path.write_text(yaml.safe_dump(config))
    return ["-c", str(path)]


# --- defect 4: the file exporter --------------------------------------------------------------


@pytest.mark.timeout(180)
def test_game_day_file_exporter_memory_stays_bounded_for_millions_of_resources(tmp_path):
    """20 MiB of empty ResourceSpans through batch ─▶ file: peak RSS a small multiple of the request."""
    port = free_port()
    out = tmp_path / "traces.json"
    config = {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{port}",
                                                            "max_recv_msg_size_mib": 64}}}},
              "processors": {"batch": {"send_batch_size": 8192, "timeout": "200ms"}},
              "exporters": {"file": {"path": str(out)}},
              "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                                   "exporters": ["file"]}},
                          "state_dir": str(tmp_path / "state"), "admin": {"endpoint": "127.0.0.1:0"}}}
    args = _config_args(tmp_path, config)
    request = b"\n\0" * (10 << 20)
    with vigil_run(args, tmp_path) as vigil:
        vigil.wait_running()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 * MIB)])
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        export(b"", timeout=30)  # warm up: the first request loads what every request needs
        assert wait_for(lambda: out.exists() and out.read_bytes().endswith(b"\n"), 30)
        before = _memory(vigil.proc.pid)["VmRSS"]
        started = time.monotonic()
        export(request, timeout=120)
        channel.close()
        # Written when the line ends: the file exporter is done with the request.
        assert wait_for(lambda: out.stat().st_size > 30 * MIB and out.read_bytes().endswith(b"\n"), 150), \
            vigil.stderr()
        written = time.monotonic() - started
        time.sleep(0.5)
        after = _memory(vigil.proc.pid)
    peak = after["VmHWM"] - before
    print(f"\nfile exporter, 20 MiB of empty ResourceSpans: RSS {before:.0f} MiB before, peak +{peak:.0f} MiB, "
          f"{after['VmRSS']:.0f} MiB after; written in {written:.1f}s")
    assert out.read_bytes().splitlines()[-1] == b'{"resourceSpans":[' + b",".join([b"{}"] * (10 << 20)) + b"]}"
    # The receiver holds the request (20 MiB) and gRPC its buffers: a few times its size, not 50.
    assert peak < 5 * len(request) / MIB
    assert after["VmRSS"] - before < len(request) / MIB


# --- defect 8: one record in retry, then kill -9 -----------------------------------------------


@pytest.mark.timeout(240)
def test_game_day_kill_9_resends_only_what_was_in_flight(tmp_path):
    """One request the backend keeps refusing, 50,000 spans delivered around it, then kill -9."""
    total, per_request = 50_000, 500
    sink = Sink()
    sink.refuse = lambda names: any(n.startswith("stuck") for n in names)
    grpc_port = free_port()
    agent = Vigil("agent", agent_config(grpc_port, sink.port, tmp_path / "state", {"storage": {}}), tmp_path)
    try:
        sink.start()
        agent.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        channel.unary_unary(Signal.TRACES.grpc_method)(traces(1, prefix="stuck").SerializeToString(), timeout=10)
        channel.close()
        senders = Senders(f"127.0.0.1:{grpc_port}", requests(total, per_request), per_request).start()
        senders.join()
        assert senders.acked_spans == total, senders.codes
        want = span_names(senders.acknowledged, per_request)
        assert wait_for(lambda: want <= set(sink.received), 120), len(want - set(sink.received))
        time.sleep(1.0)  # the resume position catches up (it is written a few times a second)
        agent.kill()
        delivered_before = sum(sink.received.values())
        sink.refuse = lambda names: False
        agent.start()
        assert wait_for(lambda: sink.received["stuck-0"] == 1, 60), agent.stderr()
        time.sleep(1.0)  # anything else it sends again has landed
    finally:
        agent.stop()
        sink.stop()
    resent = sum(sink.received.values()) - delivered_before - 1
    print(f"\nkill -9 with one request stuck in retry after {total} spans delivered: {resent} spans sent "
          f"again, {sink.duplicates} duplicates in all")
    assert want <= set(sink.received)
    # At most what the four consumers had in flight (the stuck one aside) may come twice.
    assert sink.duplicates <= 4 * per_request, sink.duplicates


# --- defect 6: a disk with less than one segment free -----------------------------------------


@pytest.mark.timeout(240)
def test_game_day_a_disk_with_less_than_one_segment_free_recovers_without_a_restart(tmp_path):
    """A 16 MiB tmpfs holding 10 MiB of other files; the queue's segments are 8 MiB."""
    disk = tmp_path / "disk"
    if not mount_tmpfs(disk, "16m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        (disk / "other-files").write_bytes(b"x" * (10 * MIB))
        total, per_request = 30_000, 100
        sink = Sink()  # down at first
        grpc_port = free_port()
        storage = {"directory": str(disk / "queue"), "max_size_mib": 64}
        agent = Vigil("agent", agent_config(grpc_port, sink.port, tmp_path / "state", {"storage": storage}),
                      tmp_path)
        try:
            agent.start()
            senders = Senders(f"127.0.0.1:{grpc_port}", requests(total, per_request, payload="p" * 300),
                              per_request, rate=100, deadline=200).start()
            assert wait_for(lambda: senders.codes.get("UNAVAILABLE", 0) >= 20, 60), senders.codes
            refused_at = senders.acked_spans
            assert "No space left on device" in agent.stderr()
            sink.start()  # the queue drains; the disk has room only once its segment is gone
            started = time.monotonic()
            senders.join()
            recovered = time.monotonic() - started
            want = span_names(senders.acknowledged, per_request)
            assert wait_for(lambda: want <= set(sink.received), 60), len(want - set(sink.received))
        finally:
            agent.stop()
            sink.stop()
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
    print(f"\ndisk with 6 MiB free, 8 MiB segments: refused from {refused_at} spans on; once the backend was "
          f"back, {senders.acked_spans} of {total} acknowledged within {recovered:.1f}s, without a restart")
    assert senders.acked_spans == total, f"{senders.acked_spans} of {total} acknowledged: {senders.codes}"


# --- defects 10 and 12: an in-memory queue's shutdown in an outage ------------------------------


@pytest.mark.timeout(180)
def test_game_day_shutdown_in_an_outage_counts_every_dropped_span_in_one_line(tmp_path):
    """20,000 spans queued in memory, the backend down; SIGTERM with a 2 s deadline."""
    total, per_request = 20_000, 100
    grpc_port = free_port()
    config = agent_config(grpc_port, free_port(), tmp_path / "state", {"queue_size": 1000})
    config["service"]["shutdown_timeout"] = "2s"
    agent = Vigil("agent", config, tmp_path)
    try:
        agent.start()
        senders = Senders(f"127.0.0.1:{grpc_port}", requests(total, per_request), per_request).start()
        senders.join()
        assert senders.acked_spans == total, senders.codes
        time.sleep(2.0)  # every consumer is between retries
    finally:
        agent.stop()
    log = agent.stderr()
    drop_lines = [line for line in log.splitlines() if "dropped" in line]
    logged = sum(int(n) for n in re.findall(r"dropped\D*?(\d+) spans", log))
    retries = [line for line in log.splitlines() if "retrying in" in line]
    print(f"\nshutdown in an outage: {len(drop_lines)} lines saying {logged} of {total} spans were dropped; "
          f"{len(retries)} retry lines for {senders.attempts} requests")
    assert drop_lines and drop_lines[0].endswith(
        f"dropped at shutdown, the deadline having passed: {total} spans in {total // per_request} requests "
        f"(4 being sent or between retries, {total // per_request - 4} still queued)")
    assert len(drop_lines) == 1  # one line for the shutdown, not one per batch
    assert len(retries) <= 5  # the first, then one summary every 10 s, not one per batch and retry


# --- otlphttp, metrics and logs, a slow backend, the in-memory byte bound ------------------------


class SlowHttpBackend:
    """An OTLP/HTTP backend in this process that takes `delay` seconds over every request and counts
    the items in it by name (protobuf or JSON bodies, gzip or not)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.received: collections.Counter[str] = collections.Counter()
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                signal = {"/v1/metrics": Signal.METRICS, "/v1/logs": Signal.LOGS}[self.path]
                if self.headers["Content-Type"] == "application/json":
                    message = otlp_json.decode(signal, body)
                else:
                    message = signal.request_type.FromString(body)
                time.sleep(backend.delay)
                backend.received.update(item_names(signal, message))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> SlowHttpBackend:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _http_senders(url: str, seconds: float) -> tuple[list[str], collections.Counter, list[threading.Thread]]:
    """Threads that post metrics and log requests for `seconds`, each retried on 503 until acknowledged."""
    acknowledged: list[str] = []
    statuses: collections.Counter[int] = collections.Counter()
    deadline = time.monotonic() + seconds

    def send(signal: Signal, thread: int) -> None:
        path = {Signal.METRICS: "/v1/metrics", Signal.LOGS: "/v1/logs"}[signal]
        k = 0
        while time.monotonic() < deadline:
            prefix = f"{signal.value}-{thread}-{k}"
            message = (metrics(200, prefix=prefix) if signal is Signal.METRICS
                       else logs(200, prefix=prefix + "-" + "b" * 400))
            body = message.SerializeToString()
            while time.monotonic() < deadline + 60:
                request = urllib.request.Request(url + path, data=body,
                                                  headers={"Content-Type": "application/x-protobuf"})
                try:
                    urllib.request.urlopen(request, timeout=30).read()
                except urllib.error.HTTPError as exc:
                    statuses[exc.code] += 1
                    time.sleep(0.05)
                    continue
                statuses[200] += 1
                acknowledged.extend(item_names(signal, message))
                break
            k += 1

    threads = [threading.Thread(target=send, args=(signal, i), daemon=True)
               for i in range(2) for signal in (Signal.METRICS, Signal.LOGS)]
    for t in threads:
        t.start()
    return acknowledged, statuses, threads


@pytest.mark.timeout(240)
@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_game_day_slow_backend_otlphttp_metrics_and_logs_stay_within_the_byte_bound(tmp_path, encoding):
    """Senders outrun a backend that takes 0.2 s a request: the queue's 4 MiB bound refuses (503), memory
    stays flat, and everything acknowledged arrives once."""
    http_port = free_port()
    queue_bytes = 4 * MIB
    with SlowHttpBackend(delay=0.2) as backend:
        config = {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{http_port}"}}}},
            "exporters": {"otlphttp": {
                "endpoint": f"http://127.0.0.1:{backend.port}", "encoding": encoding, "timeout": "10s",
                "retry_on_failure": {"initial_interval": "100ms", "max_interval": "500ms"},
                "sending_queue": {"num_consumers": 2, "sizer": "bytes", "queue_size": queue_bytes}}},
            "service": {"pipelines": {s: {"receivers": ["otlp"], "exporters": ["otlphttp"]}
                                      for s in ("metrics", "logs")},
                        "state_dir": str(tmp_path / "state"), "admin": {"endpoint": "127.0.0.1:0"},
                        "shutdown_timeout": "60s"}}
        with vigil_run(_config_args(tmp_path, config), tmp_path) as vigil:
            vigil.wait_running()
            before = _memory(vigil.proc.pid)["VmRSS"]
            acknowledged, statuses, threads = _http_senders(f"http://127.0.0.1:{http_port}", seconds=8)
            samples = []
            while any(t.is_alive() for t in threads):
                samples.append(_memory(vigil.proc.pid)["VmRSS"])
                time.sleep(0.5)
            peak = _memory(vigil.proc.pid)["VmHWM"]
            assert wait_for(lambda: set(acknowledged) <= set(backend.received), 120), \
                len(set(acknowledged) - set(backend.received))
            vigil.proc.terminate()
            vigil.proc.wait(60)
    growth = [b - a for a, b in zip(samples, samples[1:])]
    print(f"\nslow backend, otlphttp/{encoding}, metrics and logs: {len(acknowledged)} items acknowledged, "
          f"{statuses[503]} refusals (503); RSS {before:.0f} MiB before, peak {peak:.0f} MiB; "
          f"{sum(backend.received.values()) - len(set(backend.received))} delivered twice")
    assert statuses[503] > 0  # the bound was reached, and said so retryably
    assert set(statuses) <= {200, 503}
    assert peak - before < 100  # 4 MiB waiting, two requests being sent, and the receiver's own
    assert max(samples[len(samples) // 2:]) - min(samples[len(samples) // 2:]) < 40  # flat, not climbing
    assert sum(backend.received.values()) == len(set(backend.received)) == len(set(acknowledged))


# --- a power cut, under each fsync policy ----------------------------------------------------------

# `vigil run`, with os.fsync noting what it made durable: after kill -9, the test cuts every segment
# back to what was fsynced, as a power cut can (what was only in the page cache is gone).
_FSYNC_NOTING_VIGIL = """
import os, sys
notes = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
real_fsync = os.fsync
def fsync(fd):
    real_fsync(fd)
    try:
        os.write(notes, f"{os.readlink(f'/proc/self/fd/{fd}')}\\t{os.fstat(fd).st_size}\\n".encode())
    except OSError:
        pass
os.fsync = fsync
from agent.cli import main
sys.exit(main(["run", "-c", sys.argv[2]]))
"""


def _power_cut(queue_dir: Path, notes: Path) -> dict[str, tuple[int, int]]:
    """Cut every segment back to its size at its last fsync (nothing, if never); (before, after) by name."""
    durable: dict[str, int] = {}
    if notes.exists():
        for line in notes.read_text().splitlines():
            path, size = line.rsplit("\t", 1)
            durable[path] = int(size)
    cut = {}
    for segment in queue_dir.glob("*.seg"):
        size = segment.stat().st_size
        keep = min(size, durable.get(str(segment), 0))
        os.truncate(segment, keep)
        cut[segment.name] = (size, keep)
    return cut


class TimedSenders:
    """Threads sending requests of `per_request` spans (retried until acknowledged), noting when each was."""

    def __init__(self, endpoint: str, per_request: int, rate: float, threads: int = 2) -> None:
        self.per_request = per_request
        self.acked: dict[int, float] = {}  # first span number -> when it was acknowledged
        self._next = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._interval = threads / rate
        self._threads = [threading.Thread(target=self._run, args=(endpoint,), daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _run(self, endpoint: str) -> None:
        channel = grpc.insecure_channel(endpoint)
        export = channel.unary_unary(Signal.TRACES.grpc_method)
        try:
            while not self._stop.is_set():
                with self._lock:
                    first, self._next = self._next, self._next + self.per_request
                body = traces(self.per_request, start=first, prefix="gd").SerializeToString()
                while not self._stop.is_set():
                    try:
                        export(body, timeout=5)
                    except grpc.RpcError:
                        time.sleep(0.05)
                        continue
                    self.acked[first] = time.monotonic()
                    break
                time.sleep(self._interval)
        finally:
            channel.close()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("fsync", ["always", "interval", "never"])
def test_game_day_power_cut_loses_only_what_the_fsync_policy_allows(tmp_path, fsync):
    per_request = 100
    sink = Sink()  # down while the data streams in: it all waits in the queue
    grpc_port = free_port()
    storage = {"fsync": fsync, "fsync_interval": "1s", "segment_size_mib": 0.5}
    config = agent_config(grpc_port, sink.port, tmp_path / "state", {"storage": storage})
    config_path = tmp_path / "agent.yaml"
    config_path.write_text(yaml.safe_dump(config))
    notes = tmp_path / "fsynced.tsv"
    queue_dir = tmp_path / "state" / "queues" / "otlp"
    stderr = open(tmp_path / "agent-cut.stderr", "wb")
    proc = subprocess.Popen([sys.executable, "-c", _FSYNC_NOTING_VIGIL, str(notes), str(config_path)],
                            stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, cwd=tmp_path, env=clean_env())
    agent = Vigil("agent", config, tmp_path)
    try:
        assert wait_for(lambda: b"Vigil is running" in (tmp_path / "agent-cut.stderr").read_bytes()
                        or proc.poll() is not None, 30), (tmp_path / "agent-cut.stderr").read_text()
        senders = TimedSenders(f"127.0.0.1:{grpc_port}", per_request, rate=40)
        time.sleep(4.0)
        proc.kill()  # the power goes ...
        cut_at = time.monotonic()
        proc.wait(10)
        senders.stop()
        cut = _power_cut(queue_dir, notes)  # ... and takes what was not on the disk itself with it
        sink.start()
        agent.start()
        acked = {f"gd-{k}": at for first, at in senders.acked.items() for k in range(first, first + per_request)}
        settled = lambda: set(acked) <= set(sink.received)  # noqa: E731
        wait_for(settled, 30 if fsync == "always" else 10)
        time.sleep(1.0)
    finally:
        proc.kill()
        proc.wait(10)
        stderr.close()
        agent.stop()
        sink.stop()
    lost = {name: at for name, at in acked.items() if name not in sink.received}
    log = agent.stderr()
    reported = sum(int(n) for n in re.findall(r"lost \d+ stored requests? \((\d+) spans\)", log))
    oldest_lost = cut_at - min(lost.values()) if lost else 0.0
    print(f"\npower cut with fsync: {fsync}: {len(acked)} spans acknowledged, {len(lost)} lost (the oldest "
          f"acknowledged {oldest_lost:.1f}s before the cut), {reported} reported lost at start; segments "
          f"{ {name: f'{a}->{b} bytes' for name, (a, b) in sorted(cut.items())} }")
    assert len(acked) > 5000
    assert set(sink.received) <= {f"gd-{k}" for k in range(senders._next)}  # nothing made up
    assert "Traceback" not in log
    if fsync == "always":
        assert not lost  # acknowledged means on the disk itself
    elif fsync == "interval":
        assert oldest_lost < 1.0 + 0.5  # at most the last fsync_interval (with the cut's own delay)
    # What a start finds missing from what the cursor knew of is reported, in items; never more than was lost.
    assert reported <= len(lost)
    if fsync != "always":
        assert len(lost) - reported <= 0.5 * 40 * per_request  # the cursor is at most a moment behind
