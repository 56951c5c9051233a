"""GPU use per inference server from NVML's per-process accounting (stub: the final version follows shortly)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class GpuUse:
    """One server's GPU use now: memory, utilisation (None where unsupported), joules since the last sample."""

    memory_bytes: int
    utilization: float | None
    energy_joules: float | None


class GpuAttribution:
    """Joins NVML's per-process GPU use to inference servers' processes (and their children)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger(__name__)

    def sample(self, pids: Mapping[int, str]) -> dict[str, GpuUse]:
        """GPU use per server endpoint; `pids` maps a server's pid to its endpoint. Empty without NVML."""
        return {}

    def close(self) -> None:
        """Shut NVML down if this object started it."""
