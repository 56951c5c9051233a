"""A notifier that cannot deliver is what an on-call must see: a running Vigil whose alert fires (on the
host's own memory metrics) toward a webhook nobody answers lists the failing notifier among its notices,
in the status API, on the status page and in `vigil status`; once the webhook answers, the notice goes."""

from __future__ import annotations

import html

import aiohttp
from aiohttp import web

from agent.admin import report
from tests.admin.test_admin import get
from tests.conftest import async_wait_for, free_port, running_vigil


def config(tmp_path, webhook_port: int) -> dict:
    return {
        "receivers": {"hostmetrics": {"collection_interval": "200ms", "initial_delay": "0s",
                                      "scrapers": {"memory": {}}}},
        "processors": {"alerts": {
            "evaluation_interval": "100ms",
            "rules": [{"name": "MemoryInUse", "metric": "system.memory.usage", "op": ">", "threshold": 0,
                       "severity": "warning", "summary": "memory in use"}],
            "notifiers": {"webhook/oncall": {"url": f"http://127.0.0.1:{webhook_port}/hook"}},
            "route": {"notifiers": ["webhook/oncall"], "group_wait": "0s", "group_interval": "200ms",
                      "repeat_interval": "1h"},
            "delivery": {"timeout": "1s", "retry_on_failure": {"initial_interval": "100ms", "max_interval": "200ms",
                                                               "max_elapsed_time": "1h"}},
        }},
        "exporters": {"debug": {}},
        "service": {"state_dir": str(tmp_path / "state"), "pipelines": {
            "metrics": {"receivers": ["hostmetrics"], "processors": ["alerts"], "exporters": ["debug"]}}},
    }


async def page(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url, headers={"Accept": "text/html"}) as response:
        return await response.text()


async def test_a_notifier_that_cannot_deliver_is_a_notice_until_it_can(tmp_path):
    port = free_port()
    async with running_vigil(config(tmp_path, port)) as vigil:
        status: dict = {}

        async def noticed() -> bool:
            status.update((await get(vigil.admin_url("/api/v1/status")))[1])
            return bool(status["notices"])

        assert await async_wait_for(noticed, timeout=20), status
        (notice,) = status["notices"]
        assert notice.startswith("notifier webhook/oncall cannot deliver: ") and "(retrying; 0 dropped" in notice
        assert "/hook" not in notice  # a URL's path may hold a secret
        assert f"<li>{html.escape(notice)}</li>" in await page(vigil.admin_url("/"))
        assert "note: notifier webhook/oncall cannot deliver:" in report.render(status)

        received = []
        app = web.Application()

        async def hook(request: web.Request) -> web.Response:
            received.append(await request.json())
            return web.Response(text="ok")

        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            assert await async_wait_for(lambda: received, timeout=20)

            async def cleared() -> bool:
                return not (await get(vigil.admin_url("/api/v1/status")))[1]["notices"]

            assert await async_wait_for(cleared, timeout=20)
        finally:
            await runner.cleanup()

