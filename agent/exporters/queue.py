"""An exporter's sending queue: its config, and the in-memory kind.

Both kinds offer the same four calls to the exporter helper's workers:

    put(batch)   stored, or RefusedError (full) — never blocks on the backend
    get()        the next (entry, batch) to send; None once the queue is closed
    done(entry)  sent, or dropped for good
    size()       requests queued or being sent

The in-memory queue is bounded by `queue_size`, counted in the unit `sizer`
names (the Collector's: requests, items or bytes), and loses what it holds if
the process dies; `storage` switches to the persistent queue
(`agent.exporters.queue_persistent`), bounded by bytes on disk. The in-memory
queue holds each request as its wire bytes only, however a processor left it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from agent.configmodel import StrictModel
from agent.errors import InvalidDataError, RefusedError
from agent.exporters.queue_persistent import PersistentQueue, StorageConfig
from agent.signals import Batch
from agent.statefile import safe_name


class QueueConfig(StrictModel):
    """The Collector's `sending_queue`; `queue_size` is in `sizer` units (in memory only)."""

    enabled: bool = True
    num_consumers: int = Field(10, ge=1)
    # What waits to be sent, at most (up to num_consumers more requests are being sent).
    queue_size: int = Field(1000, ge=1)
    # requests: as the Collector by default; bytes (of each request on the wire) bounds memory
    # whatever the requests' size, the one to use against a slow backend; items: spans, points, records.
    sizer: Literal["requests", "items", "bytes"] = "requests"
    # On disk instead of in memory; `storage:` alone turns it on with its defaults. The Collector's
    # form, a file_storage extension's id (`storage: file_storage/queues`), is `extension:` here.
    storage: StorageConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_storage_means_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and "storage" in data and data["storage"] is None:
            return {**data, "storage": {}}
        if isinstance(data, dict) and isinstance(data.get("storage"), str):
            return {**data, "storage": {"extension": data["storage"]}}
        return data

    @model_validator(mode="after")
    def _check(self) -> QueueConfig:
        if self.storage is not None and not self.enabled:
            raise ValueError("storage needs the sending queue: remove enabled: false, or storage")
        if self.storage is not None and self.sizer != "requests":
            raise ValueError("sizer is for the in-memory queue: storage is bounded by storage.max_size_mib")
        if self.sizer != "requests" and "queue_size" not in self.model_fields_set:
            raise ValueError(f"with sizer: {self.sizer}, set queue_size in {self.sizer} "
                             f"(e.g. {268435456 if self.sizer == 'bytes' else 100000})")
        return self


class MemoryQueue:
    durable = False

    def __init__(self, size: int, sizer: str = "requests") -> None:
        self.capacity = size
        self.sizer = sizer
        self.used = 0  # in `sizer` units, of what waits
        self._queue: asyncio.Queue[tuple[int, Batch]] = asyncio.Queue()

    async def open(self) -> None:
        pass

    async def put(self, batch: Batch) -> None:
        # Only the bytes: a parsed message costs many times its wire size while it waits.
        batch = Batch(batch.signal, wire=batch.wire(), items=batch.items)
        cost = self._cost(batch)
        if cost > self.capacity:
            raise InvalidDataError(f"a request of {cost} {self.sizer} can never fit in the sending queue "
                                   f"(queue_size: {self.capacity} {self.sizer})")
        if self.used + cost > self.capacity:
            raise RefusedError("sending queue is full")
        self.used += cost
        self._queue.put_nowait((cost, batch))

    def _cost(self, batch: Batch) -> int:
        if self.sizer == "bytes":
            return len(batch.wire())
        return batch.items if self.sizer == "items" else 1

    async def get(self) -> tuple[None, Batch] | None:
        cost, batch = await self._queue.get()
        self.used -= cost
        return None, batch

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
            cost, batch = self._queue.get_nowait()
            self.used -= cost
            left.append(batch)
        return left

    async def close(self) -> None:
        pass


def make_queue(config: QueueConfig, state_dir: Path, exporter_id: str, telemetry, attrs, log):
    """The queue `config` asks for; a persistent one lives in its own folder under `state_dir`."""
    if config.storage is None:
        return MemoryQueue(config.queue_size, config.sizer)
    if config.storage.extension is not None and config.storage.directory is None:
        # agent.config resolves the extension to a directory before any exporter is made.
        raise ValueError(f"sending_queue.storage.extension {config.storage.extension!r} was not resolved")
    directory = (Path(config.storage.directory) if config.storage.directory
                 else Path(state_dir) / "queues" / safe_name(exporter_id))
    return PersistentQueue(config.storage, directory, telemetry, attrs, log)
