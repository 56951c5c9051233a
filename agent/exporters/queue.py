"""An exporter's sending queue: its config, and the in-memory kind.

Both kinds offer the same four calls to the exporter helper's workers:

    put(batch)   stored, or RefusedError (full) — never blocks on the backend
    get()        the next (entry, batch) to send; None once the queue is closed
    done(entry)  sent, or dropped for good
    size()       requests queued or being sent

The in-memory queue counts requests (`queue_size`) and loses what it holds if
the process dies; `storage` switches to the persistent queue
(`agent.exporters.queue_persistent`), bounded by bytes on disk.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from agent.config import StrictModel
from agent.errors import RefusedError
from agent.exporters.queue_persistent import PersistentQueue, StorageConfig
from agent.signals import Batch


class QueueConfig(StrictModel):
    """The Collector's `sending_queue`; `queue_size` counts requests (in memory only)."""

    enabled: bool = True
    num_consumers: int = Field(10, ge=1)
    queue_size: int = Field(1000, ge=1)
    # On disk instead of in memory; `storage:` alone turns it on with its defaults.
    storage: StorageConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_storage_means_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and "storage" in data and data["storage"] is None:
            return {**data, "storage": {}}
        return data

    @model_validator(mode="after")
    def _check(self) -> QueueConfig:
        if self.storage is not None and not self.enabled:
            raise ValueError("storage needs the sending queue: remove enabled: false, or storage")
        return self


class MemoryQueue:
    durable = False

    def __init__(self, size: int) -> None:
        self.capacity = size
        self._queue: asyncio.Queue[Batch] = asyncio.Queue(size)
        self._closed = False

    async def open(self) -> None:
        pass

    async def put(self, batch: Batch) -> None:
        try:
            self._queue.put_nowait(batch)
        except asyncio.QueueFull:
            raise RefusedError("sending queue is full") from None

    async def get(self) -> tuple[None, Batch] | None:
        return None, await self._queue.get()

    def done(self, entry: None) -> None:
        self._queue.task_done()

    def size(self) -> int:
        return self._queue.qsize()

    async def join(self) -> None:
        await self._queue.join()

    def take_all(self) -> list[Batch]:
        """What is still queued, removed (counted as dropped at shutdown)."""
        left = []
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        return left

    async def close(self) -> None:
        pass


def make_queue(config: QueueConfig, state_dir: Path, exporter_id: str, telemetry, attrs, log):
    """The queue `config` asks for; a persistent one lives in its own folder under `state_dir`."""
    if config.storage is None:
        return MemoryQueue(config.queue_size)
    directory = (Path(config.storage.directory) if config.storage.directory
                 else Path(state_dir) / "queues" / urllib.parse.quote(exporter_id, safe=""))
    return PersistentQueue(config.storage, directory, telemetry, attrs, log)
