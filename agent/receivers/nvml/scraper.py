"""The GPU scraper: one resource per GPU and per MIG instance, `hw.*` metrics, optionally DCGM's names.

Names, units and attributes follow the OpenTelemetry semantic conventions'
hardware metrics where they exist (`hw.gpu.utilization`, `hw.gpu.memory.*`,
`hw.temperature`, `hw.power`, `hw.energy`, `hw.errors`, `hw.status`,
`hw.fan.speed_ratio`); the rest are `hw.gpu.*` in the same style. NVML's units
are converted: percentages to fractions 0–1, mW to W, mJ to J, MHz to Hz,
KB/s to bytes/s.

With `dcgm_names`, the same readings are also written under the names and
units of NVIDIA's DCGM exporter (`DCGM_FI_DEV_GPU_UTIL` in percent,
`DCGM_FI_DEV_FB_USED` in MiB, ...), each point carrying DCGM's labels (`gpu`,
`UUID`, `device`, `modelName`, `Hostname`, ...), so dashboards built on the
DCGM exporter keep working. Those metrics have no OpenTelemetry unit, so a
Prometheus translation adds no unit suffix to their names.

A MIG instance reports what NVML gives per instance (memory, processes);
temperature, power, clocks and errors belong to its GPU's resource.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

from agent.metrics_builder import Instrument, MetricSpec, MetricsBuilder, ResourceMetrics
from agent.receivers.nvml import devices
from agent.receivers.nvml.devices import Gpu, GpuLost, NvmlSession

G, C, U = Instrument.GAUGE, Instrument.COUNTER, Instrument.UPDOWN

UTILIZATION = MetricSpec("hw.gpu.utilization", "1", G,
                         "Fraction of time the GPU spent in a task (general: running kernels) over NVML's sample")
MEMORY_ACTIVITY = MetricSpec("hw.gpu.memory.activity", "1", G,
                             "Fraction of time device memory was being read or written over NVML's sample")
MEMORY_USAGE = MetricSpec("hw.gpu.memory.usage", "By", U, "GPU memory used")
MEMORY_LIMIT = MetricSpec("hw.gpu.memory.limit", "By", U, "Size of the GPU memory")
MEMORY_UTILIZATION = MetricSpec("hw.gpu.memory.utilization", "1", G, "Fraction of GPU memory used")
TEMPERATURE = MetricSpec("hw.temperature", "Cel", G, "Temperature in degrees Celsius, by sensor (gpu, memory)")
POWER = MetricSpec("hw.power", "W", G, "Power drawn by the GPU board")
ENERGY = MetricSpec("hw.energy", "J", C, "Energy the GPU consumed since the driver loaded")
CLOCK = MetricSpec("hw.gpu.clock.frequency", "Hz", G, "Current clock frequency, by clock (sm, memory, graphics)")
CLOCK_THROTTLE = MetricSpec("hw.gpu.clock.throttle", "1", G,
                            "1 while the reason holds the clocks down (NVML's clocks event reasons), else 0")
PCIE_THROUGHPUT = MetricSpec("hw.gpu.pcie.throughput", "By/s", G,
                             "PCIe traffic by direction, sampled by NVML over 20ms")
PCIE_REPLAYS = MetricSpec("hw.gpu.pcie.replays", "{replay}", C, "PCIe link-level replays (retries)")
ERRORS = MetricSpec("hw.errors", "{error}", C, "ECC memory errors since the driver loaded, by type")
RETIRED_PAGES = MetricSpec("hw.gpu.memory.retired_pages", "{page}", U, "Memory pages retired, by cause")
RETIREMENT_PENDING = MetricSpec("hw.gpu.memory.retirement.pending", "1", G,
                                "1 when pages wait to be retired at the next driver reload")
REMAPPED_ROWS = MetricSpec("hw.gpu.memory.remapped_rows", "{row}", U, "Memory rows remapped, by cause")
REMAP_PENDING = MetricSpec("hw.gpu.memory.remap.pending", "1", G, "1 when a row remap waits for a GPU reset")
REMAP_FAILED = MetricSpec("hw.gpu.memory.remap.failed", "1", G, "1 when a row remap has failed")
FAN_SPEED_RATIO = MetricSpec("hw.fan.speed_ratio", "1", G, "Fan speed as a fraction of its maximum")
PROCESS_MEMORY = MetricSpec("hw.gpu.process.memory.usage", "By", U, "GPU memory used by a process")
XID_ERRORS = MetricSpec("hw.gpu.xid.errors", "{error}", C,
                        "XID critical errors the driver reported since Vigil started watching, by XID code")
STATUS = MetricSpec("hw.status", "1", U, "1 for the GPU's state (ok, failed), 0 for the other")

# NVML's clocks event (throttle) reason bits.
CLOCK_EVENT_REASONS = {
    0x001: "gpu_idle", 0x002: "applications_clocks_setting", 0x004: "sw_power_cap", 0x008: "hw_slowdown",
    0x010: "sync_boost", 0x020: "sw_thermal_slowdown", 0x040: "hw_thermal_slowdown",
    0x080: "hw_power_brake_slowdown", 0x100: "display_clock_setting",
}


def _dcgm(name: str, instrument: Instrument, description: str) -> MetricSpec:
    return MetricSpec(name, "", instrument, description)


DCGM = {spec.name: spec for spec in (
    _dcgm("DCGM_FI_DEV_GPU_UTIL", G, "GPU utilization (in %)."),
    _dcgm("DCGM_FI_DEV_MEM_COPY_UTIL", G, "Memory utilization (in %)."),
    _dcgm("DCGM_FI_DEV_ENC_UTIL", G, "Encoder utilization (in %)."),
    _dcgm("DCGM_FI_DEV_DEC_UTIL", G, "Decoder utilization (in %)."),
    _dcgm("DCGM_FI_DEV_FB_USED", G, "Framebuffer memory used (in MiB)."),
    _dcgm("DCGM_FI_DEV_FB_FREE", G, "Framebuffer memory free (in MiB)."),
    _dcgm("DCGM_FI_DEV_FB_TOTAL", G, "Framebuffer memory total (in MiB)."),
    _dcgm("DCGM_FI_DEV_GPU_TEMP", G, "GPU temperature (in C)."),
    _dcgm("DCGM_FI_DEV_MEMORY_TEMP", G, "Memory temperature (in C)."),
    _dcgm("DCGM_FI_DEV_POWER_USAGE", G, "Power draw (in W)."),
    _dcgm("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", C, "Total energy consumption since boot (in mJ)."),
    _dcgm("DCGM_FI_DEV_SM_CLOCK", G, "SM clock frequency (in MHz)."),
    _dcgm("DCGM_FI_DEV_MEM_CLOCK", G, "Memory clock frequency (in MHz)."),
    _dcgm("DCGM_FI_DEV_PCIE_TX_THROUGHPUT", G, "PCIe TX throughput (in KB/s), via NVML."),
    _dcgm("DCGM_FI_DEV_PCIE_RX_THROUGHPUT", G, "PCIe RX throughput (in KB/s), via NVML."),
    _dcgm("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", C, "Total number of PCIe retries."),
    _dcgm("DCGM_FI_DEV_XID_ERRORS", G, "Value of the last XID error encountered."),
    _dcgm("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", C, "Total number of single-bit volatile ECC errors."),
    _dcgm("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", C, "Total number of double-bit volatile ECC errors."),
    _dcgm("DCGM_FI_DEV_RETIRED_SBE", C, "Total number of retired pages due to single-bit errors."),
    _dcgm("DCGM_FI_DEV_RETIRED_DBE", C, "Total number of retired pages due to double-bit errors."),
    _dcgm("DCGM_FI_DEV_RETIRED_PENDING", G, "Number of pages pending retirement."),
    _dcgm("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", C, "Number of remapped rows for correctable errors."),
    _dcgm("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", C, "Number of remapped rows for uncorrectable errors."),
    _dcgm("DCGM_FI_DEV_ROW_REMAP_FAILURE", G, "Whether remapping of rows has failed."),
    _dcgm("DCGM_FI_DEV_ROW_REMAP_PENDING", G, "Whether a row remap is pending (a GPU reset is needed)."),
    _dcgm("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", G, "Current clock throttle reasons (bit mask)."),
    _dcgm("DCGM_FI_DEV_FAN_SPEED", G, "Fan speed (in %)."),
)}

_MIB = 1 << 20


class _Dcgm:
    """Records DCGM-named points for one device, or nothing when `dcgm_names` is off."""

    def __init__(self, rm: ResourceMetrics | None, labels: Mapping[str, str], gpu: Gpu, now_ns: int) -> None:
        self._rm, self._labels, self._gpu, self._now = rm, labels, gpu, now_ns

    def __call__(self, name: str, value: float | int) -> None:
        if self._rm is None:
            return
        spec = DCGM[name]
        start = self._gpu.start_ns(name, value, self._now) if spec.instrument is C else 0
        self._rm.record(spec, value, self._labels, start)


class GpuScraper:
    name = "gpu"

    def __init__(self, session: NvmlSession, dcgm_names: bool = False, process_memory: bool = True) -> None:
        self._session = session
        self._dcgm_names = dcgm_names
        self._process_memory = process_memory

    def scrape(self, out: MetricsBuilder, resource: Mapping[str, Any]) -> None:
        with self._session.lock:
            if not self._session.ready:
                return  # no GPU (yet): the receiver checks again every retry_interval
            for gpu in self._session.gpus:
                self._scrape_gpu(out, resource, gpu)

    def _scrape_gpu(self, out: MetricsBuilder, host: Mapping[str, Any], gpu: Gpu) -> None:
        rm = out.resource({**host, **gpu.resource()})
        now = out.time_ns
        dcgm = self._dcgm_for(rm, gpu, host, now)
        children: list[Gpu] = []
        if not gpu.lost:
            try:
                self._device(rm, gpu, dcgm, now)
                children = self._session.mig_devices(gpu)
                if not children and self._process_memory:
                    self._processes(rm, gpu)
            except GpuLost as exc:
                self._session.mark_lost(gpu, str(exc))
                children = []
        self._xid(rm, gpu, dcgm)
        rm.record(STATUS, 0 if gpu.lost else 1, {"hw.state": "ok"})
        rm.record(STATUS, 1 if gpu.lost else 0, {"hw.state": "failed"})
        self._session.report_unsupported(gpu)
        for child in children:
            child_rm = out.resource({**host, **child.resource()})
            try:
                self._mig_device(child_rm, child, self._dcgm_for(child_rm, child, host, now))
            except GpuLost as exc:
                self._session.mark_lost(gpu, str(exc))
                break
            child_rm.record(STATUS, 1, {"hw.state": "ok"})
            child_rm.record(STATUS, 0, {"hw.state": "failed"})
            self._session.report_unsupported(child)

    def _dcgm_for(self, rm: ResourceMetrics, gpu: Gpu, host: Mapping[str, Any], now: int) -> _Dcgm:
        if not self._dcgm_names:
            return _Dcgm(None, {}, gpu, now)
        return _Dcgm(rm, gpu.dcgm_labels(str(host.get("host.name", ""))), gpu, now)

    # --- a whole GPU -----------------------------------------------------------

    def _device(self, rm: ResourceMetrics, gpu: Gpu, dcgm: _Dcgm, now: int) -> None:
        nvml = devices.pynvml
        query: Callable[..., Any] = functools.partial(self._session.query, gpu)

        self._utilization(rm, gpu, dcgm)
        for task, name, function, dcgm_name in (
                ("encoder", "encoder_utilization", nvml.nvmlDeviceGetEncoderUtilization, "DCGM_FI_DEV_ENC_UTIL"),
                ("decoder", "decoder_utilization", nvml.nvmlDeviceGetDecoderUtilization, "DCGM_FI_DEV_DEC_UTIL")):
            value = query(name, function)
            if value is not None:
                rm.record(UTILIZATION, value[0] / 100, {"hw.gpu.task": task})
                dcgm(dcgm_name, int(value[0]))
        self._memory(rm, gpu, dcgm)

        temperature = query("temperature.gpu", nvml.nvmlDeviceGetTemperature, 0)  # NVML_TEMPERATURE_GPU
        if temperature is not None:
            rm.record(TEMPERATURE, temperature, {"hw.sensor_location": "gpu"})
            dcgm("DCGM_FI_DEV_GPU_TEMP", temperature)
        memory_temperature = self._session.field_value(gpu, "temperature.memory", 82)  # NVML_FI_DEV_MEMORY_TEMP
        if memory_temperature is not None:
            rm.record(TEMPERATURE, memory_temperature, {"hw.sensor_location": "memory"})
            dcgm("DCGM_FI_DEV_MEMORY_TEMP", memory_temperature)

        milliwatts = query("power", nvml.nvmlDeviceGetPowerUsage)
        if milliwatts is not None:
            rm.record(POWER, milliwatts / 1000)
            dcgm("DCGM_FI_DEV_POWER_USAGE", milliwatts / 1000)
        millijoules = query("energy", nvml.nvmlDeviceGetTotalEnergyConsumption)
        if millijoules is not None:
            rm.record(ENERGY, millijoules / 1000, None, gpu.start_ns("energy", millijoules, now))
            dcgm("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", int(millijoules))

        for clock, clock_type, dcgm_name in (("sm", 1, "DCGM_FI_DEV_SM_CLOCK"),
                                             ("memory", 2, "DCGM_FI_DEV_MEM_CLOCK"),
                                             ("graphics", 0, None)):
            megahertz = query(f"clock.{clock}", nvml.nvmlDeviceGetClockInfo, clock_type)
            if megahertz is not None:
                rm.record(CLOCK, int(megahertz) * 1_000_000, {"hw.gpu.clock.type": clock})
                if dcgm_name:
                    dcgm(dcgm_name, megahertz)
        reasons = query("clock_event_reasons", devices.current_clock_event_reasons)
        if reasons is not None:
            for bit, reason in CLOCK_EVENT_REASONS.items():
                rm.record(CLOCK_THROTTLE, 1 if reasons & bit else 0, {"hw.gpu.clock.throttle_reason": reason})
            dcgm("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", int(reasons))

        for direction, counter, dcgm_name in (("transmit", 0, "DCGM_FI_DEV_PCIE_TX_THROUGHPUT"),
                                              ("receive", 1, "DCGM_FI_DEV_PCIE_RX_THROUGHPUT")):
            kilobytes = query(f"pcie_throughput.{direction}", nvml.nvmlDeviceGetPcieThroughput, counter)
            if kilobytes is not None:
                rm.record(PCIE_THROUGHPUT, int(kilobytes) * 1024, {"network.io.direction": direction})
                dcgm(dcgm_name, kilobytes)
        replays = query("pcie_replays", nvml.nvmlDeviceGetPcieReplayCounter)
        if replays is not None:
            rm.record(PCIE_REPLAYS, int(replays), None, gpu.start_ns("pcie_replays", replays, now))
            dcgm("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", int(replays))

        self._memory_health(rm, gpu, dcgm, now)

        fan = query("fan_speed", nvml.nvmlDeviceGetFanSpeed)
        if fan is not None:
            rm.record(FAN_SPEED_RATIO, fan / 100)
            dcgm("DCGM_FI_DEV_FAN_SPEED", fan)

    def _utilization(self, rm: ResourceMetrics, gpu: Gpu, dcgm: _Dcgm) -> None:
        rates = self._session.query(gpu, "utilization", devices.pynvml.nvmlDeviceGetUtilizationRates)
        if rates is not None:
            rm.record(UTILIZATION, rates.gpu / 100, {"hw.gpu.task": "general"})
            rm.record(MEMORY_ACTIVITY, rates.memory / 100)
            dcgm("DCGM_FI_DEV_GPU_UTIL", int(rates.gpu))
            dcgm("DCGM_FI_DEV_MEM_COPY_UTIL", int(rates.memory))

    def _memory(self, rm: ResourceMetrics, gpu: Gpu, dcgm: _Dcgm) -> None:
        memory = self._session.query(gpu, "memory", devices.pynvml.nvmlDeviceGetMemoryInfo)
        if memory is None:
            return
        total, used = int(memory.total), int(memory.used)
        rm.record(MEMORY_USAGE, used)
        rm.record(MEMORY_LIMIT, total)
        if total > 0:
            rm.record(MEMORY_UTILIZATION, used / total)
        dcgm("DCGM_FI_DEV_FB_USED", used // _MIB)
        dcgm("DCGM_FI_DEV_FB_FREE", int(memory.free) // _MIB)
        dcgm("DCGM_FI_DEV_FB_TOTAL", total // _MIB)

    def _memory_health(self, rm: ResourceMetrics, gpu: Gpu, dcgm: _Dcgm, now: int) -> None:
        nvml = devices.pynvml
        query: Callable[..., Any] = functools.partial(self._session.query, gpu)
        for error_type, memory_error_type, dcgm_name in (("ecc_corrected", 0, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"),
                                                         ("ecc_uncorrected", 1, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL")):
            # Volatile counts: since the driver loaded (NVML_VOLATILE_ECC = 0).
            count = query(f"errors.{error_type}", nvml.nvmlDeviceGetTotalEccErrors, memory_error_type, 0)
            if count is not None:
                rm.record(ERRORS, int(count), {"error.type": error_type},
                          gpu.start_ns(f"errors.{error_type}", count, now))
                dcgm(dcgm_name, int(count))
        for cause, cause_code, dcgm_name in (("multiple_single_bit_ecc", 0, "DCGM_FI_DEV_RETIRED_SBE"),
                                             ("double_bit_ecc", 1, "DCGM_FI_DEV_RETIRED_DBE")):
            pages = query(f"retired_pages.{cause}", nvml.nvmlDeviceGetRetiredPages, cause_code)
            if pages is not None:
                rm.record(RETIRED_PAGES, len(pages), {"hw.gpu.memory.retirement_cause": cause})
                dcgm(dcgm_name, len(pages))
        pending = query("retired_pages.pending", nvml.nvmlDeviceGetRetiredPagesPendingStatus)
        if pending is not None:
            rm.record(RETIREMENT_PENDING, 1 if pending else 0)
            dcgm("DCGM_FI_DEV_RETIRED_PENDING", 1 if pending else 0)
        remapped = query("remapped_rows", nvml.nvmlDeviceGetRemappedRows)
        if remapped is not None:
            correctable, uncorrectable, remap_pending, remap_failed = (int(v) for v in remapped[:4])
            rm.record(REMAPPED_ROWS, correctable, {"hw.gpu.memory.remap_cause": "correctable"})
            rm.record(REMAPPED_ROWS, uncorrectable, {"hw.gpu.memory.remap_cause": "uncorrectable"})
            rm.record(REMAP_PENDING, 1 if remap_pending else 0)
            rm.record(REMAP_FAILED, 1 if remap_failed else 0)
            dcgm("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", correctable)
            dcgm("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", uncorrectable)
            dcgm("DCGM_FI_DEV_ROW_REMAP_PENDING", 1 if remap_pending else 0)
            dcgm("DCGM_FI_DEV_ROW_REMAP_FAILURE", 1 if remap_failed else 0)

    def _processes(self, rm: ResourceMetrics, gpu: Gpu) -> None:
        used: dict[int, int] = {}
        for name, function in (("processes.compute", devices.compute_processes),
                               ("processes.graphics", devices.graphics_processes)):
            for process in self._session.query(gpu, name, function) or ():
                memory = getattr(process, "usedGpuMemory", None)
                if memory is None:  # not available (no permission, or Windows WDDM)
                    continue
                pid = int(process.pid)
                used[pid] = max(used.get(pid, 0), int(memory))
        for pid, memory in sorted(used.items()):
            rm.record(PROCESS_MEMORY, memory, {"process.pid": pid})

    def _xid(self, rm: ResourceMetrics, gpu: Gpu, dcgm: _Dcgm) -> None:
        if not gpu.xid_watched:
            return
        with self._session.xid_lock:
            counts, last = dict(gpu.xid_counts), gpu.last_xid
        for code, count in sorted(counts.items()):
            rm.record(XID_ERRORS, count, {"hw.gpu.xid": code}, gpu.xid_start_ns)
        dcgm("DCGM_FI_DEV_XID_ERRORS", last)

    # --- a MIG instance ----------------------------------------------------------

    def _mig_device(self, rm: ResourceMetrics, gpu: Gpu, dcgm: _Dcgm) -> None:
        self._utilization(rm, gpu, dcgm)
        self._memory(rm, gpu, dcgm)
        if self._process_memory:
            self._processes(rm, gpu)
