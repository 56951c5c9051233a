"""Include/exclude filters in the Collector's shape: `{devices: [...], match_type: strict|regexp}`.

A `regexp` pattern is RE2's, as Go's regexp in the Collector, and matches anywhere in the name.
"""

from __future__ import annotations

from functools import cached_property
from typing import ClassVar, Literal

from pydantic import model_validator

from agent.configmodel import StrictModel
from agent.regex import UserRegex, compile_user_regex


class _Filter(StrictModel):
    match_type: Literal["strict", "regexp"] = "strict"
    _field: ClassVar[str]

    @model_validator(mode="after")
    def _check_patterns(self) -> _Filter:
        if self.match_type == "regexp":
            self._patterns  # compiled here, so a pattern RE2 refuses is a config error naming it
        return self

    @cached_property
    def _patterns(self) -> list[UserRegex]:
        return [compile_user_regex(p, f"{self._field}[{i}]") for i, p in enumerate(getattr(self, self._field))]

    def matches(self, value: str) -> bool:
        if self.match_type == "strict":
            return value in getattr(self, self._field)
        return any(p.found(value) for p in self._patterns)


class DevicesFilter(_Filter):
    _field = "devices"
    devices: list[str]


class InterfacesFilter(_Filter):
    _field = "interfaces"
    interfaces: list[str]


class FsTypesFilter(_Filter):
    _field = "fs_types"
    fs_types: list[str]


class MountPointsFilter(_Filter):
    _field = "mount_points"
    mount_points: list[str]


class NamesFilter(_Filter):
    _field = "names"
    names: list[str]


def allowed(value: str, include: _Filter | None, exclude: _Filter | None) -> bool:
    """Kept when it matches `include` (if set) and does not match `exclude` (if set)."""
    if include is not None and not include.matches(value):
        return False
    return exclude is None or not exclude.matches(value)
