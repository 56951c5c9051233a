"""A fake NVML behind the real `pynvml` module's functions, for tests on machines without a GPU.

`FakeNvml(...).install(monkeypatch)` replaces every `nvml*` function of the
real `pynvml` module (nvidia-ml-py): the ones defined here answer from
`FakeGpu` objects the test controls and changes while the agent runs; any
other is recorded in `unexpected` and fails as NVML does for a function the
driver lacks. Errors are the real module's `NVMLError` classes, and values
have the shapes the real binding returns (structs with the same field names,
bytes where it gives bytes), so the receiver cannot tell the difference.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml

XID_EVENT = pynvml.nvmlEventTypeXidCriticalError
NO_INSTANCE = 0xFFFFFFFF

_MESSAGES = {
    pynvml.NVML_ERROR_UNINITIALIZED: "Uninitialized",
    pynvml.NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    pynvml.NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    pynvml.NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    pynvml.NVML_ERROR_NOT_FOUND: "Not Found",
    pynvml.NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    pynvml.NVML_ERROR_TIMEOUT: "Timeout",
    pynvml.NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    pynvml.NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    pynvml.NVML_ERROR_GPU_IS_LOST: "GPU is lost",
}

GiB = 1 << 30


def error(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)  # the real module turns the code into its NVMLError_* subclass


@dataclass(eq=False)
class FakeGpu:
    """One GPU (or MIG device, with `parent`) and everything NVML would say about it."""

    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    pci_bus_id: str = "00000000:01:00.0"
    utilization_gpu: int = 50
    utilization_memory: int = 20
    encoder: int = 3
    decoder: int = 4
    memory_total: int = 80 * GiB
    memory_used: int = 20 * GiB
    temperature: int = 41
    memory_temperature: int | None = 47
    power_mw: int = 250_500
    energy_mj: int = 1_234_567
    clocks_mhz: dict[int, int] = field(default_factory=lambda: {0: 1755, 1: 1980, 2: 2619})  # graphics, sm, mem
    pcie_kb: dict[int, int] = field(default_factory=lambda: {0: 1000, 1: 2000})  # tx, rx
    pcie_replays: int = 2
    ecc: dict[int, int] = field(default_factory=lambda: {0: 5, 1: 1})  # corrected, uncorrected (volatile)
    retired_pages: dict[int, list[int]] = field(default_factory=lambda: {0: [0x1000], 1: []})
    retirement_pending: int = 0
    remapped_rows: tuple[int, int, int, int] = (3, 1, 0, 0)  # correctable, uncorrectable, pending, failure
    clock_event_reasons: int = 0x001 | 0x004  # gpu_idle, sw_power_cap
    fan_percent: int = 30
    compute_processes: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, bytes)
    graphics_processes: list[tuple[int, int | None]] = field(default_factory=list)
    # nvmlDeviceGetProcessUtilization's samples: (pid, timestamp in µs, SM %); none newer: NOT_FOUND.
    process_samples: list[tuple[int, int, int]] = field(default_factory=list)
    mig_mode: int | None = None  # None: the GPU has no MIG at all (NOT_SUPPORTED)
    mig_slots: list[FakeGpu | None] = field(default_factory=list)
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None
    supported_events: int = XID_EVENT | pynvml.nvmlEventTypeSingleBitEccError
    unsupported: set[str] = field(default_factory=set)  # NVML function names answering NOT_SUPPORTED
    failing: dict[str, int] = field(default_factory=dict)  # NVML function name -> error code
    # Functions the binding has in a newer version than this driver (NVMLLibraryMismatchError).
    too_new: set[str] = field(default_factory=set)
    lost: bool = False
    parent: FakeGpu | None = None

    def __post_init__(self) -> None:
        for child in self.mig_slots:
            if child is not None:
                child.parent = self


def mig_device(uuid: str, gi: int, ci: int, profile: str = "1g.10gb", parent_name: str = "NVIDIA H100 80GB HBM3",
               memory_total: int = 10 * GiB, memory_used: int = 1 * GiB, **kwargs: Any) -> FakeGpu:
    """A MIG device as NVML shows one: most device-wide queries are not supported on it."""
    unsupported = {"nvmlDeviceGetUtilizationRates", "nvmlDeviceGetTemperature", "nvmlDeviceGetPowerUsage"}
    return FakeGpu(uuid, name=f"{parent_name} MIG {profile}", memory_total=memory_total, memory_used=memory_used,
                   gpu_instance_id=gi, compute_instance_id=ci, unsupported=unsupported, **kwargs)


class FakeNvml:
    def __init__(self, gpus: list[FakeGpu] | None = None, init_error: int | None = None,
                 driver_version: str = "550.54.15") -> None:
        self.gpus = list(gpus or [])
        self.init_error = init_error  # the error code nvmlInit fails with, or None
        self.driver_version = driver_version
        self.refcount = 0
        self.init_calls = 0
        self.shutdown_calls = 0
        self.calls: Counter[tuple[str, str | None]] = Counter()
        self.unexpected: list[str] = []
        self.events: queue.Queue = queue.Queue()
        self.event_sets_created = 0
        self.event_sets_freed = 0
        self.registered: dict[str, int] = {}
        self.waits = 0
        self._lock = threading.Lock()

    # --- plumbing ----------------------------------------------------------------

    def install(self, monkeypatch) -> FakeNvml:
        for name in dir(pynvml):
            value = getattr(pynvml, name)
            if not name.startswith("nvml") or not callable(value) or isinstance(value, type):
                continue
            fake = getattr(self, name, None)
            monkeypatch.setattr(pynvml, name, fake if fake is not None else self._unexpected(name))
        return self

    def _unexpected(self, name: str):
        def call(*args: Any, **kwargs: Any) -> Any:
            self.unexpected.append(name)
            raise error(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        return call

    def emit_xid(self, gpu: FakeGpu, code: int, gi: int = NO_INSTANCE, ci: int = NO_INSTANCE) -> None:
        self.events.put(SimpleNamespace(device=gpu, eventType=XID_EVENT, eventData=code,
                                        gpuInstanceId=gi, computeInstanceId=ci))

    def count(self, function: str, gpu: FakeGpu | None = None) -> int:
        return self.calls[(function, gpu.uuid if gpu else None)]

    def _check_init(self) -> None:
        if self.refcount <= 0:
            raise error(pynvml.NVML_ERROR_UNINITIALIZED)

    def _gpu(self, function: str, handle: FakeGpu) -> FakeGpu:
        self._check_init()
        with self._lock:
            self.calls[(function, handle.uuid)] += 1
        if handle.lost or (handle.parent is not None and handle.parent.lost):
            raise error(pynvml.NVML_ERROR_GPU_IS_LOST)
        if function in handle.unsupported:
            raise error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if function in handle.failing:
            raise error(handle.failing[function])
        if function in handle.too_new:
            raise pynvml.NVMLLibraryMismatchError(f"{function}: the driver's NVML is older")
        return handle

    # --- library -----------------------------------------------------------------

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.init_error is not None:
            raise error(self.init_error)
        self.refcount += 1

    def nvmlShutdown(self) -> None:
        self._check_init()
        self.refcount -= 1
        self.shutdown_calls += 1

    def nvmlErrorString(self, code: int) -> str:
        return _MESSAGES.get(code, f"Unknown Error {code}")

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check_init()
        return self.driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._check_init()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._check_init()
        if not 0 <= index < len(self.gpus):
            raise error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self.gpus[index]

    # --- identity ----------------------------------------------------------------

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> str:
        return self._gpu("nvmlDeviceGetUUID", handle).uuid

    def nvmlDeviceGetName(self, handle: FakeGpu) -> str:
        return self._gpu("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetPciInfo(self, handle: FakeGpu) -> Any:
        return SimpleNamespace(busId=self._gpu("nvmlDeviceGetPciInfo", handle).pci_bus_id.encode())

    # --- readings ----------------------------------------------------------------

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu) -> Any:
        gpu = self._gpu("nvmlDeviceGetUtilizationRates", handle)
        return SimpleNamespace(gpu=gpu.utilization_gpu, memory=gpu.utilization_memory)

    def nvmlDeviceGetEncoderUtilization(self, handle: FakeGpu) -> list[int]:
        return [self._gpu("nvmlDeviceGetEncoderUtilization", handle).encoder, 167_000]

    def nvmlDeviceGetDecoderUtilization(self, handle: FakeGpu) -> list[int]:
        return [self._gpu("nvmlDeviceGetDecoderUtilization", handle).decoder, 167_000]

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu, version: Any = None) -> Any:
        gpu = self._gpu("nvmlDeviceGetMemoryInfo", handle)
        return SimpleNamespace(total=gpu.memory_total, used=gpu.memory_used, free=gpu.memory_total - gpu.memory_used)

    def nvmlDeviceGetTemperature(self, handle: FakeGpu, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._gpu("nvmlDeviceGetTemperature", handle).temperature

    def nvmlDeviceGetFieldValues(self, handle: FakeGpu, field_ids: list[int]) -> list[Any]:
        gpu = self._gpu("nvmlDeviceGetFieldValues", handle)
        values = []
        for field_id in field_ids:
            if field_id == pynvml.NVML_FI_DEV_MEMORY_TEMP and gpu.memory_temperature is not None:
                values.append(SimpleNamespace(fieldId=field_id, nvmlReturn=pynvml.NVML_SUCCESS,
                                              valueType=pynvml.NVML_VALUE_TYPE_UNSIGNED_INT,
                                              value=SimpleNamespace(uiVal=gpu.memory_temperature)))
            else:
                values.append(SimpleNamespace(fieldId=field_id, nvmlReturn=pynvml.NVML_ERROR_NOT_SUPPORTED,
                                              valueType=0, value=SimpleNamespace()))
        return values

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu) -> int:
        return self._gpu("nvmlDeviceGetPowerUsage", handle).power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeGpu) -> int:
        return self._gpu("nvmlDeviceGetTotalEnergyConsumption", handle).energy_mj

    def nvmlDeviceGetClockInfo(self, handle: FakeGpu, clock_type: int) -> int:
        return self._gpu("nvmlDeviceGetClockInfo", handle).clocks_mhz[clock_type]

    def nvmlDeviceGetPcieThroughput(self, handle: FakeGpu, counter: int) -> int:
        return self._gpu("nvmlDeviceGetPcieThroughput", handle).pcie_kb[counter]

    def nvmlDeviceGetPcieReplayCounter(self, handle: FakeGpu) -> int:
        return self._gpu("nvmlDeviceGetPcieReplayCounter", handle).pcie_replays

    def nvmlDeviceGetTotalEccErrors(self, handle: FakeGpu, error_type: int, counter_type: int) -> int:
        assert counter_type == pynvml.NVML_VOLATILE_ECC
        return self._gpu("nvmlDeviceGetTotalEccErrors", handle).ecc[error_type]

    def nvmlDeviceGetRetiredPages(self, handle: FakeGpu, cause: int) -> list[int]:
        return list(self._gpu("nvmlDeviceGetRetiredPages", handle).retired_pages[cause])

    def nvmlDeviceGetRetiredPagesPendingStatus(self, handle: FakeGpu) -> int:
        return self._gpu("nvmlDeviceGetRetiredPagesPendingStatus", handle).retirement_pending

    def nvmlDeviceGetRemappedRows(self, handle: FakeGpu) -> tuple[int, int, int, int]:
        return self._gpu("nvmlDeviceGetRemappedRows", handle).remapped_rows

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: FakeGpu) -> int:
        return self._gpu("nvmlDeviceGetCurrentClocksEventReasons", handle).clock_event_reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: FakeGpu) -> int:
        return self._gpu("nvmlDeviceGetCurrentClocksThrottleReasons", handle).clock_event_reasons

    def nvmlDeviceGetFanSpeed(self, handle: FakeGpu) -> int:
        return self._gpu("nvmlDeviceGetFanSpeed", handle).fan_percent

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeGpu) -> list[Any]:
        gpu = self._gpu("nvmlDeviceGetComputeRunningProcesses", handle)
        return [self._process(gpu, pid, used) for pid, used in gpu.compute_processes]

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: FakeGpu) -> list[Any]:
        gpu = self._gpu("nvmlDeviceGetComputeRunningProcesses_v2", handle)
        return [self._process(gpu, pid, used) for pid, used in gpu.compute_processes]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: FakeGpu) -> list[Any]:
        gpu = self._gpu("nvmlDeviceGetGraphicsRunningProcesses", handle)
        return [self._process(gpu, pid, used) for pid, used in gpu.graphics_processes]

    def nvmlDeviceGetProcessUtilization(self, handle: FakeGpu, timestamp: int) -> list[Any]:
        gpu = self._gpu("nvmlDeviceGetProcessUtilization", handle)
        samples = [SimpleNamespace(pid=pid, timeStamp=at, smUtil=sm, memUtil=0, encUtil=0, decUtil=0)
                   for pid, at, sm in gpu.process_samples if at > timestamp]
        if not samples:
            raise error(pynvml.NVML_ERROR_NOT_FOUND)
        return samples

    @staticmethod
    def _process(gpu: FakeGpu, pid: int, used: int | None) -> Any:
        return SimpleNamespace(pid=pid, usedGpuMemory=used,
                               gpuInstanceId=gpu.gpu_instance_id if gpu.gpu_instance_id is not None else NO_INSTANCE,
                               computeInstanceId=(gpu.compute_instance_id if gpu.compute_instance_id is not None
                                                  else NO_INSTANCE))

    # --- MIG ---------------------------------------------------------------------

    def nvmlDeviceGetMigMode(self, handle: FakeGpu) -> list[int]:
        gpu = self._gpu("nvmlDeviceGetMigMode", handle)
        if gpu.mig_mode is None:
            raise error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return [gpu.mig_mode, gpu.mig_mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: FakeGpu) -> int:
        return len(self._gpu("nvmlDeviceGetMaxMigDeviceCount", handle).mig_slots)

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: FakeGpu, index: int) -> FakeGpu:
        gpu = self._gpu("nvmlDeviceGetMigDeviceHandleByIndex", handle)
        if not 0 <= index < len(gpu.mig_slots):
            raise error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        child = gpu.mig_slots[index]
        if child is None:
            raise error(pynvml.NVML_ERROR_NOT_FOUND)
        return child

    def nvmlDeviceGetGpuInstanceId(self, handle: FakeGpu) -> int:
        gpu = self._gpu("nvmlDeviceGetGpuInstanceId", handle)
        if gpu.gpu_instance_id is None:
            raise error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return gpu.gpu_instance_id

    def nvmlDeviceGetComputeInstanceId(self, handle: FakeGpu) -> int:
        gpu = self._gpu("nvmlDeviceGetComputeInstanceId", handle)
        if gpu.compute_instance_id is None:
            raise error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return gpu.compute_instance_id

    # --- events ------------------------------------------------------------------

    def nvmlEventSetCreate(self) -> Any:
        self._check_init()
        self.event_sets_created += 1
        return SimpleNamespace(kind="event set")

    def nvmlDeviceGetSupportedEventTypes(self, handle: FakeGpu) -> int:
        return self._gpu("nvmlDeviceGetSupportedEventTypes", handle).supported_events

    def nvmlDeviceRegisterEvents(self, handle: FakeGpu, event_types: int, event_set: Any) -> None:
        gpu = self._gpu("nvmlDeviceRegisterEvents", handle)
        if event_types & ~gpu.supported_events:
            raise error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        self.registered[gpu.uuid] = self.registered.get(gpu.uuid, 0) | event_types

    def nvmlEventSetWait_v2(self, event_set: Any, timeout_ms: int) -> Any:
        self._check_init()
        self.waits += 1
        try:
            return self.events.get(timeout=timeout_ms / 1000)
        except queue.Empty:
            raise error(pynvml.NVML_ERROR_TIMEOUT) from None

    def nvmlEventSetWait(self, event_set: Any, timeout_ms: int) -> Any:
        return self.nvmlEventSetWait_v2(event_set, timeout_ms)

    def nvmlEventSetFree(self, event_set: Any) -> None:
        self._check_init()
        self.event_sets_freed += 1
