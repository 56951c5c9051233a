"""The forwarding path: what the client sends reaches the upstream as sent, what the upstream answers comes back.

The upstreams are local aiohttp stand-ins (tests/receivers/inference_proxy/upstreams.py).
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from yarl import URL

from agent.attributes import as_dict
from tests.conftest import async_wait_for, free_port
from tests.receivers.inference_proxy.proxy import running_proxy
from tests.receivers.inference_proxy.upstreams import started


@pytest.fixture
async def upstream():
    server = await started()
    yield server
    await server.stop()


async def test_method_path_query_headers_and_body_reach_the_upstream_untouched(upstream):
    async with running_proxy(upstream) as proxy, aiohttp.ClientSession(
            auto_decompress=False, skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding")) as client:
        body = b"\x00\x01 raw bytes, not JSON \xff"
        async with client.put(URL(proxy.url + "/echo?b=2&a=%2F1&a=3", encoded=True), data=body,
                              headers={"X-Custom": "kept", "Authorization": "Bearer t",
                                       "Content-Type": "application/x-thing", "Content-Encoding": "gzip",
                                       "Connection": "keep-alive, X-Hop", "X-Hop": "this hop only",
                                       "Keep-Alive": "timeout=5"}) as response:
            assert response.status == 200
            assert await response.read() == body
            assert response.headers["X-Upstream"] == "stand-in"
            assert response.headers["Set-Cookie"] == "a=1"
    method, path_qs, headers, received = upstream.requests[-1]
    assert (method, path_qs, received) == ("PUT", "/echo?b=2&a=%2F1&a=3", body)
    assert headers["X-Custom"] == "kept" and headers["Authorization"] == "Bearer t"
    assert headers["Content-Type"] == "application/x-thing" and headers["Content-Encoding"] == "gzip"
    assert headers["Content-Length"] == str(len(body))
    assert headers["Host"] == f"127.0.0.1:{upstream.port}"
    # Hop-by-hop headers, and those the Connection header names, stop at the proxy.
    assert "X-Hop" not in headers and "Keep-Alive" not in headers
    # The proxy adds nothing of its own.
    assert sorted(headers) == sorted(["Host", "X-Custom", "Authorization", "Content-Type", "Content-Encoding",
                                      "Content-Length"])
    assert proxy.count("vigil_inference_proxy_requests") == 1


async def test_a_chunked_request_body_is_streamed_through(upstream):
    async def parts():
        for i in range(5):
            yield f"part {i};".encode()

    async with running_proxy(upstream) as proxy, aiohttp.ClientSession() as client:
        async with client.post(proxy.url + "/echo", data=parts()) as response:
            assert await response.read() == b"".join(f"part {i};".encode() for i in range(5))


async def test_a_stream_reaches_the_client_chunk_by_chunk_as_the_upstream_sends_it(upstream):
    upstream.stream_gate = asyncio.Event()  # the upstream holds its second token until the client has the first
    async with running_proxy(upstream) as proxy, aiohttp.ClientSession() as client:
        async with client.post(proxy.url + "/v1/chat/completions",
                               json={"model": "m", "stream": True, "messages": []}) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            received = b""
            while b'"Hello"' not in received:  # the first token, with the upstream still waiting
                received += await asyncio.wait_for(response.content.readany(), 5)
            assert b"[DONE]" not in received
            upstream.stream_gate.set()
            received += await response.content.read()
    assert received.endswith(b"data: [DONE]\n\n")
    assert received.count(b"data: ") == 7  # role, 5 tokens, DONE: every event as the upstream sent it


async def test_an_upstream_that_is_down_is_502_and_counted():
    async with running_proxy(f"http://127.0.0.1:{free_port()}") as proxy, aiohttp.ClientSession() as client:
        async with client.post(proxy.url + "/v1/chat/completions", json={"model": "m"}) as response:
            assert response.status == 502
        assert proxy.count("vigil_inference_proxy_upstream_errors", reason="unreachable") == 1
        # The call failed as the client saw it: the model's error rate shows the outage.
        await proxy.sink.wait_for_items(1)
        [span] = proxy.sink.spans()
        assert as_dict(span.attributes)["error.type"] == "upstream_unreachable"


async def test_an_upstream_that_answers_too_late_is_504_and_counted(upstream):
    upstream.slow_seconds = 2.0
    async with running_proxy(upstream, upstream_timeout="200ms") as proxy, aiohttp.ClientSession() as client:
        async with client.get(proxy.url + "/slow") as response:
            assert response.status == 504
        assert proxy.count("vigil_inference_proxy_upstream_errors", reason="timeout") == 1


async def test_a_slow_upstream_within_the_timeout_is_waited_for(upstream):
    upstream.slow_seconds = 0.3
    async with running_proxy(upstream) as proxy, aiohttp.ClientSession() as client:
        async with client.get(proxy.url + "/slow") as response:
            assert (response.status, await response.text()) == (200, "late")


async def test_a_large_response_is_streamed_through_whole(upstream):
    size = 3 * 1024 * 1024
    async with running_proxy(upstream, max_observed_body_size=64 * 1024) as proxy, \
            aiohttp.ClientSession() as client:
        async with client.get(proxy.url + f"/big?size={size}") as response:
            assert response.headers["Content-Length"] == str(size)
            assert await response.read() == b"x" * size


async def test_a_huge_call_is_forwarded_whole_and_its_observation_skipped_and_counted(upstream):
    messages = [{"role": "user", "content": "y" * 100_000}]
    async with running_proxy(upstream, max_observed_body_size=10_000) as proxy, aiohttp.ClientSession() as client:
        async with client.post(proxy.url + "/v1/chat/completions",
                               json={"model": "m", "messages": messages}) as response:
            assert response.status == 200
            assert (await response.json())["choices"][0]["message"]["content"] == "Hello there, friend."
        assert json.loads(upstream.requests[-1][3])["messages"] == messages
        assert await async_wait_for(
            lambda: proxy.count("vigil_inference_proxy_observations_skipped", reason="too_large") == 1)
        assert proxy.sink.items == 0


async def test_malformed_json_is_forwarded_untouched_and_its_observation_skipped_and_counted(upstream):
    async with running_proxy(upstream) as proxy, aiohttp.ClientSession() as client:
        async with client.post(proxy.url + "/v1/completions", data=b'{"model": "m", "prompt": ',
                               headers={"Content-Type": "application/json"}) as response:
            assert response.status == 400  # the upstream's answer, passed on
            assert (await response.json())["error"]["message"] == "invalid JSON"
        assert upstream.requests[-1][3] == b'{"model": "m", "prompt": '
        assert await async_wait_for(
            lambda: proxy.count("vigil_inference_proxy_observations_skipped", reason="malformed") == 1)


async def test_a_client_that_goes_away_mid_stream_stops_the_upstream_and_is_counted(upstream):
    upstream.stream_gate = asyncio.Event()
    upstream.token_delay = 0.05
    async with running_proxy(upstream) as proxy:
        async with aiohttp.ClientSession() as client:
            response = await client.post(proxy.url + "/v1/chat/completions",
                                         json={"model": "m", "stream": True, "messages": []})
            await response.content.readany()
            response.close()  # the client hangs up before the end
        upstream.stream_gate.set()
        await asyncio.wait_for(upstream.stream_ended.wait(), 5)
        assert upstream.stream_aborted  # the upstream saw its client go: generation stops
        assert await async_wait_for(lambda: proxy.count("vigil_inference_proxy_observations_skipped",
                                                        reason="client_disconnected") == 1)
        # The proxy goes on serving.
        async with aiohttp.ClientSession() as client:
            async with client.post(proxy.url + "/v1/completions", json={"model": "m", "prompt": "hi"}) as response:
                assert response.status == 200


async def test_head_keeps_the_upstreams_content_length(upstream):
    async with running_proxy(upstream) as proxy, aiohttp.ClientSession() as client:
        async with client.head(proxy.url + "/echo") as response:
            assert response.status == 200
            assert response.headers["X-Echo-Method"] == "HEAD"


async def test_an_upstream_that_breaks_off_a_stream_breaks_off_the_clients_and_is_counted(upstream):
    async with running_proxy(upstream) as proxy, aiohttp.ClientSession() as client:
        async with client.post(proxy.url + "/v1/broken/chat/completions", json={"model": "m"}) as response:
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):  # as from the upstream itself
                await response.read()
        assert proxy.count("vigil_inference_proxy_upstream_errors", reason="broken") == 1
        assert proxy.receiver.status()["upstream"] == upstream.url
