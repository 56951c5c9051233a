"""Regexes written in a config, compiled with RE2: the syntax and semantics of Go's regexp, which the
Collector, Prometheus and Alertmanager use.

RE2 runs in time linear in the text, so no pattern lets a sender's value stall the event loop
(Python's `re` backtracks: `^(a+)+$` on a long run of `a`s never ends). RE2 refuses what would need
backtracking (lookaround, backreferences), as Go's regexp does.
"""

from __future__ import annotations

from typing import Any, Iterator

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is the config error below, not a line on stderr

# RE2's reasons for the Perl features it leaves out, which deserve a word on why.
_UNSUPPORTED = ("invalid perl operator", "invalid escape sequence", "bad repetition operator")


# Short texts repeat (span, service and metric names, routes, model names): each one's answer is
# remembered, up to this many per pattern.
_SHORT = 256
_REMEMBERED = 4096


class UserRegex:
    """A compiled pattern: `found` for a yes or no, `search` and `finditer` for matches (as `re`'s)."""

    __slots__ = ("_regex", "_seen", "pattern", "groups", "groupindex")

    def __init__(self, regex: Any) -> None:
        self._regex = regex
        self._seen: dict[str, bool] = {}
        self.pattern: str = regex.pattern
        self.groups: int = regex.groups
        self.groupindex: dict[str, int] = dict(regex.groupindex)

    def found(self, text: str) -> bool:
        """Whether the pattern matches anywhere in `text`."""
        hit = self._seen.get(text)
        if hit is None:
            # On the UTF-8 bytes RE2 reads anyway: the same answer, without mapping offsets back to a str's.
            hit = self._regex.search(text.encode()) is not None
            if len(text) <= _SHORT:
                if len(self._seen) >= _REMEMBERED:
                    self._seen.clear()
                self._seen[text] = hit
        return hit

    def search(self, text: str) -> Any:
        return self._regex.search(text)

    def finditer(self, text: str) -> Iterator[Any]:
        return self._regex.finditer(text)


def compile_user_regex(pattern: str, field: str | None = None, *, anchored: bool = False,
                       peer: str = "the Collector") -> UserRegex:
    """`pattern` compiled with RE2; `anchored`: it must match the whole text, `^(?:pattern)$` as
    Prometheus anchors a label matcher's regex.

    ValueError when RE2 refuses it, in the words of `pattern` as written, starting with `field` where the
    config path does not name it; `peer` is whose syntax it is, for the note on what RE2 leaves out.
    """
    regex = _compile(pattern, field, peer)
    return UserRegex(_compile(f"^(?:{pattern})$", field, peer)) if anchored else UserRegex(regex)


def _compile(pattern: str, field: str | None, peer: str) -> Any:
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        if reason.startswith(_UNSUPPORTED):
            reason += f" (RE2 syntax, as in {peer}: no lookaround, backreferences or possessive repeats)"
        prefix = f"{field}: " if field else ""
        raise ValueError(f"{prefix}invalid regex {pattern!r}: {reason}") from None
