"""Served models and their servers in `vigil status` and on the status page: a running Vigil whose
`inference` receiver scrapes one local Triton-shaped exposition (aiohttp, 127.0.0.1, port 0; the
names of Triton v2.71.0's docs) and one vLLM endpoint that nothing answers (a free port)."""

from __future__ import annotations


from aiohttp import web

from agent.admin import report
from tests.admin.test_admin import get
from tests.admin.test_served_models import served, served_config
from tests.admin.test_status_page import browser, problems
from tests.conftest import async_wait_for, free_port, running_vigil
from tests.receivers.inference.test_receiver import Exposition, triton_page


class BusyTriton(Exposition):
    """Triton with traffic: each scrape finds 10 more requests, 3 of them failed, 4 ms each, 3 waiting."""

    async def _metrics(self, request: web.Request) -> web.Response:
        n = self.scrapes + 1
        self.text = triton_page(7 * n, 3 * n, duration_us=10 * n * 4_000, pending=3)
        return await super()._metrics(request)


async def test_vigil_status_lists_served_models_with_their_source_and_the_servers_up_or_down(tmp_path):
    busy = BusyTriton()
    await busy.start()
    gone = f"127.0.0.1:{free_port()}"
    try:
        async with running_vigil(served_config(tmp_path, ("triton", busy.endpoint), ("vllm", gone))) as vigil:
            await served(vigil, "resnet50", health="failing")
            _, status, _ = await get(vigil.admin_url("/api/v1/status"))
    finally:
        await busy.stop()
    text = report.render(status)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), text
    header = lines.index(next(line for line in lines if line.startswith("SERVED MODEL")))
    assert lines[header].split() == ["SERVED", "MODEL", "VERSION", "SOURCE", "REQUESTS", "ERRORS", "LATENCY",
                                     "TTFT", "HEALTH"]
    # The last interval: 10 requests, 3 failed; no latency histogram: the mean of the counters, marked ~.
    row = lines[header + 1].split()
    assert row[:3] == ["resnet50", "1", "triton"] and row[5:] == ["30.0%", "~4ms", "-", "failing"], text
    assert int(row[3]) >= 20 and int(row[4]) == int(row[3]) * 3 // 10
    assert "  resnet50 1: queue 3" in lines
    assert "  resnet50 1: error rate 30.0% > 20%" in lines
    servers = lines.index(next(line for line in lines if line.startswith("SERVER ")))
    assert lines[servers].split() == ["SERVER", "ENDPOINT", "STATE", "MODELS", "FROM"]
    assert lines[servers + 1].split() == ["triton", busy.endpoint, "up", "1", "config"]
    assert lines[servers + 2].split() == ["vllm", gone, "down", "0", "config"]
    assert any(line.startswith(f"  vllm {gone} down: ") for line in lines), text


async def test_the_status_page_shows_served_models_and_a_down_server_with_its_reason(tmp_path, server):
    server.text = triton_page(100, 0)
    gone = f"127.0.0.1:{free_port()}"
    async with running_vigil(served_config(tmp_path, ("triton", server.endpoint), ("vllm", gone))) as vigil:
        assert await async_wait_for(lambda: server.scrapes >= 2)
        server.text = triton_page(200, 0)
        await served(vigil, "resnet50", requests=100)
        async with browser(tmp_path) as tools:
            await tools.open(vigil.admin_url("/"))
            facts = await tools.evaluate("""(() => ({
                served: [...document.querySelectorAll('#served tr.served')].map(r =>
                    [...r.querySelectorAll('td')].map(td => td.textContent)),
                servers: [...document.querySelectorAll('#served tr.server')].map(r =>
                    [r.dataset.kind, r.dataset.up, r.querySelector('.badge').textContent,
                     getComputedStyle(r.querySelector('.badge')).backgroundColor,
                     (r.querySelector('.reason') || {}).textContent || null]),
                scripts: document.querySelectorAll('script').length,
            }))()""")
            await tools.evaluate("1")  # collect the events that came meanwhile
            found = problems(tools.events)
    assert found == [], found
    assert facts["scripts"] == 0
    (row,) = facts["served"]
    assert row[:5] == ["resnet50", "1", "triton", server.endpoint, "100"]
    assert row[5].split()[0] == "0"
    assert row[-1] == "ok"
    (up, down) = facts["servers"]
    assert up[:3] == ["triton", "true", "up"] and up[4] is None
    assert down[:3] == ["vllm", "false", "down"] and down[3] == "rgb(253, 217, 215)"  # the failing colour
    assert down[4], "a down server says why"


def test_the_page_escapes_what_servers_send():
    """Model names and reasons come from a server's metrics page: escaped like everything else."""
    from agent.admin import page

    hostile = "<script>alert(1)</script>"
    status = {"state": "running", "ready": True, "pipelines": {}, "components": {"receivers": {"inference": {
        "state": "running", "status": {
            "servers": [{"kind": "triton", "endpoint": "127.0.0.1:1", "up": False, "reason": f"HTTP 500 {hostile}",
                         "discovered": False, "pid": None, "models": 1}],
            "models": [{"model": hostile, "version": "x'><b>", "source": "triton", "server": "127.0.0.1:1",
                        "up": False, "requests": 1, "errors": 0, "health": {"status": "failing",
                                                                             "reasons": [hostile]}}]}}}}}
    text = page.render(status)
    assert "<script>" not in text and "x'><b>" not in text
    # The name (its row's data-model and its cell), the model's reason, the server's reason.
    assert text.count("&lt;script&gt;") == 4
    assert "SERVED MODEL" in report.render(status)  # an entry with fields missing still renders
