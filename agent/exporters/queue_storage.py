"""The persistent sending queue's files: append, read back, recover at start, delete what is done.

The layout of the files and the record format are in `queue_format`.

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
import time
from pathlib import Path

from agent.exporters.queue_format import (OVERHEAD, SEGMENT_HEADER, SEGMENT_READERS, SEGMENT_VERSION, SUFFIX,
                                          Cursor, Record, Unsent, claimed_items, decode_cursor, encode,
                                          encode_cursor, incomplete_record, parse_record, read_segment_header,
                                          segment_header)
from agent.exporters.queue_recovery import DamagedSegment, Loss, Recovery, TornWrite, segment_loss, with_in_flight
from agent.signals import Signal
from agent.statefile import temporary_path, write_atomic

# Queue directories this process holds, to tell "in use by this agent" from "by another process".
_HELD: set[Path] = set()


class QueueLockedError(OSError):
    """Another process holds the queue directory."""


class CorruptRecordError(Exception):
    """A record read back does not match its checksum (damage after start-up)."""


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
                version, _ = read_segment_header(f.read(SEGMENT_HEADER.size))
            if version is not None and version not in SEGMENT_READERS:
                recovery.unknown_format.append((path.name, version))  # whatever the cursor says of it
                continue
            if cursor is not None and seq < cursor.read[0] and seq not in in_flight:
                path.unlink(missing_ok=True)  # every record in it was done before the cursor was written
                continue
            data = path.read_bytes()
            version, records_start = read_segment_header(data)
            if cursor is None or seq > cursor.read[0]:
                start = records_start
            elif seq == cursor.read[0]:
                start = max(records_start, min(cursor.read[1], len(data)))
            else:
                start = len(data)  # only its records in flight are left to send
            # A damaged header (version None): read it as the newest format, records from the first byte.
            good, damage = SEGMENT_READERS[version or SEGMENT_VERSION](data, start)
            good, lost_in_flight = with_in_flight(data, good, in_flight.get(seq, []))
            expected = unsent.pop(seq, None)
            known_end = expected.end if expected is not None else start
            if (damage and damage[-1][1] == len(data) and seq == seqs[-1] and damage[-1][0] >= known_end
                    and incomplete_record(data, damage[-1][0])):
                # A torn append at the very end of the newest segment, after all the cursor knew of.
                cut = damage.pop()[0]
                recovery.torn.append(TornWrite(path.name, len(data) - cut, claimed_items(data, cut, len(data))))
                with open(path, "r+b") as f:
                    f.truncate(cut)
                data = data[:cut]
            loss = segment_loss(path.name, data, good, damage, expected, lost_in_flight)
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
        parsed = parse_record(data, 0)
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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _first_error(results: list) -> str:
    error = next(r for r in results if isinstance(r, OSError))
    return error.strerror or str(error)
