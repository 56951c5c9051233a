"""Label matchers, as Prometheus and Alertmanager write them: `name="value"`, `!=`, `=~`, `!~`.

    ml.model.name="fraud"        equal
    severity!="info"             not equal
    ml.feature.name=~"ml\\.prediction\\..*"   the whole value matches the regex
    hw.sensor_location!~"memory|board"        the whole value does not match

Regexes are RE2's (Go's regexp, as Prometheus and Alertmanager compile them), anchored at both ends as
`^(?:regex)$`: linear in the value, so a label value a sender chose cannot stall the agent.

The value may be quoted ("...", with backslash escapes) or bare. A label that
is absent reads as the empty string, as in Prometheus: `team=""` matches
series without `team`, and `team!=""` requires one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from agent.regex import UserRegex, compile_user_regex

# Read from a stripped text, so the value needs no lazy match against trailing blanks.
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_.:\-/]*)\s*(=~|!~|!=|=)\s*(.*)", re.S)
OPS = ("=", "!=", "=~", "!~")


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str
    _regex: UserRegex | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        if not isinstance(text, str):
            raise ValueError(f"a matcher is a string like 'name=\"value\"' (got {text!r})")
        found = _MATCHER.fullmatch(text.strip())
        if found is None:
            raise ValueError(f"invalid matcher {text!r}: expected name=\"value\", name!=\"value\", "
                             f"name=~\"regex\" or name!~\"regex\"")
        name, op, raw = found.groups()
        value = _unquote(raw, text)
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = compile_user_regex(value, anchored=True, peer="Prometheus")
            except ValueError as exc:
                raise ValueError(f"invalid matcher {text!r}: {exc}") from None
        return cls(name, op, value, regex)

    def matches(self, labels: Mapping[str, Any]) -> bool:
        actual = labels.get(self.name)
        text = "" if actual is None else str(actual)
        if self.op == "=":
            return text == self.value
        if self.op == "!=":
            return text != self.value
        hit = self._regex.found(text)  # type: ignore[union-attr]
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value)}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "op": self.op, "value": self.value}


def _unquote(raw: str, text: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        if raw[0] == "'":
            return raw[1:-1]
        try:
            return json.loads(raw)
        except ValueError:
            raise ValueError(f"invalid matcher {text!r}: bad quoted value") from None
    if raw[:1] in "\"'":
        raise ValueError(f"invalid matcher {text!r}: unterminated quote")
    return raw


def matches_all(matchers: tuple[Matcher, ...] | list[Matcher], labels: Mapping[str, Any]) -> bool:
    return all(m.matches(labels) for m in matchers)


def parse_all(texts: list[str]) -> tuple[Matcher, ...]:
    return tuple(Matcher.parse(t) for t in texts)
