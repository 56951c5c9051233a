"""SLO burn-rate alerts: objectives made into the SRE workbook's multi-window rules, run by the real alerts
processor on a clock the test moves, fed the counters and histograms the `ml` processor and the
`inference` receiver write. A fast burn pages within the time the table implies, a slow one raises the
ticket only, no burn raises nothing, and an alert resolves soon after its burn stops."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.alerts.config import AlertsConfig
from agent.alerts.engine import FIRING, RESOLVED, Transition
from agent.alerts.processor import AlertsEngine, AlertsStage
from agent.alerts.rules import RuleConfig, load_rule_file
from agent.alerts.slo import SloConfig
from agent.alerts.store import SeriesStore, fraction_over, histogram_counts, increase
from agent.component import ComponentId, Settings
from agent.configmodel import format_validation_error
from agent.telemetry import SelfTelemetry
from tests.alerts.helpers import Clock, counter, histogram
from tests.alerts.test_inference_rules import Host, Interval
from tests.alerts.test_rules import PACK
from tests.sink import InMemorySink

MODEL = {"ml.model.name": "fraud", "ml.model.version": "v3"}
RESOURCE = {"service.name": "fraud-api", "host.name": "gpu-host-1"}
BOUNDS = [0.1, 0.25, 0.5, 1.0, 2.5]
PAGES = {"fraud-availability:burn:1h", "fraud-availability:burn:6h"}
TICKETS = {"fraud-availability:burn:1d", "fraud-availability:burn:3d"}
HOUR = 3600.0


def slo_config(*slos: dict) -> AlertsConfig:
    return AlertsConfig.model_validate({"evaluation_interval": "1m", "slos": list(slos)})


AVAILABILITY = {"name": "fraud-availability", "indicator": "error_ratio", "model": "fraud", "target": "99.5%",
                "window": "30d"}


async def make(cfg: AlertsConfig, clock: Clock, state_dir: Path) -> AlertsEngine:
    engine = AlertsEngine(cfg, Settings(ComponentId("alerts"), SelfTelemetry(), state_dir=state_dir), {}, clock=clock)
    await engine.start(run=False)
    return engine


@dataclass
class Model:
    """A model's cumulative ml.predictions and ml.prediction.errors, as the ml processor exports them."""

    engine: AlertsEngine
    clock: Clock
    started: float = 0.0
    requests: int = 0
    errors: int = 0

    def __post_init__(self) -> None:
        self.started = self.clock()
        self.stage = AlertsStage(self.engine, InMemorySink(), self.engine._log)
        self.changes: list[Transition] = []

    async def serve(self, seconds: float, error_ratio: float, *, per_minute: int = 1000, step: float = 60.0) -> None:
        """`seconds` of traffic, exported and evaluated every `step` seconds."""
        end = self.clock() + seconds
        while self.clock() < end - 1e-6:
            self.clock.advance(step)
            n = int(per_minute * step / 60)
            self.requests += n
            self.errors += round(n * error_ratio)
            now = self.clock()
            await self.stage.consume(counter("ml.predictions", [(self.requests, MODEL)], time_s=now,
                                             start_s=self.started, resource=RESOURCE))
            await self.stage.consume(counter("ml.prediction.errors",
                                             [(self.errors, {**MODEL, "error.type": "timeout"})], time_s=now,
                                             start_s=self.started, resource=RESOURCE))
            self.changes += await self.engine.tick()

    def fired(self) -> set[str]:
        return {c.alert.rule for c in self.changes if c.state == FIRING}

    def firing(self) -> set[str]:
        return {a.rule for a in self.engine.engine.alerts.values() if a.state == FIRING}

    def when(self, rule: str, state: str) -> float | None:
        return next((c.alert.fired_at if state == FIRING else c.alert.resolved_at
                     for c in self.changes if c.alert.rule == rule and c.state == state), None)


async def test_a_fast_burn_pages_within_the_hour_and_resolves_soon_after_it_stops(tmp_path):
    clock = Clock()
    engine = await make(slo_config(AVAILABILITY), clock, tmp_path)
    model = Model(engine, clock)
    await model.serve(24 * HOUR, 0.001, step=300)  # a healthy day: 0.1% errors, a fifth of the budget rate
    assert not model.fired()
    burn_start = clock()
    # 10% of predictions fail: 20x the budget rate. The 1h window passes 14.4x (7.2%) after 0.72 h.
    await model.serve(40 * 60, 0.10)
    assert not model.fired()
    await model.serve(10 * 60, 0.10)
    assert model.fired() == {"fraud-availability:burn:1h"}
    paged_after = model.when("fraud-availability:burn:1h", FIRING) - burn_start
    assert 42 * 60 <= paged_after <= 45 * 60
    (alert,) = [a for a in engine.engine.alerts.values() if a.state == FIRING]
    assert alert.severity == "critical" and alert.labels["slo"] == "fraud-availability"
    assert alert.labels["slo.windows"] == "1h,5m" and alert.labels["slo.burn_rate"] == "14.4"
    assert alert.labels["ml.model.name"] == "fraud" and alert.labels["service.name"] == "fraud-api"
    assert alert.annotations["summary"].startswith("SLO fraud-availability (fraud on fraud-api): ")
    assert "of events failed over both 1h and 5m, burning the error budget at 14.4x" in alert.annotations["summary"]
    # The burn stops: the 5m window clears within minutes, though the 1h window still shows the burn.
    stop = clock()
    await model.serve(10 * 60, 0.0)
    resolved_after = model.when("fraud-availability:burn:1h", RESOLVED) - stop
    assert resolved_after <= 6 * 60
    assert not model.firing()
    await engine.shutdown()


async def test_a_slow_burn_raises_the_ticket_only(tmp_path):
    clock = Clock()
    engine = await make(slo_config(AVAILABILITY), clock, tmp_path)
    model = Model(engine, clock)
    await model.serve(24 * HOUR, 0.001, step=300)
    # 2% of predictions fail: 4x the budget rate, under the pages' 14.4x and 6x, over the tickets' 3x and 1x.
    await model.serve(24 * HOUR, 0.02, step=300)
    assert model.fired() == TICKETS
    assert not model.fired() & PAGES
    assert {a.severity for a in engine.engine.alerts.values()} == {"warning"}
    await engine.shutdown()


@pytest.mark.parametrize("window", ["30d", "7d"])
async def test_no_burn_raises_nothing(tmp_path, window):
    clock = Clock()
    engine = await make(slo_config({**AVAILABILITY, "window": window}), clock, tmp_path)
    model = Model(engine, clock)
    # 0.4% of predictions fail for four days: within the 0.5% budget, however long the objective.
    await model.serve(4 * 24 * HOUR, 0.004, step=600)
    assert model.changes == []
    await engine.shutdown()


async def test_a_short_spike_pages_nothing(tmp_path):
    clock = Clock()
    engine = await make(slo_config(AVAILABILITY), clock, tmp_path)
    model = Model(engine, clock)
    await model.serve(3 * 24 * HOUR, 0.001, step=600)
    # Every prediction fails for 3 minutes: the 5m window burns 200x, the 1h window only ~10x, and the
    # whole spike is 1.4% of the 30-day budget.
    await model.serve(3 * 60, 1.0)
    await model.serve(HOUR, 0.001)
    assert not model.fired()
    await engine.shutdown()


async def test_a_latency_objective_pages_on_slow_predictions(tmp_path):
    clock = Clock()
    cfg = slo_config({"name": "fraud-latency", "indicator": "latency", "threshold_seconds": 0.5, "target": "99%",
                      "model": "fraud"})
    engine = await make(cfg, clock, tmp_path)
    stage = AlertsStage(engine, InMemorySink(), engine._log)
    changes: list[Transition] = []

    async def minutes(n: int, slow: int) -> None:
        for _ in range(n):
            clock.advance(60)
            # 1000 predictions a minute (a delta histogram): `slow` of them between 0.5 s and 1 s.
            await stage.consume(histogram("ml.prediction.duration", BOUNDS, [600, 400 - slow, 0, slow, 0, 0],
                                          MODEL, time_s=clock(), resource=RESOURCE))
            changes.extend(await engine.tick())

    await minutes(120, 2)  # 0.2% slow: a fifth of the budget rate
    assert not changes
    await minutes(60, 300)  # 30% slow: 30x the 1% budget, over 14.4x in the 1h window after 29 minutes
    fired = {c.alert.rule: c.alert for c in changes if c.state == FIRING}
    # Both pages (and the tickets: their windows hold the three hours there are).
    assert {"fraud-latency:burn:1h", "fraud-latency:burn:6h"} <= set(fired)
    assert fired["fraud-latency:burn:1h"].severity == "critical"
    assert "of events slower than 0.5s over both 1h and 5m" in fired["fraud-latency:burn:1h"].annotations["summary"]
    await engine.shutdown()


async def test_a_served_models_time_to_first_token_objective(tmp_path):
    clock = Clock()
    cfg = slo_config({"name": "llama-ttft", "indicator": "ttft", "threshold_seconds": 0.75, "target": "99.9%",
                      "server": "vllm", "window": "7d"})
    engine = await make(cfg, clock, tmp_path)
    stage = AlertsStage(engine, InMemorySink(), engine._log)
    bounds = [0.1, 0.25, 0.5, 0.75, 1.0, 2.5]
    served = {"service.name": "vllm", "service.instance.id": "127.0.0.1:8000"}
    fired: set[str] = set()
    for minute in range(90):
        clock.advance(60)
        slow = 0 if minute < 30 else 50  # then 5% of first tokens take over 0.75 s
        batch = histogram("gen_ai.server.time_to_first_token", bounds, [900, 100 - slow, 0, 0, slow, 0, 0],
                          {"ml.model.name": "llama-3-8b"}, time_s=clock(), resource=served)
        await stage.consume(batch)
        fired |= {c.alert.rule for c in await engine.tick() if c.state == FIRING}
    # A 7-day objective: the rows' burn rates are scaled to it (1h: 2% of a 7-day budget is 3.36x); the
    # 1d and 3d rows would burn below 1x (0.7x, 0.23x), firing within budget, and are left out.
    assert {r.name: r.labels["slo.burn_rate"] for r in cfg.all_rules()} == {
        "llama-ttft:burn:1h": "3.36", "llama-ttft:burn:6h": "1.4"}
    assert {"llama-ttft:burn:1h", "llama-ttft:burn:6h"} <= fired
    await engine.shutdown()


def test_every_objective_makes_the_workbooks_four_rules():
    (cfg,) = [SloConfig.model_validate(AVAILABILITY)]
    rules = {r.name: r for r in map(RuleConfig.model_validate, cfg.rule_specs())}
    assert [(r.window, r.windows, r.labels["slo.burn_rate"], r.severity) for r in rules.values()] == [
        (3600, [300], "14.4", "critical"), (21600, [1800], "6", "critical"),
        (86400, [7200], "3", "warning"), (259200, [21600], "1", "warning")]
    one_hour = rules["fraud-availability:burn:1h"]
    assert one_hour.threshold == pytest.approx(14.4 * 0.005)
    assert one_hour.metric == "ml.prediction.errors" and one_hour.aggregation == "increase"
    assert one_hour.denominator.metric == "ml.predictions" and one_hour.denominator.window == 3600
    assert [str(m) for m in one_hour.matchers] == [str(m) for m in one_hour.denominator.matchers]


def test_a_low_target_or_a_short_window_leaves_out_the_rows_that_cannot_fire():
    low = SloConfig.model_validate({**AVAILABILITY, "target": "90%"})  # 14.4 x 10% would need 144% bad
    assert [r["name"] for r in low.rule_specs()] == ["fraud-availability:burn:6h", "fraud-availability:burn:1d",
                                             "fraud-availability:burn:3d"]
    # 7 days: the 1d and 3d rows would burn below 1x (0.7x, 0.23x), firing within budget.
    short = SloConfig.model_validate({**AVAILABILITY, "window": "7d"})
    assert [(r["name"], r["labels"]["slo.burn_rate"]) for r in short.rule_specs()] == [
        ("fraud-availability:burn:1h", "3.36"), ("fraud-availability:burn:6h", "1.4")]


@pytest.mark.parametrize("window, burn_rates", [
    ("30d", ["14.4", "6", "3", "1"]), ("10d", ["4.8", "2", "1"]), ("5d", ["2.4", "1"]), ("50h", ["1"])])
def test_every_rule_burns_at_least_the_rate_the_budget_allows(window, burn_rates):
    slo = SloConfig.model_validate({**AVAILABILITY, "window": window})
    assert [r["labels"]["slo.burn_rate"] for r in slo.rule_specs()] == burn_rates


@pytest.mark.parametrize("settings, message", [
    ({"window": "1h"}, "slos[0].window: 1h leaves no burn-rate alert that fires only when the budget is being "
                       "overspent"),
    ({"window": "2d"}, "slos[0].window: 2d leaves no burn-rate alert"),
    ({"window": "30m"}, "use 50h or more (30d is usual)"),
    ({"window": "3d", "target": "30%"}, "slos[0].target: 30% leaves no burn-rate alert that can fire over 3d"),
])
def test_an_objective_with_no_rule_that_fires_only_on_overspending_is_refused(settings, message):
    with pytest.raises(ValidationError) as info:
        AlertsConfig.model_validate({"slos": [{**AVAILABILITY, **settings}]})
    assert any(message in problem for problem in format_validation_error(info.value, ""))


@pytest.mark.parametrize("settings, message", [
    ({"indicator": "latency"}, "needs threshold_seconds"),
    ({"threshold_seconds": 0.5}, "applies to indicators latency and ttft"),
    ({"target": "100%"}, "below 100%"),
    ({"target": "abc"}, "invalid target"),
    ({"window": "30x"}, "invalid duration"),
    ({"matchers": ["nope"]}, "invalid matcher"),
    ({"labels": {"slo": "x"}}, "set by the objective"),
    ({"indicator": "p99"}, "indicator"),
])
def test_objective_errors(settings, message):
    with pytest.raises(ValidationError) as info:
        AlertsConfig.model_validate({"slos": [{**AVAILABILITY, **settings}]})
    assert message in str(info.value)


def test_an_objective_whose_rules_clash_with_a_rule_is_refused():
    with pytest.raises(ValidationError) as info:
        AlertsConfig.model_validate({"slos": [AVAILABILITY], "rules": [
            {"name": "fraud-availability:burn:1h", "metric": "m", "threshold": 1}]})
    assert "defined twice" in str(info.value)


def test_the_share_over_a_bound_interpolates_within_its_bucket():
    counts = [10, 10, 10, 10]  # (0, 1], (1, 2], (2, 4], (4, +inf)
    assert fraction_over(2.0, (1.0, 2.0, 4.0), counts) == pytest.approx(0.5)
    assert fraction_over(3.0, (1.0, 2.0, 4.0), counts) == pytest.approx(0.375)
    assert fraction_over(0.5, (1.0, 2.0, 4.0), counts) == pytest.approx(0.875)
    assert fraction_over(9.0, (1.0, 2.0, 4.0), counts) == pytest.approx(0.25)  # the overflow bucket may be above
    assert fraction_over(1.0, (1.0, 2.0, 4.0), [0, 0, 0, 0]) is None
    assert fraction_over(1.0, (), [10]) is None  # a mean-only histogram (Triton's counters): no share to tell


def test_the_shipped_pack_holds_objectives():
    names = [r.name for r in load_rule_file(str(PACK))]
    burn = [n for n in names if ":burn:" in n]
    assert {"Availability:burn:1h", "Latency:burn:3d", "TimeToFirstToken:burn:6h"} <= set(burn)
    assert len(burn) == 12


def test_a_three_day_window_keeps_its_length_when_points_come_every_ten_seconds():
    """Past max_samples a series is thinned, not cut: 3.5 days of a counter every 10 s (30,240 points)
    in at most 1,000 samples, and both the 3-day and the 5-minute increases still right."""
    clock = Clock()
    long, short = RuleConfig.model_validate({"name": "r", "metric": "c", "aggregation": "increase",
                                             "window": "72h", "windows": ["5m"], "threshold": 0}).variants()
    store = SeriesStore([long, short])
    start = clock()
    for step in range(int(3.5 * 24 * 360)):
        store.observe(counter("c", [(float(step * 10), {})], time_s=clock(), start_s=start), clock())
        clock.advance(10)
    (series,) = store.all_series()
    assert len(series.samples) <= 1000 and store.forgotten_samples == 0
    now = clock() - 10
    three_days, _ = increase(series, now, 72 * HOUR)
    assert three_days == pytest.approx(72 * 360 * 10, rel=0.02)
    five_minutes, _ = increase(series, now, 300)
    assert five_minutes == pytest.approx(300, abs=10)


def test_a_thinned_delta_histogram_keeps_its_counts():
    clock = Clock()
    query = RuleConfig.model_validate({"name": "r", "metric": "h", "aggregation": "fraction_over", "over": 0.5,
                                       "window": "24h", "threshold": 0})
    store = SeriesStore([query], max_samples=100)
    for minute in range(24 * 60):
        slow = 1 if minute % 2 else 3  # 2 of 100 a minute on average
        store.observe(histogram("h", BOUNDS, [50, 50 - slow, 0, slow, 0, 0], {}, time_s=clock()), clock())
        clock.advance(60)
    (series,) = store.all_series()
    assert len(series.samples) <= 100
    bounds, counts = histogram_counts(series, clock() - 60, 24 * HOUR)
    assert sum(counts) == pytest.approx(24 * 60 * 100, rel=0.01)
    assert fraction_over(0.5, bounds, counts) == pytest.approx(0.02, rel=0.01)


async def test_the_packs_objectives_page_for_a_struggling_served_model_and_resolve_after(tmp_path):
    """The shipped pack's objectives on what the `inference` receiver writes for a vLLM-shaped server: a
    healthy hour burns nothing; 20% failed requests and 5 s first tokens (budgets burning 40x and 100x) page
    when the table says; the pages resolve minutes after the server recovers."""
    clock = Clock()
    engine = await make(AlertsConfig.model_validate({"evaluation_interval": "15s", "rule_files": [str(PACK)]}),
                        clock, tmp_path)
    host = Host(engine, clock)

    def burning() -> dict[str, dict]:
        return {a["rule"]: a for a in engine.alerts(FIRING) if "slo" in a["labels"]}

    try:
        await host.run(HOUR, Interval())
        assert burning() == {}
        await host.run(600, Interval(errors=20, ttft_s=5.0))
        # Every first token is slow: 10 minutes are 16.7% of the hour, past 14.4 x the 1% budget. 20% of
        # requests failing needs 21.6 minutes to pass 14.4 x 0.5% over the hour.
        assert "TimeToFirstToken:burn:1h" in burning() and "Availability:burn:1h" not in burning()
        await host.run(900, Interval(errors=20, ttft_s=5.0))
        pages = {name for name, a in burning().items() if a["labels"]["severity"] == "critical"}
        assert {"Availability:burn:1h", "TimeToFirstToken:burn:1h"} <= pages
        alert = burning()["Availability:burn:1h"]
        assert alert["labels"]["ml.model.name"] == "llama-3-8b" and alert["labels"]["service.name"] == "vllm"
        # The value is the window least past the threshold: 25 minutes of 20% over the hour.
        assert alert["annotations"]["summary"] == ("SLO Availability (llama-3-8b on vllm): at least 8.33% of events "
                                                   "failed over both 1h and 5m, burning the error budget at 14.4x")
        await host.run(600, Interval())  # the 1h pages' 5m windows are clear; the 6h pages' 30m not yet
        assert not {"Availability:burn:1h", "TimeToFirstToken:burn:1h"} & set(burning())
        await host.run(1500, Interval())
        assert not {name for name, a in burning().items() if a["labels"]["severity"] == "critical"}
    finally:
        await engine.shutdown()
