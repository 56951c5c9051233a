"""GPU use per inference server: NVML's per-process memory and utilisation joined to the servers' processes.

A GPU process belongs to a server when it is the server's process or one of
its descendants (vLLM's engine core, Triton's backend stubs, TGI's shards).
Energy comes from the GPU's own counter (`nvmlDeviceGetTotalEnergyConsumption`,
the one `hw.energy` is read from), so it is given to a server only for a GPU
the server owns: every process on it, at this sample and the one before,
is the server's. NVML loading, unsupported queries and lost GPUs are handled
by the nvml receiver's `NvmlSession`; without NVML or a GPU, `sample` answers
`{}`, says why once, and tries again every `retry_interval`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import psutil

from agent.receivers.nvml import devices
from agent.receivers.nvml.devices import Gpu, GpuLost, NvmlSession


@dataclass(frozen=True)
class GpuUse:
    """One server's GPU use at a sample.

    `memory_bytes`: GPU memory its processes hold, over all its GPUs. `utilization`: the share of SM
    time its processes used since the last sample (0..1), averaged over the GPUs that report it; None
    where none does (MIG instances, older GPUs). `energy_joules`: energy its GPUs used since the last
    sample; None unless the server owns every GPU it uses (then and at the sample before). `gpus`: the
    UUIDs of the GPUs (or MIG instances) it uses.
    """

    memory_bytes: int
    utilization: float | None
    energy_joules: float | None
    gpus: tuple[str, ...] = ()


@dataclass
class _ServerOnGpus:
    memory: int = 0
    utilization: dict[str, float] = field(default_factory=dict)  # physical GPU uuid -> share
    physical: set[str] = field(default_factory=set)
    devices: set[str] = field(default_factory=set)


class GpuAttribution:
    """Joins NVML's per-process GPU use to inference servers' processes (and their children).

    `sample` blocks (NVML and /proc): call it from a worker thread, once per scrape, so that the
    energy it gives covers the same interval as the scrape's counters.
    """

    def __init__(self, logger: logging.Logger | None = None, retry_interval: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger or logging.getLogger("vigil.inference.gpu")
        self._session = NvmlSession(self._log)
        self._retry_interval = retry_interval
        self._clock = clock
        self._next_open = 0.0
        self._said_unavailable = False
        self._energy_mj: dict[str, float] = {}  # physical GPU uuid -> its counter at the last sample
        self._owners: dict[str, str] = {}  # physical GPU uuid -> the server owning it at the last sample
        self._utilization_since: dict[str, int] = {}  # device uuid -> newest NVML sample timestamp seen (µs)

    def sample(self, pids: Mapping[int, str]) -> dict[str, GpuUse]:
        """GPU use per server endpoint now; `pids` maps each server's pid to its endpoint.

        A server with no process on a GPU is left out; so is everything without NVML or a GPU.
        """
        if not pids or not self._open():
            return {}
        with self._session.lock:
            if not self._session.ready:
                return {}
            readings = [self._read(gpu) for gpu in self._session.gpus if not (gpu.parent or gpu).lost]
        owner_of = _Ancestry(pids)
        servers: dict[str, _ServerOnGpus] = {}
        owners: dict[str, str] = {}
        energy: dict[str, float] = {}
        for reading in readings:
            if reading is None:
                continue
            on_this_gpu: set[str] = set()
            shared = False
            for device_uuid, processes, shares in reading.devices:
                per_server_share: dict[str, float] = {}
                for pid, memory in processes.items():
                    endpoint = owner_of(pid)
                    if endpoint is None:
                        shared = True  # a process of no known server: the GPU's energy is not one server's
                        continue
                    on_this_gpu.add(endpoint)
                    use = servers.setdefault(endpoint, _ServerOnGpus())
                    use.memory += memory
                    use.physical.add(reading.uuid)
                    use.devices.add(device_uuid)
                    if shares is not None:
                        per_server_share[endpoint] = per_server_share.get(endpoint, 0.0) + shares.get(pid, 0.0)
                for endpoint, share in per_server_share.items():
                    servers[endpoint].utilization[reading.uuid] = min(1.0, share)
            if reading.energy_mj is not None:
                previous = self._energy_mj.get(reading.uuid)
                if len(on_this_gpu) == 1 and not shared:
                    owners[reading.uuid] = next(iter(on_this_gpu))
                    if (previous is not None and reading.energy_mj >= previous
                            and self._owners.get(reading.uuid) == owners[reading.uuid]):
                        energy[reading.uuid] = (reading.energy_mj - previous) / 1000
                self._energy_mj[reading.uuid] = reading.energy_mj
        self._owners = owners
        return {endpoint: _use(use, energy) for endpoint, use in servers.items()}

    def close(self) -> None:
        """Shut NVML down (if this object started it); `sample` answers `{}` from then on."""
        with self._session.lock:
            self._session.close()

    # --- NVML ------------------------------------------------------------------

    def _open(self) -> bool:
        if self._session.ready:
            return True
        now = self._clock()
        if now < self._next_open:
            return False
        reason = self._session.open()
        if reason is None:
            return True
        self._next_open = now + self._retry_interval
        if not self._said_unavailable:
            self._said_unavailable = True
            self._log.info("no GPU use per inference server: %s; looking again every %gs", reason,
                           self._retry_interval)
        return False

    def _read(self, gpu: Gpu) -> _Reading | None:
        """One physical GPU's processes (per MIG instance where MIG is on) and its energy counter."""
        try:
            instances = self._session.mig_devices(gpu)
            reading = _Reading(gpu.uuid, self._session.query(gpu, "energy",
                                                             devices.pynvml.nvmlDeviceGetTotalEnergyConsumption))
            for device in instances or [gpu]:
                reading.devices.append((device.uuid, self._processes(device), self._shares(device)))
        except GpuLost as exc:
            self._session.mark_lost(gpu, str(exc))
            return None
        self._session.report_unsupported(gpu)
        for device in instances:
            self._session.report_unsupported(device)
        return reading

    def _processes(self, device: Gpu) -> dict[int, int]:
        """GPU memory per pid on this device (a pid in both lists counted once, as the nvml receiver does)."""
        used: dict[int, int] = {}
        for name, function in (("processes.compute", devices.compute_processes),
                               ("processes.graphics", devices.graphics_processes)):
            for process in self._session.query(device, name, function) or ():
                memory = getattr(process, "usedGpuMemory", None)
                pid = int(process.pid)
                used[pid] = max(used.get(pid, 0), int(memory) if memory is not None else 0)
        return used

    def _shares(self, device: Gpu) -> dict[int, float] | None:
        """Each pid's share of SM time since the last sample, or None where the device cannot say."""
        if device.is_mig:
            return None  # NVML has no per-process utilisation on MIG instances
        since = self._utilization_since.get(device.uuid, 0)
        samples = self._session.query(device, "process_utilization", devices.process_utilization, since)
        if samples is None:
            return None
        totals: dict[int, list[float]] = {}
        for sample in samples:
            totals.setdefault(int(sample.pid), []).append(float(sample.smUtil))
            since = max(since, int(sample.timeStamp))
        self._utilization_since[device.uuid] = since
        return {pid: sum(values) / len(values) / 100 for pid, values in totals.items()}


@dataclass
class _Reading:
    uuid: str
    energy_mj: float | None
    devices: list[tuple[str, dict[int, int], dict[int, float] | None]] = field(default_factory=list)


def _use(use: _ServerOnGpus, energy: Mapping[str, float]) -> GpuUse:
    shares = list(use.utilization.values())
    owned = [energy[uuid] for uuid in use.physical if uuid in energy]
    return GpuUse(memory_bytes=use.memory,
                  utilization=sum(shares) / len(shares) if shares else None,
                  energy_joules=sum(owned) if owned and len(owned) == len(use.physical) else None,
                  gpus=tuple(sorted(use.devices)))


class _Ancestry:
    """The server a pid belongs to: its own entry in `pids`, else its nearest ancestor's."""

    def __init__(self, pids: Mapping[int, str]) -> None:
        self._pids = pids
        self._seen: dict[int, str | None] = {}

    def __call__(self, pid: int) -> str | None:
        if pid in self._pids:
            return self._pids[pid]
        if pid not in self._seen:
            self._seen[pid] = self._lookup(pid)
        return self._seen[pid]

    def _lookup(self, pid: int) -> str | None:
        try:
            for parent in psutil.Process(pid).parents():
                if parent.pid in self._pids:
                    return self._pids[parent.pid]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass  # gone, or another namespace's pid
        return None
