"""Served models in the models view: a running Vigil whose `inference` receiver scrapes a local aiohttp
server (127.0.0.1, port 0) serving Triton's exposition as its v2.71.0 docs name it (test_triton.py),
read through the real admin endpoint: `/api/v1/models` and `/api/v1/models/{name}/health`, as the
circuit breaker example reads it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.component import ComponentId
from agent.signals import Signal
from tests.admin.test_admin import get
from tests.admin.test_circuit_breaker import breaker_module, fallback, primary
from tests.admin.traffic import MODEL, ml_vigil_config, prediction_spans
from tests.conftest import async_wait_for, running_vigil
from tests.otlp_data import send_grpc
from tests.receivers.inference.test_receiver import triton_page, vllm_page


def served_config(tmp_path, *endpoints: tuple[str, str]) -> dict[str, Any]:
    """The ml processor on spans, as the admin tests run it, plus an inference receiver."""
    config = ml_vigil_config(tmp_path)
    config["receivers"]["inference"] = {
        "collection_interval": "100ms", "timeout": "100ms",
        "servers": [{"kind": kind, "endpoint": endpoint} for kind, endpoint in endpoints]}
    config["service"]["pipelines"]["metrics"]["receivers"].append("inference")
    return config


async def served(vigil, name: str, **wanted: Any) -> dict[str, Any]:
    """The served model's /api/v1/models entry once it has every `wanted` value."""
    found: dict[str, Any] = {}

    async def check() -> bool:
        _, body, _ = await get(vigil.admin_url("/api/v1/models"))
        for entry in body["models"]:
            if entry["model"] == name and entry.get("receiver"):
                found.clear()
                found.update(entry)
        return bool(found) and all(found.get(k) == v for k, v in wanted.items())

    for _ in range(100):
        if await check():
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name}: wanted {wanted}, the entry is {found}")


async def test_served_and_watched_models_are_listed_together_each_with_its_source(tmp_path, server):
    server.text = triton_page(100, 0, duration_us=100 * 2_000)
    async with running_vigil(served_config(tmp_path, ("triton", server.endpoint))) as vigil:
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, prediction_spans(50, seed=1))
        engine = vigil.service.graph.shared[ComponentId("ml")]
        assert await async_wait_for(lambda: engine.status()["models"] != [] and server.scrapes >= 2)
        server.text = triton_page(130, 0, duration_us=130 * 2_000)
        entry = await served(vigil, "resnet50", requests=30)
        _, body, _ = await get(vigil.admin_url("/api/v1/models"))

    watched = [m for m in body["models"] if m["model"] == MODEL]
    assert watched == [{"model": MODEL, "version": "3", "processor": "ml", "requests": 50, "errors": 0,
                        "health": "ok", "source": "spans"}]
    assert entry["version"] == "1" and entry["source"] == "triton" and entry["receiver"] == "inference"
    assert entry["server"] == server.endpoint and entry["up"] is True
    assert entry["errors"] == 0 and entry["health"] == "ok" and entry["reasons"] == []
    assert entry["latency_from"] == "mean" and entry["latency_mean_s"] == pytest.approx(0.002)
    assert entry["queue"] == 0 and entry["tokens"] is None
    for key in ("error_rate", "latency_p95_s", "ttft_p95_s", "tpot_p95_s", "kv_cache_usage", "gpu"):
        assert key in entry


async def test_an_llm_servers_ttft_tokens_and_kv_cache_reach_the_models_api(tmp_path, server):
    server.text = vllm_page(10, 0, (10, 10, 10), kv=0.3)
    async with running_vigil(served_config(tmp_path, ("vllm", server.endpoint))) as vigil:
        assert await async_wait_for(lambda: server.scrapes >= 2)  # the first scrape is the baseline
        server.text = vllm_page(40, 0, (10, 40, 40), kv=0.97)
        entry = await served(vigil, "llama", requests=30, kv_cache_usage=0.97)
    assert entry["source"] == "vllm"
    assert entry["tokens"] == {"input": 3000, "output": 300}
    assert 1.0 < entry["ttft_p95_s"] <= 5.0  # all 30 new requests' first tokens took 1 to 5 s


async def test_a_served_models_health_for_a_circuit_breaker_follows_its_errors_and_its_server(tmp_path, server):
    server.text = triton_page(100, 0)
    async with running_vigil(served_config(tmp_path, ("triton", server.endpoint))) as vigil:
        url = vigil.admin_url("/api/v1/models/resnet50/health")
        breaker = breaker_module.ModelHealthBreaker("resnet50", vigil.admin_url(), interval=0)
        assert await async_wait_for(lambda: server.scrapes >= 2)  # the first scrape is the baseline
        server.text = triton_page(200, 0)
        await served(vigil, "resnet50", requests=100)
        status, body, _ = await get(url)
        assert (status, body["status"], body["reasons"]) == (200, "ok", [])
        assert body["versions"] == {"1": {"receiver": "inference", "source": "triton", "server": server.endpoint,
                                          "status": "ok", "reasons": []}}
        assert await asyncio.to_thread(breaker.call, primary, fallback, 1.0) == "model"

        # 30 of the next 100 requests fail: above the receiver's failing error rate (20 %).
        server.text = triton_page(270, 30)
        await served(vigil, "resnet50", errors=30)
        status, body, _ = await get(url)
        assert status == 200 and body["status"] == "failing", body
        assert body["reasons"] == ["error rate 30.0% > 20%"]

        # Back to no errors, then the server goes away: failing, with why.
        server.text = triton_page(370, 30)
        await served(vigil, "resnet50", health="ok")
        assert await asyncio.to_thread(breaker.call, primary, fallback, 1.0) == "model"
        await server.stop()
        entry = await served(vigil, "resnet50", up=False)
        assert entry["health"] == "failing"
        status, body, _ = await get(url)
        assert status == 200 and body["status"] == "failing"
        assert body["reasons"][0].startswith("server down: ")
        assert await asyncio.to_thread(breaker.call, primary, fallback, 1.0) == "fallback"
        assert breaker.status == "failing"

        status, body, _ = await get(vigil.admin_url("/api/v1/models/unknown/health"))
        assert status == 404 and "unknown" in body["error"]


async def test_a_model_both_served_and_watched_gets_the_worst_verdict_of_the_two(tmp_path, server):
    """Its server's metrics and the predictions in spans (a proxy's, or the app's) name the same model."""
    server.text = triton_page(100, 0)
    async with running_vigil(served_config(tmp_path, ("triton", server.endpoint))) as vigil:
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, prediction_spans(50, seed=1, model="resnet50",
                                                                                version="1"))
        assert await async_wait_for(lambda: server.scrapes >= 2)
        server.text = triton_page(150, 50)  # half of the next 100 failed
        await served(vigil, "resnet50", errors=50)
        status, body, _ = await get(vigil.admin_url("/api/v1/models/resnet50/health"))
    assert status == 200 and body["status"] == "failing"
    assert body["versions"]["1"]["processor"] == "ml" and body["versions"]["1"]["status"] == "ok"
    served_verdict = body["versions"][f"1 ({server.endpoint})"]
    assert served_verdict["source"] == "triton" and served_verdict["status"] == "failing"
    assert f"version 1 ({server.endpoint}): error rate 50.0% > 20%" in body["reasons"]
