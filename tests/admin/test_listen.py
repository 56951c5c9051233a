"""`agent.listen`: how the admin endpoint, the metrics endpoint, health_check and the prometheus exporter
start listening, on a free port and on one already taken."""

from __future__ import annotations

import socket

import aiohttp
import pytest
from aiohttp import web

from agent.listen import listen


def hello_app() -> web.Application:
    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    return app


async def test_port_0_serves_on_the_port_it_was_given():
    runner, port = await listen(hello_app(), "127.0.0.1:0")
    try:
        assert port > 0
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/") as response:
            assert await response.text() == "hello"
    finally:
        await runner.cleanup()


async def test_a_taken_port_fails_with_the_address_and_releases_what_was_set_up():
    cleaned: list[web.Application] = []

    async def on_cleanup(app: web.Application) -> None:
        cleaned.append(app)

    app = hello_app()
    app.on_cleanup.append(on_cleanup)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"127.0.0.1.*{port}"):
            await listen(app, f"127.0.0.1:{port}")
    assert cleaned == [app]


async def test_an_endpoint_without_a_port_is_refused_before_anything_starts():
    with pytest.raises(ValueError, match="expected host:port"):
        await listen(hello_app(), "localhost")
