"""The persistent sending queue: an exporter's requests in a write-ahead log on disk.

`put` returns once the request is in a segment file (and, with `fsync: always`,
on the disk itself), so what a receiver acknowledges survives a `kill -9`, a
power cut or a backend outage for as long as the queue has room. Workers `get`
records in order and call `done` once a record is sent or dropped for good; a
record never done (shut down mid-retry, or killed) is sent again after the next
start. Delivery is therefore at-least-once: a restart can repeat what was sent
but not yet marked done.

    put ─▶ group commit (one write, one fsync for every request waiting) ─▶ segment files
    get ◀─ index of records not yet handed out (positions only; the bytes stay on disk)

The queue is bounded by bytes on disk. When it is full it refuses (retryable,
so the senders keep the data) or drops the oldest records not being sent,
as configured; both are counted. A full disk is a refusal too.

File I/O runs in one thread of the queue's own, in order; the event loop only
keeps the index and the accounting.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from agent.config import Duration, StrictModel
from agent.errors import InvalidDataError, RefusedError
from agent.exporters import queue_storage
from agent.exporters.queue_storage import CorruptRecordError, Record, SegmentStore
from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry

_MIB = 1024 * 1024
# How often the resume position is written down; a crash re-sends at most this much extra.
_CURSOR_INTERVAL = 0.2


class StorageConfig(StrictModel):
    """`sending_queue.storage`: keep the queue on disk, under `service.state_dir` by default."""

    # Default: <service.state_dir>/queues/<exporter id>.
    directory: str | None = None
    max_size_mib: float = Field(256, gt=0)
    # Disk space is given back a segment at a time; capped at a quarter of max_size_mib.
    segment_size_mib: float = Field(8, gt=0)
    # always: on disk before the sender is answered (survives a power cut);
    # interval: fsync every fsync_interval (a power cut may lose that much; kill -9 loses nothing);
    # never: the OS decides when (kill -9 loses nothing; a power cut may lose what it had not written).
    fsync: Literal["always", "interval", "never"] = "always"
    fsync_interval: Duration = 1.0
    # refuse: answer senders with the retryable code until there is room;
    # drop_oldest: make room by dropping the oldest requests not being sent.
    when_full: Literal["refuse", "drop_oldest"] = "refuse"


@dataclass
class _Segment:
    size: int = 0
    unread: int = 0
    in_flight: int = 0


@dataclass
class _Write:
    signal: Signal
    items: int
    wire: bytes
    future: asyncio.Future


class PersistentQueue:
    durable = True

    def __init__(self, config: StorageConfig, directory: Path, telemetry: SelfTelemetry,
                 attrs: dict[str, str], log: logging.Logger) -> None:
        self._config = config
        self.capacity_bytes = int(config.max_size_mib * _MIB)
        segment = min(int(config.segment_size_mib * _MIB), max(self.capacity_bytes // 4, 4096))
        self._store = SegmentStore(directory, segment, sync_directory=config.fsync != "never")
        self.directory = directory
        self._attrs = attrs
        self._log = log
        self._executor: ThreadPoolExecutor | None = None
        self._index: collections.deque[Record] = collections.deque()
        self._segments: dict[int, _Segment] = {}
        self._in_flight: set[Record] = set()
        self._write_seq = 0  # records in segments below this one are sealed: no more appends
        self._tail = (0, 0)  # just past the last record written
        self.used_bytes = 0  # on disk, plus what is being written
        self._writes: list[_Write] = []
        self._writer: asyncio.Task | None = None
        self._getters: collections.deque[asyncio.Future] = collections.deque()
        self._background: set[asyncio.Future] = set()
        self._cursor_dirty = False
        self._ticker: asyncio.Task | None = None
        self._closed = True
        self._dispatching = False
        self._full_since_logged = False
        self._cursor_error_logged = False
        self._dropped = {s: telemetry.counter(f"vigil_exporter_queue_dropped_{s.item_name}",
                                              "items dropped from a full persistent queue (when_full: "
                                              "drop_oldest)") for s in Signal}
        self._corrupted_segments = telemetry.counter(
            "vigil_exporter_queue_corrupted_segments", "damaged queue segments found and moved aside")
        self._corrupted_bytes = telemetry.counter(
            "vigil_exporter_queue_corrupted_bytes", "bytes of damaged queue records that could not be read",
            unit="By")
        self._truncated_bytes = telemetry.counter(
            "vigil_exporter_queue_truncated_bytes", "bytes of torn, unacknowledged appends cut off at start",
            unit="By")
        self._recovered = {s: telemetry.counter(f"vigil_exporter_queue_recovered_{s.item_name}",
                                                "items found in the persistent queue at start")
                           for s in Signal}

    # --- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"queue-{self._attrs['exporter']}")
        try:
            recovery = await self._run(self._store.open)
        except BaseException:
            self._executor.shutdown(wait=False)
            raise
        self._closed = False
        self._dispatching = True
        self._write_seq = self._store.write_seq
        in_new = [r for r in recovery.records if r.seq == self._write_seq]  # copied from damaged segments
        self._tail = (self._write_seq, in_new[-1].offset + in_new[-1].size if in_new else 0)
        for seq, size in recovery.segment_sizes.items():
            self._segments[seq] = _Segment(size=size)
            self.used_bytes += size
        for record in recovery.records:
            self._index.append(record)
            self._segments[record.seq].unread += 1
            self._recovered[record.signal].add(record.items, self._attrs)
        self._segments.setdefault(self._write_seq, _Segment())
        self._report(recovery)
        self._ticker = asyncio.create_task(self._tick(), name=f"{self._attrs['exporter']}-queue")

    def _report(self, recovery: queue_storage.Recovery) -> None:
        if recovery.records:
            items = sum(r.items for r in recovery.records)
            self._log.info("persistent queue %s: %d requests (%d items) from before the restart will be sent",
                           self.directory, len(recovery.records), items)
        if recovery.torn_bytes:
            self._truncated_bytes.add(recovery.torn_bytes, self._attrs)
            self._log.warning("persistent queue %s: cut off a torn write of %d bytes at the end (it was "
                              "never acknowledged)", self.directory, recovery.torn_bytes)
        for damaged in recovery.damaged:
            self._corrupted_segments.add(1, self._attrs)
            self._corrupted_bytes.add(damaged.damaged_bytes, self._attrs)
            where = f"moved to {damaged.moved_to}" if damaged.moved_to else "left in place"
            self._log.error("persistent queue %s: segment %s is damaged (%s): %d bytes lost, %d good requests "
                            "kept; %s", self.directory, damaged.name, damaged.problem, damaged.damaged_bytes,
                            damaged.records_kept, where)

    def stop_dispatch(self) -> None:
        """From now on `get` returns None: workers stop, and what is queued stays for the next start."""
        self._dispatching = False
        self._wake_getters()

    async def close(self) -> None:
        """Finish the writes under way, write down where to resume, release the directory."""
        if self._closed:
            return
        self._closed = True
        self.stop_dispatch()
        if self._writer is not None:
            await asyncio.shield(self._writer)
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        await asyncio.gather(*self._background, return_exceptions=True)
        try:
            await self._run(self._write_cursor, self._cursor(), True)
        finally:
            await self._run(self._store.close)
            self._executor.shutdown(wait=True)
        left = len(self._index) + len(self._in_flight)
        if left:
            self._log.info("persistent queue %s: %d requests stay queued for the next start", self.directory, left)

    # --- the queue ---------------------------------------------------------------------

    def size(self) -> int:
        """Requests waiting or being sent."""
        return len(self._index) + len(self._in_flight)

    async def put(self, batch: Batch) -> None:
        """Return once `batch` is stored; raise RefusedError (full, disk full) or InvalidDataError."""
        if self._closed:
            raise RefusedError("the persistent queue is closed")
        wire = batch.wire()
        size = queue_storage.record_size(len(wire))
        if size > self.capacity_bytes:
            raise InvalidDataError(f"a request of {size} bytes can never fit in the persistent queue "
                                   f"({self.capacity_bytes} bytes)")
        if self.used_bytes + size > self.capacity_bytes:
            if self._config.when_full == "drop_oldest":
                self._drop_oldest(size)
            if self.used_bytes + size > self.capacity_bytes:
                if not self._full_since_logged:
                    self._full_since_logged = True
                    self._log.warning("persistent queue %s is full (%d of %d bytes): refusing new data",
                                      self.directory, self.used_bytes, self.capacity_bytes)
                raise RefusedError(f"the persistent queue of exporter {self._attrs['exporter']} is full",
                                   retry_after=1.0)
        self.used_bytes += size  # reserved now, so concurrent puts see it
        future = asyncio.get_running_loop().create_future()
        self._writes.append(_Write(batch.signal, batch.items, wire, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop())
        # The writer indexes the record whether or not this caller is still waiting.
        await asyncio.shield(future)
        self._full_since_logged = False

    async def get(self) -> tuple[Record, Batch] | None:
        """The oldest record not handed out, read back from disk; None once the queue is closed."""
        while True:
            while not self._index:
                if not self._dispatching:
                    return None
                waiter = asyncio.get_running_loop().create_future()
                self._getters.append(waiter)
                try:
                    await waiter
                finally:
                    if waiter in self._getters:
                        self._getters.remove(waiter)
            if not self._dispatching:
                return None
            record = self._index.popleft()
            segment = self._segments[record.seq]
            segment.unread -= 1
            segment.in_flight += 1
            self._in_flight.add(record)
            try:
                wire = await self._run(self._store.read, record)
            except asyncio.CancelledError:
                self._in_flight.discard(record)
                segment.in_flight -= 1
                segment.unread += 1
                self._index.appendleft(record)
                raise
            except (CorruptRecordError, OSError) as exc:
                self._corrupted_bytes.add(record.size, self._attrs)
                self._log.error("persistent queue %s: skipped a request that cannot be read back: %s",
                                self.directory, exc)
                self.done(record)
                continue
            return record, Batch(record.signal, wire=wire, items=record.items)

    def done(self, record: Record) -> None:
        """`record` is sent (or dropped for good): it is not sent again after a restart."""
        self._in_flight.discard(record)
        segment = self._segments.get(record.seq)
        if segment is not None:
            segment.in_flight -= 1
            self._maybe_delete(record.seq)
        self._cursor_dirty = True

    # --- internals ------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        try:
            while self._writes:
                writes, self._writes = self._writes, []
                try:
                    results = await self._run(self._store.append, [(w.signal, w.items, w.wire) for w in writes],
                                              self._config.fsync == "always")
                except Exception as exc:  # noqa: BLE001 - a failed write must answer every waiter
                    results = [exc] * len(writes)
                for write, result in zip(writes, results):
                    reserved = queue_storage.record_size(len(write.wire))
                    if isinstance(result, Record):
                        self._stored(result)
                        if not write.future.done():
                            write.future.set_result(None)
                        continue
                    self.used_bytes -= reserved
                    reason = getattr(result, "strerror", None) or str(result)
                    if not write.future.done():
                        write.future.set_exception(RefusedError(
                            f"cannot store in the persistent queue of exporter {self._attrs['exporter']}: "
                            f"{reason}", retry_after=1.0))
                if any(not isinstance(r, Record) for r in results):
                    self._log.warning("persistent queue %s: %d requests refused: cannot write: %s", self.directory,
                                      sum(not isinstance(r, Record) for r in results),
                                      next(getattr(r, "strerror", None) or r for r in results
                                           if not isinstance(r, Record)))
        finally:
            self._writer = None

    def _stored(self, record: Record) -> None:
        if record.seq > self._write_seq:
            sealed = self._write_seq
            self._write_seq = record.seq
            self._maybe_delete(sealed)
        self._segments.setdefault(record.seq, _Segment()).size += record.size
        self._segments[record.seq].unread += 1
        self._index.append(record)
        self._tail = (record.seq, record.offset + record.size)
        self._wake_getters(1)

    def _wake_getters(self, count: int | None = None) -> None:
        while self._getters and (count is None or count > 0):
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if count is not None:
                    count -= 1

    def _drop_oldest(self, needed: int) -> None:
        """Drop the oldest records nobody is sending, a sealed segment at a time, until `needed` fits."""
        for seq in sorted(self._segments):
            if self.used_bytes + needed <= self.capacity_bytes or seq >= self._write_seq:
                return
            segment = self._segments[seq]
            while self._index and self._index[0].seq == seq:
                record = self._index.popleft()
                segment.unread -= 1
                self._dropped[record.signal].add(record.items, self._attrs)
                self._log.warning("persistent queue %s is full: dropped %d %s, the oldest queued",
                                  self.directory, record.items, record.signal.item_name)
            self._maybe_delete(seq)
            self._cursor_dirty = True

    def _maybe_delete(self, seq: int) -> None:
        segment = self._segments.get(seq)
        if (segment is None or seq >= self._write_seq or segment.unread or segment.in_flight
                or self._closed):
            return
        del self._segments[seq]
        self.used_bytes -= segment.size
        self._cursor_dirty = True
        self._background_run(self._store.delete, seq)

    def _cursor(self) -> tuple[int, int]:
        """The oldest position not yet done: sending resumes here after a restart."""
        candidates = [r.position for r in self._in_flight]
        if self._index:
            candidates.append(self._index[0].position)
        return min(candidates) if candidates else self._tail

    def _write_cursor(self, position: tuple[int, int], sync: bool = False) -> None:
        # Runs in the queue's thread; the position was taken on the loop just before.
        seq, offset = position
        try:
            self._store.write_cursor(seq, offset, sync)
        except OSError as exc:
            # Only a hint: without it, a restart re-sends more. A full disk must not stop sending.
            if not self._cursor_error_logged:
                self._cursor_error_logged = True
                self._log.warning("persistent queue %s: cannot write the resume position: %s", self.directory,
                                  exc.strerror or exc)

    async def _tick(self) -> None:
        """Write the resume position down now and then; fsync on the `interval` policy."""
        since_sync = 0.0
        while True:
            await asyncio.sleep(_CURSOR_INTERVAL)
            since_sync += _CURSOR_INTERVAL
            if self._cursor_dirty:
                self._cursor_dirty = False
                await self._run(self._write_cursor, self._cursor())
            if self._config.fsync == "interval" and since_sync >= self._config.fsync_interval:
                since_sync = 0.0
                try:
                    await self._run(self._store.sync)
                except OSError as exc:
                    self._log.warning("persistent queue %s: fsync failed: %s", self.directory, exc.strerror or exc)

    def _background_run(self, fn, *args: Any) -> None:
        future = asyncio.ensure_future(self._run(fn, *args))
        self._background.add(future)
        future.add_done_callback(self._background_done)

    def _background_done(self, future: asyncio.Future) -> None:
        self._background.discard(future)
        if not future.cancelled() and future.exception() is not None:
            self._log.warning("persistent queue %s: %s", self.directory, future.exception())

    def _run(self, fn, *args: Any) -> asyncio.Future:
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
