"""Game day: an on-call's worst afternoon, played with real processes on 127.0.0.1.

    senders (4 threads, gRPC) ─▶ Vigil "agent" (batch ─▶ otlp exporter, persistent queue) ─▶ Vigil "backend" (file)

1. ≥ 100,000 spans stream in, each request retried by its sender until acknowledged.
2. The backend goes down; the agent's queue fills on disk.
3. The agent is SIGKILLed mid-stream and started again on the same state_dir.
4. The backend comes back; the queue drains.
Every acknowledged span must reach the backend's file (compared by span id); duplicates are
allowed (delivery is at-least-once) and reported.

The disk-full case: a queue capped at 1 MiB (and, where this machine lets a test mount one, a
queue on a 2 MiB tmpfs) refuses with the retryable code while the backend is down, and takes
data again once the backend drains it.

Figures are printed (run with -s) and written to game_day.json in the test's tmp dir.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest
import yaml

from tests.conftest import free_port, mount_tmpfs, wait_for
from tests.otlp_data import span_id, traces
from tests.vigil_cli import VIGIL, clean_env

SPANS = 100_000
PER_REQUEST = 500


class Vigil:
    """A `vigil run` subprocess that can be SIGKILLed and started again with the same config."""

    def __init__(self, name: str, config: dict, tmp_path: Path) -> None:
        self.name = name
        self.path = tmp_path / f"{name}.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.tmp_path = tmp_path
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        self.stderr_path = self.tmp_path / f"{self.name}-{self.runs}.stderr"
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen([VIGIL, "run", "-c", str(self.path)], stdin=subprocess.DEVNULL,
                                         stdout=stderr, stderr=stderr, cwd=self.tmp_path, env=clean_env())
        wait_for(lambda: "Vigil is running" in self.stderr() or self.proc.poll() is not None, 30)
        assert self.proc.poll() is None and "Vigil is running" in self.stderr(), self.stderr()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def backend_config(port: int, out: Path) -> dict:
    return {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{port}",
                                                          "max_recv_msg_size_mib": 64}}}},
            "exporters": {"file": {"path": str(out)}},
            "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}},
                        "state_dir": str(out.parent / "backend-state")}}


def agent_config(grpc_port: int, http_port: int, backend_port: int, state_dir: Path, storage: dict) -> dict:
    return {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                                                 "http": {"endpoint": f"127.0.0.1:{http_port}"}}}},
            "processors": {"batch": {"send_batch_size": 2000, "send_batch_max_size": 4000, "timeout": "100ms"}},
            "exporters": {"otlp": {"endpoint": f"http://127.0.0.1:{backend_port}", "compression": "none",
                                   "timeout": "5s",
                                   "retry_on_failure": {"initial_interval": "100ms", "max_interval": "500ms"},
                                   "sending_queue": {"num_consumers": 4, "storage": storage}}},
            "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                                 "exporters": ["otlp"]}},
                        "state_dir": str(state_dir)}}


class Senders:
    """Threads that send prepared requests, each retried until acknowledged, like an SDK's exporter."""

    def __init__(self, endpoint: str, requests: list[tuple[int, bytes]], spans_per_request: int,
                 threads: int = 4, deadline: float = 240, rate: float = 0) -> None:
        self.endpoint = endpoint
        self.todo = list(reversed(requests))
        self.per_request = spans_per_request
        self.acknowledged: set[int] = set()  # the first span number of each acknowledged request
        self.codes: dict[str, int] = {}
        self.attempts = 0
        self._lock = threading.Lock()
        self._deadline = time.monotonic() + deadline
        # New requests (not retries) start at most `rate` a second, so the stream lasts a while.
        self._interval = 1 / rate if rate else 0.0
        self._next_start = time.monotonic()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> Senders:
        for t in self._threads:
            t.start()
        return self

    def join(self) -> None:
        for t in self._threads:
            t.join()

    @property
    def acked_spans(self) -> int:
        return len(self.acknowledged) * self.per_request

    def _run(self) -> None:
        options = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500),
                   ("grpc.min_reconnect_backoff_ms", 100)]
        channel = grpc.insecure_channel(self.endpoint, options=options)
        call = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        try:
            while time.monotonic() < self._deadline:
                with self._lock:
                    if not self.todo:
                        return
                    first, body = self.todo.pop()
                    wait = self._next_start - time.monotonic()
                    self._next_start = max(self._next_start, time.monotonic()) + self._interval
                if wait > 0:
                    time.sleep(wait)
                while time.monotonic() < self._deadline:
                    with self._lock:
                        self.attempts += 1
                    try:
                        call(body, timeout=10)
                    except grpc.RpcError as exc:
                        with self._lock:
                            self.codes[exc.code().name] = self.codes.get(exc.code().name, 0) + 1
                        time.sleep(0.05)
                        continue
                    with self._lock:
                        self.acknowledged.add(first)
                    break
        finally:
            channel.close()


class Delivered:
    """The span ids in the backend's file, read as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.count = 0
        self.ids: set[str] = set()

    def poll(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        for line in data[:end].splitlines():
            for rs in json.loads(line).get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    for span in ss.get("spans", []):
                        self.ids.add(span["spanId"])
                        self.count += 1
        self.offset += end


def requests(total: int, per_request: int, payload: str = "") -> list[tuple[int, bytes]]:
    return [(k, traces(per_request, start=k, prefix="gd", payload=payload).SerializeToString())
            for k in range(0, total, per_request)]


def expected_ids(senders: Senders) -> set[str]:
    return {span_id(k).hex() for first in senders.acknowledged for k in range(first, first + senders.per_request)}


@pytest.mark.timeout(420)
def test_game_day_outage_and_kill_9_lose_nothing_acknowledged(tmp_path):
    backend_port, grpc_port, http_port = free_port(), free_port(), free_port()
    out = tmp_path / "backend" / "traces.json"
    backend = Vigil("backend", backend_config(backend_port, out), tmp_path)
    agent = Vigil("agent", agent_config(grpc_port, http_port, backend_port, tmp_path / "agent-state",
                                        {"max_size_mib": 512}), tmp_path)
    delivered = Delivered(out)
    timeline: list[str] = []
    started = time.monotonic()

    def mark(what: str) -> None:
        timeline.append(f"{time.monotonic() - started:6.1f}s acked={senders.acked_spans:>6} {what}")

    try:
        backend.start()
        agent.start()
        # 10 requests (5,000 spans) a second: the stream lasts about 20 s, long enough to break things in.
        senders = Senders(f"127.0.0.1:{grpc_port}", requests(SPANS, PER_REQUEST), PER_REQUEST, rate=10).start()
        mark("streaming")
        assert wait_for(lambda: senders.acked_spans >= SPANS * 0.2, timeout=120), senders.codes
        backend.stop()
        mark("backend down")
        assert wait_for(lambda: senders.acked_spans >= SPANS * 0.5, timeout=120), senders.codes
        agent.kill()
        mark("agent SIGKILLed")
        time.sleep(1.0)  # the senders hear nothing but errors for a while, and keep retrying
        agent.start()
        mark("agent restarted")
        queued = agent.stderr()
        assert "from before the restart will be sent" in queued, queued
        assert wait_for(lambda: senders.acked_spans >= SPANS * 0.8, timeout=120), senders.codes
        backend.start()
        mark("backend back")
        senders.join()
        mark("senders done")
        want = expected_ids(senders)
        assert wait_for(lambda: (delivered.poll(), want <= delivered.ids)[1], timeout=120, interval=0.5), \
            f"{len(want - delivered.ids)} acknowledged spans missing\n" + "\n".join(timeline)
        mark("all acknowledged spans delivered")
        time.sleep(1.0)  # anything still in flight lands, so the duplicate count is final
        delivered.poll()
    finally:
        agent.stop()
        backend.stop()
    figures = {"spans_sent": SPANS, "spans_acknowledged": senders.acked_spans,
               "spans_delivered": delivered.count, "spans_delivered_unique": len(delivered.ids),
               "spans_duplicated": delivered.count - len(delivered.ids),
               "acknowledged_but_lost": len(want - delivered.ids),
               "send_attempts": senders.attempts, "refusals_by_code": senders.codes, "timeline": timeline}
    (tmp_path / "game_day.json").write_text(json.dumps(figures, indent=2))
    print("\ngame day:", json.dumps(figures, indent=2))
    assert senders.acked_spans == SPANS  # every request was eventually acknowledged
    assert figures["acknowledged_but_lost"] == 0
    assert delivered.ids <= {span_id(k).hex() for k in range(SPANS)}  # nothing made up
    assert "Traceback" not in agent.stderr() and "Traceback" not in backend.stderr()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("full", ["queue capped at 1 MiB", "2 MiB tmpfs"])
def test_game_day_full_disk_refuses_retryably_and_recovers(tmp_path, full):
    backend_port, grpc_port, http_port = free_port(), free_port(), free_port()
    out = tmp_path / "backend" / "traces.json"
    mount = tmp_path / "small-disk"
    if full == "2 MiB tmpfs":
        if not mount_tmpfs(mount, "2m"):
            pytest.skip("cannot mount a small tmpfs here")
        storage = {"directory": str(mount / "queue"), "max_size_mib": 64, "segment_size_mib": 0.25}
    else:
        storage = {"max_size_mib": 1, "segment_size_mib": 0.25}
    backend = Vigil("backend", backend_config(backend_port, out), tmp_path)
    agent = Vigil("agent", agent_config(grpc_port, http_port, backend_port, tmp_path / "agent-state", storage),
                  tmp_path)
    total, per_request = 20_000, 100
    delivered = Delivered(out)
    try:
        agent.start()  # the backend is down from the start
        senders = Senders(f"127.0.0.1:{grpc_port}", requests(total, per_request, payload="p" * 200),
                          per_request, rate=50).start()
        assert wait_for(lambda: senders.codes.get("UNAVAILABLE", 0) >= 20, timeout=60), senders.codes
        refused_at = senders.acked_spans
        # Over HTTP the same refusal is a 503 with Retry-After, which SDKs retry.
        import urllib.error
        import urllib.request

        request = urllib.request.Request(f"http://127.0.0.1:{http_port}/v1/traces",
                                         # as large as the refused gRPC requests: a smaller one could
                                         # still fit in what is left of a full tmpfs
                                         data=traces(per_request, prefix="http", payload="p" * 200)
                                         .SerializeToString(),
                                         headers={"Content-Type": "application/x-protobuf"})
        with pytest.raises(urllib.error.HTTPError) as http:
            urllib.request.urlopen(request, timeout=10)
        assert http.value.code == 503 and http.value.headers["Retry-After"]
        assert senders.acked_spans < total
        backend.start()  # the queue drains: its segments are deleted and the space returns
        senders.join()
        want = expected_ids(senders)
        assert wait_for(lambda: (delivered.poll(), want <= delivered.ids)[1], timeout=90, interval=0.5), \
            f"{len(want - delivered.ids)} acknowledged spans missing"
    finally:
        agent.stop()
        backend.stop()
        if full == "2 MiB tmpfs":
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
    print(f"\ndisk full ({full}): refused from {refused_at} spans on ({senders.codes}); afterwards all "
          f"{senders.acked_spans} acknowledged spans delivered, {delivered.count - len(delivered.ids)} twice")
    assert senders.acked_spans == total
    assert set(senders.codes) == {"UNAVAILABLE"}
    if full == "2 MiB tmpfs":
        assert "No space left on device" in agent.stderr()
    else:
        assert "is full" in agent.stderr()
