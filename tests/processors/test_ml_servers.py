"""The `ml` processor on inference servers' own spans: vLLM's and SGLang's `llm_request`, Triton's trace mode.

vLLM and SGLang need a GPU and cannot run here. Their spans are built with the real
OpenTelemetry SDK from the names in vllm-project/vllm@03b8a674 vllm/tracing.py
(`SpanAttributes`: a SERVER span named `llm_request`, latencies in seconds; SGLang sends
the same names, sgl-project/sglang@00ae9c15). Triton does run here, on CPU (the
`tritonserver` of PyPI's nvidia-pytriton, tests/servers/): its OpenTelemetry trace mode
sends its spans to Vigil over OTLP/HTTP as it would in production. An ensemble, which
the test model is not, is built with the SDK from the span structure of
triton-inference-server/server@v2.71.0 src/tracer.cc. Histograms are held to numpy on
the same spans through both readers: the wire scanner's, and the message reader alone
(all a Vigil built without a C compiler has).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from agent.component import ComponentId, Settings
from agent.ml.sources.otlp import Extractor
from agent.processors import ml
from agent.processors.ml.config import MlProcessorConfig
from agent.processors.ml.engine import MlEngine
from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry
from tests.conftest import async_wait_for, otlp_receiver_config, read_json_lines, running_vigil
from tests.ml.sources.test_wire_reader import both, same
from tests.otlp_json_reading import attributes_of, items
from tests.sink import InMemorySink

# The GenAI semantic conventions' advised bounds, open-telemetry/semantic-conventions@v1.41.1
# docs/gen-ai/gen-ai-metrics.md, copied here so the test does not read them from the code under test.
REQUEST_DURATION_BOUNDS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TTFT_BOUNDS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
TPOT_BOUNDS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5]
START = 1_700_000_000_000_000_000


# --- spans, as the servers send them ------------------------------------------------------------------------


@dataclass
class Request:
    """One request an LLM server served, as its `llm_request` span reports it."""

    server: str  # the service.name
    model: str  # gen_ai.response.model
    queue: float
    ttft: float
    e2e: float
    prompt_tokens: int
    completion_tokens: int
    failed: bool


def served(seed: int = 4) -> list[Request]:
    rng = np.random.default_rng(seed)
    out = []
    for server, model, n in (("vllm", "meta-llama/Llama-3.1-8B-Instruct", 60), ("sglang", "qwen2.5-7b", 40)):
        for i in range(n):
            queue = float(rng.exponential(0.02))
            ttft = queue + float(rng.lognormal(np.log(0.08), 0.5))
            completion = int(rng.integers(0, 400)) if i % 10 else i % 20 // 10  # some 0 and 1 token answers
            e2e = ttft + completion * float(rng.lognormal(np.log(0.03), 0.3))
            out.append(Request(server, model, queue, ttft, e2e, int(rng.integers(5, 3000)), completion,
                               failed=i % 17 == 3))
    return out


def sdk_spans(service: str, make) -> list:
    """The spans `make(tracer)` ends, as the real SDK records them for `service`."""
    recorded = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(recorded))
    make(provider.get_tracer(f"{service}.tracing"))
    provider.shutdown()
    return list(recorded.get_finished_spans())


def llm_request_spans(requests_: list[Request]) -> list:
    """vLLM's / SGLang's span per request: the names of vllm/tracing.py@03b8a674 SpanAttributes. The span
    ends 5 ms after e2e (the response is written after the last token), so a duration read from the span
    instead of e2e shows."""
    spans = []
    for server in dict.fromkeys(r.server for r in requests_):
        def make(tracer, server=server):
            for i, r in enumerate(q for q in requests_ if q.server == server):
                attributes = {
                    "gen_ai.response.model": r.model, "gen_ai.request.id": f"cmpl-{i}",
                    "gen_ai.request.max_tokens": 512, "gen_ai.request.temperature": 0.7, "gen_ai.request.top_p": 0.95,
                    "gen_ai.request.n": 1, "gen_ai.usage.prompt_tokens": r.prompt_tokens,
                    "gen_ai.usage.completion_tokens": r.completion_tokens, "gen_ai.latency.time_in_queue": r.queue,
                    "gen_ai.latency.time_to_first_token": r.ttft, "gen_ai.latency.e2e": r.e2e,
                    "gen_ai.latency.time_in_model_prefill": r.ttft - r.queue,
                    "gen_ai.latency.time_in_model_decode": r.e2e - r.ttft,
                    "gen_ai.latency.time_in_model_inference": r.e2e - r.queue,
                }
                arrival = START + i * 10**9
                span = tracer.start_span("llm_request", kind=SpanKind.SERVER, attributes=attributes,
                                         start_time=arrival)
                if r.failed:
                    span.set_status(Status(StatusCode.ERROR))
                span.end(end_time=arrival + round(r.e2e * 1e9) + 5_000_000)
        spans += sdk_spans(server, make)
    return spans


def client_call_spans() -> list:
    """An app's own GenAI call (OpenLLMetry-style CLIENT span): no gen_ai.latency.* attributes."""
    def make(tracer):
        span = tracer.start_span("chat gpt-4o", kind=SpanKind.CLIENT, start_time=START, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o", "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 30})
        span.end(end_time=START + 800_000_000)
    return sdk_spans("assistant", make)


def triton_ensemble_spans() -> list:
    """One request to an ensemble as Triton's trace mode spans it (src/tracer.cc@v2.71.0, all SERVER): the
    root `InferRequest`, a span per model named after it with triton.model_name/_version (int), the
    composing models' spans under the ensemble's, and a `compute` span under each composing model."""
    def make(tracer):
        root = tracer.start_span("InferRequest", kind=SpanKind.SERVER, start_time=START)
        with_root = _context(root)
        ensemble = tracer.start_span("pipeline", context=with_root, kind=SpanKind.SERVER, start_time=START + 10**5,
                                     attributes={"triton.model_name": "pipeline", "triton.model_version": 1,
                                                 "triton.trace_id": 1, "triton.trace_parent_id": 0})
        at = START + 2 * 10**5
        for k, (model, version, took) in enumerate((("preprocess", 3, 2_000_000), ("classifier", 7, 9_000_000))):
            step = tracer.start_span(model, context=_context(ensemble), kind=SpanKind.SERVER, start_time=at,
                                     attributes={"triton.model_name": model, "triton.model_version": version,
                                                 "triton.trace_id": 2 + k, "triton.trace_parent_id": 1})
            compute = tracer.start_span("compute", context=_context(step), kind=SpanKind.SERVER, start_time=at + 10**4)
            compute.end(end_time=at + took - 10**4)
            step.end(end_time=at + took)
            at += took
        ensemble.end(end_time=at + 10**5)
        root.end(end_time=at + 2 * 10**5)
    return sdk_spans("triton-inference-server", make)


def _context(span):
    from opentelemetry import trace

    return trace.set_span_in_context(span)


def batch_of(spans: list) -> Batch:
    return Batch.from_wire(Signal.TRACES, encode_spans(spans).SerializeToString())


# --- the engine, through one reader or the other -----------------------------------------------------------


@dataclass
class Points:
    """Every point the engine wrote: name -> [(resource attributes, point attributes, point)]."""

    by_name: dict[str, list[tuple[dict, dict, dict]]]

    def where(self, name: str, **attrs) -> list[dict]:
        return [p for _, a, p in self.by_name.get(name, []) if all(a.get(k) == v for k, v in attrs.items())]

    def attributes(self, name: str) -> list[dict]:
        return [a for _, a, _ in self.by_name.get(name, [])]


async def observe(tmp_path: Path, batches: list[Batch], reader: str) -> Points:
    config = MlProcessorConfig(interval="1h")  # one interval, written at shutdown
    sink = InMemorySink()
    engine = MlEngine(config, Settings(ComponentId("ml"), SelfTelemetry(), state_dir=tmp_path), {Signal.METRICS: sink})
    if reader == "message":  # as a Vigil built without the C scanner reads
        engine._extractor = Extractor(config.attributes, config.limits.max_features, use_scanner=False)
    else:
        assert all(Extractor().wire_reader.read(b) is not None for b in batches), "the scanner reads these"
    await engine.start()
    for batch in batches:
        engine.observe(batch)
    await engine.shutdown()
    by_name: dict[str, list] = defaultdict(list)
    for batch in sink.batches:
        for resource in MessageToDict(batch.message)["resourceMetrics"]:
            resource_attributes = attributes_of(resource["resource"].get("attributes"))
            for scope in resource["scopeMetrics"]:
                for metric in scope["metrics"]:
                    kind = next(k for k in ("gauge", "sum", "histogram") if k in metric)
                    for point in metric[kind]["dataPoints"]:
                        by_name[metric["name"]].append((resource_attributes, attributes_of(point.get("attributes")),
                                                        point))
    return Points(dict(by_name))


def assert_histogram(point: dict, values: list[float], bounds: list[float]) -> None:
    """`point` holds exactly `values`: count, sum (numpy's, on the same values in the same order), min,
    max, and per bound the number of values at or below it."""
    values_ = np.array(values, dtype=float)
    assert point["explicitBounds"] == bounds
    assert int(point["count"]) == values_.size
    assert point["sum"] == float(values_.sum())
    assert point["min"] == float(values_.min()) and point["max"] == float(values_.max())
    cumulative = np.cumsum([int(c) for c in point["bucketCounts"]])
    assert cumulative[:-1].tolist() == [int((values_ <= b).sum()) for b in bounds]


# --- vLLM and SGLang -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reader", ["wire", "message"])
async def test_llm_request_spans_give_the_server_histograms_numpy_gives(tmp_path, reader):
    sent = served()
    points = await observe(tmp_path, [batch_of(llm_request_spans(sent))], reader)
    for server, model in (("vllm", "meta-llama/Llama-3.1-8B-Instruct"), ("sglang", "qwen2.5-7b")):
        of = [r for r in sent if r.model == model]
        ok = [r for r in of if not r.failed]
        model_attrs = {"gen_ai.response.model": model}
        # Request duration from e2e (not the span's own duration), failed requests apart with error.type.
        (done,) = [p for _, a, p in points.by_name["gen_ai.server.request.duration"] if a == model_attrs]
        assert_histogram(done, [r.e2e for r in ok], REQUEST_DURATION_BOUNDS)
        (failed,) = points.where("gen_ai.server.request.duration", **model_attrs, **{"error.type": "_OTHER"})
        assert_histogram(failed, [r.e2e for r in of if r.failed], REQUEST_DURATION_BOUNDS)
        # Time to first token and per output token: successful requests only; TPOT for more than one token.
        (ttft,) = points.where("gen_ai.server.time_to_first_token", **model_attrs)
        assert_histogram(ttft, [r.ttft for r in ok], TTFT_BOUNDS)
        (tpot,) = points.where("gen_ai.server.time_per_output_token", **model_attrs)
        assert_histogram(tpot, [(r.e2e - r.ttft) / (r.completion_tokens - 1) for r in ok if r.completion_tokens > 1],
                         TPOT_BOUNDS)
        (queue,) = points.where("ml.server.queue.duration", **model_attrs)
        assert_histogram(queue, [r.queue for r in of], queue["explicitBounds"])
        assert {a["service.name"] for a, _, _ in points.by_name["gen_ai.server.time_to_first_token"]} >= {server}
    assert all(a == {"gen_ai.response.model": a["gen_ai.response.model"]}
               for a in points.attributes("gen_ai.server.time_to_first_token"))


async def test_server_requests_are_not_counted_as_client_calls(tmp_path):
    # The rule: a GenAI span carrying gen_ai.latency.e2e or .time_to_first_token is a request a server
    # served; it counts in gen_ai.server.* only. An app's own call (no such attribute) stays a client call.
    sent = served()
    points = await observe(tmp_path, [batch_of(llm_request_spans(sent) + client_call_spans())], "wire")
    (client,) = points.where("gen_ai.client.operation.duration")
    assert int(client["count"]) == 1 and client["sum"] == 0.8
    assert {a["gen_ai.token.type"]: int(p["count"]) for _, a, p in points.by_name["gen_ai.client.token.usage"]} == \
        {"input": 1, "output": 1}
    assert sum(int(p["count"]) for p in points.where("gen_ai.server.request.duration")) == len(sent)
    assert points.where("gen_ai.server.request.duration", **{"gen_ai.request.model": "gpt-4o"}) == []
    assert "ml.predictions" not in points.by_name  # neither is a prediction


async def test_a_server_span_without_e2e_takes_its_duration_from_the_span(tmp_path):
    # A span with time to first token but no e2e (as a proxy in front of a server may send) is still a
    # server request; its request duration is the span's own duration.
    def make(tracer):
        span = tracer.start_span("llm_request", kind=SpanKind.SERVER, start_time=START, attributes={
            "gen_ai.response.model": "m", "gen_ai.latency.time_to_first_token": 0.25,
            "gen_ai.usage.completion_tokens": 11})
        span.end(end_time=START + 1_250_000_000)
    points = await observe(tmp_path, [batch_of(sdk_spans("proxy", make))], "message")
    (duration,) = points.where("gen_ai.server.request.duration")
    assert_histogram(duration, [1.25], REQUEST_DURATION_BOUNDS)
    (tpot,) = points.where("gen_ai.server.time_per_output_token")
    assert_histogram(tpot, [(1.25 - 0.25) / 10], TPOT_BOUNDS)
    assert points.where("ml.server.queue.duration") == []  # none reported, none made up


def test_both_readers_read_server_spans_alike():
    batch = batch_of(llm_request_spans(served()) + client_call_spans() + triton_ensemble_spans())
    got, expected, reading = both(batch)
    assert reading is not None and same(got, expected)
    (vllm,) = [calls for calls in reading.genai if calls.service_name == "vllm"]
    assert all(vllm.server) and vllm.rows == 60


# --- Triton ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reader", ["wire", "message"])
async def test_triton_model_spans_are_predictions_of_their_model_and_nothing_else_is(tmp_path, reader):
    spans = triton_ensemble_spans()
    points = await observe(tmp_path, [batch_of(spans)], reader)
    counted = {(a["ml.model.name"], a["ml.model.version"]): int(p["asInt"]) for _, a, p in
               points.by_name["ml.predictions"]}
    # InferRequest and compute spans carry no model: they are no predictions.
    assert counted == {("pipeline", "1"): 1, ("preprocess", "3"): 1, ("classifier", "7"): 1}
    for span in spans:
        if span.name in ("preprocess", "classifier", "pipeline"):
            (latency,) = points.where("ml.prediction.duration", **{"ml.model.name": span.name})
            assert latency["sum"] == (span.end_time - span.start_time) / 1e9
    assert "ml.prediction.errors" not in points.by_name


@pytest.mark.parametrize("reader", ["wire", "message"])
async def test_an_apps_own_model_name_wins_over_tritons(tmp_path, reader):
    def make(tracer):
        for attributes in ({"ml.model.name": "fraud", "ml.model.version": "v2", "triton.model_name": "scorer",
                            "triton.model_version": 1},
                           {"ml.model.name": "", "triton.model_name": "scorer", "triton.model_version": 1,
                            "ml.model.version": "v9"}):
            tracer.start_span("predict", attributes=attributes, start_time=START).end(end_time=START + 10**6)
    points = await observe(tmp_path, [batch_of(sdk_spans("app", make))], reader)
    counted = {(a["ml.model.name"], a["ml.model.version"]) for a in points.attributes("ml.predictions")}
    # An empty ml.model.name is no name: the server's name and version (not the app's version) count.
    assert counted == {("fraud", "v2"), ("scorer", "1")}


async def test_a_triton_only_host_loads_the_ml_engine(tmp_path):
    holder = ml.FACTORY.create_shared(MlProcessorConfig(), Settings(ComponentId("ml"), SelfTelemetry(),
                                                                    state_dir=tmp_path), {})
    await holder.start()
    assert holder.engine is None
    holder.observe(batch_of(triton_ensemble_spans()))
    assert holder.engine is not None
    assert {m["model"] for m in holder.status()["models"]} == {"pipeline", "preprocess", "classifier"}
    await holder.shutdown()


async def test_real_triton_trace_mode_gives_per_model_traffic(tmp_path):
    from tests.servers.triton_server import run_triton

    config = {
        "receivers": {"otlp": otlp_receiver_config(grpc=False)},
        "processors": {"ml": {"interval": "1h"}},
        "exporters": {"file/traces": {"path": str(tmp_path / "traces.json")},
                      "file/metrics": {"path": str(tmp_path / "metrics.json")}},
        "service": {"state_dir": str(tmp_path / "state"), "pipelines": {
            "traces": {"receivers": ["otlp"], "processors": ["ml"], "exporters": ["file/traces"]},
            "metrics": {"receivers": ["ml"], "exporters": ["file/metrics"]}}},
    }
    n = 6
    async with running_vigil(config) as vigil:
        holder = vigil.service.graph.shared[ComponentId("ml")]
        with run_triton(tmp_path, traces_url=vigil.http_url("/v1/traces")) as triton:
            def infer() -> None:
                for i in range(n):
                    body = {"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32",
                                        "data": [i, 1.0, 2.0, 3.0]}]}
                    answer = requests.post(f"{triton.http_url}/v2/models/scorer/infer", json=body, timeout=30)
                    assert answer.status_code == 200, answer.text
            await asyncio.to_thread(infer)
            assert await async_wait_for(lambda: sum(m["requests"] for m in holder.status()["models"]) >= n,
                                        timeout=30), holder.status()
    models = {(a["ml.model.name"], a["ml.model.version"]): int(p["asInt"])
              for _, a, p in metric_points(tmp_path / "metrics.json", "ml.predictions")}
    assert models == {("scorer", "1"): n}
    # The latency is the model span's: REQUEST_START to REQUEST_END, as Triton sent it.
    model_spans = [s for r, _, s in items(read_json_lines(tmp_path / "traces.json"), "traces") if s["name"] == "scorer"]
    assert len(model_spans) == n
    (latency,) = [p for _, _, p in metric_points(tmp_path / "metrics.json", "ml.prediction.duration")]
    assert int(latency["count"]) == n
    assert latency["sum"] == pytest.approx(sum((int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"])) / 1e9
                                               for s in model_spans), rel=1e-12)


def metric_points(path: Path, name: str) -> list[tuple[dict, dict, dict]]:
    out = []
    for resource, _, metric in items(read_json_lines(path), "metrics"):
        if metric["name"] == name:
            kind = next(k for k in ("gauge", "sum", "histogram") if k in metric)
            out += [(resource, attributes_of(p.get("attributes")), p) for p in metric[kind]["dataPoints"]]
    return out



@pytest.mark.parametrize("reader", ["wire", "message"])
async def test_unusable_latencies_count_nowhere_and_server_series_are_bounded(tmp_path, reader):
    bad = [{"gen_ai.latency.e2e": "1.5"}, {"gen_ai.latency.e2e": -2.0, "gen_ai.latency.time_to_first_token": -1.0},
           {"gen_ai.latency.e2e": True, "gen_ai.latency.time_in_queue": float("nan")},
           {"gen_ai.latency.e2e": 0.5, "gen_ai.latency.time_to_first_token": 0.9,  # a first token after the last
            "gen_ai.usage.completion_tokens": 10}]

    def make(tracer):
        for attributes in bad:
            span = tracer.start_span("llm_request", kind=SpanKind.SERVER, start_time=START,
                                     attributes={"gen_ai.response.model": "m", **attributes})
            span.end(end_time=START + 2 * 10**9)
        for k in range(300):  # a model name per request: more series than genai.max_series (200)
            span = tracer.start_span("llm_request", kind=SpanKind.SERVER, start_time=START,
                                     attributes={"gen_ai.response.model": f"junk-{k}", "gen_ai.latency.e2e": 1.0})
            span.end(end_time=START + 10**9)
    points = await observe(tmp_path, [batch_of(sdk_spans("vllm", make))], reader)
    (duration,) = points.where("gen_ai.server.request.duration", **{"gen_ai.response.model": "m"})
    # A latency that is no finite number >= 0 is not reported: the request lasted its span (2 s), except the
    # last, whose e2e is usable.
    assert_histogram(duration, [2.0, 2.0, 2.0, 0.5], REQUEST_DURATION_BOUNDS)
    (ttft,) = points.where("gen_ai.server.time_to_first_token", **{"gen_ai.response.model": "m"})
    assert_histogram(ttft, [0.9], TTFT_BOUNDS)
    assert points.where("gen_ai.server.time_per_output_token") == []  # no negative time per token
    assert points.where("ml.server.queue.duration") == []
    assert len(points.where("gen_ai.server.request.duration")) == 200
