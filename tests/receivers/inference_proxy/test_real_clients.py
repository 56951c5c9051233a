"""The real `openai` client, instrumented by OpenLLMetry, against an OpenAI-compatible server, through Vigil.

The server is a stand-in (tests/servers/openai_standin.py): no real OpenAI-compatible server (vLLM,
SGLang, TGI, llama.cpp) runs on a CPU test machine within the test time. The client is the real one
(openai 3.57.0) with OpenLLMetry's real instrumentation (opentelemetry-instrumentation-openai 0.62.4) and
the OpenTelemetry SDK's OTLP/HTTP exporter, as an app would run them. Vigil runs in-process with the
`ml` processor; its metrics are read back from a `file` exporter after shutdown (one interval holds all).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any, AsyncIterator

import openai
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.conftest import otlp_receiver_config, read_json_lines, running_vigil
from tests.otlp_json_reading import attributes_of, items
from tests.servers.openai_standin import MODEL, REPLY, WORD_DELAY, openai_standin, prompt_tokens

PROMPTS = ["what is drift", "say four words please", "and now a longer question about tokens", "hi"]


def histograms(path: Path, name: str) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(resource attributes, point attributes, point) of every histogram point named `name` in a metrics file."""
    return [(resource, attributes_of(point.get("attributes")), point)
            for resource, _, metric in items(read_json_lines(path), "metrics") if metric["name"] == name
            for point in metric.get("histogram", {}).get("dataPoints", [])]


def vigil_config(tmp_path: Path, receivers: dict[str, Any]) -> dict[str, Any]:
    return {
        "receivers": receivers,
        "processors": {"ml": {"interval": "1h"}},  # written once, at shutdown
        "exporters": {"file/traces": {"path": str(tmp_path / "traces.json")},
                      "file/metrics": {"path": str(tmp_path / "metrics.json")}},
        "service": {"state_dir": str(tmp_path / "state"), "pipelines": {
            "traces": {"receivers": list(receivers), "processors": ["ml"], "exporters": ["file/traces"]},
            "metrics": {"receivers": ["ml"], "exporters": ["file/metrics"]}}},
    }


@contextlib.asynccontextmanager
async def instrumented_client(base_url: str, traces_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    """An AsyncOpenAI client whose calls OpenLLMetry traces to `traces_url`; flushed and uninstrumented on exit."""
    provider = TracerProvider(resource=Resource.create({"service.name": "chat-app"}))
    # A batch processor: its exporter posts from its own thread, never blocking the loop Vigil runs in.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url, timeout=10)))
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0) as client:
            yield client
    finally:
        instrumentor.uninstrument()
        assert await asyncio.to_thread(provider.force_flush, 30_000)
        await asyncio.to_thread(provider.shutdown)


async def chat_calls(client: openai.AsyncOpenAI) -> list[str]:
    """Two whole and two streamed chats (with usage) and one for an unknown model; the replies' texts."""
    texts = []
    for prompt in PROMPTS[:2]:
        reply = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}])
        texts.append(reply.choices[0].message.content)
    for prompt in PROMPTS[2:]:
        stream = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}],
                                                      stream=True, stream_options={"include_usage": True})
        texts.append("".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]))
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    return texts


def expected_input_tokens() -> int:
    return sum(prompt_tokens({"messages": [{"content": p}]}) for p in PROMPTS)


async def test_openllmetry_client_spans_become_genai_client_metrics(tmp_path: Path) -> None:
    async with openai_standin() as server:
        async with running_vigil(vigil_config(tmp_path, {"otlp": otlp_receiver_config(grpc=False)})) as vigil:
            async with instrumented_client(f"{server.url}/v1", vigil.http_url("/v1/traces")) as client:
                texts = await chat_calls(client)
    assert texts == [" ".join(REPLY)] * 4

    metrics = tmp_path / "metrics.json"
    usage = {a["gen_ai.token.type"]: (a, p) for _, a, p in histograms(metrics, "gen_ai.client.token.usage")}
    assert set(usage) == {"input", "output"}
    assert (int(usage["input"][1]["count"]), usage["input"][1]["sum"]) == (4, expected_input_tokens())
    assert (int(usage["output"][1]["count"]), usage["output"][1]["sum"]) == (4, 4 * len(REPLY))
    assert usage["input"][0]["gen_ai.response.model"] == MODEL
    durations = {a.get("error.type"): (a, p) for _, a, p in histograms(metrics, "gen_ai.client.operation.duration")}
    assert {k: int(p["count"]) for k, (_, p) in durations.items()} == {None: 4, "NotFoundError": 1}
    ok, _ = durations[None]
    assert (ok["gen_ai.request.model"], ok["gen_ai.provider.name"], ok["gen_ai.operation.name"]) == \
        (MODEL, "openai", "chat")
    # A streamed reply takes at least its words' delays; the client's duration covers the whole stream.
    assert durations[None][1]["sum"] >= 2 * len(REPLY) * WORD_DELAY


async def test_the_proxy_gives_server_metrics_for_the_real_client_and_passes_its_stream_through(
        tmp_path: Path) -> None:
    async with openai_standin() as server:
        receivers = {"otlp": otlp_receiver_config(grpc=False),
                     "inference_proxy/llm": {"endpoint": "127.0.0.1:0", "upstream": server.url,
                                             "protocol": "openai"}}
        async with running_vigil(vigil_config(tmp_path, receivers)) as vigil:
            proxy = f"http://127.0.0.1:{vigil.receiver('inference_proxy/llm').port}/v1"
            async with instrumented_client(proxy, vigil.http_url("/v1/traces")) as client:
                texts = await chat_calls(client)
    # Streamed and whole, the client gets what the server sent, through the proxy.
    assert texts == [" ".join(REPLY)] * 4

    spans = [(r, s) for r, _, s in items(read_json_lines(tmp_path / "traces.json"), "traces")]
    proxied = [s for r, s in spans if r.get("service.name") == "inference_proxy/llm"]
    assert len(proxied) == 5, json.dumps(spans)[:2000]
    metrics = tmp_path / "metrics.json"
    # The client's own spans still count as client calls; the proxy's as the server's requests.
    client_calls = {a.get("error.type"): int(p["count"])
                    for _, a, p in histograms(metrics, "gen_ai.client.operation.duration")}
    assert client_calls == {None: 4, "NotFoundError": 1}
    server_requests = {a.get("error.type"): p for _, a, p in histograms(metrics, "gen_ai.server.request.duration")}
    assert {k: int(p["count"]) for k, p in server_requests.items()} == {None: 4, "404": 1}
    assert server_requests[None]["sum"] >= 2 * len(REPLY) * WORD_DELAY
    # Time to first token comes from the two streams: after the first word's delay, before the whole stream.
    (first_token,) = [p for _, _, p in histograms(metrics, "gen_ai.server.time_to_first_token")]
    assert int(first_token["count"]) == 2
    assert WORD_DELAY * 2 <= first_token["sum"] < server_requests[None]["sum"]
    (per_token,) = [p for _, _, p in histograms(metrics, "gen_ai.server.time_per_output_token")]
    assert int(per_token["count"]) == 2
    # (e2e − ttft) / (4 − 1) per stream: at least the three later words' delays over three tokens each.
    assert per_token["sum"] >= 2 * WORD_DELAY * 0.9
