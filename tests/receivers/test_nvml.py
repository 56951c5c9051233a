"""The `nvml` receiver: GPUs through a fake NVML (`fake_pynvml`), and the real NVML of this machine.

CI has no GPU, so most tests install `FakeNvml` over the real `pynvml`
module's functions and run Vigil in-process with `nvml` exporting to `file`
exporters; they read back the OTLP/JSON lines (one line per scrape, as no
batch processor sits in between). The last test uses the real `pynvml` and
whatever this machine has: no GPU (idle, one log line) or a real GPU
(metrics).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from pathlib import Path
from typing import Any

import pynvml
import pytest

from agent import config as config_module
from agent.config import ConfigError
from tests.conftest import async_wait_for, read_json_lines, running_vigil
from tests.otlp_json_reading import (COUNTER, GAUGE, UPDOWN, Point, attributes_of, complete_json_lines, items,
                                     metric_points)
from tests.receivers.fake_pynvml import GiB, FakeGpu, FakeNvml, mig_device

LOGGER = "vigil.receivers.nvml"
CUMULATIVE = 2
MiB = 1 << 20

# Every OpenTelemetry-named metric: (unit, instrument).
EXPECTED = {
    "hw.gpu.utilization": ("1", GAUGE),
    "hw.gpu.memory.activity": ("1", GAUGE),
    "hw.gpu.memory.usage": ("By", UPDOWN),
    "hw.gpu.memory.limit": ("By", UPDOWN),
    "hw.gpu.memory.utilization": ("1", GAUGE),
    "hw.temperature": ("Cel", GAUGE),
    "hw.power": ("W", GAUGE),
    "hw.energy": ("J", COUNTER),
    "hw.gpu.clock.frequency": ("Hz", GAUGE),
    "hw.gpu.clock.throttle": ("1", GAUGE),
    "hw.gpu.pcie.throughput": ("By/s", GAUGE),
    "hw.gpu.pcie.replays": ("{replay}", COUNTER),
    "hw.errors": ("{error}", COUNTER),
    "hw.gpu.memory.retired_pages": ("{page}", UPDOWN),
    "hw.gpu.memory.retirement.pending": ("1", GAUGE),
    "hw.gpu.memory.remapped_rows": ("{row}", UPDOWN),
    "hw.gpu.memory.remap.pending": ("1", GAUGE),
    "hw.gpu.memory.remap.failed": ("1", GAUGE),
    "hw.fan.speed_ratio": ("1", GAUGE),
    "hw.gpu.process.memory.usage": ("By", UPDOWN),
    "hw.gpu.xid.errors": ("{error}", COUNTER),
    "hw.status": ("1", UPDOWN),
}


# --- reading what the file exporters wrote ----------------------------------------------------------


def scrapes(path: Path) -> list[list[Point]]:
    """The complete lines of `path`, one list of points per scrape, in order."""
    return [metric_points(request) for request in complete_json_lines(path)]


def select(points: list[Point], name: str, hw_id: str | None = None, **attributes: Any) -> list[Point]:
    return [p for p in points if p.name == name and (hw_id is None or p.resource.get("hw.id") == hw_id)
            and all(p.attributes.get(k) == v for k, v in attributes.items())]


def value(points: list[Point], name: str, hw_id: str | None = None, **attributes: Any) -> float:
    found = select(points, name, hw_id, **attributes)
    assert len(found) == 1, f"{name} {hw_id} {attributes}: {found}"
    return found[0].value


def log_records(path: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(resource attributes, log record) for every record the logs file holds."""
    return [(resource, record)
            for resource, _, record in items(read_json_lines(path), "logs", scalars_only=True)]


# --- setting up ------------------------------------------------------------------------------------


def nvml_config(tmp_path: Path, logs: bool = False, extra_receivers: dict[str, Any] | None = None,
                **receiver: Any) -> dict[str, Any]:
    body = {"collection_interval": "100ms", "initial_delay": "0s", "retry_interval": "100ms", **receiver}
    receivers = {"nvml": body, **(extra_receivers or {})}
    config: dict[str, Any] = {
        "receivers": receivers,
        "exporters": {"file/metrics": {"path": str(tmp_path / "metrics.json")}},
        "service": {"pipelines": {"metrics": {"receivers": list(receivers), "exporters": ["file/metrics"]}}},
    }
    if logs:
        config["exporters"]["file/logs"] = {"path": str(tmp_path / "logs.json")}
        config["service"]["pipelines"]["logs"] = {"receivers": ["nvml"], "exporters": ["file/logs"]}
    return config


def two_gpus() -> list[FakeGpu]:
    return [
        FakeGpu("GPU-aaaaaaaa-0000-0000-0000-000000000000", pci_bus_id="00000000:01:00.0",
                compute_processes=[(4242, 3 * GiB), (4343, 512 * MiB)], graphics_processes=[(4242, 3 * GiB)]),
        FakeGpu("GPU-bbbbbbbb-1111-1111-1111-111111111111", name="NVIDIA A100-SXM4-40GB",
                pci_bus_id="00000000:41:00.0", utilization_gpu=97, utilization_memory=64, encoder=0, decoder=0,
                memory_total=40 * GiB, memory_used=30 * GiB, temperature=70, memory_temperature=80,
                power_mw=399_123, energy_mj=987_654_321, clocks_mhz={0: 1410, 1: 1410, 2: 1215},
                pcie_kb={0: 5, 1: 7}, pcie_replays=0, ecc={0: 0, 1: 0}, retired_pages={0: [], 1: []},
                remapped_rows=(0, 0, 0, 0), clock_event_reasons=0x020, fan_percent=55),
    ]


@pytest.fixture
def fake_nvml(monkeypatch):
    """Makes a `FakeNvml`, installs it over the real pynvml, and checks no unexpected function was called."""
    made: list[FakeNvml] = []

    def make(gpus: list[FakeGpu] | None = None, **kwargs: Any) -> FakeNvml:
        fake = FakeNvml(gpus, **kwargs).install(monkeypatch)
        made.append(fake)
        return fake

    yield make
    for fake in made:
        assert fake.unexpected == [], f"the receiver called NVML functions the fake lacks: {fake.unexpected}"
        assert fake.refcount == 0, "NVML was left initialised"


def xid_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.endswith("/xid")]


# --- GPUs, resources, values ----------------------------------------------------------------------------


async def test_several_gpus_each_its_own_resource_with_converted_values(tmp_path, fake_nvml):
    fake = fake_nvml(two_gpus())
    a, b = fake.gpus
    path = tmp_path / "metrics.json"
    async with running_vigil(nvml_config(tmp_path)):
        assert await async_wait_for(lambda: len(scrapes(path)) >= 1)
        a.energy_mj += 500_000
        a.pcie_replays += 1
        assert await async_wait_for(
            lambda: any(select(s, "hw.energy", a.uuid) and value(s, "hw.energy", a.uuid) == 1734.567
                        for s in scrapes(path)))
    all_scrapes = scrapes(path)
    first = all_scrapes[0]

    # One resource per GPU, the host's attributes and the GPU's.
    resources = {p.resource["hw.id"]: p.resource for p in first}
    assert set(resources) == {a.uuid, b.uuid}
    assert {k: v for k, v in resources[a.uuid].items() if k.startswith("hw.")} == {
        "hw.id": a.uuid, "hw.type": "gpu", "hw.name": "gpu0", "hw.vendor": "NVIDIA",
        "hw.model": "NVIDIA H100 80GB HBM3", "hw.driver_version": "550.54.15", "hw.gpu.index": 0,
        "hw.gpu.pci_bus_id": "00000000:01:00.0",
    }
    assert resources[a.uuid]["host.name"] == socket.gethostname()
    assert {"host.arch", "os.type", "os.description"} <= set(resources[a.uuid])
    assert resources[b.uuid]["hw.gpu.index"] == 1
    assert resources[b.uuid]["hw.name"] == "gpu1"
    assert resources[b.uuid]["hw.model"] == "NVIDIA A100-SXM4-40GB"
    assert resources[b.uuid]["hw.gpu.pci_bus_id"] == "00000000:41:00.0"

    # Names, units and instrument kinds; every OTel metric but the XID counter (no XID yet) is there.
    for p in first:
        assert p.name in EXPECTED, p.name
        assert (p.unit, p.instrument) == EXPECTED[p.name], p.name
        if p.instrument != GAUGE:
            assert p.temporality == CUMULATIVE
    assert {p.name for p in first} == set(EXPECTED) - {"hw.gpu.xid.errors"}

    # Values, converted: percent -> 0..1, mW -> W, mJ -> J, MHz -> Hz, KB/s -> By/s.
    assert value(first, "hw.gpu.utilization", a.uuid, **{"hw.gpu.task": "general"}) == 0.5
    assert value(first, "hw.gpu.utilization", a.uuid, **{"hw.gpu.task": "encoder"}) == 0.03
    assert value(first, "hw.gpu.utilization", a.uuid, **{"hw.gpu.task": "decoder"}) == 0.04
    assert value(first, "hw.gpu.utilization", b.uuid, **{"hw.gpu.task": "general"}) == 0.97
    assert value(first, "hw.gpu.memory.activity", b.uuid) == 0.64
    assert value(first, "hw.gpu.memory.usage", a.uuid) == 20 * GiB
    assert value(first, "hw.gpu.memory.limit", a.uuid) == 80 * GiB
    assert value(first, "hw.gpu.memory.utilization", a.uuid) == 0.25
    assert value(first, "hw.gpu.memory.utilization", b.uuid) == 0.75
    assert value(first, "hw.temperature", a.uuid, **{"hw.sensor_location": "gpu"}) == 41
    assert value(first, "hw.temperature", a.uuid, **{"hw.sensor_location": "memory"}) == 47
    assert value(first, "hw.temperature", b.uuid, **{"hw.sensor_location": "gpu"}) == 70
    assert value(first, "hw.power", a.uuid) == 250.5
    assert value(first, "hw.power", b.uuid) == 399.123
    assert value(first, "hw.energy", a.uuid) == 1234.567
    assert value(first, "hw.energy", b.uuid) == 987_654.321
    assert value(first, "hw.gpu.clock.frequency", a.uuid, **{"hw.gpu.clock.type": "sm"}) == 1980 * 10**6
    assert value(first, "hw.gpu.clock.frequency", a.uuid, **{"hw.gpu.clock.type": "memory"}) == 2619 * 10**6
    assert value(first, "hw.gpu.clock.frequency", a.uuid, **{"hw.gpu.clock.type": "graphics"}) == 1755 * 10**6
    assert value(first, "hw.gpu.pcie.throughput", a.uuid, **{"network.io.direction": "transmit"}) == 1000 * 1024
    assert value(first, "hw.gpu.pcie.throughput", a.uuid, **{"network.io.direction": "receive"}) == 2000 * 1024
    assert value(first, "hw.gpu.pcie.replays", a.uuid) == 2
    assert value(first, "hw.errors", a.uuid, **{"error.type": "ecc_corrected"}) == 5
    assert value(first, "hw.errors", a.uuid, **{"error.type": "ecc_uncorrected"}) == 1
    assert value(first, "hw.gpu.memory.retired_pages", a.uuid,
                 **{"hw.gpu.memory.retirement_cause": "multiple_single_bit_ecc"}) == 1
    assert value(first, "hw.gpu.memory.retired_pages", a.uuid,
                 **{"hw.gpu.memory.retirement_cause": "double_bit_ecc"}) == 0
    assert value(first, "hw.gpu.memory.retirement.pending", a.uuid) == 0
    assert value(first, "hw.gpu.memory.remapped_rows", a.uuid, **{"hw.gpu.memory.remap_cause": "correctable"}) == 3
    assert value(first, "hw.gpu.memory.remapped_rows", a.uuid, **{"hw.gpu.memory.remap_cause": "uncorrectable"}) == 1
    assert value(first, "hw.gpu.memory.remap.pending", a.uuid) == 0
    assert value(first, "hw.gpu.memory.remap.failed", a.uuid) == 0
    throttle_a = {p.attributes["hw.gpu.clock.throttle_reason"]: p.value
                  for p in select(first, "hw.gpu.clock.throttle", a.uuid)}
    assert throttle_a == {"gpu_idle": 1, "applications_clocks_setting": 0, "sw_power_cap": 1, "hw_slowdown": 0,
                          "sync_boost": 0, "sw_thermal_slowdown": 0, "hw_thermal_slowdown": 0,
                          "hw_power_brake_slowdown": 0, "display_clock_setting": 0}
    assert value(first, "hw.gpu.clock.throttle", b.uuid, **{"hw.gpu.clock.throttle_reason": "sw_thermal_slowdown"}) == 1
    assert value(first, "hw.fan.speed_ratio", a.uuid) == 0.3
    assert value(first, "hw.fan.speed_ratio", b.uuid) == 0.55
    # Per process: compute and graphics lists merged by pid.
    processes = {p.attributes["process.pid"]: p.value for p in select(first, "hw.gpu.process.memory.usage", a.uuid)}
    assert processes == {4242: 3 * GiB, 4343: 512 * MiB}
    assert select(first, "hw.gpu.process.memory.usage", b.uuid) == []
    assert value(first, "hw.status", a.uuid, **{"hw.state": "ok"}) == 1
    assert value(first, "hw.status", a.uuid, **{"hw.state": "failed"}) == 0

    # Cumulative counters start when the receiver first saw them, and keep that start.
    energy = [select(s, "hw.energy", a.uuid)[0] for s in all_scrapes]
    assert energy[0].start_ns == energy[0].time_ns
    assert {p.start_ns for p in energy} == {energy[0].start_ns}
    assert energy[-1].value == 1734.567
    replays = [select(s, "hw.gpu.pcie.replays", a.uuid)[0] for s in all_scrapes]
    assert {p.start_ns for p in replays} == {replays[0].start_ns}
    assert replays[-1].value == 3


async def test_a_counter_that_goes_back_gets_a_new_start_time(tmp_path, fake_nvml):
    fake = fake_nvml(two_gpus()[:1])
    gpu = fake.gpus[0]
    path = tmp_path / "metrics.json"
    async with running_vigil(nvml_config(tmp_path)):
        assert await async_wait_for(lambda: len(scrapes(path)) >= 2)
        gpu.energy_mj = 10  # the driver reloaded
        assert await async_wait_for(lambda: any(value(s, "hw.energy") == 0.01 for s in scrapes(path)))
    energy = [select(s, "hw.energy")[0] for s in scrapes(path)]
    before = [p for p in energy if p.value > 1]
    after = [p for p in energy if p.value == 0.01]
    assert after[0].start_ns > before[-1].time_ns
    assert after[0].start_ns == after[0].time_ns


async def test_a_mig_instance_is_a_device_of_its_own(tmp_path, fake_nvml):
    first_mig = mig_device("MIG-11111111-aaaa-bbbb-cccc-000000000001", gi=1, ci=0, profile="3g.40gb",
                           memory_total=40 * GiB, memory_used=8 * GiB, compute_processes=[(777, 6 * GiB)])
    second_mig = mig_device("MIG-22222222-aaaa-bbbb-cccc-000000000002", gi=2, ci=0, profile="1g.10gb")
    parent = FakeGpu("GPU-cccccccc-2222-2222-2222-222222222222", mig_mode=1,
                     mig_slots=[first_mig, None, second_mig, None], compute_processes=[(777, 6 * GiB)])
    fake = fake_nvml([parent])
    path = tmp_path / "metrics.json"
    async with running_vigil(nvml_config(tmp_path)):
        assert await async_wait_for(lambda: len(scrapes(path)) >= 3)
    points = scrapes(path)[-1]
    resources = {p.resource["hw.id"]: p.resource for p in points}
    assert set(resources) == {parent.uuid, first_mig.uuid, second_mig.uuid}
    mig = resources[first_mig.uuid]
    assert mig["hw.parent"] == parent.uuid
    assert mig["hw.gpu.mig.gpu_instance_id"] == 1
    assert mig["hw.gpu.mig.compute_instance_id"] == 0
    assert mig["hw.gpu.mig.profile"] == "3g.40gb"
    assert mig["hw.model"] == "NVIDIA H100 80GB HBM3 MIG 3g.40gb"
    assert mig["hw.name"] == "gpu0/gi1/ci0"
    assert mig["hw.gpu.index"] == 0
    assert mig["hw.type"] == "gpu"
    assert resources[second_mig.uuid]["hw.gpu.mig.gpu_instance_id"] == 2

    # Each instance's own memory; processes where they run (not counted twice on the parent).
    assert value(points, "hw.gpu.memory.usage", first_mig.uuid) == 8 * GiB
    assert value(points, "hw.gpu.memory.limit", first_mig.uuid) == 40 * GiB
    assert value(points, "hw.gpu.memory.utilization", first_mig.uuid) == 0.2
    assert value(points, "hw.gpu.memory.limit", second_mig.uuid) == 10 * GiB
    assert value(points, "hw.gpu.process.memory.usage", first_mig.uuid, **{"process.pid": 777}) == 6 * GiB
    assert select(points, "hw.gpu.process.memory.usage", parent.uuid) == []
    assert value(points, "hw.status", first_mig.uuid, **{"hw.state": "ok"}) == 1
    # What belongs to the physical GPU stays on the parent's resource.
    assert value(points, "hw.temperature", parent.uuid, **{"hw.sensor_location": "gpu"}) == 41
    assert select(points, "hw.temperature", first_mig.uuid) == []
    assert select(points, "hw.power", first_mig.uuid) == []
    # Utilization is not supported per MIG instance: asked once per instance, never again.
    assert select(points, "hw.gpu.utilization", first_mig.uuid) == []
    assert fake.count("nvmlDeviceGetUtilizationRates", first_mig) == 1
    assert fake.count("nvmlDeviceGetUtilizationRates", second_mig) == 1
    assert fake.count("nvmlDeviceGetMaxMigDeviceCount", parent) == 1


async def test_mig_instances_that_come_and_go_are_followed(tmp_path, fake_nvml):
    child = mig_device("MIG-33333333-aaaa-bbbb-cccc-000000000003", gi=5, ci=1)
    parent = FakeGpu("GPU-dddddddd-3333-3333-3333-333333333333", mig_mode=1, mig_slots=[None, None])
    fake_nvml([parent])
    path = tmp_path / "metrics.json"
    async with running_vigil(nvml_config(tmp_path)):
        assert await async_wait_for(lambda: len(scrapes(path)) >= 1)
        parent.mig_slots[1] = child
        child.parent = parent
        assert await async_wait_for(lambda: any(select(s, "hw.status", child.uuid) for s in scrapes(path)))
        parent.mig_slots[1] = None
        seen = len(scrapes(path))
        assert await async_wait_for(lambda: len(scrapes(path)) >= seen + 2)
    assert select(scrapes(path)[-1], "hw.status", child.uuid) == []
    assert select(scrapes(path)[0], "hw.status", child.uuid) == []


# --- what NVML cannot answer ------------------------------------------------------------------------------


async def test_unsupported_queries_are_asked_once_and_said_once(tmp_path, fake_nvml, caplog):
    gpu = FakeGpu("GPU-eeeeeeee-4444-4444-4444-444444444444", memory_temperature=None,
                  unsupported={"nvmlDeviceGetFanSpeed", "nvmlDeviceGetTotalEccErrors", "nvmlDeviceGetRetiredPages",
                               "nvmlDeviceGetRetiredPagesPendingStatus", "nvmlDeviceGetEncoderUtilization"})
    fake = fake_nvml([gpu])
    path = tmp_path / "metrics.json"
    with caplog.at_level(logging.DEBUG, logger="vigil"):
        async with running_vigil(nvml_config(tmp_path)):
            assert await async_wait_for(lambda: len(scrapes(path)) >= 5)
    for function in ("nvmlDeviceGetFanSpeed", "nvmlDeviceGetRetiredPagesPendingStatus",
                     "nvmlDeviceGetEncoderUtilization", "nvmlDeviceGetFieldValues", "nvmlDeviceGetMigMode"):
        assert fake.count(function, gpu) == 1, function
    # Two ECC counters and two retirement causes: each its own query, each asked once.
    assert fake.count("nvmlDeviceGetTotalEccErrors", gpu) == 2
    assert fake.count("nvmlDeviceGetRetiredPages", gpu) == 2
    # Supported queries are asked every scrape.
    assert fake.count("nvmlDeviceGetPowerUsage", gpu) >= 5
    said = [r for r in caplog.records if r.name == LOGGER and "does not support" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]
    message = said[0].getMessage()
    assert said[0].levelno == logging.INFO
    assert gpu.uuid in message
    for name in ("fan_speed", "errors.ecc_corrected", "retired_pages.pending", "temperature.memory", "mig_mode"):
        assert name in message
    assert not [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]
    points = scrapes(path)[-1]
    assert select(points, "hw.fan.speed_ratio") == []
    assert select(points, "hw.errors") == []
    assert select(points, "hw.temperature", **{"hw.sensor_location": "memory"}) == []
    assert select(points, "hw.gpu.utilization", **{"hw.gpu.task": "encoder"}) == []
    assert value(points, "hw.gpu.utilization", **{"hw.gpu.task": "general"}) == 0.5


async def test_a_failing_query_is_logged_once_and_the_rest_goes_on(tmp_path, fake_nvml, caplog):
    gpu = FakeGpu("GPU-ffffffff-5555-5555-5555-555555555555", compute_processes=[(1, GiB)],
                  failing={"nvmlDeviceGetComputeRunningProcesses": pynvml.NVML_ERROR_NO_PERMISSION})
    fake = fake_nvml([gpu])
    path = tmp_path / "metrics.json"
    with caplog.at_level(logging.DEBUG, logger="vigil"):
        async with running_vigil(nvml_config(tmp_path)):
            assert await async_wait_for(lambda: len(scrapes(path)) >= 3)
            del gpu.failing["nvmlDeviceGetComputeRunningProcesses"]  # permission granted: asked again, works
            assert await async_wait_for(
                lambda: any(select(s, "hw.gpu.process.memory.usage") for s in scrapes(path)))
    assert fake.count("nvmlDeviceGetComputeRunningProcesses", gpu) >= 4
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "processes.compute" in warnings[0] and "Insufficient Permissions" in warnings[0]
    assert value(scrapes(path)[0], "hw.power") == 250.5


async def test_older_drivers_answer_through_older_functions(tmp_path, fake_nvml):
    gpu = FakeGpu("GPU-12121212-6666-6666-6666-666666666666", clock_event_reasons=0x008,
                  compute_processes=[(99, GiB)],
                  failing={"nvmlDeviceGetCurrentClocksEventReasons": pynvml.NVML_ERROR_FUNCTION_NOT_FOUND},
                  too_new={"nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"})
    fake = fake_nvml([gpu])
    path = tmp_path / "metrics.json"
    async with running_vigil(nvml_config(tmp_path)):
        assert await async_wait_for(lambda: len(scrapes(path)) >= 2)
    points = scrapes(path)[-1]
    assert value(points, "hw.gpu.clock.throttle", **{"hw.gpu.clock.throttle_reason": "hw_slowdown"}) == 1
    assert fake.count("nvmlDeviceGetCurrentClocksThrottleReasons", gpu) >= 2
    assert value(points, "hw.gpu.process.memory.usage", **{"process.pid": 99}) == GiB
    assert fake.count("nvmlDeviceGetComputeRunningProcesses_v2", gpu) >= 2
    # The graphics list has no older version in the fake: not supported, asked once.
    assert fake.unexpected == ["nvmlDeviceGetGraphicsRunningProcesses_v2"]
    fake.unexpected.clear()


# --- a GPU falls off the bus -----------------------------------------------------------------------------


async def test_a_lost_gpu_is_reported_once_and_the_others_go_on(tmp_path, fake_nvml, caplog):
    fake = fake_nvml(two_gpus())
    a, b = fake.gpus
    path = tmp_path / "metrics.json"
    with caplog.at_level(logging.DEBUG, logger="vigil"):
        async with running_vigil(nvml_config(tmp_path)):
            assert await async_wait_for(lambda: len(scrapes(path)) >= 2)
            b.lost = True
            assert await async_wait_for(
                lambda: any(select(s, "hw.status", b.uuid, **{"hw.state": "failed"})
                            and value(s, "hw.status", b.uuid, **{"hw.state": "failed"}) == 1
                            for s in scrapes(path)))
            asked = fake.count("nvmlDeviceGetPowerUsage", b)
            seen = len(scrapes(path))
            assert await async_wait_for(lambda: len(scrapes(path)) >= seen + 3)
            assert fake.count("nvmlDeviceGetPowerUsage", b) == asked  # a lost GPU is not asked again
    lost = [r for r in caplog.records if r.name == LOGGER and "is lost" in r.getMessage()]
    assert len(lost) == 1
    assert lost[0].levelno == logging.ERROR and b.uuid in lost[0].getMessage()
    last = scrapes(path)[-1]
    assert value(last, "hw.status", b.uuid, **{"hw.state": "failed"}) == 1
    assert value(last, "hw.status", b.uuid, **{"hw.state": "ok"}) == 0
    assert select(last, "hw.gpu.utilization", b.uuid) == []
    # The other GPU is scraped as before.
    assert value(last, "hw.status", a.uuid, **{"hw.state": "ok"}) == 1
    assert value(last, "hw.power", a.uuid) == 250.5
    assert value(last, "hw.gpu.utilization", a.uuid, **{"hw.gpu.task": "general"}) == 0.5


# --- XID errors ------------------------------------------------------------------------------------------


async def test_an_xid_becomes_an_error_log_record_and_a_counter(tmp_path, fake_nvml):
    fake = fake_nvml(two_gpus())
    a, b = fake.gpus
    metrics, logs = tmp_path / "metrics.json", tmp_path / "logs.json"
    async with running_vigil(nvml_config(tmp_path, logs=True, dcgm_names=True)) as vigil:
        assert await async_wait_for(lambda: set(fake.registered) == {a.uuid, b.uuid})
        assert await async_wait_for(lambda: any(select(s, "DCGM_FI_DEV_XID_ERRORS") for s in scrapes(metrics)))
        fake.emit_xid(b, 79)
        fake.emit_xid(b, 79)
        fake.emit_xid(a, 31, gi=1, ci=0)
        assert await async_wait_for(lambda: len(log_records(logs)) == 3)
        assert await async_wait_for(
            lambda: any(select(s, "hw.gpu.xid.errors", b.uuid) and value(s, "hw.gpu.xid.errors", b.uuid) == 2
                        for s in scrapes(metrics)))
        assert vigil.counter("vigil_receiver_accepted_log_records", receiver="nvml") == 3
        assert xid_threads()

    records = log_records(logs)
    resource, record = next((r, rec) for r, rec in records if r["hw.id"] == b.uuid)
    assert resource["hw.gpu.index"] == 1 and resource["host.name"] == socket.gethostname()
    assert record["severityNumber"] == 17  # SEVERITY_NUMBER_ERROR
    assert record["severityText"] == "ERROR"
    assert record["eventName"] == "hw.gpu.xid"
    assert record["body"]["stringValue"] == f"XID 79 on GPU 1 ({b.uuid}): GPU has fallen off the bus"
    attributes = attributes_of(record["attributes"], scalars_only=True)
    assert attributes == {"hw.gpu.xid": 79, "hw.gpu.xid.description": "GPU has fallen off the bus",
                          "hw.id": b.uuid, "hw.gpu.index": 1}
    assert int(record["timeUnixNano"]) > 0
    mig_record = attributes_of(next(rec for r, rec in records if r["hw.id"] == a.uuid)["attributes"],
                               scalars_only=True)
    assert mig_record["hw.gpu.xid"] == 31
    assert mig_record["hw.gpu.mig.gpu_instance_id"] == 1 and mig_record["hw.gpu.mig.compute_instance_id"] == 0

    last = scrapes(metrics)[-1]
    counter = select(last, "hw.gpu.xid.errors", b.uuid)
    assert [(p.attributes, p.value, p.instrument) for p in counter] == [({"hw.gpu.xid": 79}, 2, COUNTER)]
    assert 0 < counter[0].start_ns <= counter[0].time_ns
    assert value(last, "hw.gpu.xid.errors", a.uuid, **{"hw.gpu.xid": 31}) == 1
    # DCGM's XID field is the last XID seen (0 before any).
    assert value(last, "DCGM_FI_DEV_XID_ERRORS", b.uuid) == 79
    assert value(last, "DCGM_FI_DEV_XID_ERRORS", a.uuid) == 31
    watched = [s for s in scrapes(metrics) if select(s, "DCGM_FI_DEV_XID_ERRORS")]
    assert value(watched[0], "DCGM_FI_DEV_XID_ERRORS", a.uuid) == 0
    assert select(watched[0], "hw.gpu.xid.errors") == []  # a series per XID code, once one is seen
    # Shut down: the XID thread is gone, the event set freed, NVML shut.
    assert not xid_threads()
    assert fake.event_sets_freed == fake.event_sets_created == 1
    assert fake.shutdown_calls == 1


async def test_xid_events_reach_a_logs_only_pipeline(tmp_path, fake_nvml):
    fake = fake_nvml(two_gpus()[:1])
    logs = tmp_path / "logs.json"
    config = {
        "receivers": {"nvml": {"initial_delay": "0s"}},
        "exporters": {"file": {"path": str(logs)}},
        "service": {"pipelines": {"logs": {"receivers": ["nvml"], "exporters": ["file"]}}},
    }
    async with running_vigil(config):
        assert await async_wait_for(lambda: fake.registered)
        fake.emit_xid(fake.gpus[0], 48)
        assert await async_wait_for(lambda: len(log_records(logs)) == 1)
    assert "double-bit ECC error" in log_records(logs)[0][1]["body"]["stringValue"]
    assert fake.count("nvmlDeviceGetPowerUsage", fake.gpus[0]) == 0  # no metrics pipeline: no scrapes


async def test_xid_events_can_be_turned_off_and_a_gpu_without_them_is_fine(tmp_path, fake_nvml):
    no_events = FakeGpu("GPU-34343434-7777-7777-7777-777777777777", supported_events=0)
    fake = fake_nvml([no_events])
    path = tmp_path / "metrics.json"
    async with running_vigil(nvml_config(tmp_path, logs=True)):
        assert await async_wait_for(lambda: len(scrapes(path)) >= 2)
        assert not xid_threads()  # no GPU to wait on
    assert fake.registered == {}
    assert fake.event_sets_created == fake.event_sets_freed == 1
    assert select(scrapes(path)[-1], "hw.gpu.xid.errors") == []

    fake = fake_nvml(two_gpus())
    async with running_vigil(nvml_config(tmp_path, xid_events=False)):
        assert await async_wait_for(lambda: fake.count("nvmlDeviceGetPowerUsage", fake.gpus[0]) >= 2)
    assert fake.event_sets_created == 0


# --- no GPU, no driver ----------------------------------------------------------------------------------


@pytest.mark.parametrize("init_error, gpus, reason", [
    (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, [], "libnvidia-ml.so.1) was not found"),
    (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, [], "driver is not loaded"),
    (None, [], "found no usable NVIDIA GPU"),
])
async def test_without_a_gpu_the_receiver_idles_says_so_once_and_finds_one_later(
        tmp_path, fake_nvml, caplog, init_error, gpus, reason):
    fake = fake_nvml(gpus, init_error=init_error)
    path = tmp_path / "metrics.json"
    host = {"hostmetrics": {"collection_interval": "100ms", "initial_delay": "0s", "scrapers": {"load": None}}}
    with caplog.at_level(logging.DEBUG, logger="vigil"):
        async with running_vigil(nvml_config(tmp_path, extra_receivers=host, retry_interval="200ms")) as vigil:
            assert await async_wait_for(lambda: fake.init_calls >= 3)
            # Idle: no GPU metrics, but the agent runs on (the other receiver's points keep coming).
            points = [p for s in scrapes(path) for p in s]
            assert select(points, "system.cpu.load_average.1m")
            assert not [p for p in points if p.name.startswith("hw.")]
            said = [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.INFO]
            assert len(said) == 1, [r.getMessage() for r in said]
            assert said[0].levelno == logging.INFO
            assert reason in said[0].getMessage() and "every 0.2s" in said[0].getMessage()
            assert fake.refcount == 0  # NVML not left half-open between attempts
            assert vigil.service.graph is not None

            # The driver comes up (or a GPU appears): the next look finds it.
            fake.init_error = None
            fake.gpus.append(FakeGpu("GPU-56565656-8888-8888-8888-888888888888"))
            assert await async_wait_for(lambda: any(select(s, "hw.power") for s in scrapes(path)))
    found = [r.getMessage() for r in caplog.records if r.name == LOGGER and "watching 1 NVIDIA GPU" in r.getMessage()]
    assert len(found) == 1 and "driver 550.54.15" in found[0]
    assert not [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


async def test_shutdown_while_idle_leaves_nothing_behind(tmp_path, fake_nvml):
    fake = fake_nvml([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    async with running_vigil(nvml_config(tmp_path, retry_interval="5m")):
        assert await async_wait_for(lambda: fake.init_calls == 1)
    assert fake.init_calls == 1 and fake.shutdown_calls == 0
    assert not xid_threads()


# --- DCGM names ------------------------------------------------------------------------------------------


async def test_dcgm_names_and_labels(tmp_path, fake_nvml):
    mig = mig_device("MIG-44444444-aaaa-bbbb-cccc-000000000004", gi=3, ci=0, profile="2g.20gb",
                     memory_total=20 * GiB, memory_used=5 * GiB)
    with_mig = FakeGpu("GPU-78787878-9999-9999-9999-999999999999", pci_bus_id="00000000:81:00.0",
                       mig_mode=1, mig_slots=[mig])
    fake = fake_nvml([*two_gpus(), with_mig])
    a, b, _ = fake.gpus
    path = tmp_path / "metrics.json"
    async with running_vigil(nvml_config(tmp_path, dcgm_names=True)):
        assert await async_wait_for(lambda: len(scrapes(path)) >= 2)
    points = scrapes(path)[-1]
    dcgm = [p for p in points if p.name.startswith("DCGM_")]
    assert all(p.unit == "" for p in dcgm)  # no unit: no suffix when translated to Prometheus names
    hostname = socket.gethostname()
    labels_a = {"gpu": "0", "UUID": a.uuid, "device": "nvidia0", "modelName": "NVIDIA H100 80GB HBM3",
                "Hostname": hostname, "pci_bus_id": "00000000:01:00.0", "DCGM_FI_DRIVER_VERSION": "550.54.15"}
    for p in dcgm:
        if p.resource["hw.id"] == a.uuid:
            assert p.attributes == labels_a, p
    expected_a = {
        "DCGM_FI_DEV_GPU_UTIL": 50, "DCGM_FI_DEV_MEM_COPY_UTIL": 20, "DCGM_FI_DEV_ENC_UTIL": 3,
        "DCGM_FI_DEV_DEC_UTIL": 4, "DCGM_FI_DEV_FB_USED": 20 * 1024, "DCGM_FI_DEV_FB_FREE": 60 * 1024,
        "DCGM_FI_DEV_FB_TOTAL": 80 * 1024, "DCGM_FI_DEV_GPU_TEMP": 41, "DCGM_FI_DEV_MEMORY_TEMP": 47,
        "DCGM_FI_DEV_POWER_USAGE": 250.5, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": 1_234_567,
        "DCGM_FI_DEV_SM_CLOCK": 1980, "DCGM_FI_DEV_MEM_CLOCK": 2619, "DCGM_FI_DEV_PCIE_TX_THROUGHPUT": 1000,
        "DCGM_FI_DEV_PCIE_RX_THROUGHPUT": 2000, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": 2,
        "DCGM_FI_DEV_XID_ERRORS": 0, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": 5, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": 1,
        "DCGM_FI_DEV_RETIRED_SBE": 1, "DCGM_FI_DEV_RETIRED_DBE": 0, "DCGM_FI_DEV_RETIRED_PENDING": 0,
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": 3, "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": 1,
        "DCGM_FI_DEV_ROW_REMAP_FAILURE": 0, "DCGM_FI_DEV_ROW_REMAP_PENDING": 0,
        "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS": 0x005, "DCGM_FI_DEV_FAN_SPEED": 30,
    }
    assert {p.name: p.value for p in dcgm if p.resource["hw.id"] == a.uuid} == expected_a
    assert value(points, "DCGM_FI_DEV_GPU_UTIL", b.uuid) == 97
    assert value(points, "DCGM_FI_DEV_POWER_USAGE", b.uuid) == 399.123
    assert value(points, "DCGM_FI_DEV_FB_USED", b.uuid, gpu="1", device="nvidia1",
                 modelName="NVIDIA A100-SXM4-40GB") == 30 * 1024
    counters = {p.name for p in dcgm if p.instrument == COUNTER}
    assert counters == {"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
                        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "DCGM_FI_DEV_RETIRED_SBE",
                        "DCGM_FI_DEV_RETIRED_DBE", "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
                        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS"}
    # A MIG instance: its GPU's labels plus GPU_I_ID and GPU_I_PROFILE, as the DCGM exporter labels it.
    mig_points = [p for p in dcgm if p.resource["hw.id"] == mig.uuid]
    assert {p.name: p.value for p in mig_points} == {
        "DCGM_FI_DEV_FB_USED": 5 * 1024, "DCGM_FI_DEV_FB_FREE": 15 * 1024, "DCGM_FI_DEV_FB_TOTAL": 20 * 1024}
    assert mig_points[0].attributes == {
        "gpu": "2", "UUID": with_mig.uuid, "device": "nvidia2", "modelName": "NVIDIA H100 80GB HBM3",
        "Hostname": hostname, "pci_bus_id": "00000000:81:00.0", "DCGM_FI_DRIVER_VERSION": "550.54.15",
        "GPU_I_ID": "3", "GPU_I_PROFILE": "2g.20gb"}
    # The OpenTelemetry names are still there.
    assert value(points, "hw.power", a.uuid) == 250.5


async def test_without_dcgm_names_there_are_none(tmp_path, fake_nvml):
    fake_nvml(two_gpus())
    path = tmp_path / "metrics.json"
    async with running_vigil(nvml_config(tmp_path, process_memory=False)):
        assert await async_wait_for(lambda: len(scrapes(path)) >= 1)
    points = scrapes(path)[0]
    assert not [p for p in points if p.name.startswith("DCGM_")]
    assert select(points, "hw.gpu.process.memory.usage") == []


# --- config ----------------------------------------------------------------------------------------------


def _parse(receiver: dict[str, Any]) -> Any:
    config = config_module.from_dict({
        "receivers": {"nvml": receiver},
        "exporters": {"debug": None},
        "service": {"pipelines": {"metrics": {"receivers": ["nvml"], "exporters": ["debug"]}}},
    })
    return next(c.config for c in config.components.values() if c.id.type == "nvml")


def test_config_defaults_and_checks():
    defaults = _parse({})
    assert defaults.collection_interval == 10.0
    assert defaults.initial_delay == 1.0
    assert defaults.retry_interval == 300.0
    assert (defaults.dcgm_names, defaults.process_memory, defaults.xid_events) == (False, True, True)
    assert _parse({"retry_interval": "1m30s", "dcgm_names": True}).retry_interval == 90.0
    with pytest.raises(ConfigError) as error:
        _parse({"retry_interval": "0s", "dcgm_name": True})
    problems = "\n".join(error.value.problems)
    assert "receivers.nvml.retry_interval" in problems
    assert "receivers.nvml.dcgm_name: unknown key" in problems


def test_nvml_is_not_a_traces_receiver():
    with pytest.raises(ConfigError, match="does not support traces"):
        config_module.from_dict({
            "receivers": {"nvml": None},
            "exporters": {"debug": None},
            "service": {"pipelines": {"traces": {"receivers": ["nvml"], "exporters": ["debug"]}}},
        })


# --- the real NVML of this machine -----------------------------------------------------------------------


def _real_gpu_count() -> int:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return 0
    try:
        return pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()


async def test_the_real_nvml_of_this_machine(tmp_path, caplog):
    """No GPU here: one log line, idle, no errors. A GPU here: its metrics, checked for sanity."""
    gpus = await asyncio.to_thread(_real_gpu_count)
    path = tmp_path / "metrics.json"
    with caplog.at_level(logging.DEBUG, logger="vigil"):
        async with running_vigil(nvml_config(tmp_path, logs=True, retry_interval="100ms")) as vigil:
            receiver = vigil.receiver("nvml")
            if gpus == 0:
                await asyncio.sleep(0.8)  # several looks, several scrape turns
                assert not receiver.session.ready
            else:
                assert await async_wait_for(lambda: len(scrapes(path)) >= 2, timeout=30)
    ours = [r for r in caplog.records if r.name == LOGGER]
    assert not [r for r in ours if r.levelno >= logging.WARNING], [r.getMessage() for r in ours]
    if gpus == 0:
        said = [r for r in ours if r.levelno >= logging.INFO]
        assert len(said) == 1, [r.getMessage() for r in said]
        assert "no NVIDIA GPU to watch" in said[0].getMessage()
        assert len([r for r in ours if "still no NVIDIA GPU" in r.getMessage()]) >= 2  # it kept looking
        assert scrapes(path) == []
        return
    points = scrapes(path)[-1]
    assert len({p.resource["hw.id"] for p in points if p.resource.get("hw.parent") is None}) == gpus
    for p in points:
        assert p.resource["hw.vendor"] == "NVIDIA" and p.resource["hw.id"].startswith(("GPU-", "MIG-"))
        if p.name in EXPECTED:
            assert (p.unit, p.instrument) == EXPECTED[p.name], p.name
    for p in select(points, "hw.gpu.utilization") + select(points, "hw.gpu.memory.utilization"):
        assert 0 <= p.value <= 1
    for p in select(points, "hw.power"):
        assert 0 < p.value < 2000  # watts, not milliwatts
    for p in select(points, "hw.temperature"):
        assert 0 < p.value < 130
    assert select(points, "hw.gpu.memory.limit")
