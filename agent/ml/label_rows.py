"""The label join's predictions, pending and closed, one row each in a column per field.

A prediction's row is pending until it is closed (matched to its label, or expired), then closed
until it is forgotten (gone). `index[model][id]` is the row's number, whether it waits or is
closed, so closing a prediction changes a byte of `state` and not the dicts: a prediction costs
one dict insert when it comes (that probes for its id too) and one delete when it is forgotten.
The closed rows' numbers are kept in the order they were closed (`closing`); a number whose row
is gone (its id was predicted again) is stale and skipped.

Row number `seq` sits at position `seq - base` of every column. The gone front is cut off the
columns once it is an eighth of them; the gone rows are squeezed out (the rest renumbered) once
they outnumber the live ones twice over.
"""

from __future__ import annotations

import math
import re
from array import array
from collections import deque
from itertools import groupby, repeat
from typing import Iterable

PENDING, EXPIRED, MATCHED, GONE = 0, 1, 2, 3
_LIVE = re.compile(rb"[^\x03]")  # a row not gone
_NONE: dict = {}
_SLACK = 1024  # gone rows (stale closing numbers) kept beyond twice the live ones
_MIN_CUT = 1024  # a gone front shorter than this (and than an eighth of the rows) stays
VERSION, PREDICTED, SCORE, VALUE, TIME = range(5)  # the fields; TIME is when it came, then when it closed
NO_ENTRY = ("", None, math.nan, math.nan)  # a closed row read back from a save: only its time is kept


def runs(models: list[str]) -> list[tuple[str, int, int]]:
    """(model, start, end) of each run of one model in `models` (few models, long runs: C-speed scans)."""
    n = len(models)
    if not n or models.count(models[0]) == n:
        return [(models[0], 0, n)] if n else []
    out, start = [], 0
    for model, run in groupby(models):
        end = start + len(list(run))
        out.append((model, start, end))
        start = end
    return out


class Rows:
    """Predictions by (model, id) in the order they came: see the module's docstring."""

    def __init__(self) -> None:
        self.index: dict[str, dict[str, int]] = {}
        self.ids: list[str] = []
        self.models: list[str] = []
        self.fields: list[list | array] = [[], [], array("d"), array("d"), array("d")]
        self.state = bytearray()
        self.closing = array("q")
        self.base = self.next = 0  # the numbers of the first row and of the next one
        self.pending_from = self.live_from = 0  # no pending (live) row has a lower number
        self.closing_from = 0  # no live number in `closing` before this position
        self.closing_rises_from = 0  # from this position on, each number in `closing` is above the one before
        self.pending = self.closed = 0  # rows of each

    def find(self, model: str, id_: str) -> int | None:
        return self.index.get(model, _NONE).get(id_)

    def state_of(self, seq: int) -> int:
        return self.state[seq - self.base]

    def entry(self, seq: int) -> tuple:
        p = seq - self.base
        return tuple([f[p] for f in self.fields])

    # --- in ------------------------------------------------------------------------------------

    def add_new(self, model: str, ids: list[str], fields: Iterable[Iterable]) -> bool:
        """Pending rows at the back for `ids` of `model`, one iterable of len(ids) per field; False,
        with nothing changed, unless the ids are distinct and none of them has a row."""
        n, seq = len(ids), self.next
        if not n:
            return True
        known = self.index.get(model)
        if known is None:
            known = self.index[model] = {}
        numbers = range(seq, seq + n)
        if list(map(known.setdefault, ids, numbers)) != list(numbers):  # a known id keeps its number
            for id_, number in zip(ids, numbers):
                if known.get(id_) == number:
                    del known[id_]
            return False
        rows = len(self.state)
        try:
            for column, values in zip(self.fields, fields):
                column.extend(values)  # a value an array cannot hold raises here
        except BaseException:
            for column in self.fields:
                del column[rows:]
            for id_ in ids:
                del known[id_]
            raise
        self.ids.extend(ids)
        self.models.extend(repeat(model, n))
        self.state.extend(bytes(n))  # PENDING
        self.next += n
        self.pending += n
        return True

    def add_one(self, model: str, id_: str, entry: tuple) -> tuple | None:
        """A pending row at the back for (model, id), in place of any row it had (its entry returned
        when that one was pending)."""
        previous = self.drop(model, id_)
        self.index.setdefault(model, {})[id_] = self.next
        self.ids.append(id_)
        self.models.append(model)
        for column, value in zip(self.fields, entry):
            column.append(value)
        self.state.append(PENDING)
        self.next += 1
        self.pending += 1
        return previous

    def drop(self, model: str, id_: str) -> tuple | None:
        """Forget (model, id)'s row; its entry when it was pending."""
        seq = self.index.get(model, _NONE).pop(id_, None)
        if seq is None:
            return None
        p = seq - self.base
        was, self.state[p] = self.state[p], GONE
        if was != PENDING:
            self.closed -= 1
            return None
        self.pending -= 1
        return tuple([f[p] for f in self.fields])

    # --- closing and forgetting ----------------------------------------------------------------

    def close(self, seq: int, matched: bool, now: float) -> None:
        """Close the pending row `seq`."""
        p = seq - self.base
        self.state[p] = MATCHED if matched else EXPIRED
        self.fields[TIME][p] = now
        self._note_rise(seq)
        self.closing.append(seq)
        self.pending -= 1
        self.closed += 1

    def oldest_pending(self) -> int | None:
        p = self.state.find(PENDING, self.pending_from - self.base)
        self.pending_from = self.next if p < 0 else p + self.base
        return None if p < 0 else self.pending_from

    def close_oldest(self, count: int, now: float) -> tuple[list[str], list[str]]:
        """Expire the `count` oldest pending rows (there are at least as many), as `close` would one at
        a time; their models and versions."""
        h = self.oldest_pending() - self.base
        end = h + count
        if self.state.count(PENDING, h, end) == count:  # next to each other, as when every id is new
            self.state[h:end] = bytes([EXPIRED]) * count
            self.fields[TIME][h:end] = array("d", [now]) * count
            self._note_rise(h + self.base)
            self.closing.extend(range(h + self.base, end + self.base))
            self.pending -= count
            self.closed += count
            self.pending_from = end + self.base
            return self.models[h:end], self.fields[VERSION][h:end]
        models, versions = [], []
        for _ in range(count):
            seq = self.oldest_pending()
            models.append(self.models[seq - self.base])
            versions.append(self.fields[VERSION][seq - self.base])
            self.close(seq, False, now)
        return models, versions

    def _note_rise(self, seq: int) -> None:
        """Before `seq` is put at the back of `closing`: does it rise?"""
        if self.closing and seq < self.closing[-1]:
            self.closing_rises_from = len(self.closing)

    def _is_stale(self, seq: int) -> bool:
        return seq < self.base or self.state[seq - self.base] == GONE

    def oldest_closed(self) -> int | None:
        closing, c = self.closing, self.closing_from
        while c < len(closing) and self._is_stale(closing[c]):
            c += 1
        self.closing_from = c
        return closing[c] if c < len(closing) else None

    def _oldest_closed_together(self, count: int) -> int | None:
        """The position of the first of the `count` oldest closed rows (there are at least as many)
        when they are next to each other and closed in that order, as when every id expires in turn;
        None otherwise."""
        first, c = self.oldest_closed(), self.closing_from
        if c < self.closing_rises_from or self.closing[c + count - 1] != first + count - 1:
            return None
        p = first - self.base  # count rising numbers from first to first + count - 1: those rows
        return p if self.state.count(GONE, p, p + count) == 0 else None

    def _live_numbers(self, end: int | None = None) -> list[int]:
        """The live numbers of closing[closing_from:end], in order."""
        base, state = self.base, self.state
        return [s for s in self.closing[self.closing_from:end] if s >= base and state[s - base] != GONE]

    def forget_oldest(self, count: int) -> None:
        """Forget the `count` oldest closed rows (there are at least as many)."""
        p = self._oldest_closed_together(count)
        if p is not None:
            ids = self.ids
            for model, start, end in runs(self.models[p:p + count]):
                deque(map(self.index[model].__delitem__, ids[p + start:p + end]), 0)
            self.state[p:p + count] = bytes([GONE]) * count
            self.closing_from += count
            self.closed -= count
            return
        for _ in range(count):
            p = self.oldest_closed() - self.base
            del self.index[self.models[p]][self.ids[p]]
            self.state[p] = GONE
            self.closing_from += 1
            self.closed -= 1

    def tidy(self) -> None:
        """Cut the gone front off; squeeze the gone rows out once they outnumber the live ones twice over."""
        found = _LIVE.search(self.state, self.live_from - self.base)
        cut = found.start() if found else len(self.state)
        self.live_from = cut + self.base
        if cut >= max(_MIN_CUT, len(self.state) // 8):
            for column in (self.ids, self.models, *self.fields, self.state):
                del column[:cut]
            self.base += cut
            self.pending_from = max(self.pending_from, self.base)
        if self.closing_from >= max(_MIN_CUT, len(self.closing) // 8):
            del self.closing[:self.closing_from]
            self.closing_rises_from = max(0, self.closing_rises_from - self.closing_from)
            self.closing_from = 0
        live = self.pending + self.closed
        if len(self.state) - (self.live_from - self.base) > 3 * live + _SLACK:
            self._squeeze()
        elif len(self.closing) - self.closing_from > 3 * self.closed + _SLACK:
            kept, rises_from = self._live_closing()
            self.closing, self.closing_from, self.closing_rises_from = array("q", kept), 0, rises_from

    def _live_closing(self) -> tuple[list[int], int]:
        """`closing`'s live numbers, and where they rise from (a part of a rising run rises)."""
        before = max(0, self.closing_rises_from - self.closing_from)
        return self._live_numbers(), len(self._live_numbers(self.closing_from + before)) if before else 0

    def _squeeze(self) -> None:
        state, base = self.state, self.base
        at = [p for p in range(self.live_from - base, len(state)) if state[p] != GONE]
        renumbered = {p + base: seq for seq, p in enumerate(at)}
        kept, rises_from = self._live_closing()
        closing = list(map(renumbered.__getitem__, kept))  # in the same order: still rising from there
        self.ids, self.models = [self.ids[p] for p in at], [self.models[p] for p in at]
        self.fields = [type(f)(f.typecode, map(f.__getitem__, at)) if isinstance(f, array)
                       else list(map(f.__getitem__, at)) for f in self.fields]
        self.state = bytearray(map(state.__getitem__, at))
        self.closing = array("q", closing)
        self.base = self.pending_from = self.live_from = self.closing_from = 0
        self.closing_rises_from = rises_from
        self.next = len(at)
        for seq, (model, id_) in enumerate(zip(self.models, self.ids)):
            self.index[model][id_] = seq

    # --- reading out ---------------------------------------------------------------------------

    def pending_rows(self) -> tuple[list[str], list[str], list[list]]:
        """The pending rows' models, ids and fields, oldest first."""
        start = self.oldest_pending()
        h = len(self.state) if start is None else start - self.base
        if self.state.count(PENDING, h) == len(self.state) - h:  # nothing closed among them
            return self.models[h:], self.ids[h:], [list(f[h:]) for f in self.fields]
        at = [p for p in range(h, len(self.state)) if self.state[p] == PENDING]
        return ([self.models[p] for p in at], [self.ids[p] for p in at],
                [list(map(f.__getitem__, at)) for f in self.fields])

    def closed_rows(self) -> tuple[list[str], list[str], list[bool], list[float]]:
        """The closed rows' models, ids, whether matched and when closed, in the order they were closed."""
        state, times, n = self.state, self.fields[TIME], self.closed
        h = self._oldest_closed_together(n) if n else None
        if h is not None:
            return (self.models[h:h + n], self.ids[h:h + n], [s == MATCHED for s in state[h:h + n]],
                    list(times[h:h + n]))
        at = [s - self.base for s in self._live_numbers()]
        return ([self.models[p] for p in at], [self.ids[p] for p in at],
                [state[p] == MATCHED for p in at], [times[p] for p in at])

    def copy(self) -> Rows:
        """The live rows, to save (without the index: `find` on the copy finds nothing)."""
        copy, h = Rows(), self.live_from - self.base
        copy.ids, copy.models, copy.state = self.ids[h:], self.models[h:], self.state[h:]
        copy.fields = [f[h:] for f in self.fields]
        copy.closing = self.closing[self.closing_from:]
        copy.closing_rises_from = max(0, self.closing_rises_from - self.closing_from)
        copy.base = copy.live_from = self.live_from
        copy.pending_from = max(self.pending_from, self.live_from)
        copy.next, copy.pending, copy.closed = self.next, self.pending, self.closed
        return copy


class PendingView:
    """The pending predictions as (model, id) -> (version, predicted, score, value, time), oldest first."""

    def __init__(self, rows: Rows) -> None:
        self._rows = rows

    def __len__(self) -> int:
        return self._rows.pending

    def __iter__(self):
        models, ids, _ = self._rows.pending_rows()
        return zip(models, ids)

    def items(self) -> list[tuple[tuple[str, str], tuple]]:
        models, ids, fields = self._rows.pending_rows()
        return list(zip(zip(models, ids), zip(*fields)))


class ClosedView:
    """The closed ids as (model, id) -> (matched, time), in the order they were closed."""

    def __init__(self, rows: Rows) -> None:
        self._rows = rows

    def __len__(self) -> int:
        return self._rows.closed

    def __iter__(self):
        models, ids, _, _ = self._rows.closed_rows()
        return zip(models, ids)

    def items(self) -> list[tuple[tuple[str, str], tuple[bool, float]]]:
        models, ids, matched, times = self._rows.closed_rows()
        return list(zip(zip(models, ids), zip(matched, times)))

