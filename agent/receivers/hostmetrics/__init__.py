"""The `hostmetrics` receiver: CPU, memory, load, paging, disk, filesystem, network and processes (psutil).

    hostmetrics:
      collection_interval: 10s
      scrapers:
        cpu:
        memory:
        filesystem: {exclude_mount_points: {mount_points: ["^/snap/"], match_type: regexp}}
        process: {include: {names: ["tritonserver", "python.*"], match_type: regexp}}

Each scraper is optional and has its own settings; without `scrapers`, every
host-wide scraper runs (all but `process`). Resource attributes come from
host detection: `host.name`, `host.id`, `host.arch`, `os.type`, `os.description`.
"""

from __future__ import annotations

from agent.component import Consumer, Factory, Kind, Settings
from agent.configmodel import OptionalPartsModel
from agent.hostinfo import detect_host_resource
from agent.receivers.hostmetrics import system
from agent.receivers.hostmetrics.process import ProcessConfig, ProcessScraper
from agent.receivers.scraping import ScrapeConfig, ScrapingReceiver
from agent.signals import Signal


class ScrapersConfig(OptionalPartsModel):
    cpu: system.CpuConfig | None = None
    load: system.LoadConfig | None = None
    memory: system.MemoryConfig | None = None
    paging: system.PagingConfig | None = None
    disk: system.DiskConfig | None = None
    filesystem: system.FilesystemConfig | None = None
    network: system.NetworkConfig | None = None
    processes: system.ProcessesConfig | None = None
    process: ProcessConfig | None = None


_HOST_WIDE = ScrapersConfig(cpu=system.CpuConfig(), load=system.LoadConfig(), memory=system.MemoryConfig(),
                            paging=system.PagingConfig(), disk=system.DiskConfig(),
                            filesystem=system.FilesystemConfig(), network=system.NetworkConfig(),
                            processes=system.ProcessesConfig())


class HostMetricsReceiverConfig(ScrapeConfig):
    scrapers: ScrapersConfig = _HOST_WIDE


_SCRAPERS = {
    "cpu": system.CpuScraper, "load": system.LoadScraper, "memory": system.MemoryScraper,
    "paging": system.PagingScraper, "disk": system.DiskScraper, "filesystem": system.FilesystemScraper,
    "network": system.NetworkScraper, "processes": system.ProcessesScraper,
}


def _create(config: HostMetricsReceiverConfig, settings: Settings,
            consumers: dict[Signal, Consumer]) -> ScrapingReceiver:
    scrapers = []
    for name, scraper_class in _SCRAPERS.items():
        scraper_config = getattr(config.scrapers, name)
        if scraper_config is not None:
            scrapers.append(scraper_class(scraper_config))
    if config.scrapers.process is not None:
        skipped = settings.telemetry.counter("vigil_receiver_scrape_skipped_processes",
                                             "processes skipped in a scrape (exited, or no permission)")
        attrs = {"receiver": str(settings.id)}
        scrapers.append(ProcessScraper(config.scrapers.process,
                                       on_skip=lambda reason: skipped.add(1, {**attrs, "reason": reason})))
    return ScrapingReceiver(scrapers, config, settings, consumers, detect_host_resource())


FACTORY = Factory(
    kind=Kind.RECEIVER,
    type="hostmetrics",
    config_model=HostMetricsReceiverConfig,
    create=_create,
    signals=frozenset({Signal.METRICS}),
    description="host CPU, memory, load, paging, disk, filesystem, network and process metrics (psutil)",
)
