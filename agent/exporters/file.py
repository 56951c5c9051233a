"""The `file` exporter: one OTLP/JSON export request per line, as the Collector's file exporter writes.

With `rotation`, the file is renamed when it reaches `max_megabytes`
(`traces.json` becomes `traces-2026-11-22T21-30-05.123.json`, as the
Collector's rotation names them) and only `max_backups` old files are kept.
Writes run in a worker thread, in order, never on the event loop. A line is
encoded and written a piece at a time (`agent.exporters.json_stream`), so a
huge request never exists as Python objects all at once.
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
from agent.configmodel import StrictModel
from agent.exporters import json_stream
from agent.signals import Batch, Signal

_MIB = 1024 * 1024


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
        wire = batch.wire()
        start = self._file.tell()
        try:
            for piece in json_stream.pieces(batch.signal, wire):
                self._file.write(piece.encode())
        except ValueError:
            # Bytes the wire walker cannot follow (they would not parse either): let protobuf say.
            self._file.truncate(start)
            self._file.write(otlp_json.encode(batch.message).encode())
        except BaseException:
            self._file.truncate(start)  # never leave half a line behind
            raise
        self._file.flush()
        if self._rotation and start and self._file.tell() + 1 > self._rotation.max_megabytes * _MIB:
            # The line does not fit in this file: it starts the next one.
            self._rotate(move_from=start)
        self._file.write(b"\n")  # only now: a reader never sees a whole line twice
        self._file.flush()

    async def shutdown(self) -> None:
        async with self._lock:
            if self._file is not None:
                await asyncio.to_thread(self._file.close)
                self._file = None

    def _open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # Left by a crash before a rotation renamed anything: the line is still in the file itself.
        self._path.with_name(self._path.name + ".rotating").unlink(missing_ok=True)
        self._file = open(self._path, "ab+")  # +: a rotation reads back the line it moves

    def _rotate(self, move_from: int) -> None:
        """Rename the file to a backup; the bytes from `move_from` on (the line being written)
        are moved to the new file."""
        now = datetime.datetime.now()
        while True:  # two rotations within one millisecond must not overwrite a backup
            stamp = now.strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3]
            backup = self._path.with_name(f"{self._path.stem}-{stamp}{self._path.suffix}")
            if not backup.exists():
                break
            now += datetime.timedelta(milliseconds=1)
        fresh = self._path.with_name(self._path.name + ".rotating")
        with open(fresh, "wb") as out:
            self._file.seek(move_from)
            while chunk := self._file.read(_MIB):
                out.write(chunk)
        # In this order a crash leaves the line in both files at worst, never in neither.
        os.replace(self._path, backup)
        os.replace(fresh, self._path)
        self._file.truncate(move_from)  # the backup, through the descriptor that followed it
        self._file.close()
        self._file = open(self._path, "ab+")
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
