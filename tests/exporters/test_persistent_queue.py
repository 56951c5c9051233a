"""The persistent sending queue: restarts, kill -9, torn and damaged files, a full queue, a full disk.

The queue is driven directly (put/get/done) and through `QueuedExporter` against a
real gRPC backend. Crashes are real: a child process appends and is SIGKILLed.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import grpc
import pytest

from agent.component import ComponentId, Kind, Settings
from agent.config import ConfigError, from_dict
from agent.errors import InvalidDataError, RefusedError
from agent.exporters import queue_format, queue_storage
from agent.exporters.helper import QueueConfig, QueuedExporter, RetryConfig
from agent.exporters.otlp import OtlpExporterConfig, OtlpGrpcSender
from agent.exporters.queue_persistent import PersistentQueue, StorageConfig
from agent.exporters.queue_storage import QueueLockedError
from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry
from tests.conftest import async_wait_for
from tests.exporters.backends import GrpcReply, grpc_backend
from tests.otlp_data import item_names, traces

REPO = Path(__file__).resolve().parents[2]


def make_queue(directory: Path, telemetry: SelfTelemetry | None = None, **config) -> PersistentQueue:
    config.setdefault("segment_size_mib", 0.01)  # ~10 KB segments: several per test
    return PersistentQueue(StorageConfig(**config), directory, telemetry or SelfTelemetry(),
                           {"exporter": "otlp"}, logging.getLogger("vigil.exporters.otlp"))


def spans(count: int, start: int) -> Batch:
    return Batch(Signal.TRACES, traces(count, start=start))


async def drain(queue: PersistentQueue, limit: int | None = None) -> list[str]:
    """Names of the spans in the next `limit` records (all queued, if None), each marked done."""
    names: list[str] = []
    taken = 0
    while queue.size() and (limit is None or taken < limit):
        record, batch = await asyncio.wait_for(queue.get(), 5)
        names += item_names(Signal.TRACES, batch.message)
        queue.done(record)
        taken += 1
    return names


def names(count: int, start: int = 0) -> list[str]:
    return [f"span-{k}" for k in range(start, start + count)]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


async def test_what_is_not_done_is_sent_after_a_restart_in_order(tmp_path):
    queue = make_queue(tmp_path)
    await queue.open()
    for i in range(40):
        await queue.put(spans(5, 5 * i))
    assert len(segments(tmp_path)) > 2  # rolled over to new segments
    assert await drain(queue, limit=15) == names(75)
    await queue.close()

    telemetry = SelfTelemetry()
    queue = make_queue(tmp_path, telemetry)
    await queue.open()
    assert queue.size() == 25
    assert telemetry.total("vigil_exporter_queue_recovered_spans") == 125
    assert await drain(queue) == names(125, start=75)
    await queue.close()
    await asyncio.sleep(0)
    # Every segment that was fully sent is gone; only the newest (empty) ones remain.
    assert sum(p.stat().st_size for p in segments(tmp_path)) == 0


async def test_records_being_sent_at_shutdown_are_sent_again_and_only_those(tmp_path):
    queue = make_queue(tmp_path)
    await queue.open()
    for i in range(4):
        await queue.put(spans(2, 2 * i))
    first, _ = await queue.get()  # handed out, never done
    second, _ = await queue.get()
    queue.done(second)  # done out of order: `first` is in flight, `second` is not sent again
    await queue.close()

    queue = make_queue(tmp_path)
    await queue.open()
    assert await drain(queue) == names(2) + names(4, start=4)
    await queue.close()


async def test_the_directory_is_locked_while_open(tmp_path):
    queue = make_queue(tmp_path)
    await queue.open()
    with pytest.raises(QueueLockedError, match="in use by this agent"):
        await make_queue(tmp_path).open()
    await queue.close()
    again = make_queue(tmp_path)
    await again.open()  # released on close (and by the kernel on kill -9)
    await again.close()


async def test_a_torn_tail_is_cut_off_and_reported(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vigil")
    queue = make_queue(tmp_path)
    await queue.open()
    for i in range(3):
        await queue.put(spans(2, 2 * i))
    await queue.close()
    newest = segments(tmp_path)[-1]
    whole = newest.stat().st_size
    # Half of a record, as a process killed during a write leaves it.
    partial = queue_format.encode(Signal.TRACES, 2, traces(2, start=6).SerializeToString())
    with open(newest, "ab") as f:
        f.write(partial[: len(partial) // 2])

    telemetry = SelfTelemetry()
    queue = make_queue(tmp_path, telemetry)
    await queue.open()
    assert newest.stat().st_size == whole
    assert telemetry.total("vigil_exporter_queue_truncated_bytes") == len(partial) // 2
    assert telemetry.total("vigil_exporter_queue_corrupted_segments") == 0
    assert "torn write" in caplog.text
    assert await drain(queue) == names(6)
    await queue.close()


@pytest.mark.parametrize("damage", ["flip a byte", "zero a block", "garbage length"])
async def test_a_damaged_segment_is_moved_aside_and_its_good_records_kept(tmp_path, caplog, damage):
    caplog.set_level(logging.INFO, logger="vigil")
    queue = make_queue(tmp_path, segment_size_mib=1)
    await queue.open()
    for i in range(5):
        await queue.put(spans(2, 2 * i))
    await queue.close()
    seg = segments(tmp_path)[0]
    data = bytearray(seg.read_bytes())
    header = queue_format.SEGMENT_HEADER.size
    size = (len(data) - header) // 5  # every record is the same size here
    third = header + 2 * size  # damage the third record only
    if damage == "flip a byte":
        data[third + size // 2] ^= 0xFF
    elif damage == "zero a block":
        data[third: third + 40] = bytes(40)
    else:
        data[third + 4: third + 8] = (10 ** 9).to_bytes(4, "little")
    seg.write_bytes(bytes(data))

    telemetry = SelfTelemetry()
    queue = make_queue(tmp_path, telemetry, segment_size_mib=1)
    await queue.open()  # does not refuse to start
    moved = list((tmp_path / "corrupted").iterdir())
    assert len(moved) == 1 and moved[0].name.startswith(seg.name)
    assert not seg.exists()
    assert telemetry.total("vigil_exporter_queue_corrupted_segments") == 1
    assert telemetry.total("vigil_exporter_queue_corrupted_bytes") == size
    assert telemetry.total("vigil_exporter_queue_lost_spans") == 2  # counted in items, not only bytes
    assert "is damaged" in caplog.text and "moved to" in caplog.text
    assert "lost 1 stored request (2 spans)" in caplog.text
    # The records before and after the damage are kept; only the third is lost.
    assert await drain(queue) == names(4) + names(4, start=6)
    await queue.close()

    queue = make_queue(tmp_path, telemetry, segment_size_mib=1)
    await queue.open()  # the copies were marked done: nothing comes twice, nothing is damaged now
    assert queue.size() == 0
    assert telemetry.total("vigil_exporter_queue_corrupted_segments") == 1
    await queue.close()


async def test_a_damaged_or_missing_cursor_resends_rather_than_skips(tmp_path):
    queue = make_queue(tmp_path, segment_size_mib=1)
    await queue.open()
    for i in range(4):
        await queue.put(spans(1, i))
    await drain(queue, limit=2)
    await queue.close()
    cursor = tmp_path / "cursor"
    cursor.write_bytes(cursor.read_bytes()[:-1] + b"\x00")  # checksum no longer matches

    queue = make_queue(tmp_path, segment_size_mib=1)
    await queue.open()
    assert await drain(queue) == names(4)  # from the oldest record on
    await queue.close()


async def test_a_full_queue_refuses_with_a_retryable_error(tmp_path):
    queue = make_queue(tmp_path, max_size_mib=0.02, segment_size_mib=0.005)
    await queue.open()
    stored = 0
    with pytest.raises(RefusedError, match="is full") as refused:
        for i in range(1000):
            await queue.put(spans(5, 5 * i))
            stored += 1
    assert refused.value.retry_after
    assert queue.used_bytes <= queue.capacity_bytes
    assert await drain(queue, limit=stored // 2) == names(5 * (stored // 2))
    await queue.put(spans(5, 10_000))  # room again once records are sent
    await queue.close()


async def test_drop_oldest_makes_room_and_counts_what_it_dropped(tmp_path):
    telemetry = SelfTelemetry()
    queue = make_queue(tmp_path, telemetry, max_size_mib=0.02, segment_size_mib=0.005, when_full="drop_oldest")
    await queue.open()
    for i in range(200):
        await queue.put(spans(5, 5 * i))  # never refused
    assert queue.used_bytes <= queue.capacity_bytes
    dropped = telemetry.total("vigil_exporter_queue_dropped_spans")
    left = await drain(queue)
    assert dropped > 0 and dropped + len(left) == 1000
    assert left == names(len(left), start=1000 - len(left))  # the newest are kept, in order
    await queue.close()


async def test_a_request_larger_than_the_queue_is_refused_for_good(tmp_path):
    queue = make_queue(tmp_path, max_size_mib=0.01, segment_size_mib=0.005)
    await queue.open()
    with pytest.raises(InvalidDataError, match="can never fit"):
        await queue.put(Batch(Signal.TRACES, traces(1, payload="x" * 20_000)))
    await queue.close()


async def test_a_full_disk_refuses_and_recovers_when_space_returns(tmp_path, monkeypatch):
    queue = make_queue(tmp_path)
    await queue.open()
    await queue.put(spans(2, 0))
    real_write = os.write
    disk_full = True

    def write(fd, data):
        if disk_full:
            # As a full disk does: part of the data goes, then ENOSPC.
            real_write(fd, bytes(data)[:7])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(queue_storage.os, "write", write)
    with pytest.raises(RefusedError, match="No space left on device"):
        await queue.put(spans(2, 2))
    disk_full = False
    await queue.put(spans(2, 4))
    assert await drain(queue) == names(2) + names(2, start=4)
    await queue.close()
    # No partial record was left behind for the next start to trip over.
    telemetry = SelfTelemetry()
    queue = make_queue(tmp_path, telemetry)
    await queue.open()
    assert telemetry.total("vigil_exporter_queue_truncated_bytes") == 0
    assert telemetry.total("vigil_exporter_queue_corrupted_segments") == 0
    await queue.close()


@pytest.mark.parametrize("fsync", ["always", "interval", "never"])
async def test_every_fsync_policy_keeps_what_was_written(tmp_path, fsync):
    queue = make_queue(tmp_path, fsync=fsync, fsync_interval="50ms")
    await queue.open()
    await asyncio.gather(*(queue.put(spans(1, i)) for i in range(30)))  # one group commit
    await asyncio.sleep(0.1)
    await queue.close()
    queue = make_queue(tmp_path, fsync=fsync)
    await queue.open()
    assert sorted(await drain(queue)) == sorted(names(30))
    await queue.close()


def crashed_copy(directory: Path, into: Path) -> Path:
    """The queue's files as a kill -9 would leave them now (the page cache survives it): a copy taken
    while the queue runs, opened by a new queue as the next start would."""
    shutil.copytree(directory, into, ignore=shutil.ignore_patterns("lock"))
    return into


async def test_a_record_stuck_in_retry_does_not_hold_back_the_restart_position(tmp_path):
    """Issue 15, defect 8: one record in retry pinned the cursor, so a crash re-sent everything after it."""
    queue = make_queue(tmp_path / "q")
    await queue.open()
    for i in range(200):
        await queue.put(spans(1, i))
    stuck, _ = await queue.get()  # handed out, never done: its backend call keeps failing
    assert len(await drain(queue, limit=199)) == 199
    await asyncio.sleep(0.6)  # the resume position is written down a few times a second
    copy = crashed_copy(tmp_path / "q", tmp_path / "crashed")
    await queue.close()

    telemetry = SelfTelemetry()
    again = make_queue(copy, telemetry)
    await again.open()
    assert await drain(again) == ["span-0"]  # only what was in flight comes again (before: all 200)
    assert telemetry.total("vigil_exporter_queue_recovered_spans") == 1
    await again.close()


def small_disk(monkeypatch, directory: Path, free: int) -> dict:
    """os.write as a disk with `free` bytes for the queue's segments does it: what fits, then ENOSPC."""
    real_write = os.write
    disk = {"free": free}

    def write(fd, data):
        if not os.readlink(f"/proc/self/fd/{fd}").endswith(".seg"):
            return real_write(fd, data)
        used = sum(p.stat().st_size for p in directory.glob("*.seg"))
        room = disk["free"] - used
        if room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, bytes(data)[:room])

    monkeypatch.setattr(queue_storage.os, "write", write)
    return disk


async def test_a_disk_with_less_than_one_segment_free_recovers_once_the_queue_drains(tmp_path, monkeypatch):
    """Issue 15, defect 6: the segment being written held the disk's only free space until a restart."""
    segment = 64 * 1024
    small_disk(monkeypatch, tmp_path, free=segment * 6 // 10)
    queue = make_queue(tmp_path, segment_size_mib=segment / (1 << 20), max_size_mib=64)
    await queue.open()
    stored = 0
    with pytest.raises(RefusedError, match="No space left on device"):
        for i in range(1000):
            await queue.put(Batch(Signal.TRACES, traces(5, start=5 * i, payload="p" * 200)))
            stored += 1
    assert stored > 5
    assert len(await drain(queue)) == 5 * stored  # the backend takes everything: the queue is empty
    # The sent segment goes, and with it the space: a sender's next retry gets in.
    assert await async_wait_for_put(queue, spans(1, 100_000), timeout=5)
    assert await drain(queue) == ["span-100000"]
    await queue.close()


async def async_wait_for_put(queue: PersistentQueue, batch: Batch, timeout: float) -> bool:
    """Retry `put` as a sender retries a refusal, until it is stored or `timeout` passes."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await queue.put(batch)
            return True
        except RefusedError:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.05)


# --- what recovery finds, and what it says ------------------------------------------------


async def stored(directory: Path, count: int, per_record: int = 100, **config) -> None:
    queue = make_queue(directory, **config)
    await queue.open()
    for i in range(count):
        await queue.put(spans(per_record, per_record * i))
    await queue.close()


async def reopened(directory: Path, **config) -> tuple[PersistentQueue, SelfTelemetry]:
    telemetry = SelfTelemetry()
    queue = make_queue(directory, telemetry, **config)
    await queue.open()
    return queue, telemetry


def error_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("cursor", ["written at shutdown", "lost in the crash"])
async def test_damage_in_the_last_acknowledged_record_is_a_loss_not_a_torn_write(tmp_path, caplog, cursor):
    """Issue 15, defect 9: a damaged last record was called a torn write and its 100 spans not counted."""
    caplog.set_level(logging.INFO, logger="vigil")
    await stored(tmp_path, 3, segment_size_mib=1)
    if cursor == "lost in the crash":
        (tmp_path / "cursor").unlink()
    seg = segments(tmp_path)[0]
    data = bytearray(seg.read_bytes())
    data[-50] ^= 0xFF  # inside the last record's spans: its length and header are intact
    seg.write_bytes(bytes(data))
    queue, telemetry = await reopened(tmp_path, segment_size_mib=1)
    assert await drain(queue) == names(200)
    await queue.close()
    lines = error_lines(caplog)
    assert not any("torn" in line for line in lines), lines
    assert telemetry.total("vigil_exporter_queue_lost_spans") == 100
    assert telemetry.total("vigil_exporter_queue_truncated_bytes") == 0
    assert any("lost 1 stored request (100 spans)" in line for line in lines), lines


async def test_a_cursor_pointing_past_every_segment_is_ignored_and_everything_sent(tmp_path, caplog):
    """Issue 15, defect 9: such a cursor deleted the whole queue without a word."""
    caplog.set_level(logging.INFO, logger="vigil")
    await stored(tmp_path, 20, per_record=10)
    (tmp_path / "cursor").write_bytes(queue_format.encode_cursor(queue_format.Cursor((1000, 0))))
    queue, telemetry = await reopened(tmp_path)
    assert sorted(await drain(queue)) == sorted(names(200))
    await queue.close()
    assert any("past every segment on disk: every request in it is sent again" in line
               for line in error_lines(caplog)), error_lines(caplog)


async def test_a_segment_cut_short_counts_the_items_it_lost(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vigil")
    await stored(tmp_path, 10, per_record=10, segment_size_mib=1)
    seg = segments(tmp_path)[0]
    whole = seg.stat().st_size
    record = (whole - queue_format.SEGMENT_HEADER.size) // 10
    with open(seg, "r+b") as f:
        f.truncate(whole // 2)  # in the middle of the sixth record (of ten)
    queue, telemetry = await reopened(tmp_path, segment_size_mib=1)
    kept = await drain(queue)
    await queue.close()
    assert kept == names(10 * ((whole // 2 - queue_format.SEGMENT_HEADER.size) // record))
    assert telemetry.total("vigil_exporter_queue_lost_spans") == 100 - len(kept)
    assert any(f"({100 - len(kept)} spans)" in line and seg.name in line for line in error_lines(caplog))
    assert not any("torn" in line for line in error_lines(caplog))


async def test_a_missing_segment_counts_the_items_it_held(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vigil")
    await stored(tmp_path, 30, per_record=10)
    files = [p for p in segments(tmp_path) if p.stat().st_size]
    assert len(files) >= 3
    victim = files[1]
    queue, _ = await reopened(tmp_path)  # how many spans the victim holds, as a queue reads it
    in_victim = sum(r.items for r in queue._index if r.seq == int(victim.name[:-4]))
    await queue.close()
    victim.unlink()
    queue, telemetry = await reopened(tmp_path)
    left = await drain(queue)
    await queue.close()
    assert len(left) == 300 - in_victim
    assert telemetry.total("vigil_exporter_queue_lost_spans") == in_victim
    assert any(f"({in_victim} spans) in {victim.name}: the segment file is missing" in line
               for line in error_lines(caplog)), error_lines(caplog)


# --- the format version -------------------------------------------------------------------


async def test_segments_and_cursor_of_the_earlier_format_are_read_after_an_upgrade(tmp_path):
    """Format 1: no segment header, a cursor holding the read position only."""
    records = [queue_format.encode(Signal.TRACES, 2, traces(2, start=2 * i).SerializeToString()) for i in range(6)]
    (tmp_path / f"{7:020d}.seg").write_bytes(b"".join(records))
    body = struct.pack("<4sQQ", b"VQC1", 7, len(records[0]) * 2)  # the first two were sent
    (tmp_path / "cursor").write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    queue, telemetry = await reopened(tmp_path)
    assert await drain(queue) == names(8, start=4)
    await queue.close()
    assert telemetry.total("vigil_exporter_queue_lost_spans") == 0
    # What it writes from now on is the current format.
    assert all(p.read_bytes()[:4] == queue_format.SEGMENT_MAGIC for p in segments(tmp_path) if p.stat().st_size)


async def test_a_segment_in_an_unknown_format_version_is_left_in_place_and_reported(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vigil")
    future = tmp_path / f"{3:020d}.seg"
    future.write_bytes(queue_format.segment_header(version=9) + b"whatever version 9 holds")
    for _ in range(2):  # not taken for damage, not deleted, at every start
        queue, telemetry = await reopened(tmp_path)
        assert queue.size() == 0
        await queue.put(spans(1, 0))
        assert await drain(queue) == ["span-0"]
        await queue.close()
        assert future.read_bytes().startswith(queue_format.segment_header(version=9))
        assert telemetry.total("vigil_exporter_queue_corrupted_segments") == 0
    assert not (tmp_path / "corrupted").exists()
    assert any("is in format version 9, which this Vigil cannot read: left in place" in line
               for line in error_lines(caplog))


async def test_a_damaged_segment_header_still_gives_back_every_record(tmp_path):
    await stored(tmp_path, 4, per_record=2, segment_size_mib=1)
    seg = segments(tmp_path)[0]
    data = bytearray(seg.read_bytes())
    data[5] ^= 0x01  # the version number: its checksum no longer matches
    seg.write_bytes(bytes(data))
    (tmp_path / "cursor").unlink()
    queue, telemetry = await reopened(tmp_path, segment_size_mib=1)
    assert await drain(queue) == names(8)
    await queue.close()
    assert telemetry.total("vigil_exporter_queue_corrupted_bytes") == queue_format.SEGMENT_HEADER.size
    assert telemetry.total("vigil_exporter_queue_lost_spans") == 0


# --- kill -9 --------------------------------------------------------------------------

_WRITER = textwrap.dedent("""
    import asyncio, logging, sys
    from pathlib import Path
    from agent.exporters.queue_persistent import PersistentQueue, StorageConfig
    from agent.signals import Batch, Signal
    from agent.telemetry import SelfTelemetry
    from tests.otlp_data import traces

    async def main():
        queue = PersistentQueue(StorageConfig(segment_size_mib=0.05, fsync=sys.argv[2]), Path(sys.argv[1]),
                                SelfTelemetry(), {"exporter": "otlp"}, logging.getLogger("q"))
        await queue.open()
        k = 0
        while True:
            # Several puts at once, as concurrent requests would: one group commit.
            await asyncio.gather(*(queue.put(Batch(Signal.TRACES, traces(3, start=k + 3 * i))) for i in range(4)))
            k += 12
            sys.stdout.write(f"{k}\\n")  # acknowledged up to k
            sys.stdout.flush()

    asyncio.run(main())
""")


@pytest.mark.parametrize("fsync", ["always", "never"])
async def test_kill_9_loses_nothing_that_was_acknowledged(tmp_path, fsync):
    directory = tmp_path / "queue"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(directory), fsync], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        acknowledged = 0
        for line in proc.stdout:
            acknowledged = int(line)
            if acknowledged >= 1200:
                break
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: the writer is appending as fast as it can
    finally:
        proc.kill()
        proc.wait(10)
    queue = make_queue(directory)
    await queue.open()
    got = await drain(queue)
    await queue.close()
    assert len(got) == len(set(got))
    assert set(names(acknowledged)) <= set(got)  # everything acknowledged, maybe a little more


# --- through the exporter helper, against a real backend -----------------------------------


def exporter(backend_endpoint: str, directory: Path, telemetry: SelfTelemetry) -> QueuedExporter:
    config = OtlpExporterConfig(endpoint=f"http://{backend_endpoint}", compression="none", timeout="1s")
    retry = RetryConfig(initial_interval="20ms", max_interval="50ms", max_elapsed_time="100ms")
    queue = QueueConfig(num_consumers=2, storage={"directory": str(directory)})
    settings = Settings(ComponentId("otlp"), telemetry)
    return QueuedExporter(OtlpGrpcSender(config, settings), settings, timeout=1.0, retry=retry, queue=queue)


def delivered(backend) -> list[str]:
    return sorted(n for c in backend.ok_calls() for n in item_names(Signal.TRACES, c.message))


async def test_an_outage_longer_than_max_elapsed_time_loses_nothing_and_shutdown_is_quick(tmp_path):
    telemetry = SelfTelemetry()
    async with grpc_backend() as backend:
        backend.default = GrpcReply(code=grpc.StatusCode.UNAVAILABLE, message="down for maintenance")
        component = exporter(backend.endpoint, tmp_path / "q", telemetry)
        await component.start()
        for i in range(10):
            await component.consume(spans(3, 3 * i))
        await asyncio.sleep(0.5)  # five times max_elapsed_time
        assert telemetry.total("vigil_exporter_send_failed_spans") == 0
        started = asyncio.get_running_loop().time()
        await component.shutdown()  # does not wait for the backend
        assert asyncio.get_running_loop().time() - started < 2

        backend.default = GrpcReply()
        component = exporter(backend.endpoint, tmp_path / "q", telemetry)
        await component.start()
        assert await async_wait_for(lambda: len(set(delivered(backend))) == 30, timeout=10)
        await component.shutdown()
    assert set(delivered(backend)) == set(names(30))


async def test_a_permanent_failure_is_dropped_not_retried_forever(tmp_path):
    telemetry = SelfTelemetry()
    async with grpc_backend() as backend:
        backend.script = [GrpcReply(code=grpc.StatusCode.INVALID_ARGUMENT, message="bad")]
        component = exporter(backend.endpoint, tmp_path / "q", telemetry)
        await component.start()
        await component.consume(spans(3, 0))
        await component.consume(spans(3, 3))
        assert await async_wait_for(lambda: backend.ok_calls(), timeout=5)
        await component.shutdown()
    assert telemetry.total("vigil_exporter_send_failed_spans") == 3
    queue = make_queue(tmp_path / "q")
    await queue.open()
    assert queue.size() == 0  # the dropped one is not resurrected by a restart
    await queue.close()


def test_storage_config():
    def doc(queue):
        return {"receivers": {"otlp": {"protocols": {"grpc": None}}},
                "exporters": {"otlp": {"endpoint": "backend:4317", "sending_queue": queue}},
                "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp"]}}}}

    config = from_dict(doc({"storage": None}))  # `storage:` alone: on, with its defaults
    storage = config.component(Kind.EXPORTER, ComponentId("otlp")).config.sending_queue.storage
    assert storage == StorageConfig()
    assert (storage.fsync, storage.when_full, storage.max_size_mib) == ("always", "refuse", 256)
    with pytest.raises(ConfigError) as info:
        from_dict(doc({"enabled": False, "storage": {}}))
    assert info.value.problems == ["exporters.otlp.sending_queue: storage needs the sending queue: "
                                   "remove enabled: false, or storage"]
    with pytest.raises(ConfigError) as info:
        from_dict(doc({"storage": {"fsync": "sometimes", "when_full": "panic"}}))
    assert any("sending_queue.storage.fsync" in p for p in info.value.problems)
    assert any("sending_queue.storage.when_full" in p for p in info.value.problems)


async def test_a_real_full_disk(tmp_path):
    """A 1 MiB tmpfs: ENOSPC refuses (retryable); freeing space lets data in again. Needs mount rights."""
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        queue = make_queue(mount / "q", max_size_mib=64, segment_size_mib=0.25)
        await queue.open()
        accepted = 0
        with pytest.raises(RefusedError, match="No space left on device"):
            for i in range(10_000):
                await queue.put(Batch(Signal.TRACES, traces(5, start=5 * i, payload="p" * 200)))
                accepted += 1
        assert accepted > 10
        sent = await drain(queue, limit=accepted // 2)  # sent segments are deleted: space returns
        await asyncio.sleep(0.1)
        await queue.put(spans(1, 100_000))
        rest = await drain(queue)
        assert len(set(sent + rest)) == 5 * accepted + 1
        await queue.close()
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
