"""Regexes written in a config, compiled with RE2, the Collector's syntax and semantics.

RE2 runs in time linear in the text, so no pattern lets a sender's value stall the event loop
(Python's `re` backtracks: `^(a+)+$` on a long run of `a`s never ends). RE2 refuses what would need
backtracking (lookaround, backreferences), as Go's regexp in the Collector does.
"""

from __future__ import annotations

from typing import Any

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is the config error below, not a line on stderr

# RE2's reasons for the Perl features it leaves out, which deserve a word on why.
_UNSUPPORTED = ("invalid perl operator", "invalid escape sequence", "bad repetition operator")


def compile_user_regex(pattern: str, field: str | None = None) -> Any:
    """`pattern` compiled with RE2 (search, finditer, groups and groupindex as `re`'s).

    ValueError when RE2 refuses it, starting with `field` where the config path does not name it.
    """
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        if reason.startswith(_UNSUPPORTED):
            reason += " (RE2 syntax, as in the Collector: no lookaround, backreferences or possessive repeats)"
        prefix = f"{field}: " if field else ""
        raise ValueError(f"{prefix}invalid regex {pattern!r}: {reason}") from None
