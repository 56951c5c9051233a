"""The `process` scraper: per-process CPU, memory, threads and file descriptors.

Each watched process is its own resource (`process.pid`,
`process.executable.name`, `process.command_line`, ... on top of the host's
attributes). An operator names what to watch, by executable name patterns or
pid files (the inference server, not every process); with neither, every
process is watched, as the Collector does. A process that exits mid-scrape, or
one Vigil may not read, is skipped and counted; the scrape goes on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import psutil

from agent.configmodel import StrictModel
from agent.metrics_builder import Instrument, MetricSpec, MetricsBuilder
from agent.receivers.hostmetrics.filters import NamesFilter, allowed

CPU_TIME = MetricSpec("process.cpu.time", "s", Instrument.COUNTER, "CPU seconds used by the process, by mode")
CPU_UTILIZATION = MetricSpec("process.cpu.utilization", "1", Instrument.GAUGE,
                             "CPU time used since the last scrape over elapsed time and CPUs, by mode")
MEMORY_USAGE = MetricSpec("process.memory.usage", "By", Instrument.UPDOWN, "Resident memory (RSS)")
MEMORY_VIRTUAL = MetricSpec("process.memory.virtual", "By", Instrument.UPDOWN, "Virtual memory size")
THREAD_COUNT = MetricSpec("process.thread.count", "{thread}", Instrument.UPDOWN, "Threads of the process")
OPEN_FDS = MetricSpec("process.open_file_descriptor.count", "{file_descriptor}", Instrument.UPDOWN,
                      "File descriptors the process has open")


class ProcessConfig(StrictModel):
    include: NamesFilter | None = None
    exclude: NamesFilter | None = None
    pid_files: list[str] = []


class ProcessScraper:
    name = "process"

    def __init__(self, config: ProcessConfig, on_skip=None) -> None:
        self._config = config
        self._on_skip = on_skip or (lambda reason: None)
        # Processes seen before, by (pid, start time), so CPU utilization has a previous reading.
        self._known: dict[tuple[int, float], tuple[psutil.Process, float, Any]] = {}
        self._cpus = psutil.cpu_count() or 1

    def scrape(self, out: MetricsBuilder, resource: Mapping[str, Any]) -> None:
        seen: dict[tuple[int, float], tuple[psutil.Process, float, Any]] = {}
        for proc in self._candidates():
            try:
                with proc.oneshot():
                    self._scrape_one(proc, out, resource, seen)
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                self._on_skip("vanished")
            except psutil.AccessDenied:
                self._on_skip("permission")
        self._known = seen

    def _candidates(self) -> list[psutil.Process]:
        c = self._config
        if c.pid_files:
            chosen = []
            for pid in self._pids_from_files():
                try:
                    chosen.append(psutil.Process(pid))
                except psutil.NoSuchProcess:  # a stale pid file: the process has exited
                    self._on_skip("vanished")
                except psutil.AccessDenied:
                    self._on_skip("permission")
            return chosen
        chosen = []
        for proc in psutil.process_iter(["name"]):
            name = proc.info.get("name") or ""
            if allowed(name, c.include, c.exclude):
                chosen.append(proc)
        return chosen

    def _pids_from_files(self) -> list[int]:
        pids = []
        for path in self._config.pid_files:
            try:
                pids.append(int(Path(path).read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                self._on_skip("pid_file")
        return pids

    def _scrape_one(self, proc: psutil.Process, out: MetricsBuilder, host: Mapping[str, Any],
                    seen: dict) -> None:
        created = proc.create_time()
        if self._config.pid_files and not allowed(proc.name(), self._config.include, self._config.exclude):
            return
        key = (proc.pid, created)
        cpu = proc.cpu_times()
        now = time.monotonic()
        memory = proc.memory_info()
        attributes = {**host, "process.pid": proc.pid, "process.parent_pid": proc.ppid(),
                      "process.executable.name": proc.name()}
        try:
            attributes["process.executable.path"] = proc.exe()
            attributes["process.command_line"] = " ".join(proc.cmdline())
            attributes["process.owner"] = proc.username()
        except (psutil.AccessDenied, KeyError):
            pass  # a process of another user: report what is readable
        rm = out.resource(attributes)
        start = int(created * 1e9)
        for mode in ("user", "system"):
            rm.record(CPU_TIME, getattr(cpu, mode), {"cpu.mode": mode}, start)
        previous = self._known.get(key)
        if previous is not None:
            _, before_time, before_cpu = previous
            elapsed = (now - before_time) * self._cpus
            if elapsed > 0:
                for mode in ("user", "system"):
                    used = getattr(cpu, mode) - getattr(before_cpu, mode)
                    rm.record(CPU_UTILIZATION, min(max(used / elapsed, 0.0), 1.0), {"cpu.mode": mode})
        rm.record(MEMORY_USAGE, memory.rss)
        rm.record(MEMORY_VIRTUAL, memory.vms)
        rm.record(THREAD_COUNT, proc.num_threads())
        if hasattr(proc, "num_fds"):
            try:
                rm.record(OPEN_FDS, proc.num_fds())
            except psutil.AccessDenied:
                pass
        seen[key] = (proc, now, cpu)
