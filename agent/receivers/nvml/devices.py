"""NVML access for the `nvml` receiver: the library's lifetime, the GPUs and MIG instances, their queries.

Every call here blocks (NVML talks to the driver) and runs in a worker thread,
under `NvmlSession.lock`. A query NVML answers "not supported" (or a function
this driver lacks) is remembered per device and never asked again, and said
once per device in one log line; any other failure of a query is logged once
per device, query and error, and the scrape goes on without that value. A GPU
that falls off the bus (`GpuIsLost`) is marked lost and reported once; from
then on only its status is reported, while the other GPUs are scraped as
before.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

try:
    import pynvml  # the nvidia-ml-py package: NVIDIA's own binding
except ImportError:  # pragma: no cover - a dependency, but Vigil runs on without it
    pynvml = None  # type: ignore[assignment]

# NVML's return codes (stable ABI), so a missing constant in an old binding never matters.
SUCCESS = 0
INVALID_ARGUMENT = 2
NOT_SUPPORTED = 3
NO_PERMISSION = 4
NOT_FOUND = 6
DRIVER_NOT_LOADED = 9
TIMEOUT = 10
LIBRARY_NOT_FOUND = 12
FUNCTION_NOT_FOUND = 13
GPU_IS_LOST = 15
LIB_RM_VERSION_MISMATCH = 18

_UNSUPPORTED = frozenset({NOT_SUPPORTED, FUNCTION_NOT_FOUND})
# MIG device handles answer some device-wide queries with "invalid argument".
_UNSUPPORTED_ON_MIG = _UNSUPPORTED | {INVALID_ARGUMENT}

_REASONS = {
    LIBRARY_NOT_FOUND: "the NVML library (libnvidia-ml.so.1) was not found: no NVIDIA driver is installed",
    DRIVER_NOT_LOADED: "the NVIDIA driver is not loaded",
    NO_PERMISSION: "no permission to use NVML (is /dev/nvidiactl accessible?)",
    LIB_RM_VERSION_MISMATCH: "the NVML library and the loaded NVIDIA kernel driver are of different versions",
}

_LIBRARY_MISMATCH: Any = getattr(pynvml, "NVMLLibraryMismatchError", ())

_NO_INSTANCE = 0xFFFFFFFF  # NVML's "not a MIG instance" in event data


def error_code(exc: BaseException) -> int | None:
    return getattr(exc, "value", None)


def describe(exc: BaseException, starting: bool = False) -> str:
    """A readable reason for an NVML error (str() of one needs a loaded library)."""
    code = error_code(exc)
    if starting and code in _REASONS:
        return _REASONS[code]
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - str() of an NVMLError calls into the library
        text = ""
    return f"{text or type(exc).__name__} (NVML error {code})" if code is not None else (text or repr(exc))


def text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class GpuLost(Exception):
    """The GPU fell off the bus (NVML's GpuIsLost) during a query."""


@dataclass(eq=False)
class Gpu:
    """One GPU, or one MIG instance of a GPU (`parent` set), as the receiver reports it."""

    handle: Any
    uuid: str
    model: str
    index: int
    pci_bus_id: str | None
    driver_version: str
    parent: Gpu | None = None
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None
    lost: bool = False
    unsupported: set[str] = field(default_factory=set)
    newly_unsupported: list[str] = field(default_factory=list)
    logged_errors: set[tuple[str, int | None]] = field(default_factory=set)
    mig_children: dict[str, Gpu] = field(default_factory=dict)
    max_mig_devices: int | None = None
    # XID events (written by the watcher thread under NvmlSession.xid_lock).
    xid_watched: bool = False
    xid_start_ns: int = 0
    xid_counts: dict[int, int] = field(default_factory=dict)
    last_xid: int = 0
    # Cumulative counters: key -> (start time, last value).
    _starts: dict[str, tuple[int, float]] = field(default_factory=dict)

    @property
    def is_mig(self) -> bool:
        return self.parent is not None

    @property
    def label(self) -> str:
        if self.parent is None:
            return f"GPU {self.index} ({self.uuid})"
        return f"GPU {self.index} MIG instance {self.gpu_instance_id}/{self.compute_instance_id} ({self.uuid})"

    @property
    def mig_profile(self) -> str | None:
        # NVML names a MIG device "<parent model> MIG <profile>", e.g. "NVIDIA A100-SXM4-40GB MIG 1g.5gb".
        head, sep, profile = self.model.rpartition(" MIG ")
        return profile if sep and profile else None

    def resource(self) -> dict[str, Any]:
        """This device's resource attributes (the host's are added by the caller)."""
        attributes: dict[str, Any] = {
            "hw.id": self.uuid,
            "hw.type": "gpu",
            "hw.vendor": "NVIDIA",
            "hw.model": self.model,
            "hw.driver_version": self.driver_version,
            "hw.gpu.index": self.index,
        }
        if self.pci_bus_id:
            attributes["hw.gpu.pci_bus_id"] = self.pci_bus_id
        if self.parent is None:
            attributes["hw.name"] = f"gpu{self.index}"
        else:
            attributes["hw.name"] = f"gpu{self.index}/gi{self.gpu_instance_id}/ci{self.compute_instance_id}"
            attributes["hw.parent"] = self.parent.uuid
            if self.gpu_instance_id is not None:
                attributes["hw.gpu.mig.gpu_instance_id"] = self.gpu_instance_id
            if self.compute_instance_id is not None:
                attributes["hw.gpu.mig.compute_instance_id"] = self.compute_instance_id
            if self.mig_profile:
                attributes["hw.gpu.mig.profile"] = self.mig_profile
        if not attributes["hw.driver_version"]:
            del attributes["hw.driver_version"]
        return attributes

    def dcgm_labels(self, hostname: str) -> dict[str, str]:
        """The labels the DCGM exporter puts on every series (a MIG instance: its parent's, plus GPU_I_*)."""
        physical = self.parent or self
        labels = {"gpu": str(physical.index), "UUID": physical.uuid, "device": f"nvidia{physical.index}",
                  "modelName": physical.model, "Hostname": hostname}
        if physical.pci_bus_id:
            labels["pci_bus_id"] = physical.pci_bus_id
        if physical.driver_version:
            labels["DCGM_FI_DRIVER_VERSION"] = physical.driver_version
        if self.parent is not None:
            if self.gpu_instance_id is not None:
                labels["GPU_I_ID"] = str(self.gpu_instance_id)
            if self.mig_profile:
                labels["GPU_I_PROFILE"] = self.mig_profile
        return labels

    def start_ns(self, key: str, value: float, now_ns: int) -> int:
        """Start time of the cumulative counter `key`: when it was first seen; now again if it went back
        (the driver reloaded and its counters restarted)."""
        previous = self._starts.get(key)
        start = now_ns if previous is None or value < previous[1] else previous[0]
        self._starts[key] = (start, value)
        return start


class NvmlSession:
    """NVML for one receiver: init and shutdown, the GPUs found, and queries that remember what fails."""

    def __init__(self, logger: logging.Logger) -> None:
        self.lock = threading.RLock()
        self.xid_lock = threading.Lock()
        self.gpus: list[Gpu] = []
        self.driver_version = ""
        self.ready = False
        self._closed = False
        self._log = logger

    # --- lifetime ------------------------------------------------------------

    def open(self) -> str | None:
        """Initialise NVML and find the GPUs: None once ready, else why not (NVML is left shut down)."""
        with self.lock:
            if self._closed:
                return "the receiver is shutting down"
            if self.ready:
                return None
            if pynvml is None:
                return "the nvidia-ml-py package (pynvml) is not installed"
            try:
                pynvml.nvmlInit()
            except pynvml.NVMLError as exc:
                return describe(exc, starting=True)
            except OSError as exc:  # a broken library file
                return f"the NVML library could not be loaded: {exc}"
            try:
                gpus = self._discover()
            except pynvml.NVMLError as exc:
                self._shutdown_library()
                return describe(exc, starting=True)
            if not gpus:
                self._shutdown_library()
                return "NVML found no usable NVIDIA GPU"
            self.gpus = gpus
            self.ready = True
            # Said here, under the lock, so it comes before anything a first scrape says.
            self._log.info("watching %d NVIDIA GPU%s (driver %s): %s", len(gpus), "" if len(gpus) == 1 else "s",
                           self.driver_version or "unknown", "; ".join(f"{g.label} {g.model}" for g in gpus))
            return None

    def close(self) -> None:
        """Shut NVML down (once it is up); no later `open` succeeds."""
        with self.lock:
            self._closed = True
            if not self.ready:
                return
            self.ready = False
            self.gpus = []
            self._shutdown_library()

    def _shutdown_library(self) -> None:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError as exc:
            self._log.debug("nvmlShutdown failed: %s", describe(exc))

    def _discover(self) -> list[Gpu]:
        try:
            self.driver_version = text(pynvml.nvmlSystemGetDriverVersion())
        except pynvml.NVMLError:
            self.driver_version = ""
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                uuid = text(pynvml.nvmlDeviceGetUUID(handle))
                model = text(pynvml.nvmlDeviceGetName(handle))
            except pynvml.NVMLError as exc:
                self._log.warning("GPU %d cannot be watched: %s; the other GPUs are", index, describe(exc))
                continue
            gpus.append(Gpu(handle, uuid, model, index, self._pci_bus_id(handle), self.driver_version))
        return gpus

    @staticmethod
    def _pci_bus_id(handle: Any) -> str | None:
        try:
            info = pynvml.nvmlDeviceGetPciInfo(handle)
        except pynvml.NVMLError:
            return None
        bus_id = getattr(info, "busId", None)
        return text(bus_id) if bus_id else None

    # --- queries -------------------------------------------------------------

    def query(self, gpu: Gpu, name: str, function: Callable[..., Any], *args: Any) -> Any:
        """`function(gpu.handle, *args)`, or None when NVML cannot answer; raises `GpuLost`."""
        if name in gpu.unsupported:
            return None
        try:
            return function(gpu.handle, *args)
        except pynvml.NVMLError as exc:
            self._failed(gpu, name, exc)
            return None
        except _LIBRARY_MISMATCH:  # the binding's function is newer than the driver's library
            self._failed(gpu, name, pynvml.NVMLError(FUNCTION_NOT_FOUND))
            return None

    def field_value(self, gpu: Gpu, name: str, field_id: int) -> float | int | None:
        """One of NVML's field values (`NVML_FI_*`), or None."""
        if name in gpu.unsupported:
            return None
        values = self.query(gpu, name, pynvml.nvmlDeviceGetFieldValues, [field_id])
        if not values:
            return None
        value = values[0]
        if value.nvmlReturn != SUCCESS:
            self._failed(gpu, name, pynvml.NVMLError(value.nvmlReturn))
            return None
        return _field_number(value)

    def _failed(self, gpu: Gpu, name: str, exc: BaseException) -> None:
        code = error_code(exc)
        if code == GPU_IS_LOST:
            raise GpuLost(describe(exc)) from None
        if code in (_UNSUPPORTED_ON_MIG if gpu.is_mig else _UNSUPPORTED):
            gpu.unsupported.add(name)
            gpu.newly_unsupported.append(name)
            return
        if (name, code) not in gpu.logged_errors:
            gpu.logged_errors.add((name, code))
            self._log.warning("%s: reading %s failed: %s (said once; the scrape goes on without it)",
                              gpu.label, name, describe(exc))

    def report_unsupported(self, gpu: Gpu) -> None:
        """Say, once, which queries this device does not support (they are not asked again)."""
        if gpu.newly_unsupported:
            self._log.info("%s does not support %s; not asking again", gpu.label,
                           ", ".join(gpu.newly_unsupported))
            gpu.newly_unsupported.clear()

    def mark_lost(self, gpu: Gpu, reason: str) -> None:
        physical = gpu.parent or gpu
        if not physical.lost:
            physical.lost = True
            physical.mig_children.clear()
            self._log.error("%s is lost (%s): it is reported as failed and no longer queried; "
                            "the other GPUs are still watched", physical.label, reason)

    # --- MIG -----------------------------------------------------------------

    def mig_devices(self, gpu: Gpu) -> list[Gpu]:
        """The MIG instances of `gpu` now (none unless MIG mode is on); raises `GpuLost`."""
        mode = self.query(gpu, "mig_mode", pynvml.nvmlDeviceGetMigMode)
        if not mode or mode[0] != 1:  # NVML_DEVICE_MIG_ENABLE
            gpu.mig_children.clear()
            return []
        if gpu.max_mig_devices is None:
            gpu.max_mig_devices = self.query(gpu, "mig_device_count", pynvml.nvmlDeviceGetMaxMigDeviceCount) or 0
        found: dict[str, Gpu] = {}
        for slot in range(gpu.max_mig_devices):
            try:
                handle = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu.handle, slot)
                uuid = text(pynvml.nvmlDeviceGetUUID(handle))
            except pynvml.NVMLError as exc:
                if error_code(exc) != NOT_FOUND:  # NOT_FOUND: an empty slot
                    self._failed(gpu, "mig_device", exc)
                continue
            child = gpu.mig_children.get(uuid) or self._mig_device(gpu, handle, uuid)
            child.handle = handle
            found[uuid] = child
        gpu.mig_children = found
        return list(found.values())

    def _mig_device(self, parent: Gpu, handle: Any, uuid: str) -> Gpu:
        def ask(function: Callable[[Any], Any]) -> Any:
            try:
                return function(handle)
            except pynvml.NVMLError as exc:
                if error_code(exc) == GPU_IS_LOST:
                    raise GpuLost(describe(exc)) from None
                return None

        name = ask(pynvml.nvmlDeviceGetName)
        return Gpu(handle, uuid, text(name) if name else f"{parent.model} MIG", parent.index, parent.pci_bus_id,
                   parent.driver_version, parent=parent,
                   gpu_instance_id=ask(pynvml.nvmlDeviceGetGpuInstanceId),
                   compute_instance_id=ask(pynvml.nvmlDeviceGetComputeInstanceId))

    # --- XID events ----------------------------------------------------------

    def gpu_of_event(self, device: Any) -> Gpu | None:
        """The watched GPU an event came from: by its handle, else by asking the handle's UUID."""
        key = _handle_key(device)
        for gpu in self.gpus:
            if _handle_key(gpu.handle) == key:
                return gpu
        try:
            uuid = text(pynvml.nvmlDeviceGetUUID(device))
        except pynvml.NVMLError:
            return None  # e.g. a GPU that just fell off the bus
        return next((g for g in self.gpus if g.uuid == uuid), None)


def _handle_key(handle: Any) -> Any:
    # A device handle is a ctypes pointer: equal handles are equal addresses, not the same object.
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value
    except (TypeError, ctypes.ArgumentError):
        return id(handle)


def current_clock_event_reasons(handle: Any) -> int:
    """NVML's bit mask of what holds the clocks down (the older "throttle reasons" on older drivers)."""
    function = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
    if function is not None:
        try:
            return function(handle)
        except pynvml.NVMLError as exc:
            if error_code(exc) != FUNCTION_NOT_FOUND:
                raise
    return pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle)


def compute_processes(handle: Any) -> list[Any]:
    return _versioned("nvmlDeviceGetComputeRunningProcesses", handle)


def graphics_processes(handle: Any) -> list[Any]:
    return _versioned("nvmlDeviceGetGraphicsRunningProcesses", handle)


def process_utilization(handle: Any, since_us: int) -> list[Any]:
    """Per-process utilisation samples newer than `since_us` (NVML's timestamps, microseconds); an empty
    list where no process ran since then (NVML answers that "not found")."""
    try:
        return list(pynvml.nvmlDeviceGetProcessUtilization(handle, since_us))
    except pynvml.NVMLError as exc:
        if error_code(exc) in (NOT_FOUND, SUCCESS):  # SUCCESS: the binding's error for zero samples
            return []
        raise


def _versioned(name: str, handle: Any) -> Any:
    # The binding's unversioned function calls the newest version; a driver older than the binding
    # lacks it (NVMLLibraryMismatchError), and the _v2 it has answers the same.
    try:
        return getattr(pynvml, name)(handle)
    except _LIBRARY_MISMATCH:
        return getattr(pynvml, f"{name}_v2")(handle)


def event_set_wait(event_set: Any, timeout_ms: int) -> Any:
    function = getattr(pynvml, "nvmlEventSetWait_v2", None) or pynvml.nvmlEventSetWait
    return function(event_set, timeout_ms)


def instance_id(value: Any) -> int | None:
    """A GPU or compute instance id from event data, None where it is not a MIG instance."""
    if value is None:
        return None
    value = int(value)
    return None if value == _NO_INSTANCE else value


def _field_number(value: Any) -> float | int | None:
    kind = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}.get(
        int(value.valueType))
    return getattr(value.value, kind) if kind else None
