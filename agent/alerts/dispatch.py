"""From alerts to notifications, as Alertmanager does it: routes, groups, waits, repeats, silences.

An alert that fires or resolves is routed by its labels: the routes are tried
in order and the first that matches takes it (a route with `continue: true`
lets the next ones try too); what no route takes goes to the top route. In a
route, alerts with the same values of its `group_by` labels form one group,
and a group is notified as one: its first notification waits `group_wait`
(so alerts that fire together go out together), later changes wait until
`group_interval` after the previous notification, and a group that still
fires with nothing new is notified again every `repeat_interval`. A group's
notification lists its firing alerts and the alerts that resolved since it
last notified; an alert is announced as resolved only if it was announced as
firing, and silenced alerts are left out of both.

Like the engine, the dispatcher reads time only from the `now` it is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agent.alerts.config import AlertsConfig, RouteConfig
from agent.alerts.engine import FIRING, RESOLVED, Alert
from agent.alerts.matchers import Matcher, matches_all
from agent.alerts.silences import Silences


@dataclass(frozen=True)
class Route:
    index: int  # -1: the top route
    matchers: tuple[Matcher, ...]
    notifiers: tuple[str, ...]
    group_by: tuple[str, ...]
    group_wait: float
    group_interval: float
    repeat_interval: float
    continue_: bool = False

    def group_labels(self, labels: dict[str, str]) -> dict[str, str]:
        if "..." in self.group_by:
            return dict(labels)
        return {k: labels[k] for k in self.group_by if k in labels}


def build_routes(config: AlertsConfig) -> tuple[list[Route], Route]:
    top = config.route

    def make(index: int, r: RouteConfig) -> Route:
        return Route(index, r.matchers, tuple(r.notifiers),
                     tuple(r.group_by if r.group_by is not None else top.group_by),
                     r.group_wait if r.group_wait is not None else top.group_wait,
                     r.group_interval if r.group_interval is not None else top.group_interval,
                     r.repeat_interval if r.repeat_interval is not None else top.repeat_interval, r.continue_)

    routes = [make(i, r) for i, r in enumerate(top.routes)]
    default = Route(-1, (), tuple(top.notifiers), tuple(top.group_by), top.group_wait, top.group_interval,
                    top.repeat_interval)
    return routes, default


@dataclass
class Group:
    key: str
    route: Route
    labels: dict[str, str]
    created: float
    alerts: dict[str, Alert] = field(default_factory=dict)  # firing, and resolved not yet told
    notified: set[str] = field(default_factory=set)  # firing alerts the last notification announced
    last_notified: float | None = None
    next_flush: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "route": self.route.index, "labels": self.labels, "created": self.created,
                "alerts": [a.to_json() for a in self.alerts.values()], "notified": sorted(self.notified),
                "last_notified": self.last_notified, "next_flush": self.next_flush}


@dataclass(frozen=True)
class Outgoing:
    """A group's notification, for each of `notifiers`."""

    group_key: str
    group_labels: dict[str, str]
    notifiers: tuple[str, ...]
    firing: tuple[Alert, ...]
    resolved: tuple[Alert, ...]


class Dispatcher:
    def __init__(self, routes: list[Route], default: Route, silences: Silences) -> None:
        self._routes = routes
        self._default = default
        self.silences = silences
        self.groups: dict[str, Group] = {}

    def routes_for(self, labels: dict[str, str]) -> list[Route]:
        chosen = []
        for route in self._routes:
            if matches_all(route.matchers, labels):
                chosen.append(route)
                if not route.continue_:
                    break
        return chosen or [self._default]

    def update(self, alert: Alert, now: float) -> None:
        """Take a firing or resolved alert into the groups its routes put it in."""
        if alert.state not in (FIRING, RESOLVED):
            return
        for route in self.routes_for(alert.labels):
            labels = route.group_labels(alert.labels)
            key = f"{route.index}:{json.dumps(labels, sort_keys=True, separators=(',', ':'))}"
            group = self.groups.get(key)
            if group is None:
                if alert.state == RESOLVED:
                    continue  # resolved before any notification about it could go out
                group = self.groups[key] = Group(key, route, labels, now)
            if alert.state == RESOLVED and alert.fingerprint not in group.notified:
                group.alerts.pop(alert.fingerprint, None)  # never announced: nothing to take back
            else:
                group.alerts[alert.fingerprint] = alert

    def due(self, now: float) -> list[Outgoing]:
        """The notifications due at `now`; groups with nothing left to say are forgotten."""
        out: list[Outgoing] = []
        for key, group in list(self.groups.items()):
            firing, resolved, silenced = self._split(group, now)
            new = {a.fingerprint for a in firing} - group.notified
            changed = bool(new or resolved)
            if group.next_flush is None and changed:
                group.next_flush = (group.created + group.route.group_wait if group.last_notified is None
                                    else group.last_notified + group.route.group_interval)
            repeat = (bool(firing) and group.last_notified is not None
                      and now >= group.last_notified + group.route.repeat_interval)
            flush = group.next_flush is not None and now >= group.next_flush
            if flush or repeat:
                if (changed or repeat) and group.route.notifiers and (firing or resolved):
                    out.append(Outgoing(key, dict(group.labels), group.route.notifiers, tuple(firing),
                                        tuple(resolved)))
                if changed or repeat:
                    group.last_notified = now
                    group.notified = {a.fingerprint for a in firing}
                    for alert in resolved:
                        del group.alerts[alert.fingerprint]
                group.next_flush = None
            # Silenced alerts that resolve are dropped without a word.
            for alert in silenced:
                if alert.state == RESOLVED:
                    group.alerts.pop(alert.fingerprint, None)
                    group.notified.discard(alert.fingerprint)
            if not group.alerts and group.next_flush is None:
                del self.groups[key]
        return out

    def _split(self, group: Group, now: float) -> tuple[list[Alert], list[Alert], list[Alert]]:
        firing, resolved, silenced = [], [], []
        for alert in sorted(group.alerts.values(), key=lambda a: (a.active_since, a.fingerprint)):
            if self.silences.silencing(alert.labels, now):
                silenced.append(alert)
            elif alert.state == FIRING:
                firing.append(alert)
            elif alert.fingerprint in group.notified:
                resolved.append(alert)
        return firing, resolved, silenced

    def next_due(self) -> float | None:
        """The earliest time a flush or repeat is scheduled (None when none is)."""
        times = [g.next_flush for g in self.groups.values() if g.next_flush is not None]
        times += [g.last_notified + g.route.repeat_interval for g in self.groups.values()
                  if g.last_notified is not None and g.notified]
        return min(times, default=None)

    # --- persistence -------------------------------------------------------------------------

    def to_json(self) -> list[dict[str, Any]]:
        return [g.to_json() for g in self.groups.values()]

    def restore(self, data: list[dict[str, Any]]) -> None:
        routes = {r.index: r for r in [*self._routes, self._default]}
        for item in data:
            route = routes.get(item.get("route"))
            if route is None:
                continue  # the routes changed: the group's alerts come back through update()
            group = Group(item["key"], route, dict(item["labels"]), float(item["created"]),
                          {a["fingerprint"]: Alert.from_json(a) for a in item.get("alerts", [])},
                          set(item.get("notified", [])), item.get("last_notified"), item.get("next_flush"))
            self.groups[group.key] = group
