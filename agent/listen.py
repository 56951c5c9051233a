"""Serving an aiohttp application on a `host:port` endpoint: how Vigil's own HTTP listeners start
(the admin endpoint, the metrics endpoint, `health_check`, the `prometheus` exporter)."""

from __future__ import annotations

from aiohttp import web

from agent.netconfig import split_host_port


async def listen(app: web.Application, endpoint: str, shutdown_timeout: float = 2,
                 reuse_port: bool = False) -> tuple[web.AppRunner, int]:
    """Serve `app` on `endpoint` (port 0: a free one); the runner, to clean up, and the port bound.

    An empty host listens on every interface. `reuse_port` lets a listener on another address of the
    same port (set it on both) bind beside this one. When binding fails (OSError for a port in use) what
    was set up is released before the error is raised."""
    host, port = split_host_port(endpoint)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host or None, port, reuse_port=reuse_port or None)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site._server.sockets[0].getsockname()[1]
