"""The error the offline commands print as one line (a bad input, not a bug), and the wording of its
messages."""

from __future__ import annotations

from typing import Iterable, Sequence


class OfflineError(Exception):
    """A problem with the user's input: a missing file, an unknown column, unreadable data."""


def unknown(names: Sequence[str]) -> str:
    """The phrase for columns the data lacks: unknown column 'a', unknown columns 'a', 'b'."""
    return f"unknown column{'s' if len(names) > 1 else ''} {', '.join(map(repr, names))}"


def listing(names: Iterable[str]) -> str:
    """Column names for a message: the first 20, then how many in all."""
    names = list(names)
    shown = ", ".join(names[:20]) + (f", … ({len(names)} in all)" if len(names) > 20 else "")
    return shown or "(none)"
