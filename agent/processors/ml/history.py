"""A model version's recent past, for the status page: the last windows, intervals and label windows.

Each is a ring of at most `SIZE` entries (a day of hourly windows, four hours
of 5-minute intervals): per drift window its time, rows, drift share, each
column's effect size and verdict, the multivariate statistic and the
label-free estimate; per interval its requests, errors and latency
quantiles; per window of joined labels the realised metrics. Appended in the
worker thread, copied by `status()`.

A window's effect sizes are one float32 array in the order of `drift`'s names (the
reference's, the same for every window until the reference changes), not a
dict of names: the history of hundreds of model versions stays small.
"""

from __future__ import annotations

import math
import time
from array import array
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.ml.drift import DriftResult
    from agent.ml.traffic import Interval

SIZE = 48


class History:
    def __init__(self, size: int = SIZE) -> None:
        self._size = size
        # The reference's column names (the order of every window's scores) and its windows, as one
        # value: a reference change replaces both at once, so `status()` never pairs one's windows
        # with another's names.
        self.drift: tuple[tuple[str, ...], deque[dict[str, Any]]] = ((), deque(maxlen=size))
        self.intervals: deque[dict[str, Any]] = deque(maxlen=size)
        self.labels: deque[dict[str, Any]] = deque(maxlen=size)

    def window(self, result: DriftResult, rows: int, estimate: dict[str, float] | None,
               multivariate: dict[str, Any] | None) -> None:
        """A drift window just evaluated."""
        names = tuple(result.columns)
        if names != self.drift[0]:  # another reference: the past windows measured other columns
            self.drift = (names, deque(maxlen=self._size))
        cols = result.columns.values()
        self.drift[1].append({
            "time_unix_nano": time.time_ns(), "rows": rows, "share": finite(result.share),
            "detected": result.detected,
            "scores": array("f", (col.score for col in cols)),
            "drifted": tuple(i for i, col in enumerate(cols) if col.drifted),
            "multivariate": None if not multivariate else {
                "statistic": finite(multivariate.get("statistic")),
                "threshold": finite(multivariate.get("threshold")), "drifted": bool(multivariate.get("drifted"))},
            "estimated": {k: finite(v) for k, v in (estimate or {}).items() if k != "rows"},
        })

    def interval(self, interval: Interval, seconds: float) -> None:
        """An interval's traffic, just taken (seconds: how long it lasted)."""
        latency = interval.duration
        self.intervals.append({
            "time_unix_nano": time.time_ns(), "seconds": seconds, "requests": interval.requests,
            "errors": interval.errors,
            "latency_seconds": {f"p{round(q * 100)}": finite(latency.quantile(q)) if interval.requests else None
                                for q in (0.5, 0.95, 0.99)}})

    def realized(self, summary: dict[str, float]) -> None:
        """A window of joined labels just evaluated."""
        self.labels.append({"time_unix_nano": time.time_ns(),
                            "realized": {k: finite(v) for k, v in summary.items()}})

    def status(self) -> dict[str, Any]:
        """{"columns": names, "windows": [{…, "scores": [effect size per column], "drifted": [column
        indexes]}], "intervals": […], "labels": […]}"""
        columns, found = self.drift
        windows = [{**w, "scores": [_rounded(v) for v in w["scores"]], "drifted": list(w["drifted"])}
                   for w in list(found)]
        return {"columns": list(columns), "windows": windows, "intervals": list(self.intervals),
                "labels": list(self.labels)}


def _rounded(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None


def finite(value: Any) -> float | None:
    """`value` as JSON can carry it: a float, or None for NaN, infinities and None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
