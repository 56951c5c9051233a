"""Fixtures of the admin tests: an inference server's metrics endpoint (aiohttp, 127.0.0.1, port 0)."""

from __future__ import annotations

import pytest

from tests.receivers.inference.test_receiver import Exposition


@pytest.fixture
async def server():
    exposition = Exposition()
    await exposition.start()
    try:
        yield exposition
    finally:
        await exposition.stop()
