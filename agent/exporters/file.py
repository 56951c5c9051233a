"""The `file` exporter: one OTLP/JSON export request per line, as the Collector's file exporter writes.

With `rotation`, the file is renamed when it reaches `max_megabytes`
(`traces.json` becomes `traces-2026-11-22T21-30-05.123.json`, as the
Collector's rotation names them) and only `max_backups` old files are kept.
Writes run in a worker thread, in order, never on the event loop.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import re
from pathlib import Path

from pydantic import Field

from agent import otlp_json
from agent.component import Factory, Kind, Settings
from agent.config import StrictModel
from agent.signals import Batch, Signal


class RotationConfig(StrictModel):
    max_megabytes: int = Field(100, gt=0)
    max_backups: int = Field(100, ge=0)  # 0: keep every old file


class FileExporterConfig(StrictModel):
    path: str
    rotation: RotationConfig | None = None


class FileExporter:
    mutates_data = False

    def __init__(self, config: FileExporterConfig, settings: Settings) -> None:
        self._path = Path(config.path)
        self._rotation = config.rotation
        self._log = settings.logger
        self._attrs = {"exporter": str(settings.id)}
        self._sent = {s: settings.telemetry.counter(f"vigil_exporter_sent_{s.item_name}", "items sent")
                      for s in Signal}
        self._lock = asyncio.Lock()  # one write at a time keeps lines whole and in order
        self._file = None

    async def start(self) -> None:
        await asyncio.to_thread(self._open)

    async def consume(self, batch: Batch) -> None:
        async with self._lock:
            # Encoding a large batch takes a while: it runs in the worker thread with the write.
            await asyncio.to_thread(self._write_batch, batch)
        self._sent[batch.signal].add(batch.items, self._attrs)

    def _write_batch(self, batch: Batch) -> None:
        self._write((otlp_json.encode(batch.message) + "\n").encode())

    async def shutdown(self) -> None:
        async with self._lock:
            if self._file is not None:
                await asyncio.to_thread(self._file.close)
                self._file = None

    def _open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._path, "ab")

    def _write(self, data: bytes) -> None:
        if self._rotation and self._file.tell() and (
                self._file.tell() + len(data) > self._rotation.max_megabytes * 1024 * 1024):
            self._rotate()
        self._file.write(data)
        self._file.flush()

    def _rotate(self) -> None:
        self._file.close()
        now = datetime.datetime.now()
        while True:  # two rotations within one millisecond must not overwrite a backup
            stamp = now.strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3]
            backup = self._path.with_name(f"{self._path.stem}-{stamp}{self._path.suffix}")
            if not backup.exists():
                break
            now += datetime.timedelta(milliseconds=1)
        os.replace(self._path, backup)
        self._file = open(self._path, "ab")
        if self._rotation.max_backups:
            # Only names this exporter makes: a user's other files beside it are never touched.
            made_here = re.compile(re.escape(self._path.stem) + r"-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}"
                                   + re.escape(self._path.suffix) + "$")
            backups = sorted(p for p in self._path.parent.iterdir() if made_here.match(p.name))
            for old in backups[: -self._rotation.max_backups]:
                old.unlink(missing_ok=True)
        self._log.info("rotated %s to %s", self._path, backup.name)


def _create(config: FileExporterConfig, settings: Settings) -> FileExporter:
    return FileExporter(config, settings)


FACTORY = Factory(
    kind=Kind.EXPORTER,
    type="file",
    config_model=FileExporterConfig,
    create=_create,
    signals=frozenset(Signal),
    description="OTLP/JSON lines in a local file, with size-based rotation",
)
