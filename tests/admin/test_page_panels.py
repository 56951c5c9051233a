"""The status page's panels in a real browser (Debian's Chromium, headless): a model getting worse over
its windows, the alerts firing, pending and silenced, the host and its GPUs; and a page of 10 model
versions x 50 columns within its weight. Screenshots are kept in each test's tmp dir."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from pathlib import Path
from typing import Any

import aiohttp

from agent.admin import models, page, report
from agent.alerts.matchers import Matcher
from agent.component import ComponentId
from agent.signals import Signal
from tests.admin import synthetic
from tests.admin.test_status_page import DevTools, browser, problems
from tests.admin.traffic import ml_vigil_config, prediction_spans
from tests.conftest import async_wait_for, free_port, otlp_receiver_config, running_vigil
from tests.otlp_data import send_grpc, send_span_batches
from tests.receivers.fake_pynvml import FakeNvml
from tests.receivers.test_nvml import two_gpus

MAX_PAGE_BYTES = 300_000

PAGE_FACTS = """(() => {
  const text = e => e ? e.textContent.trim() : null;
  return {
    overall: document.querySelector('#overall').dataset.health,
    header: text(document.querySelector('header h1')),
    alerts: [...document.querySelectorAll('#alerts tr.alert')].map(r => ({
        state: r.dataset.state, rule: r.dataset.rule, severity: r.dataset.severity,
        summary: text(r.querySelector('.summary'))})),
    gpus: [...document.querySelectorAll('#host tr.gpu')].map(r => [...r.cells].map(c => text(c))),
    cpu: text(document.querySelector('#host [data-value=cpu]')),
    models: [...document.querySelectorAll('.model')].map(m => ({
        model: m.dataset.model,
        panels: [...m.querySelectorAll('.panel')].map(p => [p.dataset.panel,
            [...p.querySelectorAll('svg.chart path.l')].filter(l => (l.getAttribute('d') || '').length > 3).length]),
        columns: [...m.querySelectorAll('tr.column')].map(r => [r.dataset.feature, r.classList.contains('drifted')]),
        sparks: m.querySelectorAll('tr.column svg.spark path').length,
        features: [...m.querySelectorAll('.feature')].map(f => f.dataset.feature),
        lastWindow: [text(m.querySelector('.last-window')), m.querySelector('.last-window span').title],
        axisLabels: [...m.querySelectorAll('.feature svg.chart text')].map(t => t.textContent),
    })),
    scripts: document.querySelectorAll('script').length,
    external: [...document.querySelectorAll('[src],link[href]')]
              .filter(e => !(e.src || e.href).startsWith('data:')).length,
  };
})()"""


async def look(tools: DevTools, url: str, shot: Path) -> tuple[dict[str, Any], list[str]]:
    """Open `url`, read the page's facts, keep a screenshot; the facts and the browser's problems."""
    await tools.open(url)
    facts = await tools.evaluate(PAGE_FACTS)
    image = await tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    shot.write_bytes(base64.b64decode(image["data"]))
    await asyncio.sleep(0.2)
    await tools.evaluate("1")  # collect the events that came meanwhile
    return facts, problems(tools.events)


def panels_config(tmp: Path) -> dict[str, Any]:
    config = ml_vigil_config(tmp)
    config["processors"]["ml"]["interval"] = "1s"
    config["receivers"]["hostmetrics"] = {"collection_interval": "100ms", "initial_delay": "0s",
                                          "scrapers": {"cpu": {}, "memory": {}}}
    config["receivers"]["nvml"] = {"collection_interval": "100ms", "initial_delay": "0s", "xid_events": False}
    share = {"metric": "ml.model.drift.share", "group_by": ["ml.model.name"], "op": ">", "threshold": 0}
    config["processors"]["alerts"] = {"evaluation_interval": "100ms", "rules": [
        {"name": "ModelDrifted", **share, "severity": "critical", "summary": "columns of <fraud> drifted"},
        {"name": "DriftedForAnHour", **share, "for": "1h", "severity": "warning", "summary": "drift for an hour"},
        {"name": "DriftKnown", **share, "severity": "info", "summary": "a known drift"}]}
    config["service"]["pipelines"]["metrics"] = {"receivers": ["ml", "hostmetrics", "nvml"], "processors": ["alerts"],
                                                 "exporters": ["file/metrics"]}
    return config


async def test_the_page_shows_the_model_getting_worse_its_alerts_and_the_gpus(tmp_path, monkeypatch):
    FakeNvml(two_gpus()).install(monkeypatch)
    async with running_vigil(panels_config(tmp_path)) as vigil:
        endpoint = vigil.grpc_endpoint()
        shared = vigil.service.graph.shared
        engine, alerts = shared[ComponentId("ml")], shared[ComponentId("alerts")]
        await alerts.add_silence((Matcher.parse('alertname="DriftKnown"'),), time.time() + 3600,
                                 created_by="test", comment="known")
        await send_grpc(endpoint, Signal.TRACES, prediction_spans(400, seed=1))
        assert await async_wait_for(lambda: engine.status()["models"][0]["phase"] == "monitoring")
        for i, shift in enumerate((0, 25)):
            await send_grpc(endpoint, Signal.TRACES, prediction_spans(400, seed=2 + i, start=400 * (i + 1),
                                                                      shift=shift))
            assert await async_wait_for(lambda: engine.status()["models"][0]["windows_evaluated"] == i + 1)
        assert await async_wait_for(lambda: len({a["rule"] for a in alerts.alerts()}) == 3, timeout=15)
        assert await async_wait_for(lambda: engine.status()["models"][0]["history"]["intervals"], timeout=15)

        async with browser(tmp_path) as tools:
            facts, found = await look(tools, vigil.admin_url("/"), tmp_path / "status-page-panels.png")

    assert found == [], found
    assert facts["scripts"] == 0 and facts["external"] == 0
    assert facts["overall"] in ("failing", "degraded") and facts["overall"] in facts["header"]
    states = [(a["state"], a["rule"], a["severity"]) for a in facts["alerts"]]
    assert states == [("firing", "ModelDrifted", "critical"), ("pending", "DriftedForAnHour", "warning"),
                      ("silenced", "DriftKnown", "info")], states
    assert facts["alerts"][0]["summary"] == "columns of <fraud> drifted"  # escaped, shown as written
    assert [g[:3] for g in facts["gpus"]] == [["0", "NVIDIA H100 80GB HBM3", "50.0%"],
                                              ["1", "NVIDIA A100-SXM4-40GB", "97.0%"]]
    assert facts["gpus"][1][5] == "70 °C" and facts["gpus"][1][7] == "399 W"
    assert facts["cpu"].endswith("%")
    (model,) = facts["models"]
    panels = dict(model["panels"])
    assert panels["drift"] == 1 and panels["latency"] == 3 and panels["throughput"] == 1 and panels["errors"] == 1
    assert model["columns"][0] == ["age", True]  # drifted first
    drifted = [d for _, d in model["columns"]]
    assert drifted == sorted(drifted, reverse=True) and not drifted[-1]  # city did not move
    assert model["sparks"] == len(model["columns"])
    assert model["features"][0] == "age"
    assert model["lastWindow"][0].endswith("s ago") and model["lastWindow"][1].endswith(" UTC")
    assert any(label.replace(".", "").isdigit() for label in model["axisLabels"])  # value axes
    assert "paris" in model["axisLabels"]  # category names on the categorical chart
    assert (tmp_path / "status-page-panels.png").stat().st_size > 20_000
    print(f"screenshot: {tmp_path / 'status-page-panels.png'}")


async def test_ten_models_of_fifty_columns_stay_within_the_page_weight(tmp_path):
    status, health, alerts = synthetic.status(models=10, features=50)
    text = page.render(status, health, alerts, now=synthetic.NOW)
    assert len(text.encode()) <= MAX_PAGE_BYTES, len(text.encode())
    (tmp_path / "page.html").write_text(text)
    async with browser(tmp_path) as tools:
        facts, found = await look(tools, (tmp_path / "page.html").as_uri(), tmp_path / "status-page-large.png")

    assert found == [], found
    assert facts["scripts"] == 0  # the alert summaries' <script> and the names' markup are text
    assert len(facts["models"]) == 10
    assert [m["model"] for m in facts["models"][:5]] == ["model-0", "model-2", "model-4", "model-6", "model-8"]
    for m in facts["models"]:
        assert len(m["columns"]) == 51 and len(m["features"]) == page.DETAIL
        drifted = [d for _, d in m["columns"]]
        assert drifted == sorted(drifted, reverse=True)  # drifted first
        assert {"drift", "latency", "throughput", "errors", "confidence", "performance", "multivariate"} <= \
            {name for name, _ in m["panels"]}
    assert "city <0> & 'co'" in [c for c, _ in facts["models"][0]["columns"]]
    assert len(facts["alerts"]) == 12 and facts["alerts"][0]["state"] == "firing"
    assert facts["alerts"][-1]["state"] == "silenced"
    assert len(facts["gpus"]) == 8


ALERT_FACTS = """(() => ({
  pageWidth: document.documentElement.scrollWidth,
  alertsWidth: document.querySelector('#alerts table').getBoundingClientRect().width,
  since: [...document.querySelectorAll('#alerts tr.alert td.since')].map(c => {
      const span = c.querySelector('span');
      return [c.textContent, span.title, span.getClientRects().length];
  }),
  summaryLines: [...document.querySelectorAll('#alerts tr.alert td.summary')].map(c => {
      return Math.round(c.getBoundingClientRect().height / parseFloat(getComputedStyle(c).lineHeight));
  }),
}))()"""


async def test_the_alerts_fit_a_laptop_screen(tmp_path):
    """At 1000 px the alerts table does not scroll sideways: "since" is one line (the full time is its
    tooltip) and a long summary wraps."""
    status, health, alerts = synthetic.status(models=1, features=3, gpus=0, alerts=4)
    for a in alerts[0]["alerts"]:
        a["annotations"]["summary"] = ("the drift share of model-7's columns went past the threshold in the last "
                                       "three windows; look at age and income first, then the upstream feature job")
    (tmp_path / "page.html").write_text(page.render(status, health, alerts, now=synthetic.NOW))
    async with browser(tmp_path) as tools:
        await tools.call("Emulation.setDeviceMetricsOverride", width=1000, height=900, deviceScaleFactor=1,
                         mobile=False)
        await tools.open((tmp_path / "page.html").as_uri())
        facts = await tools.evaluate(ALERT_FACTS)
        image = await tools.call("Page.captureScreenshot", format="png")
        (tmp_path / "alerts-1000px.png").write_bytes(base64.b64decode(image["data"]))
        await tools.evaluate("1")
        found = problems(tools.events)

    assert found == [], found
    assert facts["pageWidth"] <= 1000 and facts["alertsWidth"] <= 1000 - 2 * 24, facts
    firing = [s for s in facts["since"] if s[0] == "5m0s ago"]  # fired_at: 300 s before the page's time
    assert firing and all(title.endswith(" UTC") and lines == 1 for _, title, lines in facts["since"]), facts
    assert max(facts["summaryLines"]) >= 2, facts  # the summary wraps instead
    print(f"screenshot: {tmp_path / 'alerts-1000px.png'}")


def test_the_page_renders_what_it_is_given_without_the_newer_parts():
    """A status without history, window bins, alerts or host values (an older engine, no such component)."""
    status, health, _ = synthetic.status(models=1, features=3, gpus=0)
    entry = status["components"]["processors"]["ml"]["status"]["models"][0]
    for key in ("history", "multivariate", "exemplars", "latency_seconds"):
        del entry[key]
    for f in entry["drift"]["features"].values():
        f["distribution"].pop("window", None)
        f["distribution"].pop("range", None)
    del status["components"]["receivers"]
    text = page.render(status, health, None)
    assert "<section id=alerts" not in text and "<section id=host" not in text
    assert text.count("class=panel ") >= 4 and "no data yet" in text
    empty = page.render({"state": "starting", "ready": False, "components": {}, "pipelines": {}})
    assert "No predictions seen yet" in empty and "no model seen yet" in empty


def test_before_the_first_interval_ends_the_panels_show_the_current_one():
    """The header already gives p50 and the error rate: the panels show them too, not "no data yet"."""
    status, health, _ = synthetic.status(models=1, features=3, gpus=0)
    entry = status["components"]["processors"]["ml"]["status"]["models"][0]
    entry["history"]["intervals"] = []
    entry["recent"] = {"requests": 150, "errors": 3, "error_rate": 0.02}
    entry["latency_seconds"] = {"p50": 0.021, "p95": 0.055, "p99": 0.1}
    text = page.render(status, health, None, now=synthetic.NOW)
    panels = {kind: text.split(f"data-panel={kind}>", 1)[1].split("</div>", 1)[0]
              for kind in ("latency", "throughput", "errors")}
    for kind in ("latency", "errors"):
        assert "no data yet" not in panels[kind] and re.search(r"class='l l0' d='M\d+ \d+m-2 0h4'", panels[kind])
    assert "100ms" in panels["latency"] and "2.0%" in panels["errors"]  # the y axes reach the current values
    assert "first interval not over yet: 150 requests so far" in panels["throughput"]
    # Nothing seen yet: nothing to show.
    entry["recent"] = {"requests": 0, "errors": 0, "error_rate": None}
    entry["latency_seconds"] = {"p50": None, "p95": None, "p99": None}
    empty = page.render(status, health, None, now=synthetic.NOW)
    assert empty.count("no data yet") >= 3 and "first interval" not in empty


def test_learning_the_reference_is_a_note_beside_an_ok_verdict_not_a_red_reason():
    status, _, _ = synthetic.status(models=2, features=3, gpus=0)
    snapshot = status["components"]["processors"]["ml"]["status"]
    drifting, learning = snapshot["models"]
    learning.update(phase="learning", reference=None, drift=None, warmup={"rows": 150, "needed": 300})
    health = {(m["model"], m["version"]): models.version_health(m, snapshot) for m in (learning, drifting)}
    assert health[("model-1", "1")]["status"] == "ok" and health[("model-0", "0")]["status"] == "failing"
    text = page.render(status, health, None, now=synthetic.NOW)
    card = text.split("data-model='model-1'", 1)[1].split("<div class=model ", 1)[0]
    assert "<div class=note>learning the reference (150 of 300 predictions)" in card and "class=reason" not in card
    other = text.split("data-model='model-0'", 1)[1].split("<div class=model ", 1)[0]
    assert "<div class=reason>" in other  # what makes a verdict worse stays red


async def test_a_persistent_queue_shows_what_it_holds_on_the_page_and_in_vigil_status(tmp_path):
    """A file_storage queue has no request capacity, only bytes on disk: its row says what it holds."""
    backend = f"127.0.0.1:{free_port()}"  # nothing listens: what is sent waits in the disk queue
    exporter = {"endpoint": backend, "tls": {"insecure": True}, "timeout": "1s"}
    config = {
        "extensions": {"file_storage/queues": {"directory": str(tmp_path)}},
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "exporters": {"otlp/disk": {**exporter, "sending_queue": {"storage": "file_storage/queues"},
                                    "retry_on_failure": {"initial_interval": "50ms", "max_interval": "200ms"}},
                      "otlp/memory": {**exporter, "retry_on_failure": {"enabled": False}}},
        "service": {"extensions": ["file_storage/queues"],
                    "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp/disk", "otlp/memory"]}}},
    }

    async def queues(session: aiohttp.ClientSession) -> dict[str, tuple[str, str]]:
        """Per exporter, its queue as the status page's components table and `vigil status` show it."""
        async with session.get(vigil.admin_url("/")) as response:
            text = await response.text()
        async with session.get(vigil.admin_url("/api/v1/status")) as response:
            lines = {line.split()[0]: line for line in report.render(await response.json()).splitlines()
                     if line.startswith("otlp/")}
        rows = re.findall(r"<td>exporter</td><td>([^<]+)</td>.*?<td class=n>([^<]*)</td></tr>", text)
        return {name: (fill, lines.get(name, "")) for name, fill in rows}

    async with running_vigil(config) as vigil, aiohttp.ClientSession() as session:
        await send_span_batches(vigil.grpc_endpoint(), 3)
        for _ in range(200):  # until the three requests are on disk
            held = await queues(session)
            if held["otlp/disk"][0].startswith("3 ("):
                break
            await asyncio.sleep(0.05)
    fill, line = held["otlp/disk"]
    assert re.fullmatch(r"3 \(\d+(\.\d)? (B|KiB) of \d+(\.\d)? (MiB|GiB) on disk\)", fill), held
    assert line.endswith(fill)  # vigil status's QUEUE column says the same
    assert held["otlp/memory"][0] == "0/1000" and held["otlp/memory"][1].endswith("0/1000"), held
