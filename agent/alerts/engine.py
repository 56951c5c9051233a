"""Rule evaluation and the life of an alert: inactive → pending → firing → resolved.

Each evaluation turns every rule into one value per group of series (see
`rules`), then moves each group's alert along:

    inactive ──value past threshold──▶ pending ──held for `for`──▶ firing
       ▲                                 │                           │
       └──────value back (or no data)────┘      value back past the clear threshold
                                                 (and `keep_firing_for` over), or no
                                                 data for `stale_after` ──▶ resolved

A pending alert needs the threshold at every evaluation; a firing one only
the clear threshold, so a value wandering inside the band between the two
neither resolves nor re-fires it. An alert without data keeps its state until
its series have been silent for `stale_after`, so a restart (which starts
with no data) does not resolve what was firing.

The engine is synchronous and reads time only from the `now` it is given, so
tests drive it with a clock of their own.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from agent.alerts import store as series_store, templates
from agent.alerts.rules import HISTOGRAM_AGGREGATIONS, PRIORITY, QueryConfig, RuleConfig
from agent.alerts.store import HISTOGRAM, SeriesStore

INACTIVE, PENDING, FIRING, RESOLVED = "inactive", "pending", "firing", "resolved"


@dataclass
class Alert:
    rule: str
    labels: dict[str, str]
    fingerprint: str
    state: str
    active_since: float  # when it became pending
    last_seen: float  # the last time its series had data
    value: float | None = None
    fired_at: float | None = None
    resolved_at: float | None = None
    clear_since: float | None = None  # keep_firing_for: since when the condition no longer holds
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    def snapshot(self) -> Alert:
        return Alert(**{**asdict(self), "labels": dict(self.labels), "annotations": dict(self.annotations)})

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if self.value is not None and not math.isfinite(self.value):
            out["value"] = None
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class Transition:
    alert: Alert  # a snapshot, taken after the change
    previous: str

    @property
    def state(self) -> str:
        return self.alert.state


def fingerprint(labels: dict[str, str]) -> str:
    text = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class _Point:
    value: float
    labels: dict[str, str]
    last_seen: float
    exemplar: tuple[str, str, float] | None = None  # the group's latest (trace id, span id, observed)


class RuleEngine:
    def __init__(self, rules: list[RuleConfig], *, stale_after: float = 900.0, max_series: int = 10_000,
                 max_samples: int = 1_000, max_stored_samples: int = 200_000, max_buckets: int = 256,
                 max_alerts: int = 1_000, trace_url: Callable[[str, str], str | None] | None = None) -> None:
        self.rules = {rule.name: rule for rule in rules}
        self._trace_url = trace_url  # Settings.trace_url: an alert with a trace links it
        self._stale_after = stale_after
        queries: list[QueryConfig] = []
        # A rule over several windows: one variant per window, each read alike (see values()).
        self._variants = {rule.name: rule.variants() for rule in rules if rule.windows}
        for rule in rules:
            for variant in self._variants.get(rule.name, [rule]):
                queries.append(variant)
                if variant.denominator is not None:
                    queries.append(variant.denominator)
        horizon = max([self.stale_after(r) for r in rules] + [q.window or 0 for q in queries] + [stale_after])
        self.store = SeriesStore(queries, max_series=max_series, max_samples=max_samples,
                                 max_stored_samples=max_stored_samples, max_buckets=max_buckets, horizon=horizon)
        self.alerts: dict[str, Alert] = {}  # by fingerprint: pending and firing
        # (rule, group key) -> (labels, fingerprint): computed once per group, not once per evaluation
        self._identities: dict[tuple[str, tuple[str, ...]], tuple[dict[str, str], str]] = {}
        self._max_identities = 4 * max_series
        self._max_alerts = max_alerts
        self.dropped_alerts = 0  # alerts not created because max_alerts were active

    def stale_after(self, rule: RuleConfig) -> float:
        return rule.stale_after if rule.stale_after is not None else self._stale_after

    # --- evaluation ---------------------------------------------------------------------

    def evaluate(self, now: float) -> list[Transition]:
        """Evaluate every rule at `now`; the alerts that changed state, in order."""
        self.store.prune(now)
        changes: list[Transition] = []
        for rule in self.rules.values():
            changes += self.evaluate_rule(rule, now)
        return changes

    def values(self, rule: RuleConfig, now: float) -> dict[tuple[str, ...], _Point]:
        """The rule's value per group of series at `now` (groups without a value are left out).

        Over several windows, a group's value is the one least past the threshold (the smallest for > and
        >=), and a group needs a value in every window."""
        variants = self._variants.get(rule.name)
        if not variants:
            return self._values(rule, now)
        pick = min if rule.op in (">", ">=") else max
        combined = self._values(variants[0], now)
        for variant in variants[1:]:
            other = self._values(variant, now)
            combined = {key: _Point(pick(point.value, other[key].value), point.labels,
                                    max(point.last_seen, other[key].last_seen), point.exemplar)
                        for key, point in combined.items() if key in other}
        return combined

    def _values(self, rule: RuleConfig, now: float) -> dict[tuple[str, ...], _Point]:
        stale = self.stale_after(rule)
        out = self._aggregate(rule, rule.group_by, now, stale)
        if rule.denominator is None:
            return out
        below = self._aggregate(rule.denominator, rule.group_by, now, stale)
        ratios: dict[tuple[str, ...], _Point] = {}
        for key, den in below.items():
            if den.value == 0 or not math.isfinite(den.value):
                continue
            num = out.get(key)
            # A numerator with no series yet (no error has ever happened) is zero.
            value = (num.value if num else 0.0) / den.value
            # The numerator's trace first: a failed prediction says more than any request.
            exemplar = (num.exemplar if num else None) or den.exemplar
            ratios[key] = _Point(value, den.labels, max(den.last_seen, num.last_seen if num else 0.0), exemplar)
        return ratios

    def _aggregate(self, query: QueryConfig, group_by: list[str], now: float,
                   stale: float) -> dict[tuple[str, ...], _Point]:
        groups: dict[tuple[str, ...], list[series_store.Series]] = {}
        for series in self.store.select(query, now, max(stale, query.window or 0.0)):
            key = tuple(series.labels.get(name, "") for name in group_by)
            groups.setdefault(key, []).append(series)
        # A trace older than what the value reads is not behind it: the window, else the staleness horizon.
        oldest = now - (query.window or stale)
        out: dict[tuple[str, ...], _Point] = {}
        for key, members in groups.items():
            value = _aggregate_group(query, members, now)
            if value is None or math.isnan(value):
                continue
            labels = {name: v for name, v in zip(group_by, key) if v != ""}
            exemplar = max((s.exemplar for s in members if s.exemplar and s.exemplar[2] >= oldest),
                           key=lambda e: e[2], default=None)
            out[key] = _Point(value, labels, max(s.last_seen for s in members), exemplar)
        return out

    def evaluate_rule(self, rule: RuleConfig, now: float) -> list[Transition]:
        """Evaluate one rule at `now` (call `store.prune(now)` first, as `evaluate` does)."""
        changes: list[Transition] = []
        seen: set[str] = set()
        if len(self._identities) > self._max_identities:
            self._identities.clear()
        for key, point in self.values(rule, now).items():
            identity = self._identities.get((rule.name, key))
            if identity is None:
                labels = {**point.labels, **rule.labels, "alertname": rule.name, "severity": rule.severity}
                identity = self._identities[(rule.name, key)] = (labels, fingerprint(labels))
            labels, fp = identity
            seen.add(fp)
            alert = self.alerts.get(fp)
            if alert is None:
                if not rule.exceeds(point.value):
                    continue
                if len(self.alerts) >= self._max_alerts:
                    self.dropped_alerts += 1
                    continue
                alert = self.alerts[fp] = Alert(rule.name, dict(labels), fp, PENDING, now, point.last_seen)
                self._annotate(alert, rule, point)
                changes.append(Transition(alert.snapshot(), INACTIVE))
                if rule.for_ <= 0:
                    changes.append(self._fire(alert, now))
                continue
            alert.last_seen = max(alert.last_seen, point.last_seen)
            self._annotate(alert, rule, point)
            if alert.state == PENDING:
                if not rule.exceeds(point.value):
                    changes.append(self._end(alert, INACTIVE, now))
                elif now - alert.active_since >= rule.for_:
                    changes.append(self._fire(alert, now))
            elif rule.holds(point.value):
                alert.clear_since = None
            else:
                if alert.clear_since is None:
                    alert.clear_since = now
                if now - alert.clear_since >= rule.keep_firing_for:
                    changes.append(self._end(alert, RESOLVED, now))
        # Alerts whose series went quiet: they keep their state until the data is stale.
        for fp, alert in list(self.alerts.items()):
            if alert.rule != rule.name or fp in seen:
                continue
            if now - alert.last_seen >= self.stale_after(rule):
                changes.append(self._end(alert, INACTIVE if alert.state == PENDING else RESOLVED, now))
        return changes

    def _annotate(self, alert: Alert, rule: RuleConfig, point: _Point) -> None:
        _annotate(alert, rule, point.value)
        if point.exemplar is not None:  # the latest trace within what the value reads (see _aggregate)
            trace_id, span_id = point.exemplar[:2]
            alert.annotations["trace_id"], alert.annotations["span_id"] = trace_id, span_id
            link = self._trace_url(trace_id, span_id) if self._trace_url else None
            if link:
                alert.annotations["trace_url"] = link

    def _fire(self, alert: Alert, now: float) -> Transition:
        alert.state, alert.fired_at, alert.clear_since = FIRING, now, None
        return Transition(alert.snapshot(), PENDING)

    def _end(self, alert: Alert, state: str, now: float) -> Transition:
        previous = alert.state
        alert.state = state
        if state == RESOLVED:
            alert.resolved_at = now
        del self.alerts[alert.fingerprint]
        return Transition(alert.snapshot(), previous)

    # --- persistence ----------------------------------------------------------------------

    def to_json(self) -> list[dict[str, Any]]:
        return [a.to_json() for a in self.alerts.values()]

    def restore(self, data: list[dict[str, Any]]) -> int:
        """Take back alerts saved by `to_json`; those of rules no longer configured are dropped."""
        restored = 0
        for item in data:
            alert = Alert.from_json(item)
            rule = self.rules.get(alert.rule)
            if rule is None or alert.state not in (PENDING, FIRING):
                continue
            # A rule whose severity or labels changed makes other alerts; drop the old ones.
            if alert.labels.get("severity") != rule.severity or any(
                    alert.labels.get(k) != v for k, v in rule.labels.items()):
                continue
            self.alerts[alert.fingerprint] = alert
            restored += 1
        return restored


def _annotate(alert: Alert, rule: RuleConfig, value: float) -> None:
    alert.value = value
    labels = alert.labels
    notes = {k: templates.render(v, labels, value, rule.threshold) for k, v in rule.annotations.items()}
    if rule.summary:
        notes["summary"] = templates.render(rule.summary, labels, value, rule.threshold)
    if rule.description:
        notes["description"] = templates.render(rule.description, labels, value, rule.threshold)
    notes["value"] = format(value, ".6g")
    notes["priority"] = PRIORITY[rule.severity]
    alert.annotations = notes


def _aggregate_group(query: QueryConfig, members: list[series_store.Series], now: float) -> float | None:
    how = query.aggregation
    if how in HISTOGRAM_AGGREGATIONS:
        merged: tuple[tuple[float, ...], list[int]] | None = None
        for series in members:
            if series.kind != HISTOGRAM:
                continue
            found = series_store.histogram_counts(series, now, query.window)
            if found is None:
                continue
            if merged is None:
                merged = found
            elif found[0] == merged[0]:  # series on other buckets cannot be merged; the first's win
                merged = (merged[0], [a + b for a, b in zip(merged[1], found[1])])
        if merged is None:
            return None
        if how == "fraction_over":
            return series_store.fraction_over(query.over, *merged)  # type: ignore[arg-type]
        return series_store.quantile(query.quantile, *merged)  # type: ignore[arg-type]
    if how in ("rate", "increase"):
        total, any_value = 0.0, False
        for series in members:
            found = series_store.increase(series, now, query.window)  # type: ignore[arg-type]
            if found is None:
                continue
            amount, span = found
            if how == "rate":
                if span <= 0:
                    continue
                amount /= span
            total += amount
            any_value = True
        return total if any_value else None
    latest = [(s.latest.observed, s.latest.value) for s in members if s.latest is not None and s.kind != HISTOGRAM]
    if not latest:
        return None
    values = [v for _, v in latest]
    if how == "max":
        return max(values)
    if how == "min":
        return min(values)
    if how == "sum":
        return sum(values)
    if how == "avg":
        return sum(values) / len(values)
    if how == "count":
        return float(len(values))
    return max(latest)[1]  # last: the most recently observed series
