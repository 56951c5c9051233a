"""The models view: `GET /api/v1/models` and model health for circuit breakers
(`GET /api/v1/models/{name}/health`).

Two kinds of model: those the ml processors watch (from the predictions in spans or logs) and those
inference servers serve (a receiver, like `inference`, whose `status()` lists `models` carrying a
`source`, the server's kind). A served model's verdict is the receiver's own (its thresholds; a server
that is down is failing). An app asks before it trusts its model, and falls back to a simpler one when
the answer is `failing`. An ml processor's verdict comes from what it reports per model version, worst
version first:

- failing:  the last window drifted as a model (drifted share >= drift_share), or a prediction
            output (`ml.prediction.*`) drifted, or the error rate is >= 20%, or the estimated
            accuracy fell 10 points or more below the reference's
- degraded: some features drifted, or they or the embeddings drifted taken together (multivariate
            drift), or the error rate is >= 5%, or the estimated accuracy fell
            5 points or more, or the engine calls the estimated performance degraded (the realised
            one, from labels, degraded: failing)
- ok:       otherwise, including while the reference is still being learned (said in `reasons`)

The error rate is the recent interval's (`recent.error_rate`) once it saw 20
requests, else the lifetime `error_rate`; `performance.degraded`,
`estimated_accuracy`/`realized_accuracy` and `reference_accuracy` are read
when the engine reports them.
"""

from __future__ import annotations

from typing import Any, Iterator

from agent.component import StatusProvider

HEALTH_ORDER = {"ok": 0, "degraded": 1, "failing": 2}  # the worse, the larger
ERROR_RATE = (0.05, 0.20)  # degraded, failing
ACCURACY_DROP = (0.05, 0.10)
MIN_REQUESTS = 20  # fewer in the recent interval: its error rate says too little


def _status_models(components: dict) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(component id, model entry, the component's whole status) for each model in the components' status."""
    for cid, component in components.items():
        if not isinstance(component, StatusProvider):
            continue
        try:
            snapshot = component.status()
        except Exception:
            continue
        for entry in snapshot.get("models", []) if isinstance(snapshot, dict) else []:
            yield str(cid), entry, snapshot


def model_entries(service: Any) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(processor id, model entry, the processor's whole status) for every model any processor watches."""
    if service.graph is not None:
        yield from _status_models(service.graph.shared)


def served_entries(service: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(receiver id, model entry) for every model a receiver's servers serve (entries with a `source`)."""
    if service.graph is None:
        return
    for cid, entry, _ in _status_models(service.graph.receivers):
        if isinstance(entry, dict) and entry.get("source") and isinstance(entry.get("health"), dict):
            yield cid, entry


def served_health(entry: dict[str, Any]) -> dict[str, Any]:
    """A served model's verdict: the receiver's words (an unknown word reads as failing: say so)."""
    verdict = entry["health"]
    status = verdict.get("status")
    reasons = [str(r) for r in verdict.get("reasons") or []]
    if status not in HEALTH_ORDER:
        return {"status": "failing", "reasons": [f"the receiver's health {status!r} is not a known word", *reasons]}
    return {"status": status, "reasons": reasons}


def processor_sources(service: Any) -> dict[str, str]:
    """Where each ml processor reads its predictions: "spans", "logs" or "spans, logs" (its pipelines)."""
    config = getattr(service, "config", None)
    found: dict[str, set[str]] = {}
    for pipeline in getattr(config, "pipelines", {}).values():
        item = {"traces": "spans", "logs": "logs"}.get(getattr(pipeline.signal, "value", ""))
        for cid in pipeline.processors if item else []:
            found.setdefault(str(cid), set()).add(item)
    return {cid: ", ".join(sorted(items, key=("spans", "logs").index)) for cid, items in found.items()}


def list_models(service: Any) -> list[dict[str, Any]]:
    """Every model: the ml processors' (with `source` "spans"/"logs"), then the served ones."""
    out = []
    sources = processor_sources(service)
    for processor, entry, snapshot in model_entries(service):
        verdict = version_health(entry, snapshot)
        out.append({"model": entry.get("model"), "version": entry.get("version"), "processor": processor,
                    "requests": entry.get("requests"), "errors": entry.get("errors"), "health": verdict["status"],
                    "source": sources.get(processor, "spans")})
    for receiver, entry in served_entries(service):
        verdict = served_health(entry)
        out.append({**entry, "receiver": receiver, "health": verdict["status"], "reasons": verdict["reasons"]})
    return out


def health(service: Any, name: str, version: str | None = None) -> dict[str, Any] | None:
    """The model's verdict over its versions (or only `version`); None when nothing knows it."""
    verdicts = []
    for processor, entry, snapshot in model_entries(service):
        if entry.get("model") != name or (version is not None and entry.get("version") != version):
            continue
        verdicts.append((entry.get("version") or "", {"processor": processor}, version_health(entry, snapshot)))
    for receiver, entry in served_entries(service):
        if entry.get("model") != name or (version is not None and entry.get("version") != version):
            continue
        where = {"receiver": receiver, "source": entry["source"], "server": entry.get("server")}
        verdicts.append((entry.get("version") or "", where, served_health(entry)))
    if not verdicts:
        return None
    worst = max((v["status"] for _, _, v in verdicts), key=HEALTH_ORDER.__getitem__)
    many = len(verdicts) > 1
    versions: dict[str, dict[str, Any]] = {}
    reasons = []
    for ver, where, verdict in verdicts:
        key = ver or "-"
        if key in versions:  # the same version seen twice (two servers, or a server and spans): say where
            key = f"{key} ({where.get('server') or where.get('processor')})"
        versions[key] = {**where, **verdict}
        reasons += [f"version {key}: {reason}" if many else reason for reason in verdict["reasons"]]
    return {"model": name, "status": worst, "reasons": reasons, "versions": versions}


def version_health(entry: dict[str, Any], snapshot: dict[str, Any]) -> dict[str, Any]:
    status, reasons = "ok", []

    def worse(level: str, reason: str) -> None:
        nonlocal status
        reasons.append(reason)
        if HEALTH_ORDER[level] > HEALTH_ORDER[status]:
            status = level

    if entry.get("phase") == "learning":
        warmup = entry.get("warmup") or {}
        reasons.append(f"learning the reference ({warmup.get('rows', 0)} of {warmup.get('needed', '?')} "
                       f"predictions); no drift verdict yet")
    drift = entry.get("drift")
    if drift is None and entry.get("phase") != "learning":
        reasons.append("no window evaluated yet")
    if drift is not None:
        features = drift.get("features", {})
        drifted = drift.get("drifted_features", [])
        outputs = [n for n in drifted if features.get(n, {}).get("output")]
        inputs = [n for n in drifted if n not in outputs]
        tested = sum(1 for f in features.values() if f.get("tested"))
        if drift.get("detected"):
            worse("failing", f"{len(drifted)} of {tested} columns drifted (share {drift.get('share', 0):.2f} "
                             f">= {snapshot.get('drift_share_threshold', 0.5):g}): {', '.join(drifted)}")
        elif outputs:
            # The outputs moved; the features that moved with them are the likely cause.
            cause = f"; feature drift: {', '.join(inputs)}" if inputs else "; no feature drifted"
            worse("failing", f"prediction drift: {', '.join(outputs)}{cause} ({len(drifted)} of {tested} columns)")
        elif inputs:
            worse("degraded", f"feature drift: {', '.join(inputs)} ({len(inputs)} of {tested} columns)")
    multivariate = entry.get("multivariate") or {}
    if multivariate.get("drifted"):
        worse("degraded", f"multivariate drift ({multivariate.get('method')} on the {multivariate.get('input')}): "
                          f"statistic {multivariate['statistic']:.4g} > threshold {multivariate['threshold']:.4g}")
    # The recent interval's error rate when it saw enough requests to say, else the lifetime one.
    recent = entry.get("recent") or {}
    error_rate = recent.get("error_rate") if (recent.get("requests") or 0) >= MIN_REQUESTS \
        else entry.get("error_rate")
    if isinstance(error_rate, (int, float)):
        if error_rate >= ERROR_RATE[1]:
            worse("failing", f"error rate {error_rate:.1%}")
        elif error_rate >= ERROR_RATE[0]:
            worse("degraded", f"error rate {error_rate:.1%}")
    # The engine's own verdict on performance (estimated without labels, realised with them).
    for source, degraded in ((entry.get("performance") or {}).get("degraded") or {}).items():
        if degraded:
            accuracy = entry.get(f"{source}_accuracy")
            worse("failing" if source == "realized" else "degraded",
                  f"{source} performance degraded" + (f" (accuracy {accuracy:.1%})"
                                                      if isinstance(accuracy, (int, float)) else ""))
    estimated, reference = entry.get("estimated_accuracy"), entry.get("reference_accuracy")
    if isinstance(estimated, (int, float)) and isinstance(reference, (int, float)):
        drop = reference - estimated
        if drop >= ACCURACY_DROP[1]:
            worse("failing", f"estimated accuracy {estimated:.1%}, {drop:.1%} below the reference")
        elif drop >= ACCURACY_DROP[0]:
            worse("degraded", f"estimated accuracy {estimated:.1%}, {drop:.1%} below the reference")
    return {"status": status, "reasons": reasons}
