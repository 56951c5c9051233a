"""XID critical errors: NVML's event API, waited on in a thread of its own, turned into log records.

The driver reports serious GPU faults as XID codes (79: the GPU fell off the
bus, 48: a double-bit ECC error, 13/31: an application's kernel faulted...).
NVML delivers them as `nvmlEventTypeXidCriticalError` events to an event set
that each GPU is registered with; a dedicated thread waits on the set with a
short timeout (so it stops promptly) and never touches the event loop except
to hand over what it saw. Each XID is counted on its GPU (`hw.gpu.xid.errors`)
and becomes an ERROR log record with the XID code and the GPU's identity.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Mapping

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1 import logs_pb2

from agent import __version__
from agent.attributes import set_any_value
from agent.receivers.nvml import devices
from agent.receivers.nvml.devices import Gpu, NvmlSession
from agent.signals import Batch, Signal

XID_CRITICAL_ERROR = 0x8  # nvmlEventTypeXidCriticalError
_HAS_EVENT_NAME = "event_name" in logs_pb2.LogRecord.DESCRIPTOR.fields_by_name  # opentelemetry-proto 1.5+

# What the common XIDs mean (NVIDIA's XID catalog), for the log record's body.
XID_DESCRIPTIONS = {
    13: "graphics engine exception",
    31: "GPU memory page fault",
    32: "invalid or corrupted push buffer stream",
    38: "driver firmware error",
    43: "GPU stopped processing",
    45: "preemptive cleanup, due to previous errors",
    48: "double-bit ECC error",
    61: "internal micro-controller breakpoint/warning",
    62: "internal micro-controller halt",
    63: "ECC page retirement or row remapping recorded",
    64: "ECC page retirement or row remapping recording failed",
    68: "video decoder exception",
    69: "graphics engine class error",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    119: "GSP RPC timeout",
    120: "GSP error",
}


class XidEvent:
    """One XID as seen by the watcher."""

    __slots__ = ("gpu", "code", "gpu_instance_id", "compute_instance_id", "time_ns")

    def __init__(self, gpu: Gpu | None, code: int, gpu_instance_id: int | None,
                 compute_instance_id: int | None, time_ns: int) -> None:
        self.gpu, self.code, self.time_ns = gpu, code, time_ns
        self.gpu_instance_id, self.compute_instance_id = gpu_instance_id, compute_instance_id

    @property
    def description(self) -> str | None:
        return XID_DESCRIPTIONS.get(self.code)


class XidWatcher:
    """Registers the GPUs for XID events and waits for them in its own thread."""

    def __init__(self, session: NvmlSession, on_event: Callable[[XidEvent], None], logger: logging.Logger,
                 wait_ms: int = 500) -> None:
        self._session = session
        self._on_event = on_event
        self._log = logger
        self._wait_ms = wait_ms
        self._event_set: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._logged: set[Any] = set()
        self._started = False

    def start(self, thread_name: str = "nvml-xid") -> int:
        """Register every GPU that reports XID events and start waiting (blocking); how many GPUs."""
        nvml = devices.pynvml
        with self._session.lock:
            if not self._session.ready or self._started:
                return 0
            self._started = True
            try:
                self._event_set = nvml.nvmlEventSetCreate()
            except nvml.NVMLError as exc:
                self._log.info("XID events are not available: %s", devices.describe(exc))
                return 0
            watched = []
            now = time.time_ns()
            for gpu in self._session.gpus:
                try:
                    supported = nvml.nvmlDeviceGetSupportedEventTypes(gpu.handle)
                    if not supported & XID_CRITICAL_ERROR:
                        raise nvml.NVMLError(devices.NOT_SUPPORTED)
                    nvml.nvmlDeviceRegisterEvents(gpu.handle, XID_CRITICAL_ERROR, self._event_set)
                except nvml.NVMLError as exc:
                    self._log.info("%s: XID events are not available: %s", gpu.label, devices.describe(exc))
                    continue
                with self._session.xid_lock:
                    gpu.xid_watched = True
                    gpu.xid_start_ns = now
                watched.append(gpu)
            if not watched:
                self._free()
                return 0
            self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
            self._thread.start()
            return len(watched)

    def stop(self) -> None:
        """Stop waiting and free the event set (blocking, at most about one wait)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._wait_ms / 1000 + 5)
            if self._thread.is_alive():
                self._log.warning("the XID event thread did not stop in time")
                return  # never free an event set a thread may still wait on
            self._thread = None
        self._free()

    def _free(self) -> None:
        if self._event_set is None:
            return
        nvml = devices.pynvml
        try:
            nvml.nvmlEventSetFree(self._event_set)
        except nvml.NVMLError as exc:
            self._log.debug("nvmlEventSetFree failed: %s", devices.describe(exc))
        self._event_set = None

    def _run(self) -> None:
        nvml = devices.pynvml
        while not self._stop.is_set():
            try:
                data = devices.event_set_wait(self._event_set, self._wait_ms)
            except nvml.NVMLError as exc:
                code = devices.error_code(exc)
                if code == devices.TIMEOUT:
                    continue
                if code not in self._logged:
                    self._logged.add(code)
                    self._log.warning("waiting for XID events failed: %s (said once; still waiting)",
                                      devices.describe(exc))
                self._stop.wait(1.0)  # never spin on a persistent failure
                continue
            except Exception:  # noqa: BLE001 - the thread must outlive any surprise
                self._log.exception("waiting for XID events failed")
                self._stop.wait(1.0)
                continue
            if int(data.eventType) & XID_CRITICAL_ERROR:
                self._handle(data)

    def _handle(self, data: Any) -> None:
        gpu = self._session.gpu_of_event(data.device)
        event = XidEvent(gpu, int(data.eventData), devices.instance_id(getattr(data, "gpuInstanceId", None)),
                         devices.instance_id(getattr(data, "computeInstanceId", None)), time.time_ns())
        if gpu is not None:
            with self._session.xid_lock:
                gpu.xid_counts[event.code] = gpu.xid_counts.get(event.code, 0) + 1
                gpu.last_xid = event.code
        where = gpu.label if gpu is not None else "an unknown GPU"
        key = (gpu.uuid if gpu else None, event.code)
        # The first XID of each code per GPU is a warning in Vigil's log; repeats only debug lines.
        level = logging.DEBUG if key in self._logged else logging.WARNING
        self._logged.add(key)
        self._log.log(level, "XID %d on %s%s", event.code, where,
                      f": {event.description}" if event.description else "")
        try:
            self._on_event(event)
        except Exception:  # noqa: BLE001
            self._log.exception("handing over an XID event failed")


def log_batch(event: XidEvent, host: Mapping[str, Any]) -> Batch:
    """The XID as one ERROR log record, on the resource of its GPU."""
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource = {**host, **(event.gpu.resource() if event.gpu is not None else {})}
    for key, value in resource.items():
        set_any_value(resource_logs.resource.attributes.add(key=key).value, value)
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = "vigil"
    scope_logs.scope.version = __version__
    record = scope_logs.log_records.add(
        time_unix_nano=event.time_ns, observed_time_unix_nano=event.time_ns,
        severity_number=logs_pb2.SEVERITY_NUMBER_ERROR, severity_text="ERROR")
    if _HAS_EVENT_NAME:
        record.event_name = "hw.gpu.xid"
    where = event.gpu.label if event.gpu is not None else "an unknown GPU"
    record.body.string_value = (f"XID {event.code} on {where}"
                                + (f": {event.description}" if event.description else ""))
    attributes: dict[str, Any] = {"hw.gpu.xid": event.code}
    if event.description:
        attributes["hw.gpu.xid.description"] = event.description
    if event.gpu is not None:
        attributes["hw.id"] = event.gpu.uuid
        attributes["hw.gpu.index"] = event.gpu.index
    if event.gpu_instance_id is not None:
        attributes["hw.gpu.mig.gpu_instance_id"] = event.gpu_instance_id
    if event.compute_instance_id is not None:
        attributes["hw.gpu.mig.compute_instance_id"] = event.compute_instance_id
    for key, value in attributes.items():
        set_any_value(record.attributes.add(key=key).value, value)
    return Batch(Signal.LOGS, request, items=1)
