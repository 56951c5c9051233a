"""The `hostmetrics` receiver against the real machine: psutil is never mocked.

Vigil runs in-process with `hostmetrics` exporting to `file` exporters; the
tests read back the OTLP/JSON lines (one line per scrape of one scraper, as
no batch processor sits in between) and compare them with what psutil says
about this host.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent import config as config_module
from agent.config import ConfigError
from agent.receivers.hostmetrics import system
from agent.receivers.hostmetrics.filters import NamesFilter
from agent.receivers.hostmetrics.process import ProcessConfig
from tests.conftest import async_wait_for, running_vigil
from tests.otlp_json_reading import COUNTER, GAUGE, UPDOWN, Point, complete_json_lines, metric_points

INTERVAL = "300ms"
BOOT_NS = int(psutil.boot_time() * 1e9)
SECOND_NS = 1_000_000_000

# What each scraper emits: metric name -> (unit, instrument) per the semantic conventions.
EXPECTED: dict[str, dict[str, tuple[str, str]]] = {
    "cpu": {
        "system.cpu.time": ("s", COUNTER),
        "system.cpu.utilization": ("1", GAUGE),
        "system.cpu.logical.count": ("{cpu}", UPDOWN),
    },
    "load": {
        "system.cpu.load_average.1m": ("{thread}", GAUGE),
        "system.cpu.load_average.5m": ("{thread}", GAUGE),
        "system.cpu.load_average.15m": ("{thread}", GAUGE),
    },
    "memory": {
        "system.memory.usage": ("By", UPDOWN),
        "system.memory.utilization": ("1", GAUGE),
        "system.memory.limit": ("By", UPDOWN),
    },
    "paging": {
        "system.paging.usage": ("By", UPDOWN),
        "system.paging.utilization": ("1", GAUGE),
        "system.paging.operations": ("{operation}", COUNTER),
        "system.paging.faults": ("{fault}", COUNTER),
    },
    "disk": {
        "system.disk.io": ("By", COUNTER),
        "system.disk.operations": ("{operation}", COUNTER),
        "system.disk.io_time": ("s", COUNTER),
        "system.disk.operation_time": ("s", COUNTER),
        "system.disk.merged": ("{operation}", COUNTER),
    },
    "filesystem": {
        "system.filesystem.usage": ("By", UPDOWN),
        "system.filesystem.utilization": ("1", GAUGE),
    },
    "network": {
        "system.network.io": ("By", COUNTER),
        "system.network.packets": ("{packet}", COUNTER),
        "system.network.errors": ("{error}", COUNTER),
        "system.network.dropped": ("{packet}", COUNTER),
    },
    "processes": {
        "system.process.count": ("{process}", UPDOWN),
        "system.process.created": ("{process}", COUNTER),
    },
    "process": {
        "process.cpu.time": ("s", COUNTER),
        "process.cpu.utilization": ("1", GAUGE),
        "process.memory.usage": ("By", UPDOWN),
        "process.memory.virtual": ("By", UPDOWN),
        "process.thread.count": ("{thread}", UPDOWN),
        "process.open_file_descriptor.count": ("{file_descriptor}", UPDOWN),
    },
}
SCRAPER_OF = {name: scraper for scraper, metrics in EXPECTED.items() for name in metrics}
CPU_MODES = {"user", "nice", "system", "idle", "iowait", "interrupt", "softirq", "steal"}


# --- reading what the file exporter wrote ------------------------------------------------------


def read_scrapes(path: Path) -> dict[str, list[list[Point]]]:
    """Complete lines of `path`, grouped by the scraper that made them, in order: one list per scrape."""
    scrapes: dict[str, list[list[Point]]] = {}
    for request in complete_json_lines(path):
        points = metric_points(request)
        if not points:
            continue
        scrapers = {SCRAPER_OF.get(p.name, "?") for p in points}
        assert len(scrapers) == 1, f"one export request mixes scrapers {scrapers}"
        scrapes.setdefault(scrapers.pop(), []).append(points)
    return scrapes


def metrics_config(tmp_path: Path, receivers: dict[str, dict[str, Any]]) -> tuple[dict, dict[str, Path]]:
    """One pipeline and one file per receiver: `hostmetrics/<name>` -> `file/<name>`."""
    paths = {name: tmp_path / f"{name}.json" for name in receivers}
    config = {
        "receivers": {f"hostmetrics/{name}": {"collection_interval": INTERVAL, "initial_delay": "0s", **body}
                      for name, body in receivers.items()},
        "exporters": {f"file/{name}": {"path": str(path)} for name, path in paths.items()},
        "service": {"pipelines": {f"metrics/{name}": {"receivers": [f"hostmetrics/{name}"],
                                                      "exporters": [f"file/{name}"]}
                                  for name in receivers}},
    }
    return config, paths


def readable_mounts() -> dict[str, str]:
    """Mount point -> fs type of what psutil can stat on this host (first entry of a mount point)."""
    mounts: dict[str, str] = {}
    for part in psutil.disk_partitions(all=True):
        if part.mountpoint in mounts:
            continue
        try:
            psutil.disk_usage(part.mountpoint)
        except OSError:
            continue
        mounts[part.mountpoint] = part.fstype
    return mounts


def _series_key(p: Point) -> tuple:
    return (p.resource.get("process.pid"), p.name, tuple(sorted(p.attributes.items())))


# --- one run with every scraper ------------------------------------------------------------------


@dataclass
class AllScrapers:
    scrapes: dict[str, list[list[Point]]]
    errors: float
    skipped: float


@pytest.fixture(scope="module")
def all_scrapers(tmp_path_factory) -> AllScrapers:
    """Every scraper (`process` watching this test process by pid file), until each scraped 3 times."""
    tmp = tmp_path_factory.mktemp("hostmetrics_all")
    pid_file = tmp / "self.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    scrapers: dict[str, Any] = {name: None for name in EXPECTED}  # `cpu:` with nothing: defaults
    scrapers["process"] = {"pid_files": [str(pid_file)]}
    config, paths = metrics_config(tmp, {"all": {"scrapers": scrapers}})

    def enough() -> bool:
        scrapes = read_scrapes(paths["all"])
        return all(len(scrapes.get(name, [])) >= 3 for name in EXPECTED if name != "disk" or _disks())

    async def run() -> AllScrapers:
        async with running_vigil(config) as vigil:
            assert await async_wait_for(enough, timeout=10), read_scrapes(paths["all"]).keys()
            errors = vigil.counter("vigil_receiver_scrape_errors")
            skipped = vigil.counter("vigil_receiver_scrape_skipped_processes")
        return AllScrapers(read_scrapes(paths["all"]), errors, skipped)

    return asyncio.run(run())


def _disks() -> list[str]:
    default = system.DiskConfig()
    return [d for d in (psutil.disk_io_counters(perdisk=True) or {})
            if system.allowed(d, default.include, default.effective_exclude())]


def test_every_scraper_runs_without_errors(all_scrapers):
    assert all_scrapers.errors == 0
    assert all_scrapers.skipped == 0
    expected = set(EXPECTED) if _disks() else set(EXPECTED) - {"disk"}
    assert set(all_scrapers.scrapes) == expected


def test_names_units_and_instruments_follow_the_semantic_conventions(all_scrapers):
    swap = psutil.swap_memory().total > 0
    for scraper, scrapes in all_scrapers.scrapes.items():
        seen: dict[str, Point] = {}
        for scrape in scrapes:
            for p in scrape:
                assert p.name in EXPECTED[scraper], f"{scraper} emits an unexpected metric {p.name}"
                unit, instrument = EXPECTED[scraper][p.name]
                assert (p.unit, p.instrument) == (unit, instrument), p.name
                if instrument != GAUGE:
                    assert p.temporality == 2, f"{p.name} is not cumulative"
                assert p.time_ns > 0
                seen.setdefault(p.name, p)
        wanted = set(EXPECTED[scraper])
        if scraper == "paging" and not swap:
            wanted.discard("system.paging.utilization")
        if scraper == "paging" and not Path("/proc/vmstat").exists():
            wanted -= {"system.paging.operations", "system.paging.faults"}
        if scraper == "processes" and not Path("/proc/stat").exists():
            wanted.discard("system.process.created")
        if scraper == "process" and not hasattr(psutil.Process(), "num_fds"):
            wanted.discard("process.open_file_descriptor.count")
        assert set(seen) == wanted, scraper


def test_counters_start_at_boot_time_and_process_counters_at_process_start(all_scrapers):
    created_ns = psutil.Process().create_time() * 1e9
    for scraper, scrapes in all_scrapers.scrapes.items():
        for p in (p for scrape in scrapes for p in scrape if p.instrument == COUNTER):
            start = created_ns if scraper == "process" else BOOT_NS
            assert abs(p.start_ns - start) <= SECOND_NS, (p.name, p.start_ns, start)
            assert p.start_ns <= p.time_ns


def test_counters_never_decrease_between_scrapes(all_scrapers):
    for scraper, scrapes in all_scrapers.scrapes.items():
        before: dict[tuple, float] = {}
        checked = 0
        for scrape in scrapes:
            for p in scrape:
                if p.instrument != COUNTER:
                    continue
                key = _series_key(p)
                if key in before:
                    # The kernel documents that iowait (and idle, on tickless kernels) may step back a
                    # tick; every other counter must not.
                    slack = 0.05 if p.attributes.get("cpu.mode") in ("iowait", "idle") else 0
                    assert p.value >= before[key] - slack, (key, before[key], p.value)
                    checked += 1
                before[key] = p.value
        if any(kind == COUNTER for _, kind in EXPECTED[scraper].values()) and scraper != "disk":
            assert checked, f"{scraper}: no counter seen twice"


def test_resource_is_the_host(all_scrapers):
    expected = {
        "host.name": socket.gethostname(),
        "os.type": platform.system().lower(),
    }
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine)
    machine_id = Path("/etc/machine-id")
    for scrapes in all_scrapers.scrapes.values():
        for p in (p for scrape in scrapes for p in scrape):
            for key, value in expected.items():
                assert p.resource[key] == value, key
            if arch:
                assert p.resource["host.arch"] == arch
            assert platform.release() in p.resource["os.description"]
            if machine_id.exists() and machine_id.read_text().strip():
                assert p.resource["host.id"] == machine_id.read_text().strip()


def _of(all_scrapers: AllScrapers, scraper: str, name: str, scrape: int = -1) -> list[Point]:
    return [p for p in all_scrapers.scrapes[scraper][scrape] if p.name == name]


def test_cpu(all_scrapers):
    cpus = psutil.cpu_count()
    (count,) = _of(all_scrapers, "cpu", "system.cpu.logical.count")
    assert count.value == cpus and count.attributes == {}
    times = _of(all_scrapers, "cpu", "system.cpu.time")
    assert {p.attributes["cpu.logical_number"] for p in times} == set(range(cpus))
    assert {p.attributes["cpu.mode"] for p in times} <= CPU_MODES
    assert {"user", "system", "idle"} <= {p.attributes["cpu.mode"] for p in times}
    assert all(set(p.attributes) == {"cpu.mode", "cpu.logical_number"} and p.value >= 0 for p in times)
    # Utilization needs a previous reading: none in the first scrape, then one per cpu and mode.
    assert not _of(all_scrapers, "cpu", "system.cpu.utilization", 0)
    utilization = _of(all_scrapers, "cpu", "system.cpu.utilization")
    per_cpu: dict[int, float] = {}
    for p in utilization:
        assert 0.0 <= p.value <= 1.0
        assert p.attributes["cpu.mode"] in CPU_MODES
        per_cpu[p.attributes["cpu.logical_number"]] = per_cpu.get(p.attributes["cpu.logical_number"], 0) + p.value
    # The modes of one cpu share its time: they add up to 1.
    assert per_cpu and all(abs(total - 1.0) < 1e-6 for total in per_cpu.values()), per_cpu


def test_load(all_scrapers):
    points = {p.name: p for p in all_scrapers.scrapes["load"][-1]}
    assert set(points) == set(EXPECTED["load"])
    for p in points.values():
        assert p.value >= 0 and p.attributes == {}


def test_memory_states_add_up_to_the_total(all_scrapers):
    total = psutil.virtual_memory().total
    (limit,) = _of(all_scrapers, "memory", "system.memory.limit")
    assert limit.value == total
    usage = {p.attributes["system.memory.state"]: p.value for p in _of(all_scrapers, "memory", "system.memory.usage")}
    assert {"used", "free"} <= set(usage) <= {"used", "free", "buffers", "cached"}
    if platform.system() == "Linux":
        assert set(usage) == {"used", "free", "buffers", "cached"}
        # One snapshot: used + free + buffers + cached is the total (psutil's own `used`, total -
        # available, overlaps buffers and cached and overshoots it by the unreclaimable cache).
        assert abs(sum(usage.values()) - total) <= 0.001 * total, (usage, total)
    assert all(0 <= v <= total for v in usage.values())
    utilization = {p.attributes["system.memory.state"]: p.value
                   for p in _of(all_scrapers, "memory", "system.memory.utilization")}
    assert set(utilization) == set(usage)
    assert all(0.0 <= v <= 1.0 for v in utilization.values())
    for state, value in usage.items():
        assert utilization[state] == pytest.approx(value / total)


def test_paging(all_scrapers):
    swap = psutil.swap_memory()
    usage = {p.attributes["system.paging.state"]: p.value for p in _of(all_scrapers, "paging", "system.paging.usage")}
    assert set(usage) == {"used", "free"}
    assert sum(usage.values()) == swap.total
    for p in _of(all_scrapers, "paging", "system.paging.utilization"):
        assert 0.0 <= p.value <= 1.0
    operations = _of(all_scrapers, "paging", "system.paging.operations")
    faults = _of(all_scrapers, "paging", "system.paging.faults")
    if Path("/proc/vmstat").exists():
        assert {p.attributes["system.paging.direction"] for p in operations} == {"in", "out"}
        faults_by_type = {p.attributes["system.paging.type"]: p.value for p in faults}
        assert set(faults_by_type) == {"major", "minor"}
        assert faults_by_type["minor"] > 0  # this very process has faulted pages in


def test_disk_excludes_loop_devices_by_default(all_scrapers):
    if not _disks():
        pytest.skip("no disk on this host outside the default exclusion")
    scrape = all_scrapers.scrapes["disk"][-1]
    devices = {p.attributes["system.device"] for p in scrape}
    assert devices == set(_disks())
    assert not any(re.fullmatch(r"loop\d+|ram\d+", d) for d in devices)
    for p in scrape:
        if p.name == "system.disk.io_time":
            assert set(p.attributes) == {"system.device"}
        else:
            assert set(p.attributes) == {"system.device", "disk.io.direction"}
            assert p.attributes["disk.io.direction"] in ("read", "write")
        assert p.value >= 0


def test_filesystem_excludes_pseudo_filesystems_by_default(all_scrapers):
    scrape = all_scrapers.scrapes["filesystem"][-1]
    expected = {mp: fs for mp, fs in readable_mounts().items() if fs not in system.PSEUDO_FS_TYPES}
    usage = [p for p in scrape if p.name == "system.filesystem.usage"]
    assert {p.attributes["system.filesystem.mountpoint"] for p in usage} == set(expected)
    for forbidden in ("proc", "sysfs", "tmpfs", "devtmpfs", "cgroup", "cgroup2"):
        assert not any(p.attributes["system.filesystem.type"] == forbidden for p in scrape)
    by_mount: dict[str, dict[str, float]] = {}
    for p in usage:
        assert set(p.attributes) == {"system.device", "system.filesystem.mountpoint", "system.filesystem.type",
                                     "system.filesystem.mode", "system.filesystem.state"}
        assert p.attributes["system.filesystem.mode"] in ("ro", "rw")
        assert p.attributes["system.filesystem.type"] == expected[p.attributes["system.filesystem.mountpoint"]]
        by_mount.setdefault(p.attributes["system.filesystem.mountpoint"], {})[
            p.attributes["system.filesystem.state"]] = p.value
    for mountpoint, states in by_mount.items():
        assert set(states) == {"used", "free", "reserved"}
        total = psutil.disk_usage(mountpoint).total
        assert abs(sum(states.values()) - total) <= 0.01 * total, (mountpoint, states, total)
    for p in scrape:
        if p.name == "system.filesystem.utilization":
            assert 0.0 <= p.value <= 1.0
            assert "system.filesystem.state" not in p.attributes


def test_network(all_scrapers):
    scrape = all_scrapers.scrapes["network"][-1]
    interfaces = {p.attributes["network.interface.name"] for p in scrape}
    assert interfaces == set(psutil.net_io_counters(pernic=True))
    for p in scrape:
        assert set(p.attributes) == {"network.interface.name", "network.io.direction"}
        assert p.attributes["network.io.direction"] in ("transmit", "receive")
        assert p.value >= 0


def test_processes(all_scrapers):
    counts = {p.attributes["process.state"]: p.value
              for p in _of(all_scrapers, "processes", "system.process.count")}
    assert counts and all(isinstance(s, str) and s and v > 0 for s, v in counts.items())
    assert "sleeping" in counts or "running" in counts
    assert set(counts) <= {"running", "sleeping", "stopped", "defunct", "unknown"}
    now = len(psutil.pids())
    assert abs(sum(counts.values()) - now) <= max(20, now // 5), (counts, now)
    created = _of(all_scrapers, "processes", "system.process.created")
    if Path("/proc/stat").exists():
        assert len(created) == 1 and created[0].value >= now and created[0].attributes == {}



@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_process_states_read_from_proc_are_psutils(tmp_path):
    # A stopped child whose name has a space and parentheses: the state comes after the last ')'.
    script = tmp_path / "odd) R (name"
    script.write_text("#!/bin/sh\nkill -STOP $$\n")
    script.chmod(0o755)
    child = subprocess.Popen([str(script)])
    try:
        deadline = time.monotonic() + 5
        while psutil.Process(child.pid).status() != psutil.STATUS_STOPPED and time.monotonic() < deadline:
            time.sleep(0.01)
        from_proc = system._linux_process_states()
        from_psutil: dict[str, int] = {}
        for proc in psutil.process_iter(["status"]):
            state = system._PROCESS_STATES.get(proc.info["status"], "unknown")
            from_psutil[state] = from_psutil.get(state, 0) + 1
    finally:
        child.kill()
        child.wait()
    assert from_proc["stopped"] >= 1
    assert set(from_proc) <= {"running", "sleeping", "stopped", "defunct", "unknown"}
    total = sum(from_psutil.values())
    assert abs(sum(from_proc.values()) - total) <= max(10, total // 10), (from_proc, from_psutil)

def test_process_by_pid_file(all_scrapers):
    me = psutil.Process()
    scrapes = all_scrapers.scrapes["process"]
    for scrape in scrapes:
        assert {p.resource["process.pid"] for p in scrape} == {os.getpid()}
    resource = scrapes[-1][0].resource
    assert resource["process.executable.name"] == me.name()
    assert resource["process.command_line"] == " ".join(me.cmdline())
    assert resource["process.parent_pid"] == me.ppid()
    assert resource["host.name"] == socket.gethostname()  # the host's attributes are kept
    # Utilization needs a previous reading of this process: not in the first scrape, then in each.
    assert not [p for p in scrapes[0] if p.name == "process.cpu.utilization"]
    for scrape in scrapes[1:]:
        utilization = [p for p in scrape if p.name == "process.cpu.utilization"]
        assert {p.attributes["cpu.mode"] for p in utilization} == {"user", "system"}
        assert all(0.0 <= p.value <= 1.0 for p in utilization)
    last = {p.name: p for p in scrapes[-1] if p.name != "process.cpu.time" and p.name != "process.cpu.utilization"}
    assert 0 < last["process.memory.usage"].value <= last["process.memory.virtual"].value
    assert last["process.thread.count"].value >= 2  # Vigil's worker threads live in this process
    if "process.open_file_descriptor.count" in last:
        assert last["process.open_file_descriptor.count"].value > 0
    cpu = {p.attributes["cpu.mode"]: p.value for p in scrapes[-1] if p.name == "process.cpu.time"}
    assert set(cpu) == {"user", "system"} and cpu["user"] > 0


# --- the process scraper: selection by name, and processes that are gone ---------------------------


async def test_process_selected_by_name_regexp(tmp_path):
    me = psutil.Process()
    pattern = f"^{re.escape(me.name())}$"
    config, paths = metrics_config(tmp_path, {"byname": {"scrapers": {
        "process": {"include": {"names": [pattern], "match_type": "regexp"}}}}})

    def mine() -> list[list[Point]]:
        return [scrape for scrape in read_scrapes(paths["byname"]).get("process", [])
                if any(p.resource["process.pid"] == os.getpid() for p in scrape)]

    async with running_vigil(config) as vigil:
        assert await async_wait_for(lambda: len(mine()) >= 2, timeout=10)
        assert vigil.counter("vigil_receiver_scrape_errors") == 0
    for scrape in mine():
        for p in scrape:
            assert re.search(pattern, p.resource["process.executable.name"])
    resource = next(p.resource for p in mine()[-1] if p.resource["process.pid"] == os.getpid())
    assert resource["process.command_line"] == " ".join(me.cmdline())
    assert any(p.name == "process.cpu.utilization" and p.resource["process.pid"] == os.getpid()
               for p in mine()[-1])


async def test_pid_file_of_an_exited_process_is_skipped_and_counted(tmp_path):
    gone = subprocess.Popen(["sleep", "0"])
    gone.wait()
    assert not psutil.pid_exists(gone.pid)
    (tmp_path / "gone.pid").write_text(f"{gone.pid}\n")
    (tmp_path / "self.pid").write_text(f"{os.getpid()}\n")
    config, paths = metrics_config(tmp_path, {"pids": {"scrapers": {"process": {"pid_files": [
        str(tmp_path / "gone.pid"), str(tmp_path / "missing.pid"), str(tmp_path / "self.pid")]}}}})
    async with running_vigil(config) as vigil:
        assert await async_wait_for(lambda: len(read_scrapes(paths["pids"]).get("process", [])) >= 2,
                                    timeout=10)
        assert vigil.counter("vigil_receiver_scrape_errors") == 0
        assert vigil.counter("vigil_receiver_scrape_skipped_processes", reason="vanished") >= 2
        assert vigil.counter("vigil_receiver_scrape_skipped_processes", reason="pid_file") >= 2
        assert vigil.counter("vigil_receiver_scrape_skipped_processes", receiver="hostmetrics/pids") >= 4
    for scrape in read_scrapes(paths["pids"])["process"]:
        assert {p.resource["process.pid"] for p in scrape} == {os.getpid()}


# --- failures and slowness stay inside their scraper ----------------------------------------------


async def test_a_failing_scraper_is_logged_and_counted_while_others_keep_going(tmp_path, monkeypatch, caplog):
    def broken(self, out, resource):
        raise RuntimeError("boom from the load scraper")

    monkeypatch.setattr(system.LoadScraper, "scrape", broken)
    config, paths = metrics_config(tmp_path, {"h": {"scrapers": {"cpu": None, "load": None, "memory": None}}})
    with caplog.at_level(logging.WARNING, logger="vigil"):
        async with running_vigil(config) as vigil:
            assert await async_wait_for(
                lambda: min(len(read_scrapes(paths["h"]).get(s, [])) for s in ("cpu", "memory")) >= 3,
                timeout=10)
            assert vigil.counter("vigil_receiver_scrape_errors", scraper="load") >= 2
            assert vigil.counter("vigil_receiver_scrape_errors", scraper="load",
                                 receiver="hostmetrics/h") == vigil.counter("vigil_receiver_scrape_errors")
            assert vigil.counter("vigil_receiver_accepted_metric_points", receiver="hostmetrics/h") > 0
    assert "load" not in read_scrapes(paths["h"])
    assert any("scraper load failed" in r.getMessage() and "boom from the load scraper" in r.getMessage()
               for r in caplog.records)


async def test_a_slow_scraper_does_not_delay_the_others(tmp_path, monkeypatch):
    original = system.LoadScraper.scrape

    def slow(self, out, resource):
        time.sleep(1.0)
        original(self, out, resource)

    monkeypatch.setattr(system.LoadScraper, "scrape", slow)
    config, paths = metrics_config(tmp_path, {"h": {"scrapers": {"cpu": None, "load": None}}})
    async with running_vigil(config):
        started = time.monotonic()
        assert await async_wait_for(lambda: len(read_scrapes(paths["h"]).get("cpu", [])) >= 6, timeout=10)
        elapsed = time.monotonic() - started
    scrapes = read_scrapes(paths["h"])
    # Six cpu scrapes at 300ms intervals take 1.5s, during which load has finished one scrape at most.
    assert elapsed < 2.5
    assert len(scrapes.get("load", [])) <= 2
    times = [scrape[0].time_ns for scrape in scrapes["cpu"]]
    gaps = [(b - a) / 1e9 for a, b in zip(times, times[1:])]
    assert all(0.1 < gap < 0.75 for gap in gaps), gaps


# --- filters, against this host's own mounts and disks ----------------------------------------------


async def test_filesystem_include_and_exclude(tmp_path):
    mounts = readable_mounts()
    root_type = mounts["/"]
    everything = {"exclude_fs_types": None}  # the pseudo-filesystem default off, to see every mount
    receivers = {
        "mp_strict": {"include_mount_points": {"mount_points": ["/"]}, **everything},
        "mp_regexp_out": {"exclude_mount_points": {"mount_points": ["^/(dev|proc|sys)(/|$)"],
                                                   "match_type": "regexp"}, **everything},
        "type_strict": {"include_fs_types": {"fs_types": [root_type]}, **everything},
        "type_regexp_out": {"exclude_fs_types": {"fs_types": ["^(proc|sysfs|cgroup2?)$"],
                                                 "match_type": "regexp"}},
        "type_strict_out": {"exclude_fs_types": {"fs_types": [root_type]}},
        "default_plus_mp_out": {"exclude_mount_points": {"mount_points": ["/"]}},
        # An include of a pseudo type works on its own: the default exclusion gives way to it.
        "pseudo_include_only": {"include_fs_types": {"fs_types": ["proc", "sysfs", "tmpfs"]}},
    }
    expected = {
        "mp_strict": {"/"},
        "mp_regexp_out": {mp for mp in mounts if not re.match(r"^/(dev|proc|sys)(/|$)", mp)},
        "type_strict": {mp for mp, fs in mounts.items() if fs == root_type},
        "type_regexp_out": {mp for mp, fs in mounts.items() if fs not in ("proc", "sysfs", "cgroup", "cgroup2")},
        "type_strict_out": {mp for mp, fs in mounts.items() if fs != root_type},
        "default_plus_mp_out": {mp for mp, fs in mounts.items()
                                if fs not in system.PSEUDO_FS_TYPES and mp != "/"},
        "pseudo_include_only": {mp for mp, fs in mounts.items() if fs in ("proc", "sysfs", "tmpfs")},
    }
    receivers = {name: {"scrapers": {"filesystem": body}} for name, body in receivers.items()
                 if expected[name]}  # a filter that keeps nothing on this host writes nothing
    config, paths = metrics_config(tmp_path, receivers)
    async with running_vigil(config) as vigil:
        assert await async_wait_for(lambda: all(read_scrapes(p).get("filesystem") for p in paths.values()),
                                    timeout=10)
        assert vigil.counter("vigil_receiver_scrape_errors") == 0
    for name, path in paths.items():
        scrape = read_scrapes(path)["filesystem"][0]
        got = {p.attributes["system.filesystem.mountpoint"] for p in scrape}
        assert got == expected[name], name
        for p in scrape:
            assert p.attributes["system.filesystem.type"] == mounts[p.attributes["system.filesystem.mountpoint"]]
    assert "/" in expected["mp_regexp_out"] and "/" in expected["type_strict"]
    # A readable tmpfs or devtmpfs mount (on Linux there is nearly always one) shows with its type.
    if any(fs in ("tmpfs", "devtmpfs") for fs in mounts.values()):
        assert any(mounts[mp] in ("tmpfs", "devtmpfs") for mp in expected["type_regexp_out"])


async def test_disk_include_and_exclude(tmp_path):
    devices = list(psutil.disk_io_counters(perdisk=True) or {})
    if not devices:
        pytest.skip("psutil sees no disk on this host")
    loops = [d for d in devices if re.fullmatch(r"loop\d+", d)]
    chosen = sorted(devices)[0]
    receivers = {
        "strict": {"include": {"devices": [chosen]}, "exclude": None},
        "no_exclude": {"exclude": None},
        "regexp_out": {"exclude": {"devices": [f"^{re.escape(chosen)}$"], "match_type": "regexp"}},
    }
    expected = {"strict": {chosen}, "no_exclude": set(devices), "regexp_out": set(devices) - {chosen}}
    if loops:
        receivers["loops"] = {"include": {"devices": ["^loop"], "match_type": "regexp"}, "exclude": None}
        expected["loops"] = set(loops)
    config, paths = metrics_config(tmp_path, {name: {"scrapers": {"disk": body}}
                                              for name, body in receivers.items() if expected[name]})
    async with running_vigil(config):
        assert await async_wait_for(lambda: all(read_scrapes(p).get("disk") for p in paths.values()), timeout=10)
    for name, path in paths.items():
        got = {p.attributes["system.device"] for p in read_scrapes(path)["disk"][0]}
        assert got == expected[name], name


async def test_network_include_and_exclude(tmp_path):
    interfaces = sorted(psutil.net_io_counters(pernic=True))
    chosen = interfaces[0]
    receivers = {
        "strict": {"include": {"interfaces": [chosen]}},
        "regexp_out": {"exclude": {"interfaces": [f"^{re.escape(chosen)}$"], "match_type": "regexp"}},
    }
    expected = {"strict": {chosen}, "regexp_out": set(interfaces) - {chosen}}
    config, paths = metrics_config(tmp_path, {name: {"scrapers": {"network": body}}
                                              for name, body in receivers.items() if expected[name]})
    async with running_vigil(config):
        assert await async_wait_for(lambda: all(read_scrapes(p).get("network") for p in paths.values()),
                                    timeout=10)
    for name, path in paths.items():
        got = {p.attributes["network.interface.name"] for p in read_scrapes(path)["network"][0]}
        assert got == expected[name], name


# --- config ---------------------------------------------------------------------------------------


def _problems(scrapers_yaml: str) -> list[str]:
    text = f"""
receivers:
  hostmetrics:
    scrapers:
{scrapers_yaml}
exporters:
  debug:
service:
  pipelines:
    metrics: {{receivers: [hostmetrics], exporters: [debug]}}
"""
    with pytest.raises(ConfigError) as info:
        config_module.parse(text, "vigil.yaml")
    return info.value.problems


def _hostmetrics(text: str):
    from agent.component import ComponentId, Kind

    config = config_module.parse(text, "vigil.yaml")
    return config.component(Kind.RECEIVER, ComponentId("hostmetrics")).config


def test_an_unknown_scraper_is_an_error_with_its_path():
    problems = _problems("      cpu:\n      gpu: {}")
    assert any(p.startswith("receivers.hostmetrics.scrapers.gpu:") and "unknown key" in p for p in problems), problems


def test_an_unknown_scraper_setting_is_an_error_with_its_path():
    problems = _problems("      disk: {include: {devices: [sda]}, excluded: {devices: [sdb]}}")
    assert any(p.startswith("receivers.hostmetrics.scrapers.disk.excluded:") for p in problems), problems


def test_an_empty_scraper_entry_turns_it_on_with_defaults():
    config = _hostmetrics("""
receivers:
  hostmetrics:
    collection_interval: 300ms
    initial_delay: 0s
    scrapers:
      cpu:
      filesystem:
      process:
exporters: {debug: }
service: {pipelines: {metrics: {receivers: [hostmetrics], exporters: [debug]}}}
""")
    assert config.collection_interval == pytest.approx(0.3) and config.initial_delay == 0
    assert config.scrapers.cpu == system.CpuConfig()
    assert config.scrapers.filesystem == system.FilesystemConfig()
    assert config.scrapers.filesystem.effective_exclude_fs_types().fs_types == system.PSEUDO_FS_TYPES
    assert config.scrapers.process == ProcessConfig()
    assert config.scrapers.memory is None and config.scrapers.disk is None


def test_without_scrapers_every_host_wide_scraper_runs():
    config = _hostmetrics("""
receivers: {hostmetrics: }
exporters: {debug: }
service: {pipelines: {metrics: {receivers: [hostmetrics], exporters: [debug]}}}
""")
    on = {name for name in EXPECTED if getattr(config.scrapers, name) is not None}
    assert on == set(EXPECTED) - {"process"}


@pytest.mark.parametrize("scraper_yaml, problem", [
    ("      filesystem: {include_mount_points: {mount_points: ['/(data'], match_type: regexp}}",
     "receivers.hostmetrics.scrapers.filesystem.include_mount_points: mount_points[0]: invalid regex '/(data': "
     "missing ): /(data"),
    ("      disk: {exclude: {devices: ['*sd'], match_type: regexp}}",
     "receivers.hostmetrics.scrapers.disk.exclude: devices[0]: invalid regex '*sd': no argument for "
     "repetition operator: *"),
    ("      process: {include: {names: ['python[', ok], match_type: regexp}}",
     "receivers.hostmetrics.scrapers.process.include: names[0]: invalid regex 'python[': missing ]: ["),
    # RE2, as Go's regexp in the Collector: what would need backtracking is refused.
    ("      network: {exclude: {interfaces: [lo, '^(?!eth)'], match_type: regexp}}",
     "receivers.hostmetrics.scrapers.network.exclude: interfaces[1]: invalid regex '^(?!eth)': invalid perl "
     "operator: (?! (RE2 syntax, as in the Collector: no lookaround, backreferences or possessive repeats)"),
])
def test_a_bad_regexp_is_an_error_naming_the_field(scraper_yaml, problem):
    assert problem in _problems(scraper_yaml)


def test_a_regexp_filter_is_linear_in_the_name():
    # `^(a+)+$` backtracks without end in Python's re on a long name that just fails to match; not in RE2.
    names = NamesFilter(names=["^(a+)+$"], match_type="regexp")
    assert not names.matches("a" * 50_000 + "!")
    assert names.matches("a" * 50_000)


def test_a_bad_match_type_is_an_error():
    problems = _problems("      network: {include: {interfaces: [eth0], match_type: glob}}")
    assert any(p.startswith("receivers.hostmetrics.scrapers.network.include.match_type:") for p in problems), \
        problems
