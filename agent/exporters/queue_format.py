"""The bytes of the persistent sending queue: segment files of checksummed records, and the cursor.

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

Everything here is pure: bytes in, records and cursors out. `queue_storage`
does the file I/O and recovery with it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from agent.signals import Signal

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


def encode(signal: Signal, items: int, wire: bytes) -> bytes:
    payload = PREFIX.pack(_CODES[signal], items) + wire
    length = struct.pack("<I", len(payload))
    return MAGIC + length + struct.pack("<I", zlib.crc32(payload, zlib.crc32(length))) + payload


def record_size(wire_length: int) -> int:
    return OVERHEAD + wire_length


def segment_header(version: int = SEGMENT_VERSION) -> bytes:
    head = struct.pack("<4sHH", SEGMENT_MAGIC, version, 0)
    return head + struct.pack("<I", zlib.crc32(head))


def parse_record(data: bytes | memoryview, pos: int) -> tuple[Signal, int, int, int] | None:
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


def incomplete_record(data: bytes, pos: int) -> bool:
    """Whether data[pos:] is the start of a record cut short by the end of the file (a torn append)."""
    rest = len(data) - pos
    if rest < HEADER.size:
        return MAGIC.startswith(bytes(data[pos:pos + 4]))
    magic, length, _ = HEADER.unpack_from(data, pos)
    return magic == MAGIC and length <= _MAX_PAYLOAD and pos + HEADER.size + length > len(data)


def claimed_items(data: bytes, start: int, end: int) -> dict[Signal, int]:
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


def read_segment_header(data: bytes) -> tuple[int | None, int]:
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


def scan_records(data: bytes, start: int) -> tuple[list[tuple[Signal, int, int, int]], list[tuple[int, int]]]:
    """The good records from `start` on, as (signal, items, wire start, size), and the damaged ranges.

    After a bad record, scanning resumes at the next offset where a whole record checks out, so
    one damaged record costs only itself.
    """
    good: list[tuple[Signal, int, int, int]] = []
    damage: list[tuple[int, int]] = []
    view = memoryview(data)
    pos = start
    while pos < len(data):
        parsed = parse_record(view, pos)
        if parsed is not None:
            good.append(parsed)
            pos += parsed[3]
            continue
        resume = data.find(MAGIC, pos + 1)
        while resume != -1 and parse_record(view, resume) is None:
            resume = data.find(MAGIC, resume + 1)
        end = len(data) if resume == -1 else resume
        damage.append((pos, end))
        pos = end
    return good, damage


# Per segment format version: how to read its records from a position on. Versions 1 and 2 hold the
# same records; 2 has a header in front of them.
SEGMENT_READERS = {1: scan_records, 2: scan_records}


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
