"""The host-wide scrapers: cpu, load, memory, paging, disk, filesystem, network, processes.

Names, units, instrument kinds and attributes are the OpenTelemetry semantic
conventions' `system.*` metrics. Counters since boot carry the boot time as
their start time.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Mapping

import psutil

from agent.metrics_builder import Instrument, MetricSpec, MetricsBuilder
from agent.receivers.hostmetrics.filters import (DevicesFilter, FsTypesFilter, InterfacesFilter,
                                                 MountPointsFilter, allowed)
from agent.configmodel import StrictModel

C, G, U = Instrument.COUNTER, Instrument.GAUGE, Instrument.UPDOWN


@functools.cache
def boot_time_ns() -> int:
    # Read once: Linux derives it from the clock and uptime, so a later reading can move by a second
    # after a clock step, and a cumulative sum whose start time moves looks like a reset.
    return int(psutil.boot_time() * 1e9)


# --- cpu -----------------------------------------------------------------------

CPU_TIME = MetricSpec("system.cpu.time", "s", C, "Seconds each logical CPU spent in each mode")
CPU_UTILIZATION = MetricSpec("system.cpu.utilization", "1", G,
                             "Share of time each logical CPU spent in each mode since the last scrape")
CPU_LOGICAL_COUNT = MetricSpec("system.cpu.logical.count", "{cpu}", U, "Logical CPUs available")

# psutil's field names to `cpu.mode` values.
_CPU_MODES = {"user": "user", "nice": "nice", "system": "system", "idle": "idle", "iowait": "iowait",
              "irq": "interrupt", "softirq": "softirq", "steal": "steal"}


class CpuConfig(StrictModel):
    pass


class CpuScraper:
    name = "cpu"

    def __init__(self, config: CpuConfig) -> None:
        self._previous: list[Any] | None = None

    def scrape(self, out: MetricsBuilder, resource: Mapping[str, Any]) -> None:
        rm = out.resource(resource)
        start = boot_time_ns()
        times = psutil.cpu_times(percpu=True)
        for cpu, t in enumerate(times):
            for field, mode in _CPU_MODES.items():
                if hasattr(t, field):
                    rm.record(CPU_TIME, getattr(t, field), {"cpu.mode": mode, "cpu.logical_number": cpu},
                              start)
        if self._previous is not None and len(self._previous) == len(times):
            for cpu, (now, before) in enumerate(zip(times, self._previous)):
                # guest time is already inside user time on Linux, so the modes above sum to the total.
                total = sum(getattr(now, f) - getattr(before, f) for f in _CPU_MODES if hasattr(now, f))
                if total <= 0:
                    continue
                for field, mode in _CPU_MODES.items():
                    if hasattr(now, field):
                        share = (getattr(now, field) - getattr(before, field)) / total
                        rm.record(CPU_UTILIZATION, min(max(share, 0.0), 1.0),
                                  {"cpu.mode": mode, "cpu.logical_number": cpu})
        self._previous = times
        rm.record(CPU_LOGICAL_COUNT, len(times))


# --- load ----------------------------------------------------------------------

LOAD = {minutes: MetricSpec(f"system.cpu.load_average.{minutes}m", "{thread}", G,
                            f"Average number of runnable threads over {minutes} minutes")
        for minutes in (1, 5, 15)}


class LoadConfig(StrictModel):
    cpu_average: bool = False  # divide by the number of logical CPUs, as the Collector's option


class LoadScraper:
    name = "load"

    def __init__(self, config: LoadConfig) -> None:
        self._per_cpu = config.cpu_average

    def scrape(self, out: MetricsBuilder, resource: Mapping[str, Any]) -> None:
        rm = out.resource(resource)
        divisor = (psutil.cpu_count() or 1) if self._per_cpu else 1
        for minutes, value in zip((1, 5, 15), os.getloadavg()):
            rm.record(LOAD[minutes], value / divisor)


# --- memory --------------------------------------------------------------------

MEMORY_USAGE = MetricSpec("system.memory.usage", "By", U, "Memory in use, by state")
MEMORY_UTILIZATION = MetricSpec("system.memory.utilization", "1", G, "Share of memory in each state")
MEMORY_LIMIT = MetricSpec("system.memory.limit", "By", U, "Total memory available to the system")


class MemoryConfig(StrictModel):
    pass


class MemoryScraper:
    name = "memory"

    def __init__(self, config: MemoryConfig) -> None:
        pass

    def scrape(self, out: MetricsBuilder, resource: Mapping[str, Any]) -> None:
        rm = out.resource(resource)
        vm = psutil.virtual_memory()
        states = {"used": vm.used, "free": vm.free}
        for state in ("buffers", "cached"):
            if hasattr(vm, state):
                states[state] = getattr(vm, state)
        if "buffers" in states and "cached" in states:
            # The states must add up to the total (as the Collector reports them). psutil's `used` is
            # total - available, which overlaps buffers and cached (shared memory, tmpfs), so
            # `used` here is what is neither free, buffers nor cached.
            used = vm.total - vm.free - vm.buffers - vm.cached
            states["used"] = used if used >= 0 else vm.total - vm.free
        for state, value in states.items():
            rm.record(MEMORY_USAGE, int(value), {"system.memory.state": state})
            rm.record(MEMORY_UTILIZATION, value / vm.total, {"system.memory.state": state})
        rm.record(MEMORY_LIMIT, int(vm.total))


# --- paging --------------------------------------------------------------------

PAGING_USAGE = MetricSpec("system.paging.usage", "By", U, "Swap space in use, by state")
PAGING_UTILIZATION = MetricSpec("system.paging.utilization", "1", G, "Share of swap space in each state")
PAGING_OPERATIONS = MetricSpec("system.paging.operations", "{operation}", C,
                               "Pages swapped in and out since boot")
PAGING_FAULTS = MetricSpec("system.paging.faults", "{fault}", C, "Page faults since boot, by type")


class PagingConfig(StrictModel):
    pass


class PagingScraper:
    name = "paging"

    def __init__(self, config: PagingConfig) -> None:
        pass

    def scrape(self, out: MetricsBuilder, resource: Mapping[str, Any]) -> None:
        rm = out.resource(resource)
        swap = psutil.swap_memory()
        for state, value in (("used", swap.used), ("free", swap.free)):
            rm.record(PAGING_USAGE, int(value), {"system.paging.state": state})
            if swap.total:
                rm.record(PAGING_UTILIZATION, value / swap.total, {"system.paging.state": state})
        vmstat = _read_vmstat()
        start = boot_time_ns()
        for key, direction in (("pswpin", "in"), ("pswpout", "out")):
            if key in vmstat:
                rm.record(PAGING_OPERATIONS, vmstat[key], {"system.paging.direction": direction}, start)
        if "pgfault" in vmstat and "pgmajfault" in vmstat:
            rm.record(PAGING_FAULTS, vmstat["pgmajfault"], {"system.paging.type": "major"}, start)
            rm.record(PAGING_FAULTS, vmstat["pgfault"] - vmstat["pgmajfault"],
                      {"system.paging.type": "minor"}, start)


def _read_vmstat() -> dict[str, int]:
    """Linux's /proc/vmstat counters; empty elsewhere."""
    try:
        lines = Path("/proc/vmstat").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v) for k, v in (line.split() for line in lines if line.count(" ") == 1)}


# --- disk ----------------------------------------------------------------------

DISK_IO = MetricSpec("system.disk.io", "By", C, "Bytes read and written since boot")
DISK_OPERATIONS = MetricSpec("system.disk.operations", "{operation}", C, "Reads and writes since boot")
DISK_IO_TIME = MetricSpec("system.disk.io_time", "s", C, "Time the disk spent with I/O in flight")
DISK_OPERATION_TIME = MetricSpec("system.disk.operation_time", "s", C,
                                 "Sum of the time each read or write took")
DISK_MERGED = MetricSpec("system.disk.merged", "{operation}", C, "Reads and writes merged by the kernel")


# Loop and RAM disks are noise on inference hosts (snaps, containers): left out unless a filter is set.
DEFAULT_DISK_EXCLUDE = DevicesFilter(devices=[r"^loop\d+$", r"^ram\d+$"], match_type="regexp")


class DiskConfig(StrictModel):
    include: DevicesFilter | None = None
    exclude: DevicesFilter | None = None

    def effective_exclude(self) -> DevicesFilter | None:
        """The exclude filter that applies: the default unless `include` or `exclude` is set."""
        if "exclude" in self.model_fields_set or self.include is not None:
            return self.exclude  # `exclude: null` turns the default off
        return DEFAULT_DISK_EXCLUDE


class DiskScraper:
    name = "disk"

    def __init__(self, config: DiskConfig) -> None:
        self._config = config
        self._exclude = config.effective_exclude()

    def scrape(self, out: MetricsBuilder, resource: Mapping[str, Any]) -> None:
        rm = out.resource(resource)
        start = boot_time_ns()
        for device, io in (psutil.disk_io_counters(perdisk=True) or {}).items():
            if not allowed(device, self._config.include, self._exclude):
                continue
            for direction, nbytes, ops, op_time, merged in (
                    ("read", io.read_bytes, io.read_count, io.read_time, getattr(io, "read_merged_count", None)),
                    ("write", io.write_bytes, io.write_count, io.write_time,
                     getattr(io, "write_merged_count", None))):
                attrs = {"system.device": device, "disk.io.direction": direction}
                rm.record(DISK_IO, nbytes, attrs, start)
                rm.record(DISK_OPERATIONS, ops, attrs, start)
                rm.record(DISK_OPERATION_TIME, op_time / 1000, attrs, start)
                if merged is not None:
                    rm.record(DISK_MERGED, merged, attrs, start)
            if hasattr(io, "busy_time"):
                rm.record(DISK_IO_TIME, io.busy_time / 1000, {"system.device": device}, start)


# --- filesystem ----------------------------------------------------------------

FS_USAGE = MetricSpec("system.filesystem.usage", "By", U, "Filesystem space, by state")
FS_UTILIZATION = MetricSpec("system.filesystem.utilization", "1", G, "Share of filesystem space in use")

# Filesystems that hold no user data: excluded unless the config says otherwise.
PSEUDO_FS_TYPES = [
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts", "devtmpfs",
    "efivarfs", "fuse.gvfsd-fuse", "fuse.lxcfs", "fusectl", "hugetlbfs", "mqueue", "nsfs", "overlay",
    "proc", "procfs", "pstore", "rpc_pipefs", "securityfs", "selinuxfs", "squashfs", "sysfs",
    "tracefs", "tmpfs", "ramfs",
]

DEFAULT_FS_TYPES_EXCLUDE = FsTypesFilter(fs_types=PSEUDO_FS_TYPES)


class FilesystemConfig(StrictModel):
    include_devices: DevicesFilter | None = None
    exclude_devices: DevicesFilter | None = None
    include_fs_types: FsTypesFilter | None = None
    exclude_fs_types: FsTypesFilter | None = None
    include_mount_points: MountPointsFilter | None = None
    exclude_mount_points: MountPointsFilter | None = None

    def effective_exclude_fs_types(self) -> FsTypesFilter | None:
        """Pseudo filesystems are left out unless a filesystem-type filter is set."""
        if "exclude_fs_types" in self.model_fields_set or self.include_fs_types is not None:
            return self.exclude_fs_types  # `exclude_fs_types: null` turns the default off
        return DEFAULT_FS_TYPES_EXCLUDE


class FilesystemScraper:
    name = "filesystem"

    def __init__(self, config: FilesystemConfig) -> None:
        self._config = config
        self._exclude_fs_types = config.effective_exclude_fs_types()

    def scrape(self, out: MetricsBuilder, resource: Mapping[str, Any]) -> None:
        c = self._config
        rm = out.resource(resource)
        seen: set[str] = set()
        for part in psutil.disk_partitions(all=True):
            if part.mountpoint in seen or not (
                    allowed(part.device, c.include_devices, c.exclude_devices)
                    and allowed(part.fstype, c.include_fs_types, self._exclude_fs_types)
                    and allowed(part.mountpoint, c.include_mount_points, c.exclude_mount_points)):
                continue
            seen.add(part.mountpoint)
            try:
                usage = psutil.disk_usage(part.mountpoint)
            except OSError:
                continue  # unmounted meanwhile, or not ours to read
            attrs = {"system.device": part.device, "system.filesystem.mountpoint": part.mountpoint,
                     "system.filesystem.type": part.fstype,
                     "system.filesystem.mode": "ro" if "ro" in part.opts.split(",") else "rw"}
            reserved = max(usage.total - usage.used - usage.free, 0)
            for state, value in (("used", usage.used), ("free", usage.free), ("reserved", reserved)):
                rm.record(FS_USAGE, int(value), {**attrs, "system.filesystem.state": state})
            if usage.total:
                rm.record(FS_UTILIZATION, usage.used / usage.total, attrs)


# --- network -------------------------------------------------------------------

NET_IO = MetricSpec("system.network.io", "By", C, "Bytes sent and received since boot")
NET_PACKETS = MetricSpec("system.network.packets", "{packet}", C, "Packets sent and received since boot")
NET_ERRORS = MetricSpec("system.network.errors", "{error}", C, "Transmit and receive errors since boot")
NET_DROPPED = MetricSpec("system.network.dropped", "{packet}", C, "Packets dropped since boot")


class NetworkConfig(StrictModel):
    include: InterfacesFilter | None = None
    exclude: InterfacesFilter | None = None


class NetworkScraper:
    name = "network"

    def __init__(self, config: NetworkConfig) -> None:
        self._config = config

    def scrape(self, out: MetricsBuilder, resource: Mapping[str, Any]) -> None:
        rm = out.resource(resource)
        start = boot_time_ns()
        for interface, io in psutil.net_io_counters(pernic=True).items():
            if not allowed(interface, self._config.include, self._config.exclude):
                continue
            for direction, nbytes, packets, errors, dropped in (
                    ("transmit", io.bytes_sent, io.packets_sent, io.errout, io.dropout),
                    ("receive", io.bytes_recv, io.packets_recv, io.errin, io.dropin)):
                attrs = {"network.interface.name": interface, "network.io.direction": direction}
                rm.record(NET_IO, nbytes, attrs, start)
                rm.record(NET_PACKETS, packets, attrs, start)
                rm.record(NET_ERRORS, errors, attrs, start)
                rm.record(NET_DROPPED, dropped, attrs, start)


# --- processes -----------------------------------------------------------------

PROCESS_COUNT = MetricSpec("system.process.count", "{process}", U, "Processes, by status")
PROCESS_CREATED = MetricSpec("system.process.created", "{process}", C, "Processes created since boot")


# psutil's statuses to the semantic conventions' `process.state` values.
_PROCESS_STATES = {
    psutil.STATUS_RUNNING: "running", psutil.STATUS_SLEEPING: "sleeping", psutil.STATUS_DISK_SLEEP: "sleeping",
    psutil.STATUS_IDLE: "sleeping", psutil.STATUS_WAKING: "running", psutil.STATUS_STOPPED: "stopped",
    psutil.STATUS_TRACING_STOP: "stopped", psutil.STATUS_ZOMBIE: "defunct", psutil.STATUS_DEAD: "defunct",
}
# The same for the state letter of /proc/<pid>/stat (the letters psutil reads them from).
_PROC_STAT_STATES = {b"R": "running", b"S": "sleeping", b"D": "sleeping", b"I": "sleeping", b"W": "running",
                     b"T": "stopped", b"t": "stopped", b"Z": "defunct", b"X": "defunct", b"x": "defunct"}


class ProcessesConfig(StrictModel):
    pass


class ProcessesScraper:
    name = "processes"

    def __init__(self, config: ProcessesConfig) -> None:
        pass

    def scrape(self, out: MetricsBuilder, resource: Mapping[str, Any]) -> None:
        rm = out.resource(resource)
        counts = _linux_process_states()
        if counts is None:
            counts = {}
            for proc in psutil.process_iter(["status"]):
                state = _PROCESS_STATES.get(proc.info.get("status") or "", "unknown")
                counts[state] = counts.get(state, 0) + 1
        for state, count in sorted(counts.items()):
            rm.record(PROCESS_COUNT, count, {"process.state": state})
        created = _processes_created()
        if created is not None:
            rm.record(PROCESS_CREATED, created, None, boot_time_ns())


def _linux_process_states() -> dict[str, int] | None:
    """Processes by state from each /proc/<pid>/stat; None without /proc.

    A third of what psutil's process objects cost: one open and read per process, nothing kept.
    """
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    counts: dict[str, int] = {}
    for name in names:
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{name}/stat", os.O_RDONLY)
        except OSError:
            continue  # exited meanwhile
        try:
            stat = os.read(fd, 1024)
        except OSError:
            continue
        finally:
            os.close(fd)
        # "pid (comm) S ...": the name may hold spaces and parentheses, the state follows the last ')'.
        at = stat.rfind(b")") + 2
        state = _PROC_STAT_STATES.get(stat[at:at + 1], "unknown")
        counts[state] = counts.get(state, 0) + 1
    return counts


def _processes_created() -> int | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("processes "):
                return int(line.split()[1])
    except OSError:
        pass
    return None

