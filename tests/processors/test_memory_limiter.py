"""The `memory_limiter` processor: soft and hard limits, refusing retryably, and a real 10x overload.

The unit tests drive it with a scripted memory reading. The overload test runs
`vigil run` in a subprocess in front of a backend that takes 1 MB/s, offers it
10 MB/s for a while, and samples the agent's resident memory: with the limiter
the peak stays under the limit (without it, it does not); once the overload ends
and the backend speeds up, the agent accepts data again and every span it
acknowledged arrives.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
import psutil
import pytest

from agent.component import ComponentId, Settings
from agent.config import ConfigError, from_dict
from agent.errors import RefusedError
from agent.processors.memory_limiter import MemoryLimiter, MemoryLimiterConfig
from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry
from tests.conftest import free_port, wait_for
from tests.otlp_data import traces
from tests.sink import InMemorySink
from tests.vigil_cli import vigil_run

MIB = 1024 * 1024


def limiter(readings: list[int], **config) -> tuple[MemoryLimiter, InMemorySink, SelfTelemetry]:
    """A limiter whose memory readings (in MiB) come from `readings`, the last one repeating."""
    telemetry = SelfTelemetry()
    sink = InMemorySink()

    def measure() -> int:
        return (readings.pop(0) if len(readings) > 1 else readings[0]) * MIB

    processor = MemoryLimiter(MemoryLimiterConfig(**config), Settings(ComponentId("memory_limiter"), telemetry),
                              Signal.TRACES, sink, measure=measure)
    return processor, sink, telemetry


def spans(n: int = 3) -> Batch:
    return Batch(Signal.TRACES, traces(n))


async def test_passes_data_below_the_soft_limit_and_refuses_above_it():
    processor, sink, telemetry = limiter([100], limit_mib=200, spike_limit_mib=50)  # soft limit 150
    await processor.check()
    await processor.consume(spans())
    assert sink.items == 3
    processor._measure = lambda: 160 * MIB
    await processor.check()
    with pytest.raises(RefusedError, match="above the soft limit of 150 MiB") as refused:
        await processor.consume(spans())
    assert refused.value.retry_after >= 1  # HTTP senders get a Retry-After
    assert telemetry.total("vigil_processor_refused_spans", processor="memory_limiter") == 3
    processor._measure = lambda: 140 * MIB
    await processor.check()
    await processor.consume(spans())  # below the soft limit again: accepted
    assert sink.items == 6


async def test_the_spike_limit_defaults_to_a_fifth_of_the_limit():
    processor, _, _ = limiter([181], limit_mib=200)  # soft limit 160
    await processor.check()
    with pytest.raises(RefusedError, match="soft limit of 160 MiB"):
        await processor.consume(spans())


async def test_above_the_hard_limit_it_collects_garbage_and_measures_again():
    # 250 MiB, over the hard limit; after collecting garbage, 120: accepting again at once.
    processor, sink, _ = limiter([250, 120], limit_mib=200, spike_limit_mib=50)
    await processor.check()
    await processor.consume(spans())
    assert sink.items == 3 and processor.usage == 120 * MIB


def test_percentage_limits_follow_the_available_memory():
    config = MemoryLimiterConfig(limit_percentage=50, spike_limit_percentage=10)
    assert config.limits(1000 * MIB) == (400 * MIB, 500 * MIB)


@pytest.mark.parametrize("body, problem", [
    ({}, "processors.memory_limiter: set one of limit_mib or limit_percentage"),
    ({"limit_mib": 100, "limit_percentage": 50}, "processors.memory_limiter: set one of limit_mib or limit_percentage"),
    ({"limit_mib": 100, "spike_limit_mib": 100},
     "processors.memory_limiter: spike_limit_mib must be less than limit_mib"),
    ({"limit_mib": 100, "check_interval": "0s"}, "processors.memory_limiter: check_interval must be > 0"),
])
def test_config_errors(body, problem):
    doc = {"receivers": {"otlp": {"protocols": {"grpc": None}}},
           "processors": {"memory_limiter": body},
           "exporters": {"debug": None},
           "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["memory_limiter"],
                                                "exporters": ["debug"]}}}}
    with pytest.raises(ConfigError) as info:
        from_dict(doc)
    assert info.value.problems == [problem]


# --- a sustained 10x overload, with real processes ------------------------------------------------


class SlowBackend:
    """An OTLP/gRPC trace backend that takes one request per `delay` seconds, counting spans."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.spans = 0
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=1),
                                   options=[("grpc.max_receive_message_length", 64 * MIB)])
        service, method = Signal.TRACES.grpc_method.lstrip("/").split("/")
        handler = grpc.unary_unary_rpc_method_handler(self._export)
        self._server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, {method: handler})])
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def _export(self, request: bytes, context) -> bytes:
        time.sleep(self.delay)
        count = sum(len(ss.spans) for rs in Batch.from_wire(Signal.TRACES, request).message.resource_spans
                    for ss in rs.scope_spans)
        with self._lock:
            self.spans += count
        return b""

    def __enter__(self) -> SlowBackend:
        self._server.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop(None)


def _config(receiver_port: int, backend_port: int, limit_mib: int | None) -> dict:
    processors = ["batch"]
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{receiver_port}",
                                                      "max_recv_msg_size_mib": 16}}}},
        "processors": {"batch": {"send_batch_size": 200, "send_batch_max_size": 200, "timeout": "50ms"}},
        "exporters": {"otlp": {"endpoint": f"http://127.0.0.1:{backend_port}", "compression": "none",
                               "timeout": "10s",
                               "retry_on_failure": {"initial_interval": "100ms", "max_interval": "1s"},
                               # Far more than fits in memory: the limiter, not the queue, is the bound here.
                               "sending_queue": {"num_consumers": 1, "queue_size": 1_000_000}}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": processors,
                                             "exporters": ["otlp"]}}},
    }
    if limit_mib is not None:
        config["processors"]["memory_limiter"] = {"check_interval": "100ms", "limit_mib": limit_mib,
                                                  "spike_limit_mib": 30}
        processors.insert(0, "memory_limiter")
    return config


def _overload(endpoint: str, seconds: float, rate: float, request: bytes, spans_per_request: int) -> dict:
    """Offer `rate` requests a second for `seconds` from 4 threads; what was accepted and refused."""
    outcome = {"accepted": 0, "refused": 0, "codes": set()}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def sender() -> None:
        channel = grpc.insecure_channel(endpoint, options=[("grpc.max_send_message_length", 64 * MIB)])
        call = channel.unary_unary(Signal.TRACES.grpc_method)
        interval = 4 / rate
        next_at = time.monotonic()
        while time.monotonic() < stop:
            try:
                call(request, timeout=10)
                with lock:
                    outcome["accepted"] += spans_per_request
            except grpc.RpcError as exc:
                with lock:
                    outcome["refused"] += spans_per_request
                    outcome["codes"].add(exc.code())
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        channel.close()

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcome


class PeakMemory:
    """Samples a process's resident memory every 20 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self._process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _run_overload(tmp_path, limit_mib: int | None, request: bytes, spans_per_request: int) -> dict:
    """One agent under a 10x overload: its baseline, its peak, what the senders heard, what arrived."""
    port = free_port()
    # The backend takes 1 request (~1 MB) a second; the senders offer 10.
    with SlowBackend(delay=1.0) as backend:
        path = tmp_path / f"vigil-{limit_mib}.yaml"
        import yaml

        path.write_text(yaml.safe_dump(_config(port, backend.port, limit_mib)))
        with vigil_run(["-c", str(path)], tmp_path) as vigil:
            vigil.wait_running()
            endpoint = f"127.0.0.1:{port}"
            baseline = psutil.Process(vigil.proc.pid).memory_info().rss
            with PeakMemory(vigil.proc.pid) as memory:
                outcome = _overload(endpoint, seconds=12, rate=10, request=request,
                                    spans_per_request=spans_per_request)
            outcome.update(baseline=baseline, peak=memory.peak)
            if limit_mib is not None:
                backend.delay = 0.0  # the overload is over and the backend catches up
                # Accepting again once memory is below the soft limit (the queue drained, memory trimmed).
                recovered = wait_for(lambda: _accepts(endpoint), timeout=60, interval=0.5)
                assert recovered, f"never accepted data again:\n{vigil.stderr()[-3000:]}"
                outcome["accepted"] += 1
                assert wait_for(lambda: backend.spans >= outcome["accepted"], timeout=60), \
                    (backend.spans, outcome["accepted"])
                outcome["delivered"] = backend.spans
            assert vigil.proc.poll() is None, vigil.stderr()
    return outcome


def _accepts(endpoint: str) -> bool:
    try:
        with grpc.insecure_channel(endpoint) as channel:
            channel.unary_unary(Signal.TRACES.grpc_method)(traces(1, prefix="late").SerializeToString(),
                                                           timeout=5)
        return True
    except grpc.RpcError:
        return False


@pytest.mark.timeout(240)
def test_memory_stays_bounded_under_a_sustained_10x_overload(tmp_path):
    spans_per_request = 200
    request = traces(spans_per_request, payload="x" * 5000).SerializeToString()  # ~1 MB
    unlimited = _run_overload(tmp_path, None, request, spans_per_request)
    # The limit leaves the agent 60 MiB above what it needed idle.
    limit_mib = unlimited["baseline"] // MIB + 60
    limited = _run_overload(tmp_path, limit_mib, request, spans_per_request)
    print(f"\nmemory under a 10x overload (12 s at 10 MB/s into a 1 MB/s backend): "
          f"without memory_limiter peak {unlimited['peak'] / MIB:.0f} MiB "
          f"(baseline {unlimited['baseline'] / MIB:.0f} MiB); with limit_mib={limit_mib} "
          f"(soft {limit_mib - 30}) peak {limited['peak'] / MIB:.0f} MiB; "
          f"accepted {limited['accepted']} spans, refused {limited['refused']}, delivered {limited['delivered']}")
    assert unlimited["peak"] > limit_mib * MIB  # the overload is real: without the limiter, memory grows past it
    assert limited["peak"] <= limit_mib * MIB
    assert limited["refused"] > 0 and limited["codes"] == {grpc.StatusCode.UNAVAILABLE}
    assert limited["delivered"] >= limited["accepted"]
