"""The `ml` processor's status: the JSON the admin API, the status page and `vigil status` read.

Per model and version: requests, reference, windows evaluated, the last
window's drift with each column's reference and current distribution, and the
recent traffic and performance (JSON-ready: NaN and infinities as null).
numpy-free, so an engine not yet loaded answers with the same shape.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Iterable

from agent.processors.ml.history import finite

if TYPE_CHECKING:
    from agent.ml.drift import DriftResult
    from agent.ml.labels import LabelJoin
    from agent.processors.ml.config import MlProcessorConfig
    from agent.processors.ml.engine import ModelState


def summary(models: Iterable[dict], config: MlProcessorConfig, pending: int = 0, waiting: int = 0) -> dict:
    """The whole status: each model version's entry, the drift decision's threshold and the label join."""
    return {"models": list(models), "drift_share_threshold": config.drift.drift_share,
            "labels": {"pending": pending, "waiting": waiting, "max_pending": config.labels.max_pending}}


def remember(state: ModelState, result: DriftResult, window_bins: dict[str, dict] | None = None) -> None:
    """Keep a window's verdict, its categorical counts and its numeric columns' counts on the widened
    axis (`agent.ml.distribution`) for the status (in the worker thread)."""
    counts = {name: dict(zip(col.categories, col.current_counts.tolist()))
              for name, col in result.columns.items() if col.categories is not None}
    state.last_drift, state.last_counts, state.last_window_ns = result, counts, time.time_ns()
    state.last_window_bins = window_bins or {}


def model_status(state: ModelState, config: MlProcessorConfig, join: LabelJoin) -> dict:
    profile = state.profile
    entry: dict = {
        "model": state.model, "version": state.version, "service": state.service_name,
        "requests": state.requests, "windows_evaluated": state.windows_evaluated,
        "phase": "monitoring" if profile is not None else "learning",
        "warmup": None if profile is not None else {"rows": state.warmup.rows, "needed": config.reference.warmup},
        "reference": None if profile is None else {"source": profile.source or "profile", "rows": profile.rows},
        "window": {"rows": state.window.rows, "size": config.window.size},
        "drift": None,
        **_traffic_status(state, join),
        "history": state.history.status(),
    }
    result = state.last_drift
    if result is not None and profile is not None:
        features = {}
        for name, reference in profile.columns().items():
            col = result.columns.get(name)
            if col is None:
                continue
            if reference.is_numeric:
                # bounds/reference/current: on the reference's bins (open below the first edge and above
                # the last); range: the reference's; window: the window on bins widened to its own range.
                distribution = {"bounds": reference.bin_edges.tolist(),
                                "reference": reference.bin_counts.tolist(),
                                "current": None if col.current_counts is None else col.current_counts.tolist(),
                                "range": [finite(float(reference.min)), finite(float(reference.max))],
                                "window": state.last_window_bins.get(name)}
            else:
                current = state.last_counts.get(name, {})
                names = list(reference.categories) + [c for c in current if c not in reference.categories]
                distribution = {"categories": names,
                                "reference": [reference.categories.get(c, 0) for c in names],
                                "current": [current.get(c, 0) for c in names]}
            features[name] = {"kind": reference.kind, "output": name in profile.predictions,
                              "tested": col.tested, "drifted": col.drifted, "method": col.method,
                              "score": finite(col.score), "p_value": finite(col.p_adjusted),
                              "distribution": distribution}
        entry["drift"] = {"share": result.share, "detected": result.detected,
                          "drifted_features": result.drifted_columns,
                          "time_unix_nano": state.last_window_ns, "features": features}
    return entry


def _traffic_status(state: ModelState, join: LabelJoin) -> dict[str, Any]:
    """Requests, errors, latency and confidence of the recent past (the last interval and the
    current one), and the last estimated and realised performance."""
    traffic = state.traffic
    if traffic is None:
        return {}
    recent = traffic.recent()
    latency = recent.duration
    return {
        "errors": traffic.errors,
        "error_rate": finite(traffic.errors / traffic.requests) if traffic.requests else None,
        "recent": {"requests": recent.requests, "errors": recent.errors,
                   "error_rate": finite(recent.errors / recent.requests) if recent.requests else None},
        "latency_seconds": {f"p{round(q * 100)}": finite(latency.quantile(q)) for q in (0.5, 0.95, 0.99)},
        "confidence_mean": finite(recent.confidence.mean()),
        "low_confidence_ratio": finite(recent.low_confidence / recent.confidence.count)
        if recent.confidence.count else None,
        "estimated_accuracy": finite(state.last_estimate.get("accuracy", math.nan)),
        "realized_accuracy": finite(state.last_realized.get("accuracy", math.nan)),
        "performance": {"estimated": {k: finite(v) for k, v in state.last_estimate.items()},
                        "realized": {k: finite(v) for k, v in state.last_realized.items()},
                        "degraded": dict(state.degraded)},
        "pending_labels": join.pending_count.get((state.model, state.version), 0),
    }
