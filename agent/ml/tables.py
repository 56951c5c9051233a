"""Tabular data files (CSV, Parquet) read into `RawColumn`s, whole or in chunks of rows.

CSV is read with the standard `csv` module (`.tsv`: tab-separated; any other
name: comma-separated), UTF-8 (a byte-order mark is skipped). Cells are
stripped of surrounding blanks; then a cell is

- missing when it is empty or one of `NA`, `N/A`, `NaN`, `null`, `None`
  (any case),
- a number when Python's `float()` reads it (`1`, `-2.5e3`, `inf`),
- a string otherwise.

Parquet (`.parquet`, `.pq`) needs pyarrow, imported only when such a file is
read. Its types are taken as they are: numeric columns are numbers, string
columns strings (even "3.5"), booleans the strings "true"/"false" (as
`RawColumn.from_values` has them), dates and times their ISO text, nulls
missing.

A column read as vectors (an embedding: `blocks(..., vectors=[name])`) holds a list of
numbers per row: JSON text (`[0.1, -2, 3e-4]`) in CSV or a Parquet string column,
`list<double>` (or any list of numbers) in Parquet. Every row has the same length; a
missing cell (or an empty list) is a row of NaN.

While a large file is read, a progress bar goes to stderr when stderr is a
terminal.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Sequence

import numpy as np

from agent.ml.columns import RawColumn, concat_all

NA_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})
CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
PARQUET_SUFFIXES = (".parquet", ".pq")
DATA_SUFFIXES = (*CSV_SUFFIXES, *PARQUET_SUFFIXES)

# Rows parsed at a time: bounds the memory a file's text takes while it becomes columns.
_BLOCK_ROWS = 65_536
_BATCH_ROWS = 8_192  # rows taken from the csv reader at a time


class DataError(Exception):
    """A data file that is missing or cannot be read as a table; the message names the file."""


@dataclass
class Table:
    columns: dict[str, RawColumn]  # in the file's column order
    rows: int
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # rows × dims, NaN rows where missing

    def slice(self, start: int, stop: int) -> Table:
        columns = {name: RawColumn(c.numbers[start:stop], c.strings[start:stop]) for name, c in self.columns.items()}
        return Table(columns, max(0, min(stop, self.rows) - start),
                     {name: v[start:stop] for name, v in self.vectors.items()})


def concat_tables(tables: Sequence[Table], names: Sequence[str], vectors: Sequence[str] = ()) -> Table:
    if not tables:
        return Table({name: RawColumn.missing(0) for name in names}, 0,
                     {name: np.empty((0, 0)) for name in vectors})
    if len(tables) == 1:
        return tables[0]
    return Table({name: concat_all([t.columns[name] for t in tables]) for name in names},
                 sum(t.rows for t in tables),
                 {name: concat_vectors(name, [t.vectors[name] for t in tables]) for name in vectors})


def concat_vectors(name: str, parts: Sequence[np.ndarray]) -> np.ndarray:
    widths = sorted({p.shape[1] for p in parts if p.shape[0] and p.shape[1]})
    if len(widths) > 1:
        raise DataError(f"column {name!r}: lists of {widths[0]} and of {widths[-1]} numbers; every row needs "
                        "the same length")
    width = widths[0] if widths else 0
    return np.concatenate([p if p.shape[1] == width else np.full((p.shape[0], width), math.nan) for p in parts])


def parse_vectors(name: str, cells: Sequence[str], first_row: int = 1) -> np.ndarray:
    """A vector column's cells (JSON lists of numbers, or missing) as rows × dims."""
    values: list[list[float] | None] = []
    for i, cell in enumerate(cells):
        text = cell.strip() if isinstance(cell, str) else cell
        if text is None or text.lower() in NA_TOKENS:
            values.append(None)
            continue
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) or v is None
                                                  for v in value):
            raise DataError(f"column {name!r}, data row {first_row + i}: not a JSON list of numbers: "
                            f"{text[:40]!r}")
        values.append(value or None)
    return _vector_rows(name, values, first_row)


def _vector_rows(name: str, values: Sequence[Sequence[float] | None], first_row: int) -> np.ndarray:
    width = next((len(v) for v in values if v), 0)
    out = np.full((len(values), width), math.nan)
    for i, value in enumerate(values):
        if not value:
            continue
        if len(value) != width:
            raise DataError(f"column {name!r}, data row {first_row + i}: a list of {len(value)} numbers, the rows "
                            f"before had {width}")
        out[i] = [math.nan if v is None else v for v in value]
    return out


# --- cells ---------------------------------------------------------------------

def parse_cells(cells: Sequence[str]) -> RawColumn:
    """One CSV column's cells as a RawColumn (see the module's rules)."""
    n = len(cells)
    strings = np.full(n, None, dtype=object)
    try:  # the common case, a column of numbers only: numpy parses it as float() would
        return RawColumn(np.array(cells, dtype=float), strings)
    except ValueError:
        pass
    present = np.fromiter((cell not in _NA_SPELLINGS for cell in cells), dtype=bool, count=n)
    try:  # numbers and the usual spellings of missing
        numbers = np.full(n, math.nan)
        numbers[present] = np.array(cells, dtype=object)[present].astype(float)
        return RawColumn(numbers, strings)
    except ValueError:
        pass
    readings = {cell: _parse_cell(cell) for cell in dict.fromkeys(cells)}  # each distinct cell once
    numbers = np.fromiter((readings[cell][0] for cell in cells), dtype=float, count=n)
    strings[:] = [readings[cell][1] for cell in cells]
    return RawColumn(numbers, strings)


# NA_TOKENS as they are usually written; any other spelling takes the slow path, same result.
_NA_SPELLINGS = frozenset({spelling for token in NA_TOKENS
                           for spelling in (token, token.upper(), token.capitalize())} | {"NaN"})


def _parse_cell(cell: str) -> tuple[float, str | None]:
    text = cell.strip()
    if text.lower() in NA_TOKENS:
        return math.nan, None
    try:
        return float(text), None  # float("nan") is caught above as a missing token
    except ValueError:
        return math.nan, text


# --- progress ------------------------------------------------------------------

class Progress:
    """A one-line progress bar on a terminal; silent elsewhere and for reads that finish quickly."""

    WIDTH = 30

    def __init__(self, label: str, total: float, stream: IO[str] | None = None,
                 delay: float = 0.5, interval: float = 0.1, clock=time.monotonic) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.label, self.total = label, total
        self.enabled = bool(total > 0 and _isatty(self.stream))
        self.clock = clock
        self.start = clock()
        self.delay, self.interval = delay, interval
        self.last_draw = -math.inf
        self.drawn = False

    def update(self, done: float, rows: int) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if now - self.start < self.delay or now - self.last_draw < self.interval:
            return
        self.last_draw = now
        fraction = min(max(done / self.total, 0.0), 1.0)
        filled = int(fraction * self.WIDTH)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.stream.write(f"\r{self.label} [{bar}] {fraction:4.0%} {rows:,} rows")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")  # clear the line: the bar leaves nothing behind
            self.stream.flush()
            self.drawn = False


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# --- files ---------------------------------------------------------------------

class TableFile:
    """A data file: its column names now, its rows as blocks on demand."""

    def __init__(self, path: str | Path, progress: bool = True) -> None:
        self.path = Path(path)
        self.progress = progress
        if not self.path.exists():
            raise DataError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise DataError(f"{self.path}: is a directory, not a data file")
        self.is_parquet = self.path.suffix.lower() in PARQUET_SUFFIXES
        self.columns: list[str] = self._parquet_columns() if self.is_parquet else self._csv_header()

    # CSV

    def _delimiter(self) -> str:
        return CSV_SUFFIXES.get(self.path.suffix.lower(), ",")

    @contextlib.contextmanager
    def _csv_reader(self) -> Iterator[tuple[Iterator[list[str]], IO[bytes], Any]]:
        """The rows (the header first), the binary file under them (its position is the progress)
        and the csv reader (its line number)."""
        with open(self.path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
            reader = csv.reader(text, delimiter=self._delimiter(), strict=True)

            def rows() -> Iterator[list[str]]:
                try:
                    yield from reader
                except csv.Error as exc:
                    raise DataError(f"{self.path}: line {reader.line_num}: not valid CSV ({exc})") from None
                except UnicodeDecodeError as exc:
                    raise DataError(f"{self.path}: line {self._first_undecodable_line()}: not UTF-8 text "
                                    f"({exc.reason})") from None

            yield rows(), raw, reader

    def _first_undecodable_line(self) -> int | str:
        """Text is decoded in blocks, so the reader cannot say which line was bad: look again."""
        with open(self.path, "rb") as file:
            for number, line in enumerate(file, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    return number
        return "?"

    def _csv_header(self) -> list[str]:
        with self._csv_reader() as (rows, _, reader):
            for row in rows:
                if not row:
                    continue
                names = [name.strip() for name in row]
                for i, name in enumerate(names, start=1):
                    if not name:
                        raise DataError(f"{self.path}: line {reader.line_num}: column {i} has no name in the header")
                duplicates = sorted({n for n in names if names.count(n) > 1})
                if duplicates:
                    raise DataError(f"{self.path}: line {reader.line_num}: duplicate column names in the header: "
                                    f"{', '.join(duplicates)}")
                return names
        raise DataError(f"{self.path}: empty file (no header line)")

    def _csv_blocks(self, names: Sequence[str], block_rows: int, vectors: Sequence[str] = ()) -> Iterator[Table]:
        width = len(self.columns)
        wanted = [self.columns.index(n) for n in names]
        vector_columns = [self.columns.index(n) for n in vectors]
        yielded = 0
        progress = Progress(f"reading {self.path.name}", self.path.stat().st_size) if self.progress else None
        block: list[list[str]] = []
        consumed = 0  # rows after the header, blank ones included
        try:
            with self._csv_reader() as (rows, raw, reader):
                for row in rows:
                    if row:
                        break  # the header
                line = reader.line_num
                while batch := list(itertools.islice(rows, _BATCH_ROWS)):  # rows taken at C speed
                    taken = len(batch)
                    if set(map(len, batch)) != {width}:
                        batch = self._regular_rows(batch, width, consumed, line, reader.line_num)
                    consumed += taken
                    line = reader.line_num
                    block += batch
                    while len(block) >= block_rows:
                        yield self._csv_table(block[:block_rows], names, wanted, vectors, vector_columns, yielded)
                        yielded += block_rows
                        del block[:block_rows]
                    if progress is not None:
                        progress.update(raw.tell(), consumed)
                if block:
                    yield self._csv_table(block, names, wanted, vectors, vector_columns, yielded)
        finally:
            if progress is not None:
                progress.close()

    def _regular_rows(self, batch: list[list[str]], width: int, rows_before: int, before: int,
                      after: int) -> list[list[str]]:
        """`batch` without blank lines (a missing value when there is one column); an error for a row
        of another width. `rows_before`: the rows before the batch (blank ones included);
        `before`/`after`: the reader's line number before and after the batch."""
        kept = []
        for i, row in enumerate(batch):
            if len(row) == width:
                kept.append(row)
            elif not row:
                if width == 1:
                    kept.append([""])
            else:
                # Exact unless a quoted value spans lines; then the row's place is all there is.
                where = f"line {before + i + 1}" if after - before == len(batch) else \
                    f"data row {rows_before + i + 1} (counting blank lines)"
                raise DataError(f"{self.path}: {where}: {len(row)} fields, the header has {width}")
        return kept

    def _csv_table(self, rows: list[list[str]], names: Sequence[str], wanted: list[int], vectors: Sequence[str] = (),
                   vector_columns: Sequence[int] = (), rows_before: int = 0) -> Table:
        columns = list(zip(*rows))
        try:
            parsed = {name: parse_vectors(name, columns[i], rows_before + 1) for name, i in zip(vectors, vector_columns)}
        except DataError as exc:
            raise DataError(f"{self.path}: {exc}") from None
        return Table({name: parse_cells(columns[i]) for name, i in zip(names, wanted)}, len(rows), parsed)

    # Parquet

    def _parquet_file(self):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(f"{self.path}: reading Parquet needs pyarrow, which is not installed "
                            "(pip install pyarrow), or give the data as CSV") from None
        try:
            # String columns dictionary-encoded, as Parquet mostly stores them: each distinct value is
            # then made a Python str once per chunk, not once per row.
            strings = [f.name for f in pq.read_schema(self.path)
                       if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
            # pre_buffer=False: a pre-buffered file keeps every row group's bytes read so far until it
            # is closed (apache/arrow#39808), memory growing with the file instead of one chunk's worth.
            return pq.ParquetFile(self.path, pre_buffer=False, read_dictionary=strings)
        except Exception as exc:  # pyarrow raises its own error types for a bad file
            raise DataError(f"{self.path}: not a readable Parquet file ({exc})") from None

    def _parquet_columns(self) -> list[str]:
        return list(self._parquet_file().schema_arrow.names)

    def _parquet_blocks(self, names: Sequence[str], chunk_rows: int | None, vectors: Sequence[str] = ()) -> Iterator[Table]:
        """Tables of `chunk_rows` rows (the whole file when None): the record batches are joined
        in arrow, where that is cheap, and each chunk's columns converted once."""
        import pyarrow as pa

        file = self._parquet_file()
        total = file.metadata.num_rows
        progress = Progress(f"reading {self.path.name}", total) if self.progress else None
        done = read = 0  # rows yielded, rows read
        wanted = list(dict.fromkeys([*names, *vectors]))
        pending: list = []
        held = 0

        def table_of(batches) -> Table:
            joined = pa.Table.from_batches(batches, schema=batches[0].schema)
            return Table({name: arrow_column(joined.column(name)) for name in names}, joined.num_rows,
                         {name: arrow_vectors(name, joined.column(name), done + 1) for name in vectors})

        try:
            for batch in file.iter_batches(batch_size=min(chunk_rows or _BLOCK_ROWS, _BLOCK_ROWS), columns=wanted):
                pending.append(batch)
                held += batch.num_rows
                read += batch.num_rows
                if progress is not None:
                    progress.update(read, read)
                while chunk_rows is not None and held >= chunk_rows:
                    # Only the rest of the last batch stays pending: a slice of it is a view, not a copy.
                    cut = batch.num_rows - (held - chunk_rows)
                    rest = batch.slice(cut)
                    pending[-1] = batch.slice(0, cut)
                    chunk = table_of(pending)
                    # The arrow batches go before the chunk is analysed: only its numpy columns stay.
                    pending, held, batch = ([rest] if rest.num_rows else []), rest.num_rows, rest
                    yield chunk
                    done += chunk_rows
            if pending:
                chunk, pending = table_of(pending), []
                yield chunk
        except DataError as exc:
            raise DataError(f"{self.path}: {exc}") from None
        except Exception as exc:
            raise DataError(f"{self.path}: not a readable Parquet file ({exc})") from None
        finally:
            if progress is not None:
                progress.close()

    # both

    def blocks(self, names: Sequence[str] | None = None, chunk_rows: int | None = None,
               vectors: Sequence[str] = ()) -> Iterator[Table]:
        """The columns `names` (default: all) in tables of `chunk_rows` rows (the last may be
        smaller), or the whole file as one table when `chunk_rows` is None. An empty file
        gives one empty table. The columns `vectors` are read as vectors (`Table.vectors`)."""
        names = list(self.columns if names is None else names)
        vectors = list(vectors)
        unknown = [n for n in [*names, *vectors] if n not in self.columns]
        if unknown:
            raise DataError(f"{self.path}: no column {', '.join(map(repr, unknown))}")
        if self.is_parquet:
            raw = self._parquet_blocks(names, chunk_rows, vectors)  # already in chunks of `chunk_rows`
        else:
            raw = self._csv_blocks(names, min(chunk_rows or _BLOCK_ROWS, _BLOCK_ROWS), vectors)
        yielded = False
        try:
            for table in _rechunk(raw, names, chunk_rows, vectors):
                yielded = True
                yield table
        except DataError as exc:
            message = str(exc)
            raise DataError(message if message.startswith(str(self.path)) else f"{self.path}: {message}") from None
        if not yielded:
            yield concat_tables([], names, vectors)

    def read(self, names: Sequence[str] | None = None) -> Table:
        return next(self.blocks(names))


def _rechunk(blocks: Iterable[Table], names: Sequence[str], size: int | None,
             vectors: Sequence[str] = ()) -> Iterator[Table]:
    """Tables of exactly `size` rows (the last one smaller) from tables of any size; one if `size` is None."""
    pending: list[Table] = []
    held = 0
    for block in blocks:
        pending.append(block)
        held += block.rows
        while size is not None and held >= size:
            whole = concat_tables(pending, names, vectors)
            yield whole.slice(0, size)
            rest = whole.slice(size, whole.rows)
            pending, held = ([rest] if rest.rows else []), rest.rows
    if held or (size is None and pending):
        yield concat_tables(pending, names, vectors)


def arrow_column(array) -> RawColumn:
    """A pyarrow array (or chunked array) as a RawColumn."""
    import pyarrow as pa

    kind = array.type.value_type if pa.types.is_dictionary(array.type) else array.type
    n = len(array)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
        numbers = [_float64_values((c.dictionary_decode() if pa.types.is_dictionary(c.type) else c)
                                   .cast(pa.float64())) for c in chunks]
        return RawColumn(numbers[0] if len(numbers) == 1 else np.concatenate([np.empty(0), *numbers]),
                         _no_strings(n))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return RawColumn(np.full(n, math.nan), _string_values(array))
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_temporal(kind):
        return arrow_column(array.cast(pa.string()))
    if pa.types.is_null(kind):
        return RawColumn.missing(n)
    return RawColumn.from_values(array.to_pylist())  # booleans; lists and structs are unreadable values


def arrow_vectors(name: str, array, first_row: int = 1) -> np.ndarray:
    """A pyarrow column of lists of numbers (or of JSON text) as rows × dims, NaN rows where null."""
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):  # JSON text, as the Parquet reader gives string columns
        array = array.dictionary_decode()
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return parse_vectors(name, array.to_pylist(), first_row)
    if pa.types.is_fixed_size_list(kind) or pa.types.is_large_list(kind):
        array = array.cast(pa.list_(kind.value_type))
        kind = array.type
    if not pa.types.is_list(kind) or not (pa.types.is_integer(kind.value_type) or
                                          pa.types.is_floating(kind.value_type)):
        raise DataError(f"column {name!r}: a {kind} column, not lists of numbers (list<double>) or JSON text")
    offsets = _float64_values(array.offsets.cast(pa.float64())).astype(np.int64)
    lengths = np.diff(offsets)
    present = lengths > 0
    if array.null_count:  # a null slot's offsets may still span values
        bits = np.unpackbits(np.frombuffer(array.buffers()[0], dtype=np.uint8), bitorder="little")
        present &= bits[array.offset:array.offset + len(array)].astype(bool)
    width = int(lengths[present][0]) if present.any() else 0
    wrong = np.flatnonzero(present & (lengths != width))
    if wrong.size:
        raise DataError(f"column {name!r}, data row {first_row + int(wrong[0])}: a list of "
                        f"{int(lengths[wrong[0]])} numbers, the rows before had {width}")
    values = _float64_values(array.values.cast(pa.float64()))
    out = np.full((len(array), width), math.nan)
    starts = offsets[:-1][present]
    if width:
        out[present] = values[starts[:, None] + np.arange(width)]
    return out


def _no_strings(n: int) -> np.ndarray:
    """A numeric column's strings, all None: one read-only None seen n times, not n slots (8 bytes a
    row, a seventh of a chunk's memory at 18 numeric columns of 20)."""
    return np.broadcast_to(np.array(None, dtype=object), (n,))


def _string_values(array) -> np.ndarray:
    """A pyarrow string column as an object array, None where null. A dictionary-encoded one (as
    the Parquet reader gives string columns) makes each distinct string a Python str once."""
    import pyarrow as pa

    out = np.empty(len(array), dtype=object)
    start = 0
    for chunk in (array.chunks if isinstance(array, pa.ChunkedArray) else [array]):
        n = len(chunk)
        if pa.types.is_dictionary(chunk.type):
            words = np.empty(len(chunk.dictionary) + 1, dtype=object)  # the last one: None, for nulls
            words[:-1] = chunk.dictionary.to_pylist()
            codes = _int_values(chunk.indices)
            if chunk.null_count:
                codes = np.where(_validity(chunk), codes, len(chunk.dictionary))
            out[start:start + n] = words[codes]
        else:
            out[start:start + n] = chunk.to_pylist()
        start += n
    return out


def _int_values(array) -> np.ndarray:
    """A pyarrow integer array's values as numpy, from its buffer (see `_float64_values`); null slots
    hold anything."""
    import pyarrow as pa

    dtype = np.dtype(f"{'i' if pa.types.is_signed_integer(array.type) else 'u'}{array.type.bit_width // 8}")
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


def _validity(array) -> np.ndarray:
    """True where a pyarrow array (with nulls) has a value."""
    bits = np.unpackbits(np.frombuffer(array.buffers()[0], dtype=np.uint8), bitorder="little")
    return bits[array.offset:array.offset + len(array)].astype(bool)


def _float64_values(array) -> np.ndarray:
    """A pyarrow float64 array as numpy, NaN where null, read from its buffers: pyarrow's own
    conversions (to_numpy, scalars, fill_null) import pandas where it is installed, a fifth of a
    second or more of every `vigil analyze`."""
    validity, data = array.buffers()[:2]
    n, offset = len(array), array.offset
    numbers = np.frombuffer(data, dtype=np.float64, count=n, offset=offset * 8).copy()
    if array.null_count:
        bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
        numbers[~bits[offset:offset + n].astype(bool)] = math.nan
    return numbers
