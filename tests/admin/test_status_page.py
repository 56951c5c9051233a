"""The status page in a real browser: Debian's Chromium, headless, driven over the DevTools protocol.

The page must load with no console errors or failed requests, draw a chart per
column, and show the drifted column as drifted, first (the page's other panels:
`test_page_panels.py`). A screenshot is kept in
the test's tmp dir (`status-page.png`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import subprocess
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from agent.admin import page
from agent.component import ComponentId
from agent.signals import Signal
from tests.admin.traffic import ml_vigil_config, prediction_spans
from tests.conftest import async_wait_for, debian_binary, free_port, running_vigil, stop_process
from tests.otlp_data import send_grpc


def chromium_binary() -> str:
    return debian_binary("chromium", "chromium", "chromium-browser", "google-chrome")


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        await self._ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self._ws.receive_json(), 30)
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def open(self, url: str, timeout: float = 30) -> None:
        """Go to `url` and wait until it has loaded; fails the test when it does not within `timeout`."""
        await self.call("Page.navigate", url=url)
        check = f"document.URL === {json.dumps(url)} && document.readyState"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (state := await self.evaluate(check)) != "complete":
            if loop.time() > deadline:
                pytest.fail(f"{url} did not load in {timeout}s (document: {state or 'not this URL yet'})")
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def browser(tmp_path: Path) -> AsyncIterator[DevTools]:
    port = free_port()
    log = open(tmp_path / "chromium.log", "wb")
    proc = subprocess.Popen(
        [chromium_binary(), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-extensions", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--mute-audio", "--hide-scrollbars", "--window-size=1280,1600",
         f"--remote-debugging-port={port}", "--remote-allow-origins=*",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "about:blank"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        async with aiohttp.ClientSession() as session:
            targets: list = []
            for _ in range(150):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                        targets = [t for t in await response.json() if t.get("type") == "page"]
                if targets or proc.poll() is not None:
                    break
                await asyncio.sleep(0.2)
            assert targets, f"chromium did not start:\n{(tmp_path / 'chromium.log').read_text()[-2000:]}"
            async with session.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                tools = DevTools(ws)
                for domain in ("Page", "Runtime", "Log", "Network"):
                    await tools.call(f"{domain}.enable")
                yield tools
    finally:
        stop_process(proc)
        log.close()


def problems(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, uncaught exceptions, failed requests and logged errors among DevTools events."""
    out = []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append(f"console: {params.get('args')}")
        elif method == "Runtime.exceptionThrown":
            out.append(f"exception: {params.get('exceptionDetails')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            out.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        elif method == "Network.loadingFailed":
            out.append(f"request failed: {params}")
    return out


async def test_the_status_page_shows_the_drifted_feature_first(tmp_path):
    async with running_vigil(ml_vigil_config(tmp_path)) as vigil:
        endpoint = vigil.grpc_endpoint()
        engine = vigil.service.graph.shared[ComponentId("ml")]
        await send_grpc(endpoint, Signal.TRACES, prediction_spans(400, seed=1))
        assert await async_wait_for(lambda: engine.status()["models"][0]["phase"] == "monitoring")
        await send_grpc(endpoint, Signal.TRACES, prediction_spans(400, seed=2, start=400, shift=25))
        assert await async_wait_for(lambda: engine.status()["models"][0]["windows_evaluated"] == 1)

        async with browser(tmp_path) as tools:
            await tools.open(vigil.admin_url("/"))
            facts = await tools.evaluate("""(() => {
                const features = [...document.querySelectorAll('.model .feature')];
                const age = document.querySelector('.feature[data-feature="ml.feature.age"]')
                         || document.querySelector('.feature[data-feature="age"]');
                return {
                  title: document.title,
                  charts: document.querySelectorAll('.feature svg.chart').length,
                  bars: [...document.querySelectorAll('.feature svg.chart path.r, .feature svg.chart rect.r')]
                        .filter(e => e.getBBox().width > 0).length,
                  features: features.map(f => [f.dataset.feature, f.dataset.drifted]),
                  ageDrifted: age && age.classList.contains('drifted'),
                  ageBadge: age && age.querySelector('.drifted-badge') !== null
                            && getComputedStyle(age.querySelector('.drifted-badge')).display !== 'none',
                  ageBorder: age && getComputedStyle(age).borderTopColor,
                  health: document.querySelector('.model h2 .badge').textContent,
                  components: document.querySelectorAll('tr.component').length,
                  external: [...document.querySelectorAll('[src],link[href]')]
                            .filter(e => !(e.src || e.href).startsWith('data:')).length,
                };
            })()""")
            shot = await tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            (tmp_path / "status-page.png").write_bytes(base64.b64decode(shot["data"]))
            await asyncio.sleep(0.2)
            await tools.evaluate("1")  # collect the events that came meanwhile
            found = problems(tools.events)

    assert found == [], found
    assert facts["title"] == "Vigil status"
    assert facts["external"] == 0
    names = [name for name, _ in facts["features"]]
    assert len(names) == facts["charts"] >= 3  # age, city, the predicted label
    assert facts["bars"] >= facts["charts"]  # each draws its reference
    assert facts["features"][0][1] == "true", facts["features"]  # drifted first
    assert "age" in facts["features"][0][0]
    assert facts["ageDrifted"] and facts["ageBadge"]
    assert facts["ageBorder"] == "rgb(217, 71, 59)"
    assert facts["health"] in ("failing", "degraded")
    assert facts["components"] == 4  # otlp, ml, file, file/metrics
    assert (tmp_path / "status-page.png").stat().st_size > 10_000
    print(f"screenshot: {tmp_path / 'status-page.png'}")


def test_the_page_escapes_what_apps_send():
    status = {"state": "running", "ready": True, "pipelines": {}, "components": {"processors": {"ml": {
        "state": "running", "status": {"models": [{
            "model": "<script>alert(1)</script>", "version": "1", "requests": 1, "windows_evaluated": 1,
            "reference": {"source": "warmup", "rows": 10},
            "drift": {"share": 0.0, "features": {"x'><b>": {
                "kind": "categorical", "tested": True, "drifted": False, "method": "jensen_shannon",
                "score": 0.0, "p_value": 1.0,
                "distribution": {"categories": ["<i>"], "reference": [1], "current": [1]}}}}}]}}}}}
    text = page.render(status)
    assert "<script>" not in text and "<i>" not in text and "x'><b>" not in text
    assert "&lt;script&gt;" in text


async def test_opening_a_page_that_never_finishes_loading_fails_the_test(tmp_path):
    from aiohttp import web

    answered, release = asyncio.Event(), asyncio.Event()

    async def stalls(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/html"})
        await response.prepare(request)
        await response.write(b"<!doctype html><html><body>half a page")
        answered.set()
        await release.wait()
        return response

    app = web.Application()
    app.router.add_get("/", stalls)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"
    try:
        async with browser(tmp_path) as tools:
            with pytest.raises(pytest.fail.Exception, match="did not load in 2s .document: loading"):
                await tools.open(url, timeout=2)
            assert answered.is_set()
    finally:
        release.set()
        await runner.cleanup()
