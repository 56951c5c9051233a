"""The `debug` exporter: logs what passes, for looking at a pipeline by eye.

`basic` logs one line per batch with its counts; `detailed` logs the whole
batch as OTLP/JSON.
"""

from __future__ import annotations

from typing import Literal

from agent import otlp_json
from agent.component import Factory, Kind, Settings
from agent.configmodel import StrictModel
from agent.signals import Batch, Signal


class DebugExporterConfig(StrictModel):
    verbosity: Literal["basic", "normal", "detailed"] = "basic"


class DebugExporter:
    mutates_data = False

    def __init__(self, config: DebugExporterConfig, settings: Settings) -> None:
        self._verbosity = config.verbosity
        self._log = settings.logger

    async def start(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def consume(self, batch: Batch) -> None:
        resources = len(batch.resources())
        self._log.info("%s: resources=%d %s=%d", batch.signal.value, resources, batch.signal.item_name,
                       batch.items)
        if self._verbosity == "detailed":
            self._log.info("%s", otlp_json.encode(batch.message))


def _create(config: DebugExporterConfig, settings: Settings) -> DebugExporter:
    return DebugExporter(config, settings)


FACTORY = Factory(
    kind=Kind.EXPORTER,
    type="debug",
    config_model=DebugExporterConfig,
    create=_create,
    signals=frozenset(Signal),
    description="logs a summary (or all) of each batch",
)
