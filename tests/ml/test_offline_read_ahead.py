"""`vigil analyze` reads the current data's next chunk while it analyses one (`parallel.read_ahead`):
the chunks come in order, no more than two are held, a bad row reaches the user as it does without
threads, and a reader broken off is closed."""

from __future__ import annotations

import subprocess
import sys
import threading
import weakref
from pathlib import Path

import pytest

from agent.ml import parallel

REPO = Path(__file__).resolve().parents[2]


class Chunk:
    """A stand-in for a chunk of rows, so what is still held can be seen (weakly)."""

    def __init__(self, index: int) -> None:
        self.index = index


@pytest.fixture
def two_threads():
    before = parallel.threads()
    parallel.set_threads(2)
    yield
    parallel.set_threads(before)


def test_chunks_come_in_order_and_at_most_two_are_held(two_threads) -> None:
    alive: weakref.WeakSet = weakref.WeakSet()
    held_while_reading = []
    readers = set()

    def chunks():
        for i in range(6):
            held_while_reading.append(len(alive))  # the one in the caller's hand, at most
            readers.add(threading.current_thread().name)
            chunk = Chunk(i)
            alive.add(chunk)
            yield chunk
            del chunk

    seen = [chunk.index for chunk in parallel.read_ahead(chunks())]
    assert seen == list(range(6))
    assert max(held_while_reading) <= 1
    assert readers and all(name.startswith("vigil-read") for name in readers)


def test_an_error_arrives_after_the_chunks_before_it(two_threads) -> None:
    def chunks():
        yield Chunk(0)
        yield Chunk(1)
        raise ValueError("row 3: not a number")

    seen = []
    with pytest.raises(ValueError, match="row 3: not a number"):
        for chunk in parallel.read_ahead(chunks()):
            seen.append(chunk.index)
    assert seen == [0, 1]


def test_a_reader_broken_off_is_closed(two_threads) -> None:
    closed = threading.Event()

    def chunks():
        try:
            for i in range(100):
                yield Chunk(i)
        finally:
            closed.set()

    ahead = parallel.read_ahead(chunks())
    assert next(ahead).index == 0
    ahead.close()
    assert closed.is_set()


def test_one_thread_reads_in_the_callers_thread() -> None:
    before = parallel.threads()
    parallel.set_threads(1)
    try:
        readers = []

        def chunks():
            for i in range(3):
                readers.append(threading.current_thread())
                yield Chunk(i)

        assert [c.index for c in parallel.read_ahead(chunks())] == [0, 1, 2]
        assert readers == [threading.current_thread()] * 3
    finally:
        parallel.set_threads(before)


def write_csv(path: Path, rows: int, bad_row: int | None = None) -> Path:
    with open(path, "w") as f:
        f.write("age,city\n")
        for i in range(rows):
            f.write(f"{30 + i % 17},{'paris' if i % 3 else 'oslo'}\n" if i != bad_row else "41,lima,extra\n")
    return path


def analyze(reference: Path, current: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", "analyze", "--reference", str(reference), "--current",
                           str(current), "--chunk-size", "40000", *args], capture_output=True, text=True, cwd=REPO)


def test_a_bad_row_in_a_later_chunk_is_reported_as_without_threads(tmp_path) -> None:
    # Row 100,000 (line 100,002) is in the third chunk of 40,000 rows.
    reference = write_csv(tmp_path / "reference.csv", 1000)
    current = write_csv(tmp_path / "current.csv", 140_000, bad_row=100_000)
    one = analyze(reference, current, "--threads", "1")
    two = analyze(reference, current, "--threads", "2")
    assert one.returncode == two.returncode == 1
    assert "line 100002: 3 fields, the header has 2" in two.stderr
    assert one.stderr == two.stderr
    # The chunks before the bad row were analysed and printed, as they are without threads.
    assert two.stdout == one.stdout and "chunk 1: rows 40001-80000" in two.stdout and "chunk 2" not in two.stdout
