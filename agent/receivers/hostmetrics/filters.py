"""Include/exclude filters in the Collector's shape: `{devices: [...], match_type: strict|regexp}`."""

from __future__ import annotations

import re
from functools import cached_property
from typing import ClassVar, Literal

from pydantic import model_validator

from agent.configmodel import StrictModel


class _Filter(StrictModel):
    match_type: Literal["strict", "regexp"] = "strict"
    _field: ClassVar[str]

    @model_validator(mode="after")
    def _check_patterns(self) -> _Filter:
        if self.match_type == "regexp":
            for pattern in getattr(self, self._field):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"invalid regexp {pattern!r}: {exc}") from None
        return self

    @cached_property
    def _patterns(self) -> list[re.Pattern]:
        return [re.compile(p) for p in getattr(self, self._field)]

    def matches(self, value: str) -> bool:
        if self.match_type == "strict":
            return value in getattr(self, self._field)
        return any(p.search(value) for p in self._patterns)


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
