"""The step a shared, data-deriving processor (`ml`, `alerts`) takes in each pipeline it sits in.

The engine looks at each batch; the batch goes on unchanged, whatever the
engine does with it: what it derives must never cost the app its telemetry.
"""

from __future__ import annotations

import logging
from typing import Protocol

from agent.component import Consumer
from agent.signals import Batch


class Observer(Protocol):
    def observe(self, batch: Batch) -> None: ...

    def record_failure(self) -> None:
        """Count one batch the engine failed on (the batch itself was passed on)."""


class ObservingStage:
    mutates_data = False

    def __init__(self, engine: Observer, next: Consumer, log: logging.Logger) -> None:
        self._engine = engine
        self._next = next
        self._log = log

    async def start(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def consume(self, batch: Batch) -> None:
        try:
            self._engine.observe(batch)
        except Exception:
            self._engine.record_failure()
            self._log.exception("failed on a %s batch; passed it on unexamined", batch.signal.value)
        await self._next.consume(batch)
