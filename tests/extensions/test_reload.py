"""A reload applies changed extensions and telemetry endpoints, or fails and keeps the previous ones."""

from __future__ import annotations

import asyncio

import aiohttp

from agent import config as config_module
from agent.component import ComponentId
from tests.conftest import free_port, otlp_receiver_config, running_vigil


def _config(extensions: dict, metrics_address: str | None = None) -> dict:
    telemetry = {"metrics": {"address": metrics_address}} if metrics_address else {}
    return {"extensions": extensions,
            "receivers": {"otlp": otlp_receiver_config(http=False)}, "exporters": {"debug": {}},
            "service": {"extensions": list(extensions), "admin": {"endpoint": "127.0.0.1:0"}, "telemetry": telemetry,
                        "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}}}}


async def _status(url: str) -> int | None:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status
    except aiohttp.ClientConnectionError:
        return None


async def test_a_reload_adds_and_removes_extensions_and_moves_the_metrics_endpoint():
    first, second = free_port(), free_port()
    async with running_vigil(_config({"pprof": {}}, f"127.0.0.1:{first}")) as vigil:
        assert await _status(f"http://127.0.0.1:{first}/metrics") == 200
        port = free_port()
        result = await vigil.service.reload(config_module.from_dict(_config(
            {"health_check": {"endpoint": f"127.0.0.1:{port}"}}, f"127.0.0.1:{second}")))
        assert result["status"] == "reloaded", result
        assert list(vigil.service.extensions.running) == [ComponentId("health_check")]
        assert await _status(f"http://127.0.0.1:{port}/") == 200
        assert await _status(f"http://127.0.0.1:{second}/metrics") == 200
        assert await _status(f"http://127.0.0.1:{first}/metrics") is None


async def test_a_reload_whose_extension_cannot_start_fails_and_keeps_the_previous_one():
    port, taken = free_port(), free_port()
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", taken)
    try:
        async with running_vigil(_config({"health_check": {"endpoint": f"127.0.0.1:{port}"}})) as vigil:
            result = await vigil.service.reload(config_module.from_dict(_config(
                {"health_check": {"endpoint": f"127.0.0.1:{taken}"}})))
            assert result["status"] == "failed"
            assert result["problems"][0].startswith("cannot start extensions.health_check: ")
            assert await _status(f"http://127.0.0.1:{port}/") == 200  # the previous one answers again
    finally:
        blocker.close()
        await blocker.wait_closed()
