"""The persistent sending queue: an exporter's requests in a write-ahead log on disk.

`put` returns once the request is in a segment file (and, with `fsync: always`,
on the disk itself), so what a receiver acknowledges survives a `kill -9`, a
power cut or a backend outage for as long as the queue has room. Workers `get`
records in order and call `done` once a record is sent or dropped for good; a
record never done (shut down mid-retry, or killed) is sent again after the next
start. Delivery is therefore at-least-once: a restart repeats what was in
flight, and what was done in the moment before the last cursor write, never
more: the cursor keeps the records in flight by position (as the Collector's
persistent queue keeps its dispatched items), so one record stuck in retry
does not hold everything after it back.

    put ─▶ group commit (one write, one fsync for every request waiting) ─▶ segment files
    get ◀─ index of records not yet handed out (positions only; the bytes stay on disk)

The queue is bounded by bytes on disk. When it is full it refuses (retryable,
so the senders keep the data) or drops the oldest records not being sent,
as configured; both are counted. A full disk is a refusal too; once everything
in the segment being written is sent, that segment is sealed and deleted, so
a disk with less than one segment free recovers without a restart.

File I/O runs in one thread of the queue's own, in order; the event loop only
keeps the index and the accounting.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from agent.configmodel import Duration, StrictModel
from agent.errors import InvalidDataError, RefusedError
from agent.exporters.log_summary import LogSummary
from agent.exporters.queue_format import SEGMENT_HEADER, Cursor, Record, Unsent, record_size
from agent.exporters.queue_recovery import Recovery
from agent.exporters.queue_storage import CorruptRecordError, SegmentStore
from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry

_MIB = 1024 * 1024
# How often the resume position is written down; a crash re-sends at most this much extra.
_CURSOR_INTERVAL = 0.2


class StorageConfig(StrictModel):
    """`sending_queue.storage`: keep the queue on disk, under `service.state_dir` by default."""

    # Default: <service.state_dir>/queues/<exporter id>.
    directory: str | None = None
    # A file_storage extension's id: the queue lives in exporter_<exporter id> under its directory.
    # `storage: file_storage/NAME` (the Collector's form) means this.
    extension: str | None = None
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

    @model_validator(mode="after")
    def _one_place(self) -> StorageConfig:
        if self.extension is not None:
            type_, slash, name = self.extension.partition("/")
            if not type_ or (slash and not name):
                raise ValueError(f"invalid extension id {self.extension!r}: expected 'type' or 'type/name'")
            if self.directory is not None and "directory" in self.model_fields_set:
                raise ValueError("set directory or extension, not both")
        return self


@dataclass
class _Segment:
    size: int = 0
    unread: int = 0
    in_flight: int = 0
    unread_items: dict[Signal, int] = field(default_factory=dict)

    def add_unread(self, record: Record, count: int = 1) -> None:
        self.unread += count
        self.unread_items[record.signal] = self.unread_items.get(record.signal, 0) + count * record.items


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
        self._store = SegmentStore(directory, segment, durable=config.fsync != "never")
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
        self._cursor_dirty = False
        self._ticker: asyncio.Task | None = None
        self._closed = True
        self._dispatching = False
        self._full_since_logged = False
        self._cursor_error_logged = False
        self._write_failed = False  # the last append failed (a full disk): seal a segment once it is sent
        self._finished: list[int] = []  # sealed segments all done: deleted once a cursor without them is written
        self._checkpoint: asyncio.Task | None = None
        self._refused_log = LogSummary(log, logging.WARNING)
        self._dropped_log = LogSummary(log, logging.WARNING)
        self._dropped = {s: telemetry.counter(f"vigil_exporter_queue_dropped_{s.item_name}",
                                              "items dropped from a full persistent queue (when_full: "
                                              "drop_oldest)") for s in Signal}
        self._lost = {s: telemetry.counter(f"vigil_exporter_queue_lost_{s.item_name}",
                                           "items the persistent queue had stored that could not be read back "
                                           "at start (damaged, cut short or missing files)") for s in Signal}
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
            self._segments[record.seq].add_unread(record)
            self._recovered[record.signal].add(record.items, self._attrs)
        self._segments.setdefault(self._write_seq, _Segment())
        self._report(recovery)
        self._ticker = asyncio.create_task(self._tick(), name=f"{self._attrs['exporter']}-queue")

    def _report(self, recovery: Recovery) -> None:
        where = f"persistent queue {self.directory}"
        if recovery.cursor_problem:
            self._log.warning("%s: %s: every request in it is sent again", where, recovery.cursor_problem)
        if recovery.records:
            items = sum(r.items for r in recovery.records)
            self._log.info("%s: %d requests (%d items) from before the restart will be sent", where,
                           len(recovery.records), items)
        for torn in recovery.torn:
            self._truncated_bytes.add(torn.bytes, self._attrs)
            acknowledged = ("it was never acknowledged" if self._config.fsync == "always" else
                            f"never acknowledged if the process died; after a power cut with fsync: "
                            f"{self._config.fsync} it may have been")
            self._log.warning("%s: cut off a torn write at the end of %s: %d bytes%s (%s)", where, torn.segment,
                              torn.bytes, _items_text(torn.items, " holding "), acknowledged)
        for damaged in recovery.damaged:
            self._corrupted_segments.add(1, self._attrs)
            self._corrupted_bytes.add(damaged.damaged_bytes, self._attrs)
            moved = f"moved to {damaged.moved_to}" if damaged.moved_to else "left in place"
            self._log.error("%s: segment %s is damaged (%s): %d bytes unreadable, %d good requests kept; %s",
                            where, damaged.name, damaged.problem, damaged.damaged_bytes, damaged.records_kept, moved)
        for loss in recovery.losses:
            for signal, count in loss.items.items():
                if count:
                    self._lost[signal].add(count, self._attrs)
            counted = "" if loss.exact else " (as the damaged records' own headers count them)"
            self._log.error("%s: lost %d stored request%s (%s)%s in %s: %s", where, loss.records,
                            "" if loss.records == 1 else "s",
                            _items_text(loss.items) or "items unknown: no record header survived", counted,
                            loss.segment, loss.why)
        for name, version in recovery.unknown_format:
            self._log.error("%s: segment %s is in format version %d, which this Vigil cannot read: left in "
                            "place, not sent (a Vigil that reads it sends it)", where, name, version)

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
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        self._refused_log.flush()
        self._dropped_log.flush()
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
        size = record_size(len(wire))
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
            segment.add_unread(record, -1)
            segment.in_flight += 1
            self._in_flight.add(record)
            self._cursor_dirty = True
            try:
                wire = await self._run(self._store.read, record)
            except asyncio.CancelledError:
                self._in_flight.discard(record)
                segment.in_flight -= 1
                segment.add_unread(record)
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
                if self._write_failed and self._all_sent(self._write_seq):
                    await self._seal()
                try:
                    results = await self._run(self._store.append, [(w.signal, w.items, w.wire) for w in writes],
                                              self._config.fsync == "always")
                except Exception as exc:  # noqa: BLE001 - a failed write must answer every waiter
                    results = [exc] * len(writes)
                for write, result in zip(writes, results):
                    reserved = record_size(len(write.wire))
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
                self._write_failed = any(not isinstance(r, Record) for r in results)
                if self._write_failed:
                    self._refused_log("persistent queue %s: %d requests refused: cannot write: %s", self.directory,
                                      sum(not isinstance(r, Record) for r in results),
                                      next(getattr(r, "strerror", None) or r for r in results
                                           if not isinstance(r, Record)))
        finally:
            self._writer = None

    def _all_sent(self, seq: int) -> bool:
        segment = self._segments.get(seq)
        return segment is not None and segment.size > 0 and not segment.unread and not segment.in_flight

    async def _seal(self) -> None:
        """Go on in a new segment, and delete the one written so far (all of it sent): on a disk
        with less room than one segment, the space it holds is the only space there is."""
        try:
            sealed = await self._run(self._store.seal, self._config.fsync == "always")
        except OSError as exc:
            self._refused_log("persistent queue %s: cannot start a new segment: %s", self.directory,
                              exc.strerror or exc)
            return
        self._write_seq = self._store.write_seq
        self._segments.setdefault(self._write_seq, _Segment())
        self._maybe_delete(sealed)
        if self._checkpoint is not None:
            await asyncio.shield(self._checkpoint)  # the space is back before this round's writes

    def _stored(self, record: Record) -> None:
        if record.seq > self._write_seq:
            sealed = self._write_seq
            self._write_seq = record.seq
            self._maybe_delete(sealed)
        segment = self._segments.setdefault(record.seq, _Segment())
        if not segment.size:
            segment.size = SEGMENT_HEADER.size  # written with its first record
            self.used_bytes += segment.size
        segment.size += record.size
        segment.add_unread(record)
        self._index.append(record)
        self._tail = (record.seq, record.offset + record.size)
        self._cursor_dirty = True  # the cursor counts what each segment holds: a loss is told in items
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
            dropped: dict[Signal, int] = {}
            while self._index and self._index[0].seq == seq:
                record = self._index.popleft()
                segment.add_unread(record, -1)
                self._dropped[record.signal].add(record.items, self._attrs)
                dropped[record.signal] = dropped.get(record.signal, 0) + record.items
            if dropped:
                self._dropped_log("persistent queue %s is full: dropped the oldest queued: %s", self.directory,
                                  _items_text(dropped), items={s.item_name: n for s, n in dropped.items()})
            self._maybe_delete(seq)
            self._cursor_dirty = True

    def _maybe_delete(self, seq: int) -> None:
        segment = self._segments.get(seq)
        if (segment is None or seq >= self._write_seq or segment.unread or segment.in_flight
                or self._closed):
            return
        del self._segments[seq]
        self.used_bytes -= segment.size
        self._finished.append(seq)
        self._cursor_dirty = True
        if self._checkpoint is None:
            self._checkpoint = asyncio.create_task(self._delete_finished())

    async def _delete_finished(self) -> None:
        """Write a cursor that no longer names the finished segments, then delete them: a crash in
        between leaves segments the cursor says are done, never a cursor naming deleted ones."""
        try:
            while self._finished:
                finished, self._finished = self._finished, []
                self._cursor_dirty = False
                await self._run(self._write_cursor, self._cursor(), self._config.fsync == "always")
                for seq in finished:
                    await self._run(self._store.delete, seq)
        except Exception as exc:  # noqa: BLE001 - a failed delete is retried at the next start
            self._log.warning("persistent queue %s: cannot delete a sent segment: %s", self.directory, exc)
        finally:
            self._checkpoint = None

    def _cursor(self) -> Cursor:
        """Where sending resumes after a restart: the oldest record never handed out (everything before
        it is done unless listed in flight), and what each segment from there on still holds."""
        read = self._index[0].position if self._index else self._tail
        unsent = []
        for seq in sorted(self._segments):
            segment = self._segments[seq]
            if seq < read[0] or not segment.unread:
                continue
            start = read[1] if seq == read[0] else 0
            unsent.append(Unsent(seq, start, segment.size, segment.unread, dict(segment.unread_items)))
        return Cursor(read, sorted(self._in_flight, key=lambda r: r.position), unsent)

    def _write_cursor(self, cursor: Cursor, sync: bool = False) -> None:
        # Runs in the queue's thread; the cursor was taken on the loop just before.
        try:
            self._store.write_cursor(cursor, sync)
        except OSError as exc:
            # No room for the new one (a full disk): no cursor rather than a stale one that names
            # segments about to be deleted. A restart then sends everything left again.
            try:
                self._store.remove_cursor()
            except OSError:
                pass
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

    def _run(self, fn, *args: Any) -> asyncio.Future:
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def _items_text(items: dict[Signal, int], prefix: str = "") -> str:
    """"120 spans, 4 log records": what a dict of item counts holds, for a log line."""
    text = ", ".join(f"{count} {signal.item_name.replace('_', ' ')}" for signal, count in items.items() if count)
    return prefix + text if text else ""
