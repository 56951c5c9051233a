"""Model health for circuit breakers on served models' latency: `GET /api/v1/models/{name}/health` of a
running Vigil whose `inference` receiver scrapes a local aiohttp server (127.0.0.1, port 0) with vLLM's
exposition (its v0.10/v0.12 loggers.py names; vLLM needs a GPU, so the page is built from them) or
Triton's (v2.71.0's docs): time to first token and latency against the receiver's thresholds."""

from __future__ import annotations

from tests.admin.test_admin import get
from tests.admin.test_served_models import served, served_config
from tests.conftest import async_wait_for, running_vigil
from tests.receivers.inference.test_receiver import triton_page, vllm_page


async def test_a_slow_first_token_degrades_an_llm_and_a_fast_one_clears_it(tmp_path, server):
    server.text = vllm_page(10, 0, (10, 10, 10))
    async with running_vigil(served_config(tmp_path, ("vllm", server.endpoint))) as vigil:
        url = vigil.admin_url("/api/v1/models/llama/health")
        assert await async_wait_for(lambda: server.scrapes >= 2)  # the first scrape is the baseline
        server.text = vllm_page(40, 0, (10, 40, 40))  # the 30 new requests' first tokens took 1 to 5 s
        await served(vigil, "llama", health="degraded")
        status, body, _ = await get(url)
        assert status == 200 and body["status"] == "degraded", body
        (reason,) = body["reasons"]
        assert reason.startswith("time to first token p95 ") and reason.endswith("s > 2s"), reason
        # vLLM has no model version: the one version reads as "-".
        assert body["versions"] == {"-": {"receiver": "inference", "source": "vllm", "server": server.endpoint,
                                          "status": "degraded", "reasons": [reason]}}

        server.text = vllm_page(70, 0, (40, 70, 70))  # the next 30 all under a second
        await served(vigil, "llama", health="ok")
        status, body, _ = await get(url)
        assert (status, body["status"], body["reasons"]) == (200, "ok", [])


async def test_a_slow_triton_model_is_degraded_by_its_mean_latency(tmp_path, server):
    server.text = triton_page(100, 0)
    async with running_vigil(served_config(tmp_path, ("triton", server.endpoint))) as vigil:
        assert await async_wait_for(lambda: server.scrapes >= 2)
        server.text = triton_page(200, 0, duration_us=100 * 1_500_000)  # 100 requests, 1.5 s each
        await served(vigil, "resnet50", health="degraded")
        status, body, _ = await get(vigil.admin_url("/api/v1/models/resnet50/health"))
    assert status == 200 and body["status"] == "degraded", body
    assert body["reasons"] == ["mean latency 1.5s > 1s"]  # Triton's counters give a mean, no p95
