"""The `nvml` receiver: NVIDIA GPU metrics through NVML, and XID critical errors as logs.

    nvml:
      collection_interval: 10s
      dcgm_names: false        # also write the DCGM exporter's names and labels (DCGM_FI_DEV_GPU_UTIL, ...)
      retry_interval: 5m       # with no driver or no GPU, look again this often
      process_memory: true     # GPU memory per process (process.pid)
      xid_events: true         # XID critical errors: ERROR log records and hw.gpu.xid.errors

Each GPU, and each MIG instance, is its own resource: the host's attributes
plus `hw.id` (the UUID), `hw.type`, `hw.name`, `hw.vendor`, `hw.model`,
`hw.driver_version`, `hw.gpu.index`, `hw.gpu.pci_bus_id`, and for a MIG
instance `hw.parent` (its GPU's UUID) and `hw.gpu.mig.*` (GPU and compute
instance ids, profile). The metrics are listed in `scraper.py`.

List the receiver in a metrics pipeline for the metrics and in a logs
pipeline for the XID records. On a host with no NVIDIA driver or no GPU, it
says so once, stays idle, and looks again every `retry_interval`; the agent
runs on. NVML calls block, so they all run in worker threads (the XID wait in
a thread of its own).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from pydantic import Field

from agent.component import Consumer, Factory, Kind, Settings
from agent.configmodel import Duration
from agent.errors import ConsumerError
from agent.hostinfo import detect_host_resource
from agent.receivers.delivery import Delivery
from agent.receivers.nvml.devices import NvmlSession
from agent.receivers.nvml.scraper import GpuScraper
from agent.receivers.nvml.xid import XidEvent, XidWatcher, log_batch
from agent.receivers.scraping import ScrapeConfig, ScrapingReceiver
from agent.receivers.schedule import cancel_all
from agent.signals import Batch, Signal


class NvmlReceiverConfig(ScrapeConfig):
    dcgm_names: bool = False
    retry_interval: Annotated[Duration, Field(gt=0)] = 300.0
    process_memory: bool = True
    xid_events: bool = True


class NvmlReceiver:
    def __init__(self, config: NvmlReceiverConfig, settings: Settings, consumers: dict[Signal, Consumer],
                 resource: dict[str, Any] | None = None) -> None:
        self._config = config
        self._log = settings.logger
        self._id = str(settings.id)
        self._host = dict(detect_host_resource() if resource is None else resource)
        self.session = NvmlSession(settings.logger)
        metrics = consumers.get(Signal.METRICS)
        self._scraping = None
        if metrics is not None:
            scraper = GpuScraper(self.session, config.dcgm_names, config.process_memory)
            self._scraping = ScrapingReceiver([scraper], config, settings, {Signal.METRICS: metrics}, self._host)
        self._logs = consumers.get(Signal.LOGS)
        self._xid = XidWatcher(self.session, self._on_xid, settings.logger) if config.xid_events else None
        self._delivery = Delivery(settings, consumers)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Batch] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []

    def status(self) -> dict[str, Any]:
        return self._scraping.status() if self._scraping is not None else {}

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks.append(asyncio.create_task(self._open(), name=f"{self._id}/open"))
        if self._logs is not None:
            self._tasks.append(asyncio.create_task(self._deliver_logs(), name=f"{self._id}/logs"))
        if self._scraping is not None:
            await self._scraping.start()

    async def shutdown(self) -> None:
        opening = self._tasks[0] if self._tasks else None
        if opening is not None:
            opening.cancel()
        if self._scraping is not None:
            await self._scraping.shutdown()
        # Stops the XID thread, then shuts NVML down once a scrape still running in a thread is done.
        await asyncio.to_thread(self._close)
        await asyncio.sleep(0)  # let XID records the thread handed over reach the queue
        if self._logs is not None and not self._queue.empty():
            try:
                await asyncio.wait_for(self._queue.join(), 2.0)
            except TimeoutError:
                self._log.warning("%d XID log records were not delivered before shutdown", self._queue.qsize())
        await cancel_all(self._tasks)
        self._tasks = []

    def _close(self) -> None:
        with self.session.lock:
            if self._xid is not None:
                self._xid.stop()
            self.session.close()

    async def _open(self) -> None:
        """Start NVML and find the GPUs; with none, say why once and look again every retry_interval."""
        first = True
        while True:
            reason = await asyncio.to_thread(self.session.open)
            if reason is None:
                break
            if first:
                self._log.info("no NVIDIA GPU to watch: %s; the receiver stays idle and looks again every %s",
                               reason, _format_duration(self._config.retry_interval))
                first = False
            else:
                self._log.debug("still no NVIDIA GPU to watch: %s", reason)
            await asyncio.sleep(self._config.retry_interval)
        if self._xid is not None:
            await asyncio.to_thread(self._xid.start, f"{self._id}/xid")

    def _on_xid(self, event: XidEvent) -> None:
        """From the XID thread: hand the record to the event loop (the count is already taken)."""
        if self._logs is None or self._loop is None:
            return
        batch = log_batch(event, self._host)
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, batch)
        except RuntimeError:  # the loop is closed: the agent is gone
            pass

    async def _deliver_logs(self) -> None:
        while True:
            batch = await self._queue.get()
            try:
                await self._delivery.deliver(batch, "event")
            except ConsumerError as exc:
                self._log.warning("pipelines refused an XID log record: %s", exc)
            except Exception:  # noqa: BLE001 - a bug downstream must not end delivery
                self._log.exception("delivering an XID log record failed")
            finally:
                self._queue.task_done()


def _format_duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def _create(config: NvmlReceiverConfig, settings: Settings, consumers: dict[Signal, Consumer]) -> NvmlReceiver:
    return NvmlReceiver(config, settings, consumers)


FACTORY = Factory(
    kind=Kind.RECEIVER,
    type="nvml",
    config_model=NvmlReceiverConfig,
    create=_create,
    signals=frozenset({Signal.METRICS, Signal.LOGS}),
    description="NVIDIA GPU metrics (NVML), optionally under DCGM exporter names; XID errors as logs",
)
