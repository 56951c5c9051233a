"""Notification semantics with a clock the test controls: grouping, group_wait, group_interval,
repeat_interval, resolved notifications, routes and silences."""

from __future__ import annotations

from agent.alerts.dispatch import Dispatcher, build_routes
from agent.alerts.engine import FIRING, RESOLVED, Alert, fingerprint
from agent.alerts.matchers import Matcher
from agent.alerts.silences import Silences
from tests.alerts.helpers import Clock, alerts_config

NOTIFIERS = {"webhook/a": {"url": "http://127.0.0.1:1/a"}, "webhook/b": {"url": "http://127.0.0.1:1/b"},
             "log": {}}


def dispatcher(**route) -> Dispatcher:
    route.setdefault("notifiers", ["webhook/a"])
    route.setdefault("group_wait", "30s")
    route.setdefault("group_interval", "5m")
    route.setdefault("repeat_interval", "4h")
    config = alerts_config(notifiers=NOTIFIERS, route=route)
    routes, default = build_routes(config)
    return Dispatcher(routes, default, Silences())


def alert(name: str = "FeatureDrift", state: str = FIRING, at: float = 0.0, **labels: str) -> Alert:
    full = {"alertname": name, "severity": labels.pop("severity", "warning"), **labels}
    return Alert(name, full, fingerprint(full), state, at, at, 1.0, fired_at=at,
                 resolved_at=at if state == RESOLVED else None)


def resolve(a: Alert, at: float) -> Alert:
    return Alert(a.rule, a.labels, a.fingerprint, RESOLVED, a.active_since, a.last_seen, 0.0, a.fired_at, at)


def names(outgoing) -> list[tuple[list[str], list[str]]]:
    return [([a.labels.get("ml.feature.name", a.rule) for a in o.firing],
             [a.labels.get("ml.feature.name", a.rule) for a in o.resolved]) for o in outgoing]


def test_alerts_that_fire_together_go_out_together_after_group_wait():
    clock, d = Clock(), dispatcher(group_by=["alertname", "ml.model.name"])
    d.update(alert(**{"ml.model.name": "fraud", "ml.feature.name": "a"}), clock())
    assert d.due(clock()) == []
    clock.advance(10)
    d.update(alert(**{"ml.model.name": "fraud", "ml.feature.name": "b"}), clock())
    d.update(alert(**{"ml.model.name": "churn", "ml.feature.name": "x"}), clock())
    clock.advance(19)
    assert d.due(clock()) == []
    clock.advance(1)  # 30s after the fraud group began
    out = d.due(clock())
    assert names(out) == [(["a", "b"], [])]
    assert out[0].group_labels == {"alertname": "FeatureDrift", "ml.model.name": "fraud"}
    assert out[0].notifiers == ("webhook/a",)
    clock.advance(10)  # the churn group began 10s after fraud's
    assert names(d.due(clock())) == [(["x"], [])]
    assert d.due(clock()) == []


def test_one_notification_per_change_at_group_interval_then_repeat_then_resolved():
    clock, d = Clock(), dispatcher(group_by=["alertname"])
    a, b = alert(**{"ml.feature.name": "a"}), alert(**{"ml.feature.name": "b"})
    d.update(a, clock())
    clock.advance(30)
    assert names(d.due(clock())) == [(["a"], [])]
    first = clock()
    clock.advance(60)
    d.update(b, clock())  # a change: waits for group_interval after the last notification
    assert d.due(clock()) == []
    clock.now = first + 300
    assert names(d.due(clock())) == [(["a", "b"], [])]
    # The same firing set again and again: nothing until repeat_interval.
    for _ in range(10):
        clock.advance(600)
        d.update(a, clock())  # the engine refreshes firing alerts every evaluation
        assert d.due(clock()) == []
    clock.now = first + 300 + 4 * 3600
    assert names(d.due(clock())) == [(["a", "b"], [])]  # the repeat
    repeated = clock()
    clock.advance(1)
    d.update(resolve(a, clock()), clock())
    clock.now = repeated + 300
    assert names(d.due(clock())) == [(["b"], ["a"])]
    clock.advance(60)
    d.update(resolve(b, clock()), clock())
    clock.advance(300)
    out = d.due(clock())
    assert names(out) == [([], ["b"])]
    assert d.groups == {}  # nothing left to say: the group is gone
    clock.advance(5 * 3600)
    assert d.due(clock()) == []


def test_an_alert_resolved_before_it_was_announced_is_never_announced():
    clock, d = Clock(), dispatcher()
    a = alert()
    d.update(a, clock())
    clock.advance(10)
    d.update(resolve(a, clock()), clock())
    clock.advance(60)
    assert d.due(clock()) == []
    assert d.groups == {}


def test_routes_choose_notifiers_by_severity_and_labels():
    clock = Clock()
    d = dispatcher(notifiers=["log"], group_by=["alertname"], routes=[
        {"matchers": ['severity="critical"'], "notifiers": ["webhook/a"], "continue": True},
        {"matchers": ['team=~"ml|data"'], "notifiers": ["webhook/b"], "group_wait": "0s"},
    ])
    d.update(alert("Latency", severity="critical", team="ml"), clock())
    d.update(alert("Disk", severity="warning", team="ml"), clock())
    d.update(alert("Temp", severity="warning", team="infra"), clock())
    now = clock()
    assert sorted((o.notifiers, [a.rule for a in o.firing]) for o in d.due(now)) == [
        (("webhook/b",), ["Disk"]), (("webhook/b",), ["Latency"])]
    clock.advance(30)
    assert sorted((o.notifiers, [a.rule for a in o.firing]) for o in d.due(clock())) == [
        (("log",), ["Temp"]), (("webhook/a",), ["Latency"])]


def test_group_by_everything():
    clock, d = Clock(), dispatcher(group_by=["..."], group_wait="0s")
    d.update(alert(**{"ml.feature.name": "a"}), clock())
    d.update(alert(**{"ml.feature.name": "b"}), clock())
    assert len(d.due(clock())) == 2


def test_silences_mute_firing_and_resolved_and_let_go_on_expiry():
    clock, d = Clock(), dispatcher(group_by=["alertname"])
    silence = d.silences.add((Matcher.parse('ml.feature.name="a"'),), clock(), clock() + 3600, "me", "retraining")
    a, b = alert(**{"ml.feature.name": "a"}), alert(**{"ml.feature.name": "b"})
    d.update(a, clock())
    clock.advance(30)
    assert d.due(clock()) == []  # only a silenced alert: nothing to say
    d.update(b, clock())
    clock.advance(300)
    assert names(d.due(clock())) == [(["b"], [])]
    clock.advance(3600)  # the silence is over and a still fires: announced at the group's next interval
    assert silence.ends_at <= clock()
    d.update(a, clock())
    assert names(d.due(clock())) == [(["a", "b"], [])]
    # Silenced again, a resolves: no word of it, and the group forgets it.
    d.silences.add((Matcher.parse('alertname="FeatureDrift"'), Matcher.parse('ml.feature.name="a"')),
                   clock(), clock() + 600)
    d.update(resolve(a, clock()), clock())
    clock.advance(300)
    assert d.due(clock()) == []
    assert list(next(iter(d.groups.values())).alerts) == [b.fingerprint]


def test_expire_a_silence_early():
    clock, silences = Clock(), Silences()
    s = silences.add((Matcher.parse('a="1"'),), clock(), clock() + 3600)
    assert silences.silencing({"a": "1"}, clock()) == [s.id]
    assert silences.expire(s.id, clock())
    assert silences.silencing({"a": "1"}, clock()) == []
    assert not silences.expire(s.id, clock())  # already expired
    clock.advance(Silences.RETENTION)
    assert silences.prune(clock()) and len(silences) == 0


def test_groups_survive_a_restart():
    clock, d = Clock(), dispatcher()
    a = alert()
    d.update(a, clock())
    clock.advance(30)
    assert len(d.due(clock())) == 1
    saved = d.to_json()
    again = dispatcher()
    again.restore(saved)
    clock.advance(60)
    again.update(a, clock())
    assert again.due(clock()) == []  # already announced: no repeat before repeat_interval
    again.update(resolve(a, clock()), clock())
    clock.advance(300)
    assert names(again.due(clock())) == [([], ["FeatureDrift"])]
