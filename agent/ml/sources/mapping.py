"""Which attribute keys a reader reads, and as what: the `attributes:` setting applied to OTLP keys.

An app may send its own names (`{"ml.feature.*": "features.*", "ml.model.name": "model"}`:
exact names, or prefixes ending in `*`). Per key, `decision` says once what it is (its
`ml.*` name, whether it is an `ml.*` name at all, whether it is a column) and remembers it.
Triton's `triton.model_name`/`triton.model_version` are built in, as the model of an item
that has no usable `ml.model.name` (the readers apply that rule). The byte markers let a
reader skip a request that holds no readable key without walking it; `scan_prefixes` are
the keys the wire scanner hands back.
"""

from __future__ import annotations

from typing import Mapping

from agent.ml.vocabulary import (
    EMBEDDING, ERROR_TYPE, FEATURE_PREFIX, GENAI_PREFIX, ML_PREFIX, OUTPUTS, TRITON_MODEL_NAME, TRITON_MODEL_VERSION,
)

# What a key is: (its ml name, is read as a prediction's attribute: an ml.* name or a built-in fallback, is a
# column: a feature or an output), or None: not read. A plain tuple: readers unpack it once per attribute.
Decision = tuple[str, bool, bool]
# Built in: the names an inference server gives a model, read where an item has no usable ml.model.name.
FALLBACKS = (TRITON_MODEL_NAME, TRITON_MODEL_VERSION)

# Keys an app makes up per request (a request id as a key) must not grow the cache without end.
_MAX_DECISIONS = 10_000
_UNSEEN = object()


class AttributeMapping:
    """The `attributes:` setting: `ml.*` names → the names an app uses (a key ending in `*` maps a prefix)."""

    def __init__(self, attributes: Mapping[str, str] | None = None) -> None:
        self._exact: dict[str, str] = {}
        self._prefixes: list[tuple[str, str]] = []
        for ml_name, source in (attributes or {}).items():
            if ml_name.endswith("*") and source.endswith("*"):
                self._prefixes.append((source[:-1], ml_name[:-1]))
            else:
                self._exact[source] = ml_name
        # Per key seen, its decision; readers look here first and call `decide` only on a miss.
        self.decisions: dict[str, Decision | None] = {}
        # Bytes one of which a request must hold for anything in it to be read (see `nothing_to_read`).
        # `ml.` first: a batch of predictions is then told apart after a few bytes, not a whole search.
        ml, genai = ML_PREFIX.encode(), GENAI_PREFIX.encode()
        sources = {source.encode() for source in self._exact} | {source.encode() for source, _ in self._prefixes}
        self.markers = (ml, genai, *sorted(sources - {ml, genai}), TRITON_MODEL_NAME.encode())
        # The keys the wire scanner hands back: those that `decide` may read.
        self.scan_prefixes = (*self.markers, ERROR_TYPE.encode(), TRITON_MODEL_VERSION.encode())
        # The keys read as `ml.embedding`: the scanner hands their arrays back as packed doubles.
        self.vector_keys = tuple(key.encode() for key in self.sources_of(EMBEDDING))

    def ml_name(self, key: str) -> str:
        if key in self._exact:
            return self._exact[key]
        for source, ml_prefix in self._prefixes:
            if key.startswith(source):
                return ml_prefix + key[len(source):]
        return key

    def sources_of(self, ml_name: str) -> list[str]:
        """Every key an app may send that reads as `ml_name`."""
        candidates = [ml_name, *(source for source, name in self._exact.items() if name == ml_name),
                      *(source + ml_name[len(prefix):] for source, prefix in self._prefixes if ml_name.startswith(prefix))]
        return [key for key in dict.fromkeys(candidates) if self.ml_name(key) == ml_name]

    def decide(self, key: str) -> Decision | None:
        name = self.ml_name(key)
        if name.startswith(ML_PREFIX):
            decision: Decision | None = (name, True, name.startswith(FEATURE_PREFIX) or name in OUTPUTS)
        elif name.startswith(GENAI_PREFIX) or name == ERROR_TYPE:
            decision = (name, False, False)
        elif name in FALLBACKS:
            decision = (name, True, False)
        else:
            decision = None
        if len(self.decisions) < _MAX_DECISIONS:
            self.decisions[key] = decision
        return decision

    def decision(self, key: str) -> Decision | None:
        decision = self.decisions.get(key, _UNSEEN)
        return self.decide(key) if decision is _UNSEEN else decision

    def nothing_to_read(self, wire: bytes | None) -> bool:
        """True when a request's wire bytes (None: not at hand) hold no key that could be read: no `ml.`,
        `gen_ai.`, mapped source key nor `triton.model_name` anywhere in them (`error.type` and
        `triton.model_version` alone are read only beside those)."""
        return wire is not None and not any(marker in wire for marker in self.markers)
