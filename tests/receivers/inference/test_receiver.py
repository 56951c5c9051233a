"""The `inference` receiver against real local HTTP servers (aiohttp on 127.0.0.1, a free port) serving
exposition text built from the servers' documented names (see test_<kind>.py for the versions): deltas,
counter resets, a server going down and coming back, garbage, a slow server, a metric or a model that
disappears, the wrong kind, and what `status()` says of each."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import urllib.request

import pytest
from aiohttp import web
from opentelemetry.proto.metrics.v1 import metrics_pb2

from agent.attributes import as_dict
from agent.component import ComponentId, Settings
from agent.errors import RefusedError
from agent.receivers.inference.config import InferenceReceiverConfig
from agent.receivers.inference.receiver import InferenceReceiver
from agent.signals import Signal
from agent.telemetry import SelfTelemetry
from tests.conftest import async_wait_for, free_port, running_vigil
from tests.receivers.fake_pynvml import GiB, FakeGpu, FakeNvml
from tests.sink import InMemorySink

DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA


def triton_page(success: int, failure: int = 0, duration_us: int = 0, pending: int = 0,
                models=(("resnet50", "1"),)) -> str:
    """Triton's exposition as v2.71.0's docs name it (counters without `_total`)."""
    text = "# TYPE nv_inference_request_success counter\n"
    text += "".join(f'nv_inference_request_success{{model="{m}",version="{v}"}} {success}\n' for m, v in models)
    text += "# TYPE nv_inference_request_failure counter\n"
    text += "".join(f'nv_inference_request_failure{{model="{m}",reason="BACKEND",version="{v}"}} {failure}\n'
                    for m, v in models)
    text += "# TYPE nv_inference_request_duration_us counter\n"
    text += "".join(f'nv_inference_request_duration_us{{model="{m}",version="{v}"}} {duration_us}\n'
                    for m, v in models)
    if pending is not None:
        text += "# TYPE nv_inference_pending_request_count gauge\n"
        text += "".join(f'nv_inference_pending_request_count{{model="{m}",version="{v}"}} {pending}\n'
                        for m, v in models)
    return text


def vllm_page(requests: int, aborted: int, ttft_counts: tuple[int, int, int], kv: float = 0.5) -> str:
    """vLLM's exposition as its v0.10/v0.12 loggers.py name it."""
    labels = 'engine="0",model_name="llama"'
    below_1, below_5, total = ttft_counts
    return f"""\
# TYPE vllm:request_success_total counter
vllm:request_success_total{{{labels},finished_reason="stop"}} {requests - aborted}
vllm:request_success_total{{{labels},finished_reason="abort"}} {aborted}
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{{{labels}}} {requests * 100}
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{{{labels}}} {requests * 10}
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{{labels}}} {kv}
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{{{labels},le="1.0"}} {below_1}
vllm:time_to_first_token_seconds_bucket{{{labels},le="5.0"}} {below_5}
vllm:time_to_first_token_seconds_bucket{{{labels},le="+Inf"}} {total}
vllm:time_to_first_token_seconds_count{{{labels}}} {total}
vllm:time_to_first_token_seconds_sum{{{labels}}} {total * 0.5}
"""


class Exposition:
    """A server's metrics endpoint whose page, status and speed a test changes as it goes."""

    def __init__(self) -> None:
        self.text = ""
        self.status = 200
        self.delay = 0.0
        self.info: dict | None = None
        self.scrapes = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def _metrics(self, _: web.Request) -> web.Response:
        self.scrapes += 1
        await asyncio.sleep(self.delay)
        return web.Response(text=self.text, status=self.status, content_type="text/plain")

    async def _info(self, _: web.Request) -> web.Response:
        if self.info is None:
            return web.Response(status=404)
        return web.json_response(self.info)

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/info", self._info)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
async def server():
    exposition = Exposition()
    await exposition.start()
    try:
        yield exposition
    finally:
        await exposition.stop()


@pytest.fixture
async def make_receiver():
    made = []

    async def make(*servers: dict, consumer=None, **config):
        config.setdefault("timeout", "1s")
        receiver = InferenceReceiver(InferenceReceiverConfig.model_validate({"servers": list(servers), **config}),
                                     Settings(ComponentId("inference"), SelfTelemetry()),
                                     {Signal.METRICS: consumer or InMemorySink()})
        await receiver.start()
        for task in receiver._tasks:  # scrapes are driven by hand here
            task.cancel()
        await asyncio.gather(*receiver._tasks, return_exceptions=True)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        await receiver.shutdown()


def points(batch, model: str | None = None) -> dict[str, object]:
    """The metrics of one resource of a batch: the model's, or with no model the server's."""
    for rm in batch.message.resource_metrics:
        if as_dict(rm.resource.attributes).get("ml.model.name") == model:
            return {m.name: m for sm in rm.scope_metrics for m in sm.metrics}
    return {}


def only_model(receiver) -> dict:
    (entry,) = receiver.status()["models"]
    return entry


async def test_counters_go_out_as_deltas_per_scrape_and_the_first_scrape_is_a_baseline(server, make_receiver):
    sink = InMemorySink()
    receiver = await make_receiver({"kind": "triton", "endpoint": server.endpoint}, consumer=sink)
    server.text = triton_page(100, 5, duration_us=1_000_000, pending=2)
    await receiver.scrape_all()
    first = points(sink.batches[-1], "resnet50")
    assert "ml.predictions" not in first  # what came before Vigil is not counted
    assert first["ml.server.requests.pending"].gauge.data_points[0].as_double == 2
    server.text = triton_page(130, 15, duration_us=1_500_000, pending=0)
    await receiver.scrape_all()
    second = points(sink.batches[-1], "resnet50")
    requests = second["ml.predictions"].sum
    assert requests.aggregation_temporality == DELTA and requests.is_monotonic
    assert requests.data_points[0].as_int == 40  # (130 + 15) - (100 + 5)
    # The delta covers the interval since the previous scrape.
    first_time = sink.batches[-2].message.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
    assert requests.data_points[0].start_time_unix_nano == first_time.time_unix_nano
    (error,) = second["ml.prediction.errors"].sum.data_points
    # The model is on every point too, as on the ml processor's metrics.
    assert error.as_int == 10
    assert as_dict(error.attributes) == {"ml.model.name": "resnet50", "ml.model.version": "1", "error.type": "BACKEND"}
    latency = second["ml.prediction.duration"].histogram
    assert latency.aggregation_temporality == DELTA
    assert latency.data_points[0].count == 40 and latency.data_points[0].sum == pytest.approx(0.5)
    resource = next(as_dict(rm.resource.attributes) for rm in sink.batches[-1].message.resource_metrics
                    if as_dict(rm.resource.attributes).get("ml.model.name"))
    assert resource == {"ml.model.name": "resnet50", "ml.model.version": "1", "service.name": "triton",
                        "service.instance.id": server.endpoint, "server.address": "127.0.0.1",
                        "server.port": server.port}
    entry = only_model(receiver)
    assert (entry["requests"], entry["errors"]) == (40, 10)
    assert entry["error_rate"] == pytest.approx(0.25)
    assert entry["latency_mean_s"] == pytest.approx(0.0125) and entry["latency_from"] == "mean"
    assert entry["queue"] == 0


async def test_a_counter_that_went_down_is_a_restart_and_its_value_is_the_delta(server, make_receiver):
    sink = InMemorySink()
    receiver = await make_receiver({"kind": "triton", "endpoint": server.endpoint}, consumer=sink)
    for success in (1000, 1200, 7, 20):
        server.text = triton_page(success)
        await receiver.scrape_all()
    deltas = [points(b, "resnet50")["ml.predictions"].sum.data_points[0].as_int
              for b in sink.batches[1:]]
    assert deltas == [200, 7, 13]
    assert only_model(receiver)["requests"] == 220


async def test_a_server_that_goes_down_is_up_0_its_models_failing_and_back_it_counts_on(server, make_receiver):
    sink = InMemorySink()
    receiver = await make_receiver({"kind": "triton", "endpoint": server.endpoint}, consumer=sink)
    server.text = triton_page(10)
    await receiver.scrape_all()
    port = server.port
    await server.stop()
    await receiver.scrape_all()
    (status,) = receiver.status()["servers"]
    assert status["up"] is False and "Cannot connect" in status["reason"]
    entry = only_model(receiver)
    assert entry["up"] is False
    assert entry["health"]["status"] == "failing" and entry["health"]["reasons"][0].startswith("server down")
    # Only the server's up 0 goes out: no model series is left behind while it is down.
    down = sink.batches[-1]
    assert points(down)["ml.server.up"].gauge.data_points[0].as_double == 0
    assert len(down.message.resource_metrics) == 1
    # It restarts on the same port with its counters from zero.
    server.text = triton_page(4)
    await server.start(port)
    await receiver.scrape_all()
    assert receiver.status()["servers"][0]["up"] is True
    assert points(sink.batches[-1], "resnet50")["ml.predictions"].sum.data_points[0].as_int == 4
    assert only_model(receiver)["health"]["status"] == "ok"


@pytest.mark.parametrize("body, reason", [
    ("<html><body>502 Bad Gateway</body></html>", "the page does not parse"),
    ('{"error": "not metrics"}', "the page does not parse"),
])
async def test_garbage_is_up_0_with_the_reason_and_the_next_good_page_counts_on(server, make_receiver, body, reason):
    sink = InMemorySink()
    receiver = await make_receiver({"kind": "triton", "endpoint": server.endpoint}, consumer=sink)
    server.text = triton_page(10)
    await receiver.scrape_all()
    server.text = body
    await receiver.scrape_all()
    assert receiver.status()["servers"][0]["reason"].startswith(reason)
    assert points(sink.batches[-1])["ml.server.up"].gauge.data_points[0].as_double == 0
    server.text = triton_page(25)
    await receiver.scrape_all()
    assert points(sink.batches[-1], "resnet50")["ml.predictions"].sum.data_points[0].as_int == 15


async def test_a_slow_server_an_http_error_and_a_page_too_large_are_each_up_0(server, make_receiver):
    receiver = await make_receiver({"kind": "triton", "endpoint": server.endpoint}, timeout="200ms",
                                   body_size_limit=10_000)
    server.text, server.delay = triton_page(1), 1.0
    await receiver.scrape_all()
    assert receiver.status()["servers"][0]["reason"] == "no answer within timeout (0.2s)"
    server.delay, server.status = 0.0, 503
    await receiver.scrape_all()
    assert receiver.status()["servers"][0]["reason"].startswith("HTTP 503")
    server.status, server.text = 200, triton_page(1) * 100
    await receiver.scrape_all()
    assert "body_size_limit" in receiver.status()["servers"][0]["reason"]
    server.text = triton_page(1)
    await receiver.scrape_all()
    assert receiver.status()["servers"][0] == {"kind": "triton", "endpoint": server.endpoint, "up": True,
                                               "reason": None, "discovered": False, "pid": None, "models": 1}


async def test_a_model_or_a_metric_that_disappears_leaves_no_stale_series(server, make_receiver):
    sink = InMemorySink()
    receiver = await make_receiver({"kind": "triton", "endpoint": server.endpoint}, consumer=sink)
    both = (("resnet50", "1"), ("bert", "3"))
    server.text = triton_page(10, pending=1, models=both)
    await receiver.scrape_all()
    assert {e["model"] for e in receiver.status()["models"]} == {"resnet50", "bert"}
    # bert is unloaded, and this Triton build stops exposing the pending count.
    server.text = triton_page(20, pending=None, models=both[:1])
    await receiver.scrape_all()
    assert [e["model"] for e in receiver.status()["models"]] == ["resnet50"]
    assert receiver.status()["servers"][0]["models"] == 1
    assert points(sink.batches[-1], "bert") == {}
    assert "ml.server.requests.pending" not in points(sink.batches[-1], "resnet50")
    # bert loaded again: counted from its new series, not from what it had before.
    server.text = triton_page(25, pending=None, models=both)
    await receiver.scrape_all()
    assert points(sink.batches[-1], "bert")["ml.predictions"].sum.data_points[0].as_int == 25
    assert points(sink.batches[-1], "resnet50")["ml.predictions"].sum.data_points[0].as_int == 5


async def test_a_page_of_another_kind_or_one_whose_metric_set_changed_is_up_0(server, make_receiver):
    receiver = await make_receiver({"kind": "triton", "endpoint": server.endpoint})
    server.text = vllm_page(10, 0, (10, 10, 10))
    await receiver.scrape_all()
    assert receiver.status()["servers"][0]["reason"] == ("the page is vllm's metrics, not triton's: check the "
                                                         "server's kind")
    server.text = triton_page(1)
    await receiver.scrape_all()
    server.text = "# TYPE python_info gauge\npython_info{version=\"3.11\"} 1\n"
    await receiver.scrape_all()
    status = receiver.status()
    assert status["servers"][0]["reason"].startswith("the server's metric set changed")
    assert status["models"][0]["health"]["status"] == "failing"


async def test_an_llm_servers_ttft_tokens_kv_cache_and_health(server, make_receiver):
    receiver = await make_receiver({"kind": "vllm", "endpoint": server.endpoint},
                                   health={"max_ttft_p95": "1s"})
    server.text = vllm_page(100, 0, (100, 100, 100))
    await receiver.scrape_all()
    server.text = vllm_page(200, 2, (150, 200, 200), kv=0.97)  # half the new requests waited 1-5 s
    await receiver.scrape_all()
    entry = only_model(receiver)
    assert entry["source"] == "vllm" and entry["version"] is None
    assert entry["ttft_p95_s"] == pytest.approx(1 + 4 * (95 - 50) / 50)
    assert entry["tokens"] == {"input": 10_000, "output": 1_000}
    assert entry["kv_cache_usage"] == 0.97
    assert entry["errors"] == 2 and entry["error_rate"] == pytest.approx(0.02)
    assert entry["health"] == {"status": "degraded",
                               "reasons": [f"time to first token p95 {entry['ttft_p95_s']:.3g}s > 1s"]}


async def test_an_error_rate_above_the_failing_threshold_is_failing(server, make_receiver):
    receiver = await make_receiver({"kind": "triton", "endpoint": server.endpoint})
    server.text = triton_page(0, 0)
    await receiver.scrape_all()
    server.text = triton_page(70, 30)
    await receiver.scrape_all()
    assert only_model(receiver)["health"] == {"status": "failing", "reasons": ["error rate 30.0% > 20%"]}
    server.text = triton_page(71, 30)  # one request in the interval: too few, the rate since first seen judges
    await receiver.scrape_all()
    assert only_model(receiver)["health"]["reasons"] == ["error rate 29.7% > 20%"]


async def test_the_status_entry_has_every_field_the_models_view_reads(server, make_receiver):
    receiver = await make_receiver({"kind": "triton", "endpoint": server.endpoint})
    server.text = triton_page(1)
    await receiver.scrape_all()
    assert set(only_model(receiver)) == {
        "model", "version", "source", "server", "up", "requests", "errors", "error_rate", "latency_p95_s",
        "latency_mean_s", "latency_from", "ttft_p95_s", "tpot_p95_s", "kv_cache_usage", "queue", "tokens", "gpu",
        "health"}
    json.dumps(receiver.status())


async def test_a_server_without_model_labels_is_named_by_its_info_else_by_its_endpoint(server, make_receiver):
    page = "# TYPE tgi_request_count counter\ntgi_request_count 10\n# TYPE tgi_queue_size gauge\ntgi_queue_size 1\n"
    server.text, server.info = page, {"model_id": "bigscience/bloom-560m"}
    receiver = await make_receiver({"kind": "tgi", "endpoint": server.endpoint})
    await receiver.scrape_all()
    assert only_model(receiver)["model"] == "bigscience/bloom-560m"
    server.info = None  # /info answers 404: the endpoint names the model
    other = await make_receiver({"kind": "tgi", "endpoint": server.endpoint})
    await other.scrape_all()
    assert only_model(other)["model"] == server.endpoint
    named = await make_receiver({"kind": "tgi", "endpoint": server.endpoint, "model": "my-llm"})
    await named.scrape_all()
    assert only_model(named)["model"] == "my-llm"


async def test_refused_batches_and_a_second_server_down_do_not_stop_the_others(server, make_receiver):
    sink = InMemorySink()
    sink.error = RefusedError("queue full")
    receiver = await make_receiver({"kind": "triton", "endpoint": server.endpoint},
                                   {"kind": "vllm", "endpoint": "127.0.0.1:1"}, consumer=sink)
    server.text = triton_page(1)
    await receiver.scrape_all()
    sink.error = None
    server.text = triton_page(3)
    await receiver.scrape_all()
    ups = {s["kind"]: s["up"] for s in receiver.status()["servers"]}
    assert ups == {"triton": True, "vllm": False}
    assert any(points(b, "resnet50").get("ml.predictions") for b in sink.batches)


async def test_in_a_running_agent_models_reach_the_status_api_on_schedule(server, tmp_path):
    server.text = triton_page(5)
    config = {
        "receivers": {"inference": {"collection_interval": "100ms", "timeout": "100ms",
                                    "servers": [{"kind": "triton", "endpoint": server.endpoint}]}},
        "exporters": {"file": {"path": str(tmp_path / "out.jsonl")}},
        "service": {"pipelines": {"metrics": {"receivers": ["inference"], "exporters": ["file"]}}},
    }
    async with running_vigil(config) as vigil:
        url = vigil.admin_url("/api/v1/status")

        def models():
            with urllib.request.urlopen(url, timeout=5) as response:
                body = json.load(response)
            found = json.dumps(body)
            return "resnet50" in found and '"up": true' in found

        assert await async_wait_for(lambda: server.scrapes >= 3)
        assert await asyncio.to_thread(models)


VLLM_SCRIPT = r'''
import http.server, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
page = sys.argv[sys.argv.index("--page") + 1]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = open(page, "rb").read()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
'''


async def test_a_server_found_among_the_hosts_processes_is_scraped_and_dropped_once_gone(tmp_path, make_receiver):
    # No vLLM runs here: a process run as vLLM's console script (`vllm serve MODEL --port P`) serves a page
    # built from vLLM's documented names; discovery finds it by its command line and port.
    script = tmp_path / "bin" / "vllm"
    script.parent.mkdir()
    script.write_text(VLLM_SCRIPT)
    (tmp_path / "page.txt").write_text(vllm_page(10, 0, (10, 10, 10)))
    port = free_port()
    process = subprocess.Popen([sys.executable, str(script), "serve", "llama", "--port", str(port),
                                "--page", str(tmp_path / "page.txt")])
    try:
        assert await async_wait_for(lambda: _listening(port))
        receiver = await make_receiver(discovery={"enabled": True})
        await receiver.discover_once()
        ours = [s for s in receiver.status()["servers"] if s["pid"] == process.pid]
        assert ours == [{"kind": "vllm", "endpoint": f"127.0.0.1:{port}", "up": False, "reason": "not scraped yet",
                         "discovered": True, "pid": process.pid, "models": 0}]
        await receiver.scrape_all()
        ours = next(s for s in receiver.status()["servers"] if s["pid"] == process.pid)
        assert ours["up"] and ours["models"] == 1
        assert any(m["model"] == "llama" and m["source"] == "vllm" for m in receiver.status()["models"])
    finally:
        process.kill()
        process.wait(10)
    await receiver.discover_once()
    assert not [s for s in receiver.status()["servers"] if s["pid"] == process.pid]


async def test_a_configured_server_that_discovery_finds_is_scraped_once_and_gains_its_pid(tmp_path, make_receiver):
    script = tmp_path / "bin" / "vllm"
    script.parent.mkdir()
    script.write_text(VLLM_SCRIPT)
    (tmp_path / "page.txt").write_text(vllm_page(10, 0, (10, 10, 10)))
    port = free_port()
    process = subprocess.Popen([sys.executable, str(script), "serve", "llama", "--port", str(port),
                                "--page", str(tmp_path / "page.txt")])
    try:
        assert await async_wait_for(lambda: _listening(port))
        receiver = await make_receiver({"kind": "vllm", "endpoint": f"localhost:{port}"}, discovery={"enabled": True})
        await receiver.discover_once()
        ours = [s for s in receiver.status()["servers"] if s["endpoint"].endswith(f":{port}")]
        assert len(ours) == 1 and ours[0]["pid"] == process.pid and ours[0]["discovered"] is False
    finally:
        process.kill()
        process.wait(10)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_gpu_use_and_energy_per_1000_tokens_of_a_server_that_owns_its_gpu(tmp_path, make_receiver, monkeypatch):
    # No GPU here: the NVML fake (tests/receivers/fake_pynvml.py) reports the discovered server's real pid.
    script = tmp_path / "bin" / "vllm"
    script.parent.mkdir()
    script.write_text(VLLM_SCRIPT)
    page = tmp_path / "page.txt"
    page.write_text(vllm_page(10, 0, (10, 10, 10)))
    port = free_port()
    process = subprocess.Popen([sys.executable, str(script), "serve", "llama", "--port", str(port),
                                "--page", str(page)])
    try:
        gpu = FakeGpu("GPU-0", compute_processes=[(process.pid, 3 * GiB)], energy_mj=1_000_000)
        FakeNvml([gpu]).install(monkeypatch)
        assert await async_wait_for(lambda: _listening(port))
        sink = InMemorySink()
        receiver = await make_receiver({"kind": "vllm", "endpoint": f"127.0.0.1:{port}"}, consumer=sink,
                                       discovery={"enabled": True})
        await receiver.discover_once()
        await receiver.scrape_all()
        gpu.energy_mj += 2_500
        page.write_text(vllm_page(20, 0, (20, 20, 20)))  # 100 more output tokens
        await receiver.scrape_all()
        entry = next(m for m in receiver.status()["models"] if m["server"] == f"127.0.0.1:{port}")
        assert entry["gpu"]["memory_bytes"] == 3 * GiB
        assert entry["gpu"]["energy_joules"] == 2.5
        assert entry["gpu"]["joules_per_1k_output_tokens"] == pytest.approx(25.0)
        assert entry["gpu"]["joules_per_1k_predictions"] == pytest.approx(250.0)
        # Discovery may find other servers on this host: the last batch of this one.
        ours = [b for b in sink.batches if any(as_dict(rm.resource.attributes).get("server.port") == port
                                               for rm in b.message.resource_metrics)]
        out = points(ours[-1], "llama")
        assert out["ml.server.gpu.memory.usage"].gauge.data_points[0].as_int == 3 * GiB
        assert out["ml.server.gpu.energy"].sum.data_points[0].as_double == 2.5
    finally:
        process.kill()
        process.wait(10)


async def test_values_that_are_not_numbers_are_left_out_not_sent(server, make_receiver):
    sink = InMemorySink()
    receiver = await make_receiver({"kind": "triton", "endpoint": server.endpoint}, consumer=sink)
    server.text = triton_page(10)
    await receiver.scrape_all()
    server.text = triton_page(20).replace(" 20\n", " NaN\n", 1) + \
        'nv_inference_pending_request_count{model="resnet50",version="1"} +Inf\n'
    await receiver.scrape_all()
    assert receiver.status()["servers"][0]["up"] is True
    out = points(sink.batches[-1], "resnet50")
    # The successes are unreadable: the request count (successes and failures together) is left out this
    # interval rather than read from the failures alone; the failures' (unchanged) count still goes.
    assert "ml.predictions" not in out and "ml.prediction.duration" not in out
    assert sum(p.as_int for p in out["ml.prediction.errors"].sum.data_points) == 0
    assert out["ml.server.requests.pending"].gauge.data_points[0].as_double == 0


async def test_two_models_of_one_server_stay_apart_on_the_agents_prometheus_endpoint(server):
    server.text = triton_page(5, models=(("resnet50", "1"), ("bert", "3")))
    config = {
        "receivers": {"inference": {"collection_interval": "100ms", "timeout": "100ms",
                                    "servers": [{"kind": "triton", "endpoint": server.endpoint}]}},
        "exporters": {"prometheus": {"endpoint": "127.0.0.1:0"}},
        "service": {"pipelines": {"metrics": {"receivers": ["inference"], "exporters": ["prometheus"]}}},
    }
    async with running_vigil(config) as vigil:
        assert await async_wait_for(lambda: server.scrapes >= 2)
        server.text = triton_page(9, models=(("resnet50", "1"), ("bert", "3")))
        assert await async_wait_for(lambda: server.scrapes >= 5)
        exporter = next(c for c in vigil.service.graph.exporters.values() if hasattr(c, "collect"))
        families = {f.name: f for f in exporter.collect()}
        totals = {s.labels.get("ml_model_name"): s.value for s in families["ml_predictions"].samples
                  if s.name == "ml_predictions_total"}
        assert totals == {"resnet50": 4, "bert": 4}


async def test_a_restart_the_process_start_time_tells_counts_from_zero_even_past_the_old_value(server, make_receiver):
    # vLLM, SGLang and MLServer expose prometheus-client's process_start_time_seconds.
    sink = InMemorySink()
    receiver = await make_receiver({"kind": "vllm", "endpoint": server.endpoint}, consumer=sink)
    start = "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {}\n"
    server.text = vllm_page(100, 0, (100, 100, 100)) + start.format(1.7e9)
    await receiver.scrape_all()
    server.text = vllm_page(150, 0, (150, 150, 150)) + start.format(1.7e9)
    await receiver.scrape_all()
    # Restarted and already busier than before: 160 since the restart, not 10 more.
    server.text = vllm_page(160, 0, (160, 160, 160)) + start.format(1.7e9 + 600)
    await receiver.scrape_all()
    assert points(sink.batches[-1], "llama")["ml.predictions"].sum.data_points[0].as_int == 160
    assert points(sink.batches[-1], "llama")["gen_ai.server.time_to_first_token"].histogram.data_points[0].count == 160
    assert only_model(receiver)["requests"] == 50 + 160
