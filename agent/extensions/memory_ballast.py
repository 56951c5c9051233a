"""`memory_ballast`: a Go garbage-collector tuning; accepted, does nothing in Vigil."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from agent.extensions.inert import InertConfig, inert_factory


class MemoryBallastConfig(InertConfig):
    why: ClassVar[str] = ("it tunes Go's garbage collector (the Collector removed it too); "
                          "bound memory with the memory_limiter processor")

    size_mib: int = Field(0, ge=0)
    size_in_percentage: int = Field(0, ge=0, le=100)


FACTORY = inert_factory("memory_ballast", MemoryBallastConfig)
