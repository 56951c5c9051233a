"""Find inference servers running on this host (stub: the final version follows shortly)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

KINDS = ("triton", "vllm", "sglang", "tgi", "mlserver", "llamacpp")


@dataclass(frozen=True)
class FoundServer:
    """One server found among the host's processes: where its metrics are and which process serves them."""

    kind: str
    endpoint: str  # host:port of its metrics endpoint
    metrics_path: str
    pid: int
    command: str


def discover(kinds: Iterable[str] | None = None) -> list[FoundServer]:
    """The inference servers of `kinds` (all known kinds by default) running on this host."""
    return []
