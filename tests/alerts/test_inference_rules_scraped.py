"""The shipped rule pack fed by the real `inference` receiver: it scrapes local aiohttp servers
(127.0.0.1, port 0) serving Triton's and vLLM's exposition as their docs name it (Triton v2.71.0,
vLLM v0.10/v0.12 loggers.py: see tests/receivers/inference/test_triton.py, test_vllm.py; vLLM needs a
GPU, so its page is built from those names) and hands its OTLP metrics to the real alerts processor,
on a clock the test moves (the receiver's timestamps follow the same clock)."""

from __future__ import annotations

import pytest

from agent.alerts.config import AlertsConfig
from agent.alerts.engine import FIRING
from agent.alerts.processor import AlertsStage
from agent.component import ComponentId, Settings
from agent.receivers.inference.config import InferenceReceiverConfig
from agent.receivers.inference.receiver import InferenceReceiver
from agent.signals import Signal
from agent.telemetry import SelfTelemetry
from agent.receivers.inference import receiver as receiver_module
from tests.alerts.helpers import Clock
from tests.alerts.test_processor import make
from tests.alerts.test_rules import PACK
from tests.receivers.inference.test_receiver import Exposition, triton_page, vllm_page
from tests.sink import InMemorySink

SCRAPE = 15.0  # seconds between scrapes, as the evaluation interval


class ClockTime:
    """`time` for the receiver: its points are stamped by the test's clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def time_ns(self) -> int:
        return int(self._clock() * 1e9)


@pytest.fixture
async def servers():
    made = [Exposition(), Exposition()]
    for exposition in made:
        await exposition.start()
    yield made
    for exposition in made:
        await exposition.stop()


async def test_scraped_error_rate_and_a_full_kv_cache_fire_the_packs_rules(tmp_path, servers, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(receiver_module, "time", ClockTime(clock))
    engine = await make(AlertsConfig.model_validate({"evaluation_interval": "15s", "rule_files": [str(PACK)]}),
                        clock, tmp_path)
    triton, vllm = servers
    config = InferenceReceiverConfig.model_validate({"timeout": "1s", "servers": [
        {"kind": "triton", "endpoint": triton.endpoint}, {"kind": "vllm", "endpoint": vllm.endpoint}]})
    receiver = InferenceReceiver(config, Settings(ComponentId("inference"), SelfTelemetry()),
                                 {Signal.METRICS: AlertsStage(engine, InMemorySink(), engine._log)})
    await receiver.start()
    for task in receiver._tasks:  # scrapes are driven by hand, on the test's clock
        task.cancel()

    async def run(scrapes: int, failed_share: float, kv: float) -> None:
        for _ in range(scrapes):
            run.n += 1  # every scrape: 100 more Triton requests, 40 more vLLM ones (their TTFT under 1 s)
            run.failed += round(100 * failed_share)
            triton.text = triton_page(100 * run.n - run.failed, run.failed, pending=1)
            vllm.text = vllm_page(40 * run.n, 0, (40 * run.n, 40 * run.n, 40 * run.n), kv=kv)
            await receiver.scrape_all()
            await engine.tick()
            clock.advance(SCRAPE)

    def firing() -> dict[str, dict]:
        """The firing alerts of the pack's rules (its objectives' burn-rate rules: tests/alerts/test_slo.py)."""
        return {a["rule"]: a for a in engine.alerts(FIRING) if "slo" not in a["labels"]}

    run.n, run.failed = 0, 0
    try:
        await run(40, 0.0, 0.5)  # 10 healthy minutes
        assert receiver.status()["servers"][0]["up"] and receiver.status()["servers"][1]["up"]
        assert engine.alerts(FIRING) == []
        # 8 minutes: 10 % of Triton's requests fail (the 5 m share passes 5 % after 2.5 m, then holds for 5 m),
        # vLLM's KV cache is full.
        await run(32, 0.1, 0.97)
        alerts = firing()
        assert alerts.keys() == {"HighErrorRate", "KvCacheNearFull"}, alerts.keys()
        assert alerts["HighErrorRate"]["labels"]["service.name"] == "triton"
        assert alerts["HighErrorRate"]["annotations"]["summary"] == \
            "resnet50 1: 10.0% of predictions failed over 5m"
        assert alerts["KvCacheNearFull"]["annotations"]["summary"] == "llama on vllm: the KV cache is 97% full"
        await run(40, 0.0, 0.5)  # recovered: the failures leave the 5 m window
        assert firing() == {}
    finally:
        await receiver.shutdown()
        await engine.shutdown()
