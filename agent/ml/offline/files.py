"""The offline commands' input files: data tables, profiles, and ground truth in its own file.

A data file's or profile's problem (missing, unreadable, not a profile) is an `OfflineError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from google.protobuf.message import DecodeError

from agent.ml import profile as profiles
from agent.ml.columns import RawColumn
from agent.ml.offline.errors import OfflineError, listing, unknown
from agent.ml.performance import categories
from agent.ml.profile import Profile
from agent.ml.tables import DATA_SUFFIXES, DataError, Table, TableFile
from agent.proto.vigil.v1 import profile_pb2

PROFILE_SUFFIXES = (".vigilprofile", ".pb")


def open_data(path: str | Path, progress: bool = True) -> TableFile:
    try:
        return TableFile(path, progress=progress)
    except DataError as exc:
        raise OfflineError(str(exc)) from None


def read_blocks(data: TableFile, names: Sequence[str], chunk_rows: int | None = None,
                vectors: Sequence[str] = ()) -> Iterator[Table]:
    try:
        yield from data.blocks(names, chunk_rows, vectors)
    except DataError as exc:
        raise OfflineError(str(exc)) from None


def load_profile(path: str | Path) -> Profile:
    """A profile file; OfflineError when it is missing or not a Vigil profile."""
    path = Path(path)
    if not path.is_file():
        raise OfflineError(f"{path}: no such file")
    profile = _parse_profile(path.read_bytes())
    if profile is None:
        raise OfflineError(f"{path}: not a Vigil profile (a vigil.v1.Profile protobuf, as "
                           "`vigil profile build` writes)")
    return profile


def _parse_profile(data: bytes) -> Profile | None:
    message = profile_pb2.Profile()
    try:
        message.ParseFromString(data)
        columns = [*message.features, *message.predictions]
        # Arbitrary bytes can parse as a message of unknown fields: demand real columns.
        if not columns or any(not c.name or not c.kind for c in columns):
            return None
        return profiles.from_proto(message)
    except (DecodeError, ValueError, UnicodeDecodeError):
        return None


def is_profile_file(path: str | Path) -> bool:
    """By extension (`.vigilprofile`, `.pb` yes; `.csv`, `.parquet`, … no), else by parsing it."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PROFILE_SUFFIXES:
        return True
    if suffix in DATA_SUFFIXES or not path.is_file():
        return False
    return _parse_profile(path.read_bytes()) is not None


@dataclass
class LabelFile:
    """Ground truth from its own file (`--current-labels`), joined to the current data by id."""
    index: dict[str, int]  # id → row of its (first) label
    labels: RawColumn
    rows: int
    duplicates: int  # rows whose id came before (their label is not used)

    @classmethod
    def read(cls, path: str | Path, id_column: str, label_column: str) -> LabelFile:
        data = open_data(path)
        for option, column in (("--id-column", id_column), ("--label", label_column)):
            if column not in data.columns:
                raise OfflineError(f"{unknown([column])} in {option}: {path} (--current-labels) has columns "
                                   f"{listing(data.columns)}")
        table = next(read_blocks(data, [id_column, label_column]))
        index: dict[str, int] = {}
        duplicates = 0
        for row, id_ in enumerate(categories(table.columns[id_column]).tolist()):
            if id_ is None:
                continue
            if id_ in index:
                duplicates += 1
            else:
                index[id_] = row
        return cls(index, table.columns[label_column], table.rows, duplicates)

    def join(self, ids: RawColumn) -> RawColumn:
        """The label of each id (missing where the file has none)."""
        rows = np.fromiter((self.index.get(i, -1) if i is not None else -1 for i in categories(ids).tolist()),
                           dtype=np.int64, count=len(ids))
        found = rows >= 0
        numbers = np.full(rows.size, math.nan)
        strings = np.full(rows.size, None, dtype=object)
        numbers[found] = self.labels.numbers[rows[found]]
        strings[found] = self.labels.strings[rows[found]]
        return RawColumn(numbers, strings)
