"""Silences: matchers over alert labels, from a start to an expiry, that mute notifications.

A silenced alert still changes state (and its OTLP log records say it is
silenced), but no notifier hears about it: not while it fires, not when it
resolves. When the silence expires and the alert still fires, its group
notifies at its next interval.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from agent.alerts.matchers import Matcher, matches_all


@dataclass
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str = ""
    comment: str = ""

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def state(self, now: float) -> str:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        out = {"id": self.id, "matchers": [m.to_json() for m in self.matchers],
               "starts_at": self.starts_at, "ends_at": self.ends_at,
               "created_by": self.created_by, "comment": self.comment}
        if now is not None:
            out["state"] = self.state(now)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Silence:
        matchers = tuple(Matcher.parse(f"{m['name']}{m['op']}{_quote(m['value'])}") for m in data["matchers"])
        return cls(str(data["id"]), matchers, float(data["starts_at"]), float(data["ends_at"]),
                   str(data.get("created_by", "")), str(data.get("comment", "")))


def _quote(value: str) -> str:
    import json

    return json.dumps(value)


class Silences:
    # Expired silences stay listed this long, so `vigil alerts silences` shows what just ended.
    RETENTION = 3600.0

    def __init__(self, max_silences: int = 1000) -> None:
        self._silences: dict[str, Silence] = {}
        self._max = max_silences

    def __len__(self) -> int:
        return len(self._silences)

    def add(self, matchers: tuple[Matcher, ...], starts_at: float, ends_at: float, created_by: str = "",
            comment: str = "") -> Silence:
        if not matchers:
            raise ValueError("a silence needs at least one matcher")
        if ends_at <= starts_at:
            raise ValueError("a silence must end after it starts")
        if len(self._silences) >= self._max:
            raise ValueError(f"too many silences (at most {self._max}); expire some first")
        silence = Silence(uuid.uuid4().hex, matchers, starts_at, ends_at, created_by, comment)
        self._silences[silence.id] = silence
        return silence

    def expire(self, silence_id: str, now: float) -> bool:
        silence = self._silences.get(silence_id)
        if silence is None or silence.ends_at <= now:
            return False
        silence.ends_at = max(now, silence.starts_at)
        return True

    def silencing(self, labels: Mapping[str, str], now: float) -> list[str]:
        """The ids of the active silences that match `labels`."""
        return [s.id for s in self._silences.values() if s.active(now) and matches_all(s.matchers, labels)]

    def prune(self, now: float) -> bool:
        """Forget silences expired longer than RETENTION ago; whether any went."""
        old = [i for i, s in self._silences.items() if s.ends_at + self.RETENTION <= now]
        for silence_id in old:
            del self._silences[silence_id]
        return bool(old)

    def all(self) -> list[Silence]:
        return sorted(self._silences.values(), key=lambda s: (s.starts_at, s.id))

    def to_json(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.all()]

    def restore(self, data: list[dict[str, Any]]) -> list[str]:
        """The saved silences back; why each one that no longer reads (a matcher this version refuses, say
        a lookahead RE2 does not run) was left out. The others are restored."""
        problems = []
        for index, item in enumerate(data):
            try:
                silence = Silence.from_json(item)
            except (KeyError, TypeError, ValueError) as exc:
                name = item.get("id", index) if isinstance(item, dict) else index
                problems.append(f"silence {name}: {exc}")
                continue
            self._silences[silence.id] = silence
        return problems
