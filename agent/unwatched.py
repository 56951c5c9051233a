"""Predictions no `ml` processor sees: said once, in the log and in the status.

A receiver whose spans (or log records) go only to pipelines without an `ml`
processor gets a `PredictionWatch` in front of them. It looks for the bytes
`ml.model.name` (or Triton's `triton.model_name`, which the ml processor reads
as a model too) in each batch until it finds them once, then names the model
and where it went, and from then on only passes batches on.
"""

from __future__ import annotations

import logging

from agent.component import ComponentId, Consumer
from agent.ml.vocabulary import MODEL_NAME, TRITON_MODEL_NAME
from agent.signals import Batch, Signal

MODEL_KEYS = (MODEL_NAME, TRITON_MODEL_NAME)
MARKERS = tuple(key.encode() for key in MODEL_KEYS)

log = logging.getLogger("vigil.pipeline")


class UnwatchedPredictions:
    """What the watches of one graph found: one line per receiver and signal, for the status."""

    def __init__(self) -> None:
        self.notices: list[str] = []


class PredictionWatch:
    def __init__(self, target: Consumer, receiver: ComponentId, signal: Signal, pipelines: list[ComponentId],
                 found: UnwatchedPredictions) -> None:
        self.target = target
        self._receiver, self._signal, self._pipelines = receiver, signal, pipelines
        self._found = found
        self._seen = False

    async def consume(self, batch: Batch) -> None:
        if not self._seen and any(marker in batch.wire() for marker in MARKERS):
            self._seen = True
            self._say(batch)
        await self.target.consume(batch)

    def _say(self, batch: Batch) -> None:
        key, model = _first_model(batch)
        pipelines = ", ".join(str(p) for p in self._pipelines)
        notice = (f"{self._signal.item_name.replace('_', ' ')} with {key} ({model!r}) come through receiver "
                  f"{self._receiver} into {pipelines}, where no ml processor sees them: no model monitoring "
                  f"for them (add ml to the processors of {pipelines})")
        self._found.notices.append(notice)
        log.warning("%s", notice)


def _first_model(batch: Batch) -> tuple[str, str]:
    for resource in batch.resources():
        for scope in resource.scope_spans if batch.signal is Signal.TRACES else resource.scope_logs:
            for item in scope.spans if batch.signal is Signal.TRACES else scope.log_records:
                for kv in item.attributes:
                    if kv.key in MODEL_KEYS:
                        return kv.key, kv.value.string_value[:100]
    return MODEL_NAME, "?"  # only a value, a body or a resource mentions it
