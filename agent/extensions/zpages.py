"""`zpages`: the Collector's in-process debug pages; accepted, does nothing in Vigil."""

from __future__ import annotations

from typing import ClassVar

from agent.configmodel import StrictModel
from agent.extensions.inert import InertConfig, inert_factory


class ExpvarConfig(StrictModel):
    enabled: bool = False


class ZpagesConfig(InertConfig):
    why: ClassVar[str] = ("the status page and /api/v1/status on Vigil's admin endpoint show "
                          "its pipelines and components")

    endpoint: str = "localhost:55679"
    expvar: ExpvarConfig = ExpvarConfig()


FACTORY = inert_factory("zpages", ZpagesConfig)
