"""What the proxy observes: OpenAI calls as GenAI spans, V2 calls as prediction spans, never at a request's cost.

The upstreams are local stand-ins speaking the documented APIs
(tests/receivers/inference_proxy/upstreams.py); the spans arrive in the shared
in-memory sink, which can also refuse or be slow as a pipeline would.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agent.attributes import as_dict
from agent.errors import RefusedError
from tests.conftest import async_wait_for
from tests.receivers.inference_proxy.proxy import running_proxy
from tests.receivers.inference_proxy.upstreams import started
from tests.sink import InMemorySink


@pytest.fixture
async def upstream():
    server = await started()
    yield server
    await server.stop()


async def call(url: str, path: str, body: dict, headers: dict | None = None) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as client:
        async with client.post(url + path, json=body, headers=headers) as response:
            return response.status, await response.read()


async def one_span(proxy) -> tuple[Span, dict]:
    await proxy.sink.wait_for_items(1)
    [span] = proxy.sink.spans()
    return span, as_dict(span.attributes)


async def test_a_chat_call_is_a_genai_server_span_with_vllms_names(upstream):
    async with running_proxy(upstream) as proxy:
        status, _ = await call(proxy.url, "/v1/chat/completions",
                               {"model": "llama", "messages": [], "max_tokens": 4, "temperature": 0.5})
        assert status == 200
        span, attrs = await one_span(proxy)
    assert (span.name, span.kind) == ("llm_request", Span.SPAN_KIND_SERVER)
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "llama" and attrs["gen_ai.response.model"] == "llama-served"
    assert (attrs["gen_ai.request.max_tokens"], attrs["gen_ai.request.temperature"]) == (4, 0.5)
    assert (attrs["gen_ai.usage.prompt_tokens"], attrs["gen_ai.usage.completion_tokens"]) == (7, 4)
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == upstream.port
    assert "gen_ai.latency.time_to_first_token" not in attrs  # not a stream: no first token to time
    e2e = attrs["gen_ai.latency.e2e"]
    assert 0 < e2e < 5
    assert span.end_time_unix_nano - span.start_time_unix_nano == pytest.approx(e2e * 1e9, abs=1000)
    assert "error.type" not in attrs and span.status.code == Status.STATUS_CODE_UNSET
    assert proxy.sink.batches[0].message.resource_spans[0].resource.attributes[0].value.string_value \
        == "inference_proxy/test"


async def test_a_stream_gives_time_to_first_token_and_its_final_usage(upstream):
    upstream.token_delay = 0.05  # each token 50 ms after the one before
    async with running_proxy(upstream) as proxy:
        await call(proxy.url, "/v1/chat/completions",
                   {"model": "llama", "messages": [], "stream": True, "stream_options": {"include_usage": True}})
        span, attrs = await one_span(proxy)
    # The first chunk (the role alone) is not a token; the first token comes 50 ms in, the fifth 250 ms.
    ttft, e2e = attrs["gen_ai.latency.time_to_first_token"], attrs["gen_ai.latency.e2e"]
    assert 0.04 < ttft < e2e and 0.24 < e2e
    assert (e2e - ttft) / (attrs["gen_ai.usage.completion_tokens"] - 1) >= 0.045  # the later tokens' delays
    assert (attrs["gen_ai.usage.prompt_tokens"], attrs["gen_ai.usage.completion_tokens"]) == (7, 5)
    assert attrs["gen_ai.response.finish_reasons"] == ["length"]
    assert attrs["gen_ai.response.model"] == "llama-served"


async def test_a_stream_without_a_usage_chunk_counts_no_tokens(upstream):
    async with running_proxy(upstream) as proxy:
        await call(proxy.url, "/v1/completions", {"model": "llama", "prompt": "hi", "stream": True})
        _, attrs = await one_span(proxy)
    assert attrs["gen_ai.operation.name"] == "text_completion"
    assert "gen_ai.latency.time_to_first_token" in attrs
    assert not any(name.startswith("gen_ai.usage.") for name in attrs)  # nothing guessed from the chunks


async def test_an_error_answer_is_a_failed_span_with_its_status_as_error_type(upstream):
    async with running_proxy(upstream) as proxy:
        status, body = await call(proxy.url, "/v1/chat/completions", {"model": "missing", "messages": []})
        assert status == 404 and b"model not found" in body
        span, attrs = await one_span(proxy)
    assert attrs["error.type"] == "404" and span.status.code == Status.STATUS_CODE_ERROR
    assert attrs["gen_ai.request.model"] == "missing"


async def test_a_stream_longer_than_the_limit_is_observed_from_its_first_and_last_chunks(upstream):
    upstream.token_delay = 0.01  # one chunk per event
    async with running_proxy(upstream, max_observed_body_size=300) as proxy:
        await call(proxy.url, "/v1/chat/completions",
                   {"model": "llama", "messages": [], "stream": True, "stream_options": {"include_usage": True}})
        _, attrs = await one_span(proxy)
        assert proxy.count("vigil_inference_proxy_observations_cut") == 1
    assert attrs["gen_ai.usage.completion_tokens"] == 5  # the usage chunk came last, in the kept tail
    assert "gen_ai.latency.time_to_first_token" in attrs


async def test_the_span_joins_the_clients_trace(upstream):
    trace_id, parent_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    async with running_proxy(upstream) as proxy:
        await call(proxy.url, "/v1/chat/completions", {"model": "llama", "messages": []},
                   headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
        span, _ = await one_span(proxy)
    assert (span.trace_id.hex(), span.parent_span_id.hex()) == (trace_id, parent_id)
    assert upstream.requests[-1][2]["traceparent"] == f"00-{trace_id}-{parent_id}-01"  # and is passed on


async def test_other_paths_are_forwarded_and_not_observed(upstream):
    async with running_proxy(upstream) as proxy:
        status, _ = await call(proxy.url, "/echo", {"model": "llama"})
        assert status == 200
        await asyncio.sleep(0.2)
        assert proxy.sink.calls == 0
        assert proxy.count("vigil_inference_proxy_observations_skipped") == 0


# -- V2 (Open Inference Protocol) -----------------------------------------------------------------------


def v2_request(rows: int) -> dict:
    return {"id": "req-7", "inputs": [{"name": "features", "datatype": "FP32", "shape": [rows, 3],
                                       "data": [float(i) for i in range(rows * 3)]}]}


async def test_a_v2_call_is_one_prediction_span_per_row_with_model_and_version_from_the_path(upstream):
    async with running_proxy(upstream, protocol="v2") as proxy:
        status, _ = await call(proxy.url, "/v2/models/fraud/versions/3/infer", v2_request(2))
        assert status == 200
        await proxy.sink.wait_for_items(2)
    spans = [as_dict(s.attributes) for s in proxy.sink.spans()]
    assert [(a["ml.model.name"], a["ml.model.version"]) for a in spans] == [("fraud", "3"), ("fraud", "3")]
    assert [a["ml.feature.features.0"] for a in spans] == [0.0, 3.0]
    assert [a["ml.prediction.score"] for a in spans] == pytest.approx([0.1, 0.4])
    assert [a["ml.prediction.id"] for a in spans] == ["req-7-0", "req-7-1"]
    first = proxy.sink.spans()[0]
    assert first.end_time_unix_nano > first.start_time_unix_nano  # the upstream call's duration


async def test_a_failed_v2_call_gives_failed_spans_with_its_features(upstream):
    async with running_proxy(upstream, protocol="v2") as proxy:
        status, _ = await call(proxy.url, "/v2/models/missing/infer", v2_request(1))
        assert status == 400
        span, attrs = await one_span(proxy)
    assert attrs["error.type"] == "400" and span.status.code == Status.STATUS_CODE_ERROR
    assert attrs["ml.model.name"] == "missing" and "ml.feature.features.0" in attrs


async def test_a_v2_body_that_is_not_a_payload_is_skipped_and_counted(upstream):
    async with running_proxy(upstream, protocol="v2") as proxy:
        async with aiohttp.ClientSession() as client:
            async with client.post(proxy.url + "/v2/models/fraud/infer", data=b"not json") as response:
                assert response.status == 400
        assert await async_wait_for(
            lambda: proxy.count("vigil_inference_proxy_observations_skipped", reason="malformed") == 1)
        assert proxy.sink.items == 0


# -- observation never costs a request ---------------------------------------------------------------------


async def test_a_refusing_pipeline_fails_no_request(upstream):
    sink = InMemorySink()
    sink.error = RefusedError("queue full")
    async with running_proxy(upstream, sink=sink) as proxy:
        for _ in range(5):
            status, body = await call(proxy.url, "/v1/chat/completions", {"model": "llama", "messages": []})
            assert status == 200 and b"Hello" in body
        assert await async_wait_for(lambda: proxy.count("vigil_receiver_refused_spans") == 5)


async def test_a_slow_pipeline_delays_no_request_and_what_overflows_the_queue_is_dropped_and_counted(upstream):
    sink = InMemorySink(delay=1.0)  # a pipeline taking a second a batch
    async with running_proxy(upstream, sink=sink, queue_size=2) as proxy:
        loop = asyncio.get_running_loop()
        for _ in range(10):
            started_at = loop.time()
            status, _ = await call(proxy.url, "/v1/chat/completions", {"model": "llama", "messages": []})
            assert status == 200
            assert loop.time() - started_at < sink.delay  # it did not wait for the pipeline
        dropped = proxy.count("vigil_inference_proxy_observations_dropped")
        assert 1 <= dropped <= 8
        assert proxy.receiver.status()["observations"]["dropped"] == dropped
        # What was queued still arrives; dropped + delivered = every call.
        await sink.wait_for_items(10 - dropped, timeout=10)
