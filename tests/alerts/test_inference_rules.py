"""The shipped rule pack's inference-server rules, fed what the `inference` receiver sends: its own writer
(agent/receivers/inference/metrics.py, the code its scrapes go through) turns one vLLM-shaped model's
interval (vLLM's names as the receiver maps them, from vllm-project/vllm@005a810b vllm/v1/metrics/loggers.py;
vLLM needs a GPU, so it cannot run here) into OTLP metrics, which go through the real alerts processor
on a clock the test moves. Each rule fires while the server is in
trouble and resolves once it recovers; a healthy server fires nothing."""

from __future__ import annotations

from dataclasses import dataclass

from agent.alerts.config import AlertsConfig
from agent.alerts.engine import FIRING
from agent.alerts.processor import AlertsEngine, AlertsStage
from agent.metrics_builder import MetricsBuilder
from agent.ml import vocabulary as v
from agent.receivers.inference import metrics
from agent.receivers.inference.kinds.base import Histogram
from agent.receivers.inference.view import Delta
from tests.alerts.test_processor import make
from tests.alerts.test_rules import PACK
from tests.alerts.helpers import Clock
from tests.sink import InMemorySink

SCRAPE = 15.0  # seconds between scrapes, as the evaluation interval
SERVER = {v.SERVICE_NAME: "vllm", "service.instance.id": "127.0.0.1:8000", "server.address": "127.0.0.1",
          "server.port": 8000}
MODEL = {v.MODEL_NAME: "llama-3-8b"}  # vLLM has no model version


@dataclass
class Interval:
    requests: int = 100
    errors: int = 0
    duration_s: float = 1.28  # the upper bound of the bucket every request falls in
    ttft_s: float = 0.1
    kv_cache: float = 0.4
    pending: float = 2.0


def landed_in(bounds: tuple[float, ...], upper: float, n: int) -> Histogram:
    """`n` observations, all in the bucket whose upper bound is `upper` (cumulative counts)."""
    assert upper in bounds
    return Histogram(bounds, tuple(n if b >= upper else 0 for b in bounds) + (n,), n * upper)


def scrape_batch(clock: Clock, interval: Interval | None, last_ns: int):
    """The batch the receiver sends for one scrape: `ml.server.up`, and the model's delta when up."""
    now_ns = int(clock() * 1e9)
    builder = MetricsBuilder(now_ns)
    builder.resource(SERVER).record(metrics.UP, 0.0 if interval is None else 1.0)
    if interval is not None:
        i = interval
        delta = Delta(
            counters={(v.METRIC_PREDICTIONS, ()): i.requests,
                      **({(v.METRIC_PREDICTION_ERRORS, (("error.type", "abort"),)): i.errors} if i.errors else {})},
            gauges={v.SERVER_KV_CACHE_USAGE: i.kv_cache, v.SERVER_REQUESTS_PENDING: i.pending},
            histograms={
                v.GENAI_SERVER_REQUEST_DURATION: landed_in(v.GENAI_SERVER_REQUEST_DURATION_BUCKETS, i.duration_s,
                                                           i.requests),
                v.GENAI_SERVER_TIME_TO_FIRST_TOKEN: landed_in(v.GENAI_SERVER_TIME_TO_FIRST_TOKEN_BUCKETS, i.ttft_s,
                                                              i.requests)})
        metrics.write(builder.resource(MODEL | SERVER), delta, last_ns, MODEL)
    return builder.batch(), now_ns


class Host:
    def __init__(self, engine: AlertsEngine, clock: Clock) -> None:
        self.engine, self.clock = engine, clock
        self.stage = AlertsStage(engine, InMemorySink(), engine._log)
        self.last_ns = int(clock() * 1e9)

    async def run(self, seconds: float, interval: Interval | None) -> None:
        """Scrape and evaluate every SCRAPE seconds for `seconds`; None: the server is down."""
        for _ in range(int(seconds / SCRAPE)):
            self.clock.advance(SCRAPE)
            batch, self.last_ns = scrape_batch(self.clock, interval, self.last_ns)
            await self.stage.consume(batch)
            await self.engine.tick()

    def firing(self) -> dict[str, dict]:
        """The firing alerts of the pack's rules (its objectives' burn-rate rules: tests/alerts/test_slo.py)."""
        return {a["rule"]: a for a in self.engine.alerts(FIRING) if "slo" not in a["labels"]}


NEW_RULES = {"ServedModelHighP95Latency", "SlowTimeToFirstToken", "KvCacheNearFull", "InferenceQueueGrowing",
             "HighErrorRate"}


async def test_served_model_rules_fire_while_the_server_struggles_and_resolve_after(tmp_path):
    clock = Clock()
    engine = await make(AlertsConfig.model_validate({"evaluation_interval": "15s", "rule_files": [str(PACK)]}),
                        clock, tmp_path)
    host = Host(engine, clock)
    try:
        await host.run(600, Interval())
        assert host.firing() == {}, "a healthy server fires nothing"
        trouble = Interval(errors=20, duration_s=81.92, ttft_s=5.0, kv_cache=0.97, pending=40)
        await host.run(345, trouble)
        assert host.firing().keys() == {"HighErrorRate", "KvCacheNearFull"}, "6m in: the rules held for 5m"
        await host.run(345, trouble)
        alerts = host.firing()
        assert alerts.keys() == NEW_RULES, alerts.keys()
        summaries = {name: a["annotations"]["summary"] for name, a in alerts.items()}
        assert summaries["SlowTimeToFirstToken"].startswith("llama-3-8b on vllm: p95 time to first token ")
        assert summaries["KvCacheNearFull"] == "llama-3-8b on vllm: the KV cache is 97% full"
        assert summaries["InferenceQueueGrowing"] == \
            "llama-3-8b on vllm: 40 requests waiting, and the queue has not drained for 10m"
        assert summaries["HighErrorRate"] == "llama-3-8b <none>: 20.0% of predictions failed over 5m"
        assert all(a["labels"][v.SERVICE_NAME] == "vllm" for a in alerts.values())
        await host.run(420, Interval())  # the slow requests leave the 5m windows
        assert host.firing() == {}
    finally:
        await engine.shutdown()


async def test_a_server_that_stays_down_fires_inference_server_down_and_it_resolves_once_up(tmp_path):
    clock = Clock()
    engine = await make(AlertsConfig.model_validate({"evaluation_interval": "15s", "rule_files": [str(PACK)]}),
                        clock, tmp_path)
    host = Host(engine, clock)
    try:
        await host.run(120, Interval())
        await host.run(90, None)
        assert "InferenceServerDown" not in host.firing(), "a short outage is not yet an alert"
        await host.run(60, None)
        down = host.firing()["InferenceServerDown"]
        assert down["labels"]["severity"] == "critical"
        assert down["annotations"]["summary"] == ("vllm at 127.0.0.1:8000: its metrics cannot be scraped "
                                                  "(down, or not answering)")
        await host.run(30, Interval())
        assert "InferenceServerDown" not in host.firing()
    finally:
        await engine.shutdown()


async def test_a_mean_only_latency_fires_no_p95_rule(tmp_path):
    """Triton's duration counters give a histogram with no buckets (count and sum): there is no p95 to
    judge, so HighP95Latency stays quiet however slow the mean (the model health API judges the mean)."""
    clock = Clock()
    engine = await make(AlertsConfig.model_validate({"evaluation_interval": "15s", "rule_files": [str(PACK)]}),
                        clock, tmp_path)
    stage = AlertsStage(engine, InMemorySink(), engine._log)
    triton = {v.SERVICE_NAME: "triton", "service.instance.id": "127.0.0.1:8002"}
    model = {v.MODEL_NAME: "resnet50", v.MODEL_VERSION: "1"}
    try:
        last_ns = int(clock() * 1e9)
        for _ in range(60):  # 15 minutes of 100 requests a scrape, 5 s each
            clock.advance(SCRAPE)
            builder = MetricsBuilder(int(clock() * 1e9))
            builder.resource(triton).record(metrics.UP, 1.0)
            delta = Delta(counters={(v.METRIC_PREDICTIONS, ()): 100},
                          histograms={v.METRIC_PREDICTION_DURATION: Histogram.mean_only(100, 500.0)})
            metrics.write(builder.resource(model | triton), delta, last_ns, model)
            last_ns = builder.time_ns
            await stage.consume(builder.batch())
            await engine.tick()
        assert any(series.metric == v.METRIC_PREDICTION_DURATION for series in engine.engine.store.all_series())
        assert [a["rule"] for a in engine.alerts()] == []
    finally:
        await engine.shutdown()
