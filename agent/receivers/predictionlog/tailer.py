"""Following the files of a prediction log as log shippers do: rotation, truncation, positions (blocking).

Files are known by device and inode, so a file renamed by rotation is read
to its end (from the descriptor already open, even once it no longer matches
`include` or was deleted) while the new file at the path is read from its
start; a file that shrinks, or whose first bytes change (copytruncate), is
read again from the start. A read only moves a file's position once the
pipelines took its lines (`commit`); a line longer than `max_line_size` is
skipped to its end.
"""

from __future__ import annotations

import glob
import os
import stat
import time
from collections import Counter
from dataclasses import dataclass
from fnmatch import fnmatch
from typing import Any, BinaryIO

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from agent.receivers.predictionlog.config import PredictionLogReceiverConfig
from agent.receivers.predictionlog.mapper import LogRecords, RecordMapper

_READ_SIZE = 1024 * 1024  # bytes read at once, at least (one line longer than max_line_size)
FINGERPRINT_SIZE = 1000  # bytes at a file's start that tell a rewritten file from the one we read
_TAIL_PROBE = 64 * 1024  # how far back from the end to look for a line start with start_at: end


@dataclass
class TrackedFile:
    key: tuple[int, int]  # (device, inode)
    path: str
    handle: BinaryIO
    offset: int  # everything before it was accepted by the pipelines
    fingerprint: bytes
    skipping: bool = False  # inside a line longer than max_line_size: drop up to the next newline
    gone: bool = False  # rotated away or deleted: read what is left, then let go

    def state(self) -> dict[str, Any]:
        return {"dev": self.key[0], "ino": self.key[1], "path": self.path, "offset": self.offset,
                "fingerprint": self.fingerprint.hex(), "skipping": self.skipping}


@dataclass
class Progress:
    """What one read would move a file to, applied once the pipelines took its lines."""

    file: TrackedFile
    offset: int
    skipping: bool
    done: bool  # a gone file read to its end: close it


@dataclass
class Poll:
    """What one poll read: the request of its records, and how far each file would move once they are taken."""

    request: ExportLogsServiceRequest | None
    records: int
    progress: list[Progress]
    malformed: Counter  # lines skipped, by reason
    more: bool = False  # some file has more to read right away
    truncated: int = 0
    rotated: int = 0


class Tailer:
    """The files matched by the include patterns and how far each was read (blocking; one thread)."""

    def __init__(self, config: PredictionLogReceiverConfig, checkpoint: list[dict[str, Any]] | None,
                 logger: Any) -> None:
        self._config = config
        self._mapper = RecordMapper(config)
        self._files: dict[tuple[int, int], TrackedFile] = {}
        self._saved = {(int(e["dev"]), int(e["ino"])): e for e in (checkpoint or [])}
        # Only the very first run of this receiver skips to the end of what is already there.
        self._first_scan = checkpoint is None
        self._chunk = max(_READ_SIZE, config.max_line_size + 1)
        self._log = logger

    @property
    def files(self) -> list[TrackedFile]:
        return list(self._files.values())

    def positions(self) -> list[dict[str, Any]]:
        return [f.state() for f in self._files.values()]

    def close(self) -> None:
        for f in self._files.values():
            f.handle.close()
        self._files.clear()

    # The poll: find files, then read each from its position.

    def poll(self) -> Poll:
        truncated, rotated = self._scan()
        records = LogRecords(self._config, self._mapper)
        result = Poll(None, 0, [], records.malformed, truncated=truncated, rotated=rotated)
        for f in list(self._files.values()):
            self._read(f, records, result)
        result.records = len(records)
        if result.records:
            result.request = records.request
        return result

    def commit(self, progress: list[Progress]) -> None:
        for p in progress:
            p.file.offset, p.file.skipping = p.offset, p.skipping
            if p.done:
                p.file.handle.close()
                self._files.pop(p.file.key, None)

    def _scan(self) -> tuple[int, int]:
        matched: dict[tuple[int, int], tuple[str, os.stat_result]] = {}
        for pattern in self._config.include:
            for path in sorted(glob.glob(pattern, recursive=True)):
                if any(fnmatch(path, ex) for ex in self._config.exclude):
                    continue
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    matched.setdefault((st.st_dev, st.st_ino), (path, st))
        rotated = truncated = 0
        for key, f in self._files.items():
            if key not in matched and not f.gone:
                f.gone = True  # renamed out of the patterns or deleted; its descriptor still reads
                rotated += 1
        for key, (path, st) in matched.items():
            f = self._files.get(key)
            if f is not None:
                f.path, f.gone = path, False
                if st.st_size < f.offset or not self._same_start(f):
                    # Truncated in place (copytruncate) or rewritten: what is there now is new.
                    self._log.info("%s was truncated or rewritten; reading it from the start", path)
                    f.offset, f.skipping, f.fingerprint = 0, False, self._head(f.handle)
                    truncated += 1
                continue
            try:
                handle = open(path, "rb")
            except OSError as exc:
                self._log.warning("cannot open %s: %s", path, exc)
                continue
            fingerprint = self._head(handle)
            offset, skipping = 0, False
            saved = self._saved.pop(key, None)
            if saved is not None and _same_prefix(bytes.fromhex(saved.get("fingerprint", "")), fingerprint):
                offset, skipping = int(saved["offset"]), bool(saved.get("skipping", False))
                if offset > st.st_size:  # shrank while the agent was away
                    offset, skipping = 0, False
            elif self._first_scan and self._config.start_at == "end":
                offset, skipping = _line_start_before(handle, st.st_size)
            self._files[key] = TrackedFile(key, path, handle, offset, fingerprint, skipping)
        self._first_scan = False
        return truncated, rotated

    def _head(self, handle: BinaryIO) -> bytes:
        return os.pread(handle.fileno(), FINGERPRINT_SIZE, 0)

    def _same_start(self, f: TrackedFile) -> bool:
        head = self._head(f.handle)
        if not _same_prefix(f.fingerprint, head):
            return False
        if len(head) > len(f.fingerprint):
            f.fingerprint = head
        return True

    def _read(self, f: TrackedFile, records: LogRecords, result: Poll) -> None:
        data = os.pread(f.handle.fileno(), self._chunk, f.offset)
        at_end = len(data) < self._chunk
        if not data:
            if f.gone:
                result.progress.append(Progress(f, f.offset, f.skipping, done=True))
            return
        max_line = self._config.max_line_size
        skipping = f.skipping
        pos = 0
        observed = time.time_ns()
        name = os.path.basename(f.path)
        while True:
            newline = data.find(b"\n", pos)
            if newline < 0:
                break
            line, pos = data[pos:newline], newline + 1
            if skipping:  # the tail of an over-long line
                skipping = False
                continue
            records.add(line, f.path, name, observed)
        rest = len(data) - pos
        if rest and not skipping and rest > max_line:
            records.malformed["too_long"] += 1
            skipping, pos = True, len(data)
        elif rest and skipping:
            pos = len(data)
        elif rest and f.gone and at_end:
            # A rotated file will not grow: its last line, even without a newline, is complete.
            records.add(data[pos:], f.path, name, observed)
            pos = len(data)
        done = f.gone and at_end and pos == len(data)
        result.progress.append(Progress(f, f.offset + pos, skipping, done))
        if not at_end:
            result.more = True


def _same_prefix(a: bytes, b: bytes) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _line_start_before(handle: BinaryIO, size: int) -> tuple[int, bool]:
    """The offset just after the last complete line (a line still being written is read once done)."""
    if size == 0:
        return 0, False
    start = max(0, size - _TAIL_PROBE)
    tail = os.pread(handle.fileno(), size - start, start)
    newline = tail.rfind(b"\n")
    if newline >= 0:
        return start + newline + 1, False
    if start == 0:
        return 0, False  # one unfinished line: it is read once it is complete
    return size, True  # inside a very long line: skip the rest of it
