"""Extensions that Vigil accepts so Collector configs load, but that do nothing here.

pprof, zpages and memory_ballast serve or tune the Go runtime; Vigil is Python. Each
says so in one line at validate and again at start.
"""

from __future__ import annotations

from typing import ClassVar

from agent.component import Factory, Kind, Settings
from agent.configmodel import StrictModel


class InertConfig(StrictModel):
    """Base of an inert extension's config; `why` ends its warning."""

    why: ClassVar[str] = ""

    def warnings(self) -> list[str]:
        """Read by the config loader, which puts the component's path in front."""
        return [f"accepted but does nothing in Vigil: {self.why}"]


class InertExtension:
    def __init__(self, config: InertConfig, settings: Settings) -> None:
        self._log = settings.logger
        self._line = f"extensions.{settings.id}: {config.warnings()[0]}"

    async def start(self) -> None:
        self._log.warning("%s", self._line)

    async def shutdown(self) -> None:
        pass


def inert_factory(type_: str, config_model: type[InertConfig]) -> Factory:
    return Factory(Kind.EXTENSION, type_, config_model, InertExtension, frozenset(),
                   f"accepted for Collector configs, does nothing: {config_model.why}")
