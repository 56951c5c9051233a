"""What `GET /api/v1/status` answers: the service, its pipelines and every component.

    {"version", "state", "ready", "problems", "notices", "config", "started_at", "uptime_seconds", "last_reload",
     "process": {"cpu_seconds", "memory_rss_bytes"},
     "pipelines": {"traces": {"signal", "receivers", "processors", "exporters"}, ...},
     "components": {"receivers"|"processors"|"exporters": {id: {
         "type", "state", "pipelines",
         "items": {"spans": {"accepted": n, "refused": n}, ...},     # counters by signal
         "queue": {"size": n, "capacity": n},                       # exporters with a sending queue
         "status": {...}}}},                                        # the component's own status()
     "telemetry": [{"name", "attributes", "value"}, ...]}

`notices` are what the service found wrong with how data flows, but that
does not stop it (predictions that reach no `ml` processor), and what a
component's status lists as `notices` (a notifier that cannot deliver). Counters come from the self-telemetry, by the component's id; `status` is
what the component's `status()` returns (for a processor with shared state,
like `ml`, that state's).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from agent import __version__
from agent.component import StatusProvider
from agent.signals import Signal

log = logging.getLogger("vigil.admin")

# What each kind counts, by the counter names' middle part (vigil_<kind>_<what>_<items>).
_RECEIVER = ("accepted", "refused")
_EXPORTER = ("sent", "send_failed", "enqueue_failed")


def collect(service: Any) -> dict[str, Any]:
    values = service.telemetry.values()
    graph, config = service.graph, service.config
    out: dict[str, Any] = {
        "version": __version__,
        "state": service.state,
        "ready": service.ready,
        "problems": list(service.problems),
        "notices": list(service.graph.unwatched.notices) if service.graph is not None else [],
        "config": config.source,
        "started_at": service.started_at,
        "uptime_seconds": None if service.started_at is None else time.time() - service.started_at,
        "last_reload": service.last_reload,
        "process": {"cpu_seconds": _total(values, "vigil_process_cpu_seconds"),
                    "memory_rss_bytes": _total(values, "vigil_process_memory_rss")},
        "pipelines": {str(pid): {"signal": p.signal.value,
                                 "receivers": [str(r) for r in p.receivers + p.derived_from],
                                 "processors": [str(c) for c in p.processors],
                                 "exporters": [str(e) for e in p.exporters]}
                      for pid, p in config.pipelines.items()},
        "components": {"receivers": {}, "processors": {}, "exporters": {}},
        "telemetry": [{"name": name, "attributes": dict(attrs), "value": value}
                      for name, series in sorted(values.items()) for attrs, value in series.items()],
    }
    if graph is None:
        return out
    not_running = {p.split(":", 1)[0] for p in service.problems}

    def pipelines_of(section: str, cid: Any) -> list[str]:
        ids = []
        for pid, p in config.pipelines.items():
            listed = {"receivers": p.receivers + p.derived_from, "processors": p.processors,
                      "exporters": p.exporters}[section]
            if cid in listed:
                ids.append(str(pid))
        return ids

    def signals_of(pids: list[str]) -> list[Signal]:
        return sorted({Signal(pid.split("/")[0]) for pid in pids}, key=lambda s: s.value)

    for cid, receiver in graph.receivers.items():
        pids = pipelines_of("receivers", cid)
        entry = _entry(cid, receiver, pids, f"receivers.{cid}" not in not_running)
        entry["items"] = {s.item_name: {what: _total(values, f"vigil_receiver_{what}_{s.item_name}",
                                                     receiver=str(cid)) for what in _RECEIVER}
                          for s in signals_of(pids)}
        out["components"]["receivers"][str(cid)] = entry

    processors: dict[Any, list] = {}
    for chain in graph.pipelines.values():
        for cid, processor in chain.processors:
            processors.setdefault(cid, []).append((chain.id, processor))
    for cid, steps in processors.items():
        pids = [str(pid) for pid, _ in steps]
        shared = graph.shared.get(cid)
        entry = _entry(cid, shared if shared is not None else steps[0][1], pids, True)
        if shared is None and len(steps) > 1:
            entry["status"] = {str(pid): _status_of(p) for pid, p in steps if isinstance(p, StatusProvider)} \
                or None
        entry["items"] = {str(pid): {what: _total(values, f"vigil_processor_{what}_items",
                                                  processor=str(cid), pipeline=str(pid))
                                     for what in ("incoming", "outgoing")}
                          for pid, _ in steps}
        dropped = {s.item_name: _total(values, f"vigil_processor_dropped_{s.item_name}", processor=str(cid))
                   for s in signals_of(pids)}
        if any(dropped.values()):
            entry["dropped"] = dropped
        out["components"]["processors"][str(cid)] = entry

    for cid, exporter in graph.exporters.items():
        pids = pipelines_of("exporters", cid)
        entry = _entry(cid, exporter, pids, True)
        entry["items"] = {s.item_name: {what: _total(values, f"vigil_exporter_{what}_{s.item_name}",
                                                     exporter=str(cid)) for what in _EXPORTER}
                          for s in signals_of(pids)}
        capacity = _series(values, "vigil_exporter_queue_capacity", exporter=str(cid))
        if capacity:
            entry["queue"] = {"size": _total(values, "vigil_exporter_queue_size", exporter=str(cid)),
                              "capacity": sum(capacity)}
        out["components"]["exporters"][str(cid)] = entry
    for section in out["components"].values():  # what a component says is wrong, beside the service's
        for entry in section.values():
            if isinstance(entry.get("status"), dict):
                out["notices"] += [str(n) for n in entry["status"].get("notices", [])]
    return out


def _entry(cid: Any, component: Any, pipelines: list[str], running: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": cid.type, "state": "running" if running else "not running",
                             "pipelines": pipelines}
    if isinstance(component, StatusProvider):
        entry["status"] = _status_of(component)
    return entry


def _status_of(component: Any) -> Any:
    try:
        return component.status()
    except Exception as exc:  # one component's bug must not take the whole status down
        log.exception("status() of %s failed", type(component).__name__)
        return {"error": str(exc)}


def _series(values: dict, name: str, **attributes: str) -> list[float]:
    wanted = set(attributes.items())
    return [v for attrs, v in values.get(name, {}).items() if wanted <= attrs]


def _total(values: dict, name: str, **attributes: str) -> float:
    total = sum(_series(values, name, **attributes))
    return int(total) if float(total).is_integer() else total
