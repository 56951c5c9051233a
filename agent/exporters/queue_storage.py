"""The on-disk format of the persistent sending queue: segment files of checksummed records.

    <dir>/lock                        flock'd while one Vigil owns the queue
    <dir>/cursor                      where sending resumes after a restart
    <dir>/00000000000000000042.seg    records, appended; a new segment at each start and when full
    <dir>/corrupted/                  segments with damaged records, moved aside at start

    record:  b"VQR1" | u32 payload length | u32 crc32(length, payload) | payload
    payload: u8 signal | u32 items | the OTLP export request's bytes

Records are only ever appended, and a segment is deleted whole once every record
in it is sent. The cursor is a hint that may lag: everything before it is done,
so a cursor that is stale, torn or missing only makes records be sent again
(at-least-once), never skipped.

Recovery (`open`) reads each segment from the cursor on. A record that does not
check out at the very end of the newest segment is a torn write (the process or
the machine died during an append): it was never acknowledged, and it is cut
off. A bad record anywhere else is damage: the segment's good records are
copied into the new segment, the segment is moved into `corrupted/`, and the
report says what was lost. Nothing here ever refuses to start over bad data.

Everything in this module is blocking file I/O; the queue runs it in one worker
thread, so calls never overlap.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from agent.signals import Signal

MAGIC = b"VQR1"
HEADER = struct.Struct("<4sII")  # magic, payload length, crc32
PREFIX = struct.Struct("<BI")  # signal code, items
OVERHEAD = HEADER.size + PREFIX.size
CURSOR = struct.Struct("<4sQQI")  # magic, segment, offset, crc32 of what comes before it
CURSOR_MAGIC = b"VQC1"
SUFFIX = ".seg"

_CODES = {Signal.TRACES: 1, Signal.METRICS: 2, Signal.LOGS: 3}
_SIGNALS = {code: signal for signal, code in _CODES.items()}
# Anything longer cannot be a record we wrote (a request is capped far below this by the receivers).
_MAX_PAYLOAD = 1 << 30
# Queue directories this process holds, to tell "in use by this agent" from "by another process".
_HELD: set[Path] = set()


class QueueLockedError(OSError):
    """Another process holds the queue directory."""


class CorruptRecordError(Exception):
    """A record read back does not match its checksum (damage after start-up)."""


@dataclass(frozen=True, slots=True)
class Record:
    """Where one queued request lives, and what it holds."""

    seq: int
    offset: int
    size: int  # on disk: header and payload
    signal: Signal
    items: int

    @property
    def position(self) -> tuple[int, int]:
        return (self.seq, self.offset)


@dataclass
class DamagedSegment:
    name: str
    damaged_bytes: int
    records_kept: int
    moved_to: str | None  # None: could not be moved (its good records are read where they are)
    problem: str = ""


@dataclass
class Recovery:
    """What `open` found: the records still to send, in order, and what was wrong."""

    records: list[Record] = field(default_factory=list)
    segment_sizes: dict[int, int] = field(default_factory=dict)
    torn_bytes: int = 0
    damaged: list[DamagedSegment] = field(default_factory=list)


def encode(signal: Signal, items: int, wire: bytes) -> bytes:
    payload = PREFIX.pack(_CODES[signal], items) + wire
    length = struct.pack("<I", len(payload))
    return MAGIC + length + struct.pack("<I", zlib.crc32(payload, zlib.crc32(length))) + payload


def record_size(wire_length: int) -> int:
    return OVERHEAD + wire_length


def _parse(data: bytes | memoryview, pos: int) -> tuple[Signal, int, int, int] | None:
    """(signal, items, payload start, record size) of a good record at `pos`, else None."""
    end = len(data)
    if end - pos < HEADER.size:
        return None
    magic, length, crc = HEADER.unpack_from(data, pos)
    if magic != MAGIC or length < PREFIX.size or length > _MAX_PAYLOAD or pos + HEADER.size + length > end:
        return None
    start = pos + HEADER.size
    payload = data[start:start + length]
    if zlib.crc32(payload, zlib.crc32(data[pos + 4:pos + 8])) != crc:
        return None
    code, items = PREFIX.unpack_from(payload, 0)
    signal = _SIGNALS.get(code)
    if signal is None:
        return None
    return signal, items, start + PREFIX.size, HEADER.size + length


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class SegmentStore:
    """The queue's files: append, read back, remember where to resume, delete what is done."""

    def __init__(self, directory: Path, segment_bytes: int, sync_directory: bool = True) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self._sync_directory = sync_directory
        self._lock_fd: int | None = None
        self._write_fd: int | None = None
        self.write_seq = 0
        self._write_size = 0
        self._read_fds: dict[int, int] = {}
        self._dirty = False  # written since the last fsync

    # --- start-up ------------------------------------------------------------------

    def open(self) -> Recovery:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            return self._recover()
        except BaseException:
            self.close()
            raise

    def _lock(self) -> None:
        if self.directory.resolve() in _HELD:
            raise QueueLockedError(errno.EBUSY, f"queue directory {self.directory} is in use by this agent (a "
                                                f"reload cannot yet replace an exporter that has a persistent "
                                                f"queue: restart Vigil to apply the change)")
        fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise QueueLockedError(exc.errno, f"queue directory {self.directory} is in use by "
                                                  f"another process") from None
            raise
        self._lock_fd = fd
        _HELD.add(self.directory.resolve())

    def _recover(self) -> Recovery:
        cursor = self.read_cursor()
        (self.directory / "cursor.tmp").unlink(missing_ok=True)
        seqs = sorted(int(p.name[:-len(SUFFIX)]) for p in self.directory.glob("*" + SUFFIX)
                      if p.name[:-len(SUFFIX)].isdigit())
        recovery = Recovery()
        salvage: list[tuple[int, bytes, list[tuple[Signal, int, int, int]], DamagedSegment]] = []
        for seq in seqs:
            path = self._path(seq)
            if cursor is not None and seq < cursor[0]:
                path.unlink(missing_ok=True)  # sent before the cursor was written
                continue
            data = path.read_bytes()
            start = min(cursor[1], len(data)) if cursor is not None and seq == cursor[0] else 0
            good, damage = _scan(data, start)
            size = len(data)
            if len(damage) == 1 and damage[0][1] == size and seq == seqs[-1]:
                # A torn append at the very end of the newest segment: never acknowledged, cut it off.
                size = damage[0][0]
                with open(path, "r+b") as f:
                    f.truncate(size)
                recovery.torn_bytes += len(data) - size
                damage = []
            if damage:
                lost = sum(b - a for a, b in damage)
                report = DamagedSegment(path.name, lost, len(good), None,
                                        ", ".join(f"bytes {a}-{b}" for a, b in damage))
                recovery.damaged.append(report)
                salvage.append((seq, data, good, report))
                continue
            if not good:
                path.unlink(missing_ok=True)  # empty, or everything in it was sent
                continue
            recovery.segment_sizes[seq] = size
            recovery.records += [Record(seq, pos - OVERHEAD, size, signal, items)
                                 for signal, items, pos, size in good]
        last = max(seqs + ([cursor[0]] if cursor is not None else []), default=0)
        self._start_segment(last + 1)
        for seq, data, good, report in salvage:
            recovery.records += self._salvage(seq, data, good, report, recovery)
        recovery.records.sort(key=lambda r: r.position)
        return recovery

    def _salvage(self, seq: int, data: bytes, good: list[tuple[Signal, int, int, int]],
                 report: DamagedSegment, recovery: Recovery) -> list[Record]:
        """Copy a damaged segment's good records into the new segment, then move it aside."""
        entries = [(signal, items, data[pos:pos - OVERHEAD + size]) for signal, items, pos, size in good]
        results = self.append(entries, sync=True) if entries else []
        if any(isinstance(r, OSError) for r in results):
            # No room to copy them (a full disk): read them where they are; the segment stays.
            self._truncate_written(results)
            recovery.segment_sizes[seq] = len(data)
            report.problem += f"; could not copy its good records ({_first_error(results)}), so it stays"
            return [Record(seq, pos - OVERHEAD, size, signal, items) for signal, items, pos, size in good]
        aside = self.directory / "corrupted"
        aside.mkdir(exist_ok=True)
        target = aside / f"{self._path(seq).name}.{time.strftime('%Y%m%dT%H%M%S')}"
        os.replace(self._path(seq), target)
        report.moved_to = str(target)
        for r in results:
            recovery.segment_sizes[r.seq] = recovery.segment_sizes.get(r.seq, 0) + r.size
        return list(results)

    def _truncate_written(self, results: list) -> None:
        # Records copied before the failure would be sent twice; drop them from the new segment.
        written = [r for r in results if isinstance(r, Record) and r.seq == self.write_seq]
        if written:
            self._write_size = written[0].offset
            os.ftruncate(self._write_fd, self._write_size)

    # --- appending -----------------------------------------------------------------

    def append(self, entries: list[tuple[Signal, int, bytes]], sync: bool) -> list[Record | OSError]:
        """Append one record per (signal, items, wire); with `sync`, fsync before returning.

        Each entry's result is its `Record`, or the OSError that kept it off disk (a full disk);
        a failed write is cut back off, so the segment holds only whole records.
        """
        results: list[Record | OSError] = []
        buffer: list[bytes] = []
        buffered = 0
        error: OSError | None = None

        def flush() -> OSError | None:
            nonlocal buffer, buffered
            if not buffer:
                return None
            before = self._write_size
            try:
                _write_all(self._write_fd, b"".join(buffer))
            except OSError as exc:
                self._cut_back(before)
                count = len(buffer)
                results[-count:] = [exc] * count
                buffer, buffered = [], 0
                return exc
            self._write_size += buffered
            self._dirty = True
            buffer, buffered = [], 0
            return None

        for signal, items, wire in entries:
            if error is not None:
                results.append(error)
                continue
            blob = encode(signal, items, wire)
            if self._write_size + buffered and self._write_size + buffered + len(blob) > self.segment_bytes:
                error = flush()
                if error is None:
                    try:
                        self._rotate(sync)
                    except OSError as exc:
                        error = exc
                if error is not None:
                    results.append(error)
                    continue
            results.append(Record(self.write_seq, self._write_size + buffered, len(blob), signal, items))
            buffer.append(blob)
            buffered += len(blob)
        if error is None:
            error = flush()
        if sync and any(isinstance(r, Record) for r in results):
            self.sync()
        return results

    def _cut_back(self, size: int) -> None:
        try:
            os.ftruncate(self._write_fd, size)
        except OSError:
            # Cannot cut the partial record off: leave it behind in a sealed segment (recovery will
            # report it as damage there) and go on in a fresh one.
            self._write_size = size
            try:
                self._rotate(sync=False)
            except OSError:
                pass

    def _rotate(self, sync: bool) -> None:
        if sync and self._dirty:
            os.fsync(self._write_fd)
            self._dirty = False
        self._start_segment(self.write_seq + 1)

    def _start_segment(self, seq: int) -> None:
        fd = os.open(self._path(seq), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        if self._write_fd is not None:
            os.close(self._write_fd)
        self._write_fd, self.write_seq, self._write_size = fd, seq, 0
        if self._sync_directory:
            self._fsync_directory()  # so the new file is still there after a power cut

    def sync(self) -> None:
        if self._write_fd is not None and self._dirty:
            os.fsync(self._write_fd)
            self._dirty = False

    # --- reading back ----------------------------------------------------------------

    def read(self, record: Record) -> bytes:
        """The request bytes of `record`, checked against its checksum."""
        fd = self._read_fds.get(record.seq)
        if fd is None:
            if len(self._read_fds) >= 8:
                os.close(self._read_fds.pop(next(iter(self._read_fds))))
            fd = self._read_fds[record.seq] = os.open(self._path(record.seq), os.O_RDONLY)
        data = os.pread(fd, record.size, record.offset)
        parsed = _parse(data, 0)
        if parsed is None or parsed[3] != record.size:
            raise CorruptRecordError(f"record at {self._path(record.seq).name}:{record.offset} "
                                     f"no longer matches its checksum")
        return data[parsed[2]:]

    # --- what is done ------------------------------------------------------------------

    def read_cursor(self) -> tuple[int, int] | None:
        try:
            data = (self.directory / "cursor").read_bytes()
        except FileNotFoundError:
            return None
        if len(data) != CURSOR.size:
            return None
        magic, seq, offset, crc = CURSOR.unpack(data)
        if magic != CURSOR_MAGIC or zlib.crc32(data[:-4]) != crc:
            return None  # torn or damaged: start from the oldest segment (re-sends, never skips)
        return seq, offset

    def write_cursor(self, seq: int, offset: int, sync: bool = False) -> None:
        body = struct.pack("<4sQQ", CURSOR_MAGIC, seq, offset)
        tmp = self.directory / "cursor.tmp"
        with open(tmp, "wb") as f:
            f.write(body + struct.pack("<I", zlib.crc32(body)))
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self.directory / "cursor")

    def delete(self, seq: int) -> None:
        fd = self._read_fds.pop(seq, None)
        if fd is not None:
            os.close(fd)
        self._path(seq).unlink(missing_ok=True)

    def close(self) -> None:
        for fd in self._read_fds.values():
            os.close(fd)
        self._read_fds.clear()
        if self._write_fd is not None:
            try:
                self.sync()
            finally:
                os.close(self._write_fd)
                self._write_fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
            _HELD.discard(self.directory.resolve())

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:020d}{SUFFIX}"

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _scan(data: bytes, start: int) -> tuple[list[tuple[Signal, int, int, int]], list[tuple[int, int]]]:
    """The good records from `start` on, as (signal, items, wire start, size), and the damaged ranges.

    After a bad record, scanning resumes at the next offset where a whole record checks out, so
    one damaged record costs only itself.
    """
    good: list[tuple[Signal, int, int, int]] = []
    damage: list[tuple[int, int]] = []
    view = memoryview(data)
    pos = start
    while pos < len(data):
        parsed = _parse(view, pos)
        if parsed is not None:
            good.append(parsed)
            pos += parsed[3]
            continue
        resume = data.find(MAGIC, pos + 1)
        while resume != -1 and _parse(view, resume) is None:
            resume = data.find(MAGIC, resume + 1)
        end = len(data) if resume == -1 else resume
        damage.append((pos, end))
        pos = end
    return good, damage


def _first_error(results: list) -> str:
    error = next(r for r in results if isinstance(r, OSError))
    return error.strerror or str(error)
