"""A status as the admin API gives it, made up at a chosen size: model versions with columns, their
history of windows and intervals, alerts and GPUs. For the page's weight test and `bench/status_page.py`;
the shapes are the ml processor's, the alerts processor's and the scraping receivers' own (the browser
tests also run the real ones)."""

from __future__ import annotations

import math
import random
from typing import Any

from agent.admin import models as model_health

NOW = 1_764_000_000.0
WINDOW_S = 300


def status(models: int = 10, features: int = 50, windows: int = 48, gpus: int = 8, alerts: int = 12,
           drifted: int = 8, seed: int = 0) -> tuple[dict[str, Any], dict, list[dict[str, Any]]]:
    """(status, health verdicts, alerts) of `models` model versions with `features` columns each."""
    rng = random.Random(seed)
    entries = [_model(rng, f"model-{i}", str(i % 3), features, windows, drifted if i % 2 == 0 else 0)
               for i in range(models)]
    snapshot = {"models": entries, "drift_share_threshold": 0.5, "labels": {"pending": 0, "waiting": 0}}
    found = {
        "version": "1.0", "state": "running", "ready": True, "problems": [], "notices": [], "config": "vigil.yaml",
        "uptime_seconds": 86400, "process": {"cpu_seconds": 12.5, "memory_rss_bytes": 300 << 20},
        "pipelines": {"traces": {"signal": "traces", "receivers": ["otlp"], "processors": ["ml"],
                                 "exporters": ["otlp"]}},
        "components": {
            "receivers": {"hostmetrics": {"type": "hostmetrics", "state": "running", "pipelines": ["metrics"],
                                          "status": {"latest": {"host": _host(rng), "gpus": []}}},
                          "nvml": {"type": "nvml", "state": "running", "pipelines": ["metrics"],
                                   "status": {"latest": {"host": {}, "gpus": [_gpu(rng, i) for i in range(gpus)]}}}},
            "processors": {"ml": {"type": "ml", "state": "running", "pipelines": ["traces"], "status": snapshot}},
            "exporters": {}},
    }
    health = {(m["model"], m["version"]): model_health.version_health(m, snapshot) for m in entries}
    return found, health, [{"processor": "alerts", "alerts": [_alert(rng, i) for i in range(alerts)]}]


def _model(rng: random.Random, name: str, version: str, n: int, windows: int, drifted: int) -> dict[str, Any]:
    features = {}
    names = [f"feature_{j}" if j % 5 else f"city <{j}> & 'co'" for j in range(n)] + ["ml.prediction.confidence"]
    for j, column in enumerate(names):
        is_drifted = j < drifted
        if j % 5 == 0 and column != "ml.prediction.confidence":
            cats = [f"category {k} «é»" for k in range(20)]
            dist = {"categories": cats, "reference": [rng.randint(10, 100) for _ in cats],
                    "current": [rng.randint(10, 100) for _ in cats]}
            kind, method = "categorical", "jensen_shannon"
        else:
            bounds = [k / 10 for k in range(1, 10)] if column == "ml.prediction.confidence" else \
                [round(-2 + 0.5 * k, 3) for k in range(9)]
            shift = 6 if is_drifted else 0
            window = [b + shift for b in [bounds[0] - 1, *bounds, bounds[-1] + 1]]
            dist = {"bounds": bounds, "reference": [100] * 10, "current": [0] * 9 + [100] if shift else [100] * 10,
                    "range": [bounds[0] - 1, bounds[-1] + 1],
                    "window": {"bounds": window, "counts": [rng.randint(50, 150) for _ in range(10)]}}
            kind, method = "numeric", "wasserstein"
        features[column] = {"kind": kind, "output": column.startswith("ml."), "tested": True, "drifted": is_drifted,
                            "method": method, "score": rng.random() + (1 if is_drifted else 0),
                            "p_value": 1e-6 if is_drifted else rng.random(), "distribution": dist}
    start_ns = int((NOW - windows * WINDOW_S) * 1e9)
    history = {"columns": names, "windows": [], "intervals": [], "labels": []}
    for w in range(windows):
        t = start_ns + w * WINDOW_S * 10**9
        late = w >= windows - 3 and drifted
        history["windows"].append({
            "time_unix_nano": t, "rows": 1000, "share": (drifted / (n + 1)) if late else rng.random() * 0.1,
            "detected": False,
            "scores": [round(rng.random() + (1 if late and j < drifted else 0), 4) for j in range(len(names))],
            "drifted": list(range(drifted)) if late else [],
            "multivariate": {"statistic": rng.random(), "threshold": 0.8, "drifted": False},
            "estimated": {"accuracy": 0.9 - (0.1 if late else 0) + rng.random() * 0.01}})
        history["intervals"].append({"time_unix_nano": t, "seconds": 60.0, "requests": rng.randint(900, 1100),
                                     "errors": rng.randint(0, 20), "latency_seconds": {
                                         "p50": 0.02 + rng.random() * 0.005, "p95": 0.05 + rng.random() * 0.01,
                                         "p99": 0.09 + rng.random() * 0.02}})
        history["labels"].append({"time_unix_nano": t + 10**9, "realized": {"accuracy": 0.88 + rng.random() * 0.02}})
    shares = [s for s in (history["windows"][-1]["share"],)]
    return {
        "model": name, "version": version, "service": "api", "requests": 123456, "windows_evaluated": windows,
        "phase": "monitoring", "warmup": None, "reference": {"source": "warmup", "rows": 5000},
        "window": {"rows": 10, "size": 1000},
        "drift": {"share": shares[0], "detected": False, "drifted_features": names[:drifted],
                  "time_unix_nano": history["windows"][-1]["time_unix_nano"], "features": features},
        "errors": 10, "error_rate": 0.001, "recent": {"requests": 1000, "errors": 1, "error_rate": 0.001},
        "latency_seconds": {"p50": 0.021, "p95": 0.055, "p99": 0.1}, "confidence_mean": 0.8,
        "estimated_accuracy": 0.8, "realized_accuracy": 0.89,
        "performance": {"estimated": {"accuracy": 0.8}, "realized": {"accuracy": 0.89}, "degraded": {}},
        "pending_labels": 0, "history": history,
        "exemplars": [{"kind": "slowest", "trace_id": f"{k:032x}", "span_id": f"{k:016x}", "value": 0.5,
                       "time_unix_nano": start_ns, "feature": None,
                       "trace_url": f"http://jaeger.local/trace/{k:032x}"} for k in range(12)],
        "multivariate": {"method": "mmd", "input": "numeric features", "statistic": 0.4, "threshold": 0.8,
                         "p_value": 0.3, "drifted": False, "tested": True, "rows": 1000, "reason": None},
    }


def _host(rng: random.Random) -> dict[str, Any]:
    history = [rng.random() for _ in range(30)]
    return {"cpu_utilization": history[-1], "memory_used_bytes": 40 << 30, "memory_limit_bytes": 128 << 30,
            "memory_utilization": 40 / 128, "history": {"cpu_utilization": history,
                                                        "memory_utilization": [0.3125] * 30}}


def _gpu(rng: random.Random, i: int) -> dict[str, Any]:
    series = {key: [scale * rng.random() for _ in range(30)]
              for key, scale in (("utilization", 1), ("temperature_celsius", 90), ("power_watts", 700),
                                 ("memory_utilization", 1))}
    return {"id": f"GPU-{i}", "index": i, "model": "NVIDIA H200", "memory_used_bytes": 60 << 30,
            "memory_limit_bytes": 141 << 30, **{k: v[-1] for k, v in series.items()}, "history": series}


def _alert(rng: random.Random, i: int) -> dict[str, Any]:
    state = ("firing", "pending")[i % 2]
    return {"rule": f"ModelDrift{i}", "labels": {"alertname": f"ModelDrift{i}", "severity": ("critical", "warning")[i % 2],
                                                 "ml.model.name": f"model-{i} <b>"},
            "fingerprint": f"{i:016x}", "state": state, "active_since": NOW - 600, "last_seen": NOW,
            "value": math.pi, "fired_at": NOW - 300 if state == "firing" else None, "resolved_at": None,
            "clear_since": None, "annotations": {"summary": f"drift on model-{i} <script>x</script>"},
            "silenced_by": ["s1"] if i % 5 == 4 else []}
