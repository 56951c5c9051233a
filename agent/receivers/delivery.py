"""How every receiver hands a batch to its pipelines and counts the outcome.

A receiver asks `Delivery` to deliver; the items are counted accepted
(`vigil_receiver_accepted_<items>`) or, whatever the pipelines raised,
refused (`vigil_receiver_refused_<items>`), with the receiver and transport
as attributes, and what the pipelines raised goes back to the receiver. What
to do about a refusal (answer the sender, drop the scrape, read the lines
again) is the receiver's.
"""

from __future__ import annotations

from typing import Mapping

from agent.component import Consumer, Settings
from agent.signals import Batch, Signal
from agent.telemetry import ReceiverCounters


class Delivery:
    """One receiver's way into its pipelines: a consumer per signal, and its counters."""

    def __init__(self, settings: Settings, consumers: Mapping[Signal, Consumer]) -> None:
        self._consumers = consumers
        self._counters = ReceiverCounters(settings.telemetry, str(settings.id))

    async def deliver(self, batch: Batch, transport: str) -> None:
        """Hand `batch` to its signal's pipelines; raises what they raise, its items counted refused."""
        try:
            await self._consumers[batch.signal].consume(batch)
        except Exception:
            self._counters.refused(batch.signal, transport, batch.items)
            raise
        self._counters.accepted(batch.signal, transport, batch.items)

    def refused(self, signal: Signal, transport: str, items: int) -> None:
        """Count items refused before they reached the pipelines (a body that does not parse)."""
        self._counters.refused(signal, transport, items)
