"""`pprof`: the Collector's Go profiler endpoint; accepted, does nothing in Vigil."""

from __future__ import annotations

from typing import ClassVar

from agent.extensions.inert import InertConfig, inert_factory


class PprofConfig(InertConfig):
    why: ClassVar[str] = "it profiles Go programs; profile Vigil with py-spy (py-spy top --pid PID)"

    endpoint: str = "localhost:1777"
    block_profile_fraction: int = 0
    mutex_profile_fraction: int = 0
    save_to_file: str = ""


FACTORY = inert_factory("pprof", PprofConfig)
