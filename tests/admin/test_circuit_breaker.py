"""examples/circuit_breaker/: an app's breaker against a Vigil whose model drifts."""

from __future__ import annotations

import asyncio
import importlib.util
import socket

from agent.component import ComponentId
from agent.signals import Signal
from tests.admin.traffic import MODEL, ml_vigil_config, prediction_spans
from tests.conftest import async_wait_for, running_vigil
from tests.otlp_data import send_grpc
from tests.vigil_cli import REPO

spec = importlib.util.spec_from_file_location("breaker", REPO / "examples" / "circuit_breaker" / "breaker.py")
breaker_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(breaker_module)


def primary(x: float) -> str:
    return "model"


def fallback(x: float) -> str:
    return "fallback"


async def test_the_breaker_opens_when_the_model_fails_and_keeps_its_state_without_vigil(tmp_path):
    async with running_vigil(ml_vigil_config(tmp_path)) as vigil:
        breaker = breaker_module.ModelHealthBreaker(MODEL, vigil.admin_url(), interval=0)
        assert await asyncio.to_thread(breaker.call, primary, fallback, 1.0) == "model"  # not seen yet: 404
        engine = vigil.service.graph.shared[ComponentId("ml")]
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, prediction_spans(400, seed=1))
        assert await async_wait_for(lambda: engine.status()["models"][0]["phase"] == "monitoring")
        assert await asyncio.to_thread(breaker.call, primary, fallback, 1.0) == "model"
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, prediction_spans(400, seed=2, start=400, shift=25))
        assert await async_wait_for(lambda: engine.status()["models"][0]["windows_evaluated"] == 1)
        assert await asyncio.to_thread(breaker.call, primary, fallback, 1.0) == "fallback"
        assert breaker.status == "failing" and breaker.reasons
    # Vigil is gone: the breaker stays open rather than flapping back to the failing model.
    assert await asyncio.to_thread(breaker.call, primary, fallback, 1.0) == "fallback"


def test_an_unreachable_vigil_leaves_the_circuit_closed():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    breaker = breaker_module.ModelHealthBreaker(MODEL, f"http://127.0.0.1:{port}", interval=0)
    assert breaker.call(primary, fallback, 1.0) == "model"
