"""The `ml` processor's exemplars: those of a drift window, and the telling predictions its status lists.

Per model version the status carries, at most `exemplars.max_per_point` of each
kind: `slowest` and `lowest_confidence` (the recent interval's), `out_of_range`
and `data_health` (the last window's), each with its trace and span ids as hex
and, when `service.trace_view_url` is set, the link to its trace.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Mapping

from agent.metrics_builder import Exemplar
from agent.ml import exemplars

if TYPE_CHECKING:
    from agent.ml.columns import ColumnView
    from agent.ml.drift import DriftResult
    from agent.ml.health import ColumnHealth
    from agent.ml.profile import Profile
    from agent.processors.ml.engine import ModelState


def entry(kind: str, e: Exemplar, feature: str | None = None, check: str | None = None) -> dict:
    """One exemplar as the status lists it."""
    out = {"kind": kind, "trace_id": e.trace_id.hex(), "span_id": e.span_id.hex(),
           "value": e.value if math.isfinite(e.value) else None, "time_unix_nano": e.time_unix_nano,
           "feature": feature}
    if check is not None:
        out["check"] = check  # data_health: which check the prediction failed
    return out


def window_exemplars(state: ModelState, profile: Profile, result: DriftResult, views: Mapping[str, ColumnView],
                     healths: Mapping[str, ColumnHealth], traces: exemplars.Traces | None,
                     limit: int) -> exemplars.WindowExemplars | None:
    """The window's exemplars for its metrics; keeps the telling ones on `state` for the status."""
    if traces is None:
        state.window_exemplars = []
        return None
    found = exemplars.window_exemplars(profile.columns(), views, healths, result.drifted_columns, traces, limit)
    furthest = sorted(((far, name, e) for name, c in found.columns.items() for far, e in c.out_of_range),
                      key=lambda t: -t[0])[:limit]
    health = sorted(((healths[name].as_dict()[check], name, check, e) for name, c in found.columns.items()
                     for check, hits in c.health.items() if check != "out_of_range" for e in hits),
                    key=lambda t: -t[0])[:limit]
    state.window_exemplars = ([entry("out_of_range", e, name) for _, name, e in furthest]
                              + [entry("data_health", e, name, check) for _, name, check, e in health])
    return found


def exemplar_status(state: ModelState, limit: int, trace_url: Callable[[str, str], str | None]) -> list[dict]:
    """The model version's telling predictions, for `status()`; [] with exemplars off."""
    if not limit:
        return []
    out = []
    if state.traffic is not None:
        recent = state.traffic.recent()
        for kind, reservoir in (("slowest", recent.slowest), ("lowest_confidence", recent.lowest_confidence)):
            if reservoir is not None:
                out.extend(entry(kind, e) for e in reservoir.take(limit))
    out.extend(dict(e) for e in state.window_exemplars)
    for e in out:
        url = trace_url(e["trace_id"], e["span_id"])
        if url is not None:
            e["trace_url"] = url
    return out
