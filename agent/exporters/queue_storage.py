"""The on-disk format of the persistent sending queue: segment files of checksummed records.

    <dir>/lock                        flock'd while one Vigil owns the queue
    <dir>/cursor                      where sending resumes after a restart, and what was left to send
    <dir>/00000000000000000042.seg    a segment: records, appended; a new one at each start and when full
    <dir>/corrupted/                  segments with damaged records, moved aside at start

    segment: header | record | record | ...
    header:  b"VQSG" | u16 format version (2) | u16 0 | u32 crc32 of the 8 bytes before it
    record:  b"VQR1" | u32 payload length | u32 crc32(length, payload) | payload
    payload: u8 signal | u32 items | the OTLP export request's bytes

    cursor:  b"VQC2" | u32 body length | body | u32 crc32 of everything before it
    body:    u64 seq, u64 offset        the read position: every record from here on was never sent
             u32 n, n x in flight       handed to a sender, not yet done: u64 seq, u64 offset,
                                        u32 size, u8 signal, u32 items
             u32 m, m x unsent          per segment from the read position on: u64 seq, u64 start,
                                        u64 end, u32 records, u32 items of each signal (3)

A segment's header is written with its first record. The reader dispatches on
the format version: 1 is the headerless format of earlier Vigils (records from
byte 0), 2 is the header above and the same records. A segment whose header
checks out but names a version this reader does not know is left in place,
unread, and reported, never taken for damage. A cursor of format 1 (b"VQC1",
the read position alone) is read too.

Records are only ever appended, and a segment is deleted whole once every
record in it is done and a cursor that no longer needs it is written. Every
record before the read position is done unless the cursor lists it in flight,
so after a crash only what was in flight (and what was done in the last moment
before it) is sent again. A cursor that is torn or missing makes every record
be sent again (at-least-once), never skipped; one pointing past every segment
does not describe these files and is ignored the same way.

Recovery (`open`) reads each segment from the read position on and checks it
against what the cursor says was left to send there, so a loss is counted in
items: a record that does not check out, a segment cut short or missing. An
incomplete record at the very end of the newest segment, past what the cursor
knew of, is a torn write (the process died during an append, before it was
acknowledged): it is cut off. Any other bad record is damage: the segment's
good records are copied into the new segment, the segment is moved into
`corrupted/`, and the report says what was lost. Nothing here ever refuses to
start over bad data.

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
from agent.statefile import temporary_path, write_atomic

SEGMENT_MAGIC = b"VQSG"
SEGMENT_VERSION = 2
SEGMENT_HEADER = struct.Struct("<4sHHI")  # magic, version, 0, crc32 of the first 8 bytes
MAGIC = b"VQR1"
HEADER = struct.Struct("<4sII")  # magic, payload length, crc32
PREFIX = struct.Struct("<BI")  # signal code, items
OVERHEAD = HEADER.size + PREFIX.size
CURSOR_MAGIC = b"VQC2"
CURSOR_V1 = struct.Struct("<4sQQI")  # b"VQC1", segment, offset, crc32 of what comes before it
_CURSOR_HEAD = struct.Struct("<4sI")
_POSITION = struct.Struct("<QQ")
_COUNT = struct.Struct("<I")
_IN_FLIGHT = struct.Struct("<QQIBI")
_UNSENT = struct.Struct("<QQQIIII")
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


@dataclass(frozen=True, slots=True)
class Unsent:
    """What a segment held from `start` to `end` that was never handed out, when the cursor was written."""

    seq: int
    start: int
    end: int
    records: int
    items: dict[Signal, int]


@dataclass
class Cursor:
    read: tuple[int, int]
    in_flight: list[Record] = field(default_factory=list)
    unsent: list[Unsent] = field(default_factory=list)
    version: int = 2


@dataclass
class Loss:
    """Requests the queue had stored that recovery could not give back."""

    segment: str
    why: str
    records: int
    items: dict[Signal, int]
    exact: bool = True  # False: counted from the damaged records' own headers


@dataclass
class DamagedSegment:
    name: str
    damaged_bytes: int
    records_kept: int
    moved_to: str | None  # None: could not be moved (its good records are read where they are)
    problem: str = ""


@dataclass
class TornWrite:
    segment: str
    bytes: int
    items: dict[Signal, int]  # what the cut-off record's header says it held, where it got that far


@dataclass
class Recovery:
    """What `open` found: the records still to send, in order, and what was wrong."""

    records: list[Record] = field(default_factory=list)
    segment_sizes: dict[int, int] = field(default_factory=dict)
    torn: list[TornWrite] = field(default_factory=list)
    damaged: list[DamagedSegment] = field(default_factory=list)
    losses: list[Loss] = field(default_factory=list)
    # Segments of a format this reader does not know: (name, version), left in place.
    unknown_format: list[tuple[str, int]] = field(default_factory=list)
    cursor_problem: str = ""  # why the cursor was not used, when it was not

    @property
    def torn_bytes(self) -> int:
        return sum(t.bytes for t in self.torn)


def encode(signal: Signal, items: int, wire: bytes) -> bytes:
    payload = PREFIX.pack(_CODES[signal], items) + wire
    length = struct.pack("<I", len(payload))
    return MAGIC + length + struct.pack("<I", zlib.crc32(payload, zlib.crc32(length))) + payload


def record_size(wire_length: int) -> int:
    return OVERHEAD + wire_length


def segment_header(version: int = SEGMENT_VERSION) -> bytes:
    head = struct.pack("<4sHH", SEGMENT_MAGIC, version, 0)
    return head + struct.pack("<I", zlib.crc32(head))


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


def _incomplete(data: bytes, pos: int) -> bool:
    """Whether data[pos:] is the start of a record cut short by the end of the file (a torn append)."""
    rest = len(data) - pos
    if rest < HEADER.size:
        return MAGIC.startswith(bytes(data[pos:pos + 4]))
    magic, length, _ = HEADER.unpack_from(data, pos)
    return magic == MAGIC and length <= _MAX_PAYLOAD and pos + HEADER.size + length > len(data)


def _claimed_items(data: bytes, start: int, end: int) -> dict[Signal, int]:
    """What the record headers in a damaged range say they held (unchecked: the best count there is)."""
    items: dict[Signal, int] = {}
    pos = data.find(MAGIC, start, end)
    while pos != -1:
        if pos + OVERHEAD <= len(data):
            code, count = PREFIX.unpack_from(data, pos + HEADER.size)
            if code in _SIGNALS:
                items[_SIGNALS[code]] = items.get(_SIGNALS[code], 0) + count
        pos = data.find(MAGIC, pos + 4, end)
    return items


def _read_segment_header(data: bytes) -> tuple[int | None, int]:
    """(format version, where records start) of a segment's bytes; version None: the header is damaged."""
    if len(data) < SEGMENT_HEADER.size or data[:4] != SEGMENT_MAGIC:
        if not data or data[:4] == MAGIC or (len(data) < 4 and MAGIC.startswith(data)):
            return 1, 0  # headerless: format 1, or a new segment whose first write never happened
        if len(data) < SEGMENT_HEADER.size and SEGMENT_MAGIC.startswith(data[:4]):
            return SEGMENT_VERSION, len(data)  # a header cut short: nothing after it was acknowledged
        return None, 0
    magic, version, _, crc = SEGMENT_HEADER.unpack_from(data, 0)
    if zlib.crc32(data[:8]) != crc:
        return None, 0
    return version, SEGMENT_HEADER.size


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# --- the cursor ----------------------------------------------------------------------------------------


def encode_cursor(cursor: Cursor) -> bytes:
    body = [_POSITION.pack(*cursor.read), _COUNT.pack(len(cursor.in_flight))]
    body += [_IN_FLIGHT.pack(r.seq, r.offset, r.size, _CODES[r.signal], r.items) for r in cursor.in_flight]
    body.append(_COUNT.pack(len(cursor.unsent)))
    body += [_UNSENT.pack(u.seq, u.start, u.end, u.records, *(u.items.get(s, 0) for s in _CODES))
             for u in cursor.unsent]
    data = b"".join(body)
    data = _CURSOR_HEAD.pack(CURSOR_MAGIC, len(data)) + data
    return data + struct.pack("<I", zlib.crc32(data))


def decode_cursor(data: bytes) -> Cursor | None:
    """The cursor in `data`, of any format this reader knows; None when it is torn or damaged."""
    reader = _CURSOR_READERS.get(data[:4])
    if reader is None:
        return None
    try:
        return reader(data)
    except (struct.error, KeyError, ValueError):
        return None


def _cursor_v1(data: bytes) -> Cursor | None:
    if len(data) != CURSOR_V1.size or zlib.crc32(data[:-4]) != CURSOR_V1.unpack(data)[3]:
        return None
    _, seq, offset, _ = CURSOR_V1.unpack(data)
    return Cursor((seq, offset), version=1)


def _cursor_v2(data: bytes) -> Cursor | None:
    _, length = _CURSOR_HEAD.unpack_from(data, 0)
    end = _CURSOR_HEAD.size + length
    if len(data) != end + 4 or zlib.crc32(data[:end]) != struct.unpack_from("<I", data, end)[0]:
        return None
    pos = _CURSOR_HEAD.size
    read = _POSITION.unpack_from(data, pos)
    pos += _POSITION.size
    (n,) = _COUNT.unpack_from(data, pos)
    pos += _COUNT.size
    in_flight = []
    for _ in range(n):
        seq, offset, size, code, items = _IN_FLIGHT.unpack_from(data, pos)
        in_flight.append(Record(seq, offset, size, _SIGNALS[code], items))
        pos += _IN_FLIGHT.size
    (m,) = _COUNT.unpack_from(data, pos)
    pos += _COUNT.size
    unsent = []
    for _ in range(m):
        seq, start, stop, records, *counts = _UNSENT.unpack_from(data, pos)
        unsent.append(Unsent(seq, start, stop, records, dict(zip(_CODES, counts))))
        pos += _UNSENT.size
    return Cursor(read, in_flight, unsent)


_CURSOR_READERS = {b"VQC1": _cursor_v1, CURSOR_MAGIC: _cursor_v2}


class SegmentStore:
    """The queue's files: append, read back, remember where to resume, delete what is done."""

    def __init__(self, directory: Path, segment_bytes: int, durable: bool = True) -> None:
        """`durable` (fsync always or interval): a new segment's directory entry is fsynced, and so is
        a segment's tail when the next one starts, so the periodic fsync of the segment being
        written is all that is left to do."""
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self._durable = durable
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
        recovery = Recovery()
        cursor = self._read_cursor(recovery)
        temporary_path(self.directory / "cursor").unlink(missing_ok=True)
        seqs = sorted(int(p.name[:-len(SUFFIX)]) for p in self.directory.glob("*" + SUFFIX)
                      if p.name[:-len(SUFFIX)].isdigit())
        if cursor is not None and seqs and cursor.read[0] > seqs[-1]:
            # The segment being written is never deleted, so this cursor is not about these files.
            recovery.cursor_problem = (f"the resume position (segment {cursor.read[0]}) is past every segment "
                                       f"on disk")
            cursor = None
        # The new segment first: from here on there is always one at or past the read position.
        self._start_segment(max(seqs + ([cursor.read[0]] if cursor is not None else []), default=0) + 1)
        in_flight: dict[int, list[Record]] = {}
        unsent: dict[int, Unsent] = {}
        if cursor is not None:
            for record in cursor.in_flight:
                in_flight.setdefault(record.seq, []).append(record)
            unsent = {u.seq: u for u in cursor.unsent}
        salvage = []
        for seq in seqs:
            path = self._path(seq)
            with open(path, "rb") as f:
                version, _ = _read_segment_header(f.read(SEGMENT_HEADER.size))
            if version is not None and version not in _SEGMENT_READERS:
                recovery.unknown_format.append((path.name, version))  # whatever the cursor says of it
                continue
            if cursor is not None and seq < cursor.read[0] and seq not in in_flight:
                path.unlink(missing_ok=True)  # every record in it was done before the cursor was written
                continue
            data = path.read_bytes()
            version, records_start = _read_segment_header(data)
            if cursor is None or seq > cursor.read[0]:
                start = records_start
            elif seq == cursor.read[0]:
                start = max(records_start, min(cursor.read[1], len(data)))
            else:
                start = len(data)  # only its records in flight are left to send
            # A damaged header (version None): read it as the newest format, records from the first byte.
            good, damage = _SEGMENT_READERS[version or SEGMENT_VERSION](data, start)
            good, lost_in_flight = _with_in_flight(data, good, in_flight.get(seq, []))
            expected = unsent.pop(seq, None)
            known_end = expected.end if expected is not None else start
            if (damage and damage[-1][1] == len(data) and seq == seqs[-1] and damage[-1][0] >= known_end
                    and _incomplete(data, damage[-1][0])):
                # A torn append at the very end of the newest segment, after all the cursor knew of.
                cut = damage.pop()[0]
                recovery.torn.append(TornWrite(path.name, len(data) - cut, _claimed_items(data, cut, len(data))))
                with open(path, "r+b") as f:
                    f.truncate(cut)
                data = data[:cut]
            loss = _loss(path.name, data, good, damage, expected, lost_in_flight)
            if loss is not None:
                recovery.losses.append(loss)
            if damage:
                report = DamagedSegment(path.name, sum(b - a for a, b in damage), len(good), None,
                                        ", ".join(f"bytes {a}-{b}" for a, b in damage))
                recovery.damaged.append(report)
                salvage.append((seq, data, good, report))
                continue
            if not good:
                path.unlink(missing_ok=True)  # empty, or everything in it was sent
                continue
            recovery.segment_sizes[seq] = len(data)
            recovery.records += [Record(seq, pos - OVERHEAD, size, signal, items)
                                 for signal, items, pos, size in good]
        for expected in unsent.values():  # the cursor says these held unsent records: their files are gone
            recovery.losses.append(Loss(self._path(expected.seq).name, "the segment file is missing",
                                        expected.records, dict(expected.items)))
        for seq, data, good, report in salvage:
            recovery.records += self._salvage(seq, data, good, report, recovery)
        recovery.records.sort(key=lambda r: r.position)
        return recovery

    def _read_cursor(self, recovery: Recovery) -> Cursor | None:
        try:
            data = (self.directory / "cursor").read_bytes()
        except FileNotFoundError:
            return None
        cursor = decode_cursor(data)
        if cursor is None:
            recovery.cursor_problem = "the resume position cannot be read (torn or damaged)"
        return cursor

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
        for r in results:  # the copies' segments, header included
            recovery.segment_sizes[r.seq] = max(recovery.segment_sizes.get(r.seq, 0), r.offset + r.size)
        return list(results)

    def _truncate_written(self, results: list) -> None:
        # Records copied before the failure would be sent twice; drop them from the new segment.
        written = [r for r in results if isinstance(r, Record) and r.seq == self.write_seq]
        if written:
            self._write_size = written[0].offset if written[0].offset > SEGMENT_HEADER.size else 0
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
        records = 0  # in the buffer
        error: OSError | None = None

        def flush() -> OSError | None:
            nonlocal buffer, buffered, records
            if not buffer:
                return None
            before = self._write_size
            try:
                _write_all(self._write_fd, b"".join(buffer))
            except OSError as exc:
                self._cut_back(before)
                results[len(results) - records:] = [exc] * records
                buffer, buffered, records = [], 0, 0
                return exc
            self._write_size += buffered
            self._dirty = True
            buffer, buffered, records = [], 0, 0
            return None

        for signal, items, wire in entries:
            if error is not None:
                results.append(error)
                continue
            blob = encode(signal, items, wire)
            if (self._write_size + buffered > SEGMENT_HEADER.size
                    and self._write_size + buffered + len(blob) > self.segment_bytes):
                error = flush()
                if error is None:
                    try:
                        self._rotate(sync)
                    except OSError as exc:
                        error = exc
                if error is not None:
                    results.append(error)
                    continue
            if self._write_size + buffered == 0:
                buffer.append(segment_header())  # a segment's header goes out with its first record
                buffered += SEGMENT_HEADER.size
            results.append(Record(self.write_seq, self._write_size + buffered, len(blob), signal, items))
            buffer.append(blob)
            buffered += len(blob)
            records += 1
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

    def seal(self, sync: bool) -> int:
        """Go on in a new segment, so the one written so far can be deleted once it is done; its seq."""
        sealed = self.write_seq
        self._rotate(sync)
        return sealed

    def _rotate(self, sync: bool) -> None:
        if (sync or self._durable) and self._dirty:
            os.fsync(self._write_fd)
            self._dirty = False
        self._start_segment(self.write_seq + 1)

    def _start_segment(self, seq: int) -> None:
        # Empty until its first record: creating it needs no free space, only a directory entry.
        fd = os.open(self._path(seq), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        if self._write_fd is not None:
            os.close(self._write_fd)
        self._write_fd, self.write_seq, self._write_size = fd, seq, 0
        if self._durable:
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

    def write_cursor(self, cursor: Cursor, sync: bool = False) -> None:
        write_atomic(self.directory / "cursor", encode_cursor(cursor), durable=sync)

    def remove_cursor(self) -> None:
        """No cursor at all: a restart sends every record again, rather than trust an old one."""
        (self.directory / "cursor").unlink(missing_ok=True)

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


# Per segment format version: how to read its records from a position on. Versions 1 and 2 hold the
# same records; 2 has a header in front of them.
_SEGMENT_READERS = {1: _scan, 2: _scan}


def _with_in_flight(data: bytes, good: list[tuple[Signal, int, int, int]], in_flight: list[Record]):
    """`good` plus the records the cursor lists in flight that still check out; and those that do not."""
    found = {pos - OVERHEAD for _, _, pos, _ in good}
    lost = []
    extra = []
    for record in in_flight:
        if record.offset in found:
            continue
        parsed = _parse(memoryview(data)[:record.offset + record.size], record.offset)
        if parsed is None or parsed[3] != record.size:
            lost.append(record)
        else:
            extra.append(parsed)
    return sorted(extra + good, key=lambda g: g[2]), lost


def _loss(name: str, data: bytes, good: list[tuple[Signal, int, int, int]], damage: list[tuple[int, int]],
          expected: Unsent | None, lost_in_flight: list[Record]) -> Loss | None:
    """What this segment should have given back and did not: counted against the cursor where it
    knew the segment, else from the damaged records' headers."""
    items: dict[Signal, int] = {}
    records = 0
    exact = True
    for record in lost_in_flight:
        items[record.signal] = items.get(record.signal, 0) + record.items
        records += 1
    damage_after = damage
    if expected is not None:
        found = [(signal, count) for signal, count, pos, size in good
                 if expected.start <= pos - OVERHEAD and pos - OVERHEAD + size <= expected.end]
        records += max(0, expected.records - len(found))
        for signal in Signal:
            missing = expected.items.get(signal, 0) - sum(c for s, c in found if s is signal)
            if missing > 0:
                items[signal] = items.get(signal, 0) + missing
        damage_after = [(max(a, expected.end), b) for a, b in damage if b > expected.end]
    for a, b in damage_after:  # past what the cursor knew: the headers are all there is
        for signal, count in _claimed_items(data, a, b).items():
            items[signal] = items.get(signal, 0) + count
            exact = False
        records += data.count(MAGIC, a, b)
    if not records and not any(items.values()):
        return None
    if expected is not None and len(data) < expected.end:
        why = f"the file was cut short: it ends at byte {len(data)} of the {expected.end} written to it"
    elif damage:
        why = "damaged records"
    else:
        why = "the file holds fewer records than were written to it"
    return Loss(name, why, records, items, exact)


def _first_error(results: list) -> str:
    error = next(r for r in results if isinstance(r, OSError))
    return error.strerror or str(error)
