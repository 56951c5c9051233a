"""The OTLP prediction source: spans and log records carrying `ml.*` (and `gen_ai.*`) attributes.

An item with `ml.model.name` is a prediction: its features and outputs become
columns, with its id, latency (a span's duration; a log record's
`ml.prediction.duration`), failure (status ERROR or `error.type`) and class
probabilities. One with `ml.label` and `ml.prediction.id` is a label, and only
that when it carries nothing else of a prediction. A span with `gen_ai.*`
attributes is a GenAI call.

`Extractor` is what the ml processor calls per batch. It applies the
`attributes:` mapping, skips a request whose bytes hold no key it could read,
and reads the rest with the wire reader where the scanner is built and takes
the request, else with the message reader. Both give the same `Extracted`.
"""

from __future__ import annotations

from typing import Mapping

from agent.ml.predictions import Extracted, Predictions
from agent.ml.sources.mapping import AttributeMapping, Decision
from agent.ml.sources.message_reader import MessageReader
from agent.ml.sources.wire_reader import WireReader
from agent.signals import Batch


class Extractor:
    """Finds predictions in batches. `attributes` maps `ml.*` names to the names an app uses.

    A mapping key ending in `*` maps a prefix: `{"ml.feature.*": "features.*"}`.
    """

    def __init__(self, attributes: Mapping[str, str] | None = None, max_features: int = 200,
                 use_scanner: bool = True) -> None:
        self.mapping = AttributeMapping(attributes)
        self.max_features = max_features
        self.message_reader = MessageReader(self.mapping, max_features)
        # The scanner's reader whether or not the scanner is built (it then reads nothing): None only when
        # told not to use it.
        self.wire_reader = WireReader(self.mapping, max_features) if use_scanner else None

    @property
    def dropped_features(self) -> int:
        """Feature values beyond max_features, since start."""
        dropped = self.message_reader.dropped_features
        return dropped if self.wire_reader is None else dropped + self.wire_reader.dropped_features

    @property
    def scan_prefixes(self) -> tuple[bytes, ...]:
        return self.mapping.scan_prefixes

    def decision(self, key: str) -> Decision | None:
        return self.mapping.decision(key)

    def extract(self, batch: Batch) -> list[Predictions]:
        return self.extract_all(batch).predictions

    def extract_all(self, batch: Batch) -> Extracted:
        if self.mapping.nothing_to_read(batch._wire):
            return Extracted([], [], [])
        if self.wire_reader is not None:
            extracted = self.wire_reader.read(batch)
            if extracted is not None:
                return extracted
        return self.message_reader.read(batch)
