"""The latest host and GPU values a scraping receiver handed on, for the status page's host panel.

Read from the receiver's own batches (the few metrics below, a few hundred
points a scrape at most), and bounded: at most `MAX_GPUS` devices, and per
shown value its last `HISTORY` samples. CPU is the share of time not idle,
averaged over the logical CPUs; a GPU is keyed by its `hw.id`, listed by its
index, and forgotten once `STALE_SCRAPES` scrapes in a row with GPU values
did not have it (removed, or its MIG instances made anew under new ids).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from agent.attributes import any_value

MAX_GPUS = 64
HISTORY = 30
STALE_SCRAPES = 3

_HOST_METRICS = frozenset({"system.cpu.utilization", "system.memory.usage", "system.memory.limit"})
_GPU_METRICS = frozenset({"hw.gpu.utilization", "hw.gpu.memory.usage", "hw.gpu.memory.limit", "hw.temperature",
                          "hw.power"})


class Latest:
    def __init__(self) -> None:
        self.host: dict[str, Any] = {}
        self.gpus: dict[str, dict[str, Any]] = {}
        self._history: dict[tuple[str, str], deque] = {}  # (device, value) -> the last samples
        self._scrapes = 0  # requests that carried GPU values
        self._seen: dict[str, int] = {}  # device -> the last of those that had it

    def observe(self, request: Any) -> None:
        """Take what `request` (an ExportMetricsServiceRequest) holds of the metrics shown."""
        scrape, gpu_values = self._scrapes + 1, False
        for rm in request.resource_metrics:
            resource = {kv.key: any_value(kv.value) for kv in rm.resource.attributes}
            device = resource.get("hw.id")
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if device is None and metric.name in _HOST_METRICS:
                        self._host_metric(metric)
                    elif device is not None and metric.name in _GPU_METRICS:
                        self._seen[str(device)], gpu_values = scrape, True
                        self._gpu_metric(str(device), resource, metric)
        if gpu_values:  # a request without GPUs (the host's) says nothing about them
            self._scrapes = scrape
            self._forget(scrape - STALE_SCRAPES)

    def _forget(self, before: int) -> None:
        """Drop the devices last seen at or before scrape `before`, and their samples."""
        gone = {d for d, seen in self._seen.items() if seen <= before}
        if gone:
            for device in gone:
                del self._seen[device]
                self.gpus.pop(device, None)
            self._history = {k: v for k, v in self._history.items() if k[0] not in gone}

    def _host_metric(self, metric: Any) -> None:
        points = _points(metric)
        if metric.name == "system.cpu.utilization":
            idle = [v for attrs, v in points if attrs.get("cpu.mode") == "idle"]
            if idle:
                self._set(self.host, "", "cpu_utilization", 1 - sum(idle) / len(idle))
            return
        if metric.name == "system.memory.usage":
            used = [v for attrs, v in points if attrs.get("system.memory.state") == "used"]
            if used:
                self.host["memory_used_bytes"] = used[0]
        elif points:
            self.host["memory_limit_bytes"] = points[0][1]
        used, limit = self.host.get("memory_used_bytes"), self.host.get("memory_limit_bytes")
        if used is not None and limit:
            self._set(self.host, "", "memory_utilization", used / limit)

    def _gpu_metric(self, device: str, resource: dict[str, Any], metric: Any) -> None:
        gpu = self.gpus.get(device)
        if gpu is None:
            if len(self.gpus) >= MAX_GPUS:
                return
            gpu = self.gpus[device] = {"id": device, "index": resource.get("hw.gpu.index"),
                                       "model": resource.get("hw.model")}
        for attrs, value in _points(metric):
            if metric.name == "hw.gpu.utilization" and attrs.get("hw.gpu.task", "general") == "general":
                self._set(gpu, device, "utilization", value)
            elif metric.name == "hw.gpu.memory.usage":
                gpu["memory_used_bytes"] = value
            elif metric.name == "hw.gpu.memory.limit":
                gpu["memory_limit_bytes"] = value
            elif metric.name == "hw.temperature" and attrs.get("hw.sensor_location", "gpu") == "gpu":
                self._set(gpu, device, "temperature_celsius", value)
            elif metric.name == "hw.power":
                self._set(gpu, device, "power_watts", value)
        if gpu.get("memory_limit_bytes") and "memory_used_bytes" in gpu and metric.name.startswith("hw.gpu.memory"):
            self._set(gpu, device, "memory_utilization", gpu["memory_used_bytes"] / gpu["memory_limit_bytes"])

    def _set(self, target: dict[str, Any], device: str, key: str, value: float) -> None:
        target[key] = value
        self._history.setdefault((device, key), deque(maxlen=HISTORY)).append(value)

    def status(self) -> dict[str, Any]:
        def history(device: str, entry: dict[str, Any]) -> dict[str, Any]:
            return {**entry, "history": {key: list(samples) for (d, key), samples in self._history.items()
                                         if d == device}}

        def order(item: tuple[str, dict[str, Any]]) -> tuple:
            index = item[1]["index"]  # an int from NVML; MIG instances share their GPU's
            return (0, index, item[0]) if isinstance(index, int) else (1, 0, item[0])

        return {"host": history("", self.host) if self.host else {},
                "gpus": [history(d, g) for d, g in sorted(self.gpus.items(), key=order)]}


def _points(metric: Any) -> list[tuple[dict[str, Any], float]]:
    data = metric.gauge if metric.HasField("gauge") else metric.sum if metric.HasField("sum") else None
    if data is None:
        return []
    return [({kv.key: any_value(kv.value) for kv in p.attributes},
             p.as_double if p.HasField("as_double") else float(p.as_int)) for p in data.data_points]
