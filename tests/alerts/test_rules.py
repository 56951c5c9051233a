"""Rules as written: matchers, templates, config checks with their messages, and the shipped rule pack
(it validates, names only metrics Vigil emits, its templates name only labels its alerts carry, and a
few of its rules behave as their comments say)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.alerts import templates
from agent.alerts.config import AlertsConfig
from agent.alerts.engine import FIRING, RuleEngine
from agent.alerts.matchers import Matcher
from agent.alerts.rules import load_rule_file
from agent.configmodel import format_validation_error
from agent.metrics_builder import MetricSpec
from tests.alerts.helpers import Clock, counter, gauge, rule

REPO = Path(__file__).resolve().parents[2]
PACK = REPO / "config" / "alerts" / "inference-rules.yaml"

MODULES = ("agent.ml.metrics", "agent.receivers.inference.metrics", "agent.receivers.nvml.scraper",
           "agent.receivers.hostmetrics.system", "agent.receivers.hostmetrics.process")


def emitted_metrics() -> set[str]:
    """Every metric name Vigil's components declare (as MetricSpec constants, or dicts of them)."""
    names: set[str] = set()
    for module in MODULES:
        for value in vars(importlib.import_module(module)).values():
            specs = value.values() if isinstance(value, dict) else [value]
            names |= {s.name for s in specs if isinstance(s, MetricSpec)}
    return names


# --- matchers and templates -------------------------------------------------------------------------


@pytest.mark.parametrize("text, labels, expected", [
    ('ml.model.name="fraud"', {"ml.model.name": "fraud"}, True),
    ("ml.model.name=fraud", {"ml.model.name": "fraud"}, True),
    ('ml.model.name!="fraud"', {"ml.model.name": "churn"}, True),
    ('team=""', {}, True),  # absent reads as empty
    ('team!=""', {}, False),
    ('ml.feature.name=~"ml\\\\.prediction\\\\..*"', {"ml.feature.name": "ml.prediction.score"}, True),
    ('ml.feature.name=~"ml\\\\.prediction\\\\..*"', {"ml.feature.name": "xml.prediction.score"}, False),  # anchored
    ('ml.feature.name!~"a|b"', {"ml.feature.name": "ab"}, True),
    ("severity=~'critical|warning'", {"severity": "warning"}, True),
])
def test_matchers(text, labels, expected):
    assert Matcher.parse(text).matches(labels) is expected


@pytest.mark.parametrize("text, message", [
    ("nonsense", "expected name=\"value\""),
    ('a=~"("', "invalid regex '(': missing ): ("),
    ('a="unterminated', "unterminated quote"),
])
def test_bad_matchers(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Matcher.parse(text)


def test_templates():
    labels = {"ml.model.name": "fraud", "ml.model.version": "v3", "ml.feature.name": "age", "hw.name": "gpu0",
              "host.name": "h1"}
    text = "{model} {version} {feature} {gpu}@{host} {value:.1%} > {threshold} {{x}} {missing} {value}"
    assert templates.render(text, labels, 0.1234, 0.1) == "fraud v3 age gpu0@h1 12.3% > 0.1 {x} <none> 0.1234"
    with pytest.raises(ValueError, match="unmatched brace"):
        templates.check("oops {model")
    with pytest.raises(ValueError, match="bad format spec"):
        templates.check("{value:.zz}")


# --- config checks -------------------------------------------------------------------------------------


def problems(body: dict) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        AlertsConfig.model_validate(body)
    return format_validation_error(caught.value, "processors.alerts")


@pytest.mark.parametrize("body, expected", [
    ({"rules": [{"name": "R", "metric": "m", "threshold": 1, "aggregation": "rate"}]},
     "processors.alerts.rules[0]: aggregation rate needs a window (e.g. window: 5m)"),
    ({"rules": [{"name": "R", "metric": "m", "threshold": 1, "aggregation": "quantile"}]},
     "processors.alerts.rules[0]: aggregation quantile needs quantile (e.g. quantile: 0.95)"),
    ({"rules": [{"name": "R", "metric": "m", "threshold": 1, "clear_threshold": 2}]},
     "processors.alerts.rules[0]: clear_threshold must not exceed threshold for op > (the alert clears once "
     "the value falls back below it)"),
    ({"rules": [{"name": "R", "metric": "m", "threshold": 1, "severity": "page"}]},
     "processors.alerts.rules[0].severity: Input should be 'critical', 'warning' or 'info' (got 'page')"),
    ({"rules": [{"name": "R", "metric": "m", "threshold": 1, "for": "soon"}]},
     "processors.alerts.rules[0].for: invalid duration 'soon': use a number with a unit, e.g. 200ms, 10s, 5m"),
    ({"rules": [{"name": "R", "metric": "m", "threshold": 1, "matchers": ["x"]}]},
     "processors.alerts.rules[0].matchers: invalid matcher 'x': expected name=\"value\", name!=\"value\", "
     "name=~\"regex\" or name!~\"regex\""),
    ({"rules": [{"name": "R", "metric": "m", "threshold": 1, "labels": {"severity": "x"}}]},
     "processors.alerts.rules[0]: labels: severity is set by the rule itself"),
    ({"rules": [{"name": "R", "metric": "m", "threshold": 1}, {"name": "R", "metric": "n", "threshold": 2}]},
     "processors.alerts: rules: rule 'R' is defined twice"),
    ({"route": {"notifiers": ["slack"]}},
     "processors.alerts: route.notifiers: notifier 'slack' is not defined in notifiers"),
    ({"notifiers": {"sms": {}}},
     "processors.alerts.notifiers.sms: unknown notifier type 'sms' (available: alertmanager, email, log, pagerduty, "
     "slack, webhook)"),
    ({"notifiers": {"webhook/x": {"url": "ftp://x"}}},
     "processors.alerts.notifiers.webhook/x.url: must be an http:// or https:// URL"),
    ({"notifiers": {"pagerduty": {}}}, "processors.alerts.notifiers.pagerduty.routing_key: required field is missing"),
    ({"rule_files": ["/nonexistent/rules.yaml"]},
     "processors.alerts: rule_files: /nonexistent/rules.yaml: cannot read the file: No such file or directory"),
])
def test_config_problems_name_the_field(body, expected):
    assert expected in problems(body)


def test_a_broken_rule_file_names_the_file_and_the_field(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - {name: R, metric: m, threshold: high}\n")
    (problem,) = problems({"rule_files": [str(path)]})
    assert problem == (f"processors.alerts: rule_files: {path}: rules[0].threshold: Input should be a valid "
                       f"number, unable to parse string as a number (got 'high')")


# --- the shipped pack ----------------------------------------------------------------------------------


def test_the_rule_pack_validates():
    config = AlertsConfig.model_validate({"rule_files": [str(PACK)]})
    names = [r.name for r in config.all_rules()]
    assert len(names) == len(set(names)) >= 15


def test_the_rule_pack_reads_only_metrics_vigil_emits():
    emitted = emitted_metrics()
    for r in load_rule_file(str(PACK)):
        assert r.metric in emitted, f"{r.name}: {r.metric} is not a metric Vigil emits"
        if r.denominator is not None:
            assert r.denominator.metric in emitted, r.name


def test_the_rule_pack_templates_name_labels_its_alerts_carry():
    for r in load_rule_file(str(PACK)):
        carried = {*r.group_by, *r.labels, "alertname", "severity", "value", "threshold"}
        for text in (r.summary, r.description, *r.annotations.values()):
            for name in re.findall(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_.\-]*)(?::[^{}]*)?\}", text):
                resolved = {name} | set(templates.ALIASES.get(name, ()))
                assert resolved & carried, f"{r.name}: {{{name}}} is not a label of its alerts"


def test_the_rule_pack_covers_the_inference_host():
    names = {r.name: r for r in load_rule_file(str(PACK))}
    for name in ("FeatureDrift", "PredictionDrift", "LowConfidenceSurge", "EstimatedAccuracyDrop",
                 "RealizedAccuracyDrop", "HighP95Latency", "HighErrorRate", "MissingValueSurge",
                 "GpuTemperatureHigh", "GpuUncorrectableEccErrors", "GpuXidErrors", "GpuMemoryNearFull",
                 "HostMemoryNearFull", "DiskNearFull", "InferenceServerDown", "ServedModelHighP95Latency",
                 "SlowTimeToFirstToken", "KvCacheNearFull", "InferenceQueueGrowing"):
        assert name in names
    # Symptoms page; causes wait for the day.
    for name in ("RealizedAccuracyDrop", "EstimatedAccuracyDrop", "HighP95Latency", "HighErrorRate",
                 "InferenceServerDown", "ServedModelHighP95Latency", "SlowTimeToFirstToken"):
        assert names[name].severity == "critical", name
    for name in ("FeatureDrift", "MissingValueSurge", "GpuTemperatureHigh", "DiskNearFull", "KvCacheNearFull",
                 "InferenceQueueGrowing"):
        assert names[name].severity == "warning", name
    assert names["KvCacheNearFull"].op == ">=" and names["KvCacheNearFull"].threshold == 0.95


def pack_engine() -> RuleEngine:
    return RuleEngine(load_rule_file(str(PACK)))


def firing(engine: RuleEngine) -> dict[str, dict]:
    return {a.rule: a for a in engine.alerts.values() if a.state == FIRING}


def test_pack_disk_near_full_needs_15_minutes_and_clears_below_85_percent():
    clock, engine = Clock(), pack_engine()
    fs = {"system.filesystem.mountpoint": "/var/lib/vigil", "system.device": "/dev/nvme0n1p2"}
    for value in (0.93, 0.91, 0.95):
        engine.store.observe(gauge("system.filesystem.utilization", [(value, fs)]), clock())
        engine.evaluate(clock())
        clock.advance(300)
    assert firing(engine) == {}  # 10 minutes over 90%: still pending
    engine.store.observe(gauge("system.filesystem.utilization", [(0.92, fs)]), clock())
    engine.evaluate(clock())
    assert "DiskNearFull" in firing(engine)
    clock.advance(300)
    engine.store.observe(gauge("system.filesystem.utilization", [(0.88, fs)]), clock())
    engine.evaluate(clock())
    alert = firing(engine)["DiskNearFull"]  # 88%: inside the band, still firing
    assert alert.annotations["summary"] == "gpu-host-1: /var/lib/vigil is 88% full"
    engine.store.observe(gauge("system.filesystem.utilization", [(0.84, fs)]), clock())
    engine.evaluate(clock())
    assert "DiskNearFull" not in firing(engine)


def test_pack_gpu_ecc_and_xid_fire_on_any_new_error():
    clock, engine = Clock(), pack_engine()
    gpu = {"host.name": "gpu-host-1", "hw.type": "gpu", "hw.id": "GPU-1234", "hw.name": "gpu0"}
    for _ in range(3):
        engine.store.observe(counter("hw.errors", [(4, {"error.type": "ecc_uncorrected"})], time_s=clock(),
                                     start_s=clock() - 86400, resource=gpu), clock())
        engine.evaluate(clock())
        clock.advance(60)
    assert firing(engine) == {}  # errors from before: nothing new
    engine.store.observe(counter("hw.errors", [(5, {"error.type": "ecc_uncorrected"})], time_s=clock(),
                                 start_s=clock() - 86400, resource=gpu), clock())
    engine.store.observe(counter("hw.gpu.xid.errors", [(1, {"hw.gpu.xid": 79})], time_s=clock(),
                                 start_s=clock() - 10, resource=gpu), clock())
    engine.evaluate(clock())
    alerts = firing(engine)
    assert alerts["GpuUncorrectableEccErrors"].annotations["summary"] == \
        "gpu-host-1: gpu0 had 1 uncorrectable ECC errors in 15m"
    assert alerts["GpuXidErrors"].annotations["summary"] == "gpu-host-1: gpu0 reported XID 79 1 times in 15m"
    assert alerts["GpuXidErrors"].severity == "warning"
