"""A served model's health against the receiver's thresholds, in the model health API's words.

- failing:  its server is down (the scrape failed), or the error rate is above `failing_error_rate`
- degraded: the error rate is above `max_error_rate`, or the p95 latency above `max_latency_p95`
            (servers that generate tokens: the p95 time to first token above `max_ttft_p95`)
- ok:       otherwise

The error rate is the last interval's once it saw `min_requests`, else the one since Vigil first saw
the model (once that saw `min_requests`); latencies are the last interval's.
"""

from __future__ import annotations

from typing import Any

from agent.admin.models import HEALTH_ORDER
from agent.receivers.inference.config import HealthConfig


def judge(entry: dict[str, Any], interval_requests: float, generative: bool, thresholds: HealthConfig,
          down_reason: str | None) -> dict[str, Any]:
    """`{"status": ok|degraded|failing, "reasons": [...]}` for one model's status entry."""
    status, reasons = "ok", []

    def worse(level: str, reason: str) -> None:
        nonlocal status
        reasons.append(reason)
        if HEALTH_ORDER[level] > HEALTH_ORDER[status]:
            status = level

    if not entry["up"]:
        worse("failing", f"server down: {down_reason or 'not scraped'}")
    rate = None
    if interval_requests >= thresholds.min_requests:
        rate = entry["error_rate"]
    elif entry["requests"] >= thresholds.min_requests:
        rate = entry["errors"] / entry["requests"]
    if rate is not None:
        if rate > thresholds.failing_error_rate:
            worse("failing", f"error rate {rate:.1%} > {thresholds.failing_error_rate:.0%}")
        elif rate > thresholds.max_error_rate:
            worse("degraded", f"error rate {rate:.1%} > {thresholds.max_error_rate:.0%}")
    if generative:
        ttft = entry["ttft_p95_s"]
        if ttft is not None and ttft > thresholds.max_ttft_p95:
            worse("degraded", f"time to first token p95 {ttft:.3g}s > {thresholds.max_ttft_p95:g}s")
    else:
        latency = entry["latency_p95_s"]
        if latency is None and entry["latency_from"] == "mean":
            latency, what = entry["latency_mean_s"], "mean latency"
        else:
            what = "latency p95"
        if latency is not None and latency > thresholds.max_latency_p95:
            worse("degraded", f"{what} {latency:.3g}s > {thresholds.max_latency_p95:g}s")
    return {"status": status, "reasons": reasons}
