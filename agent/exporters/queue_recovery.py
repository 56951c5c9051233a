"""What recovery found in the persistent queue's files, and how a loss is counted.

`SegmentStore.open` fills a `Recovery`; the counting here compares a segment's
good records with what the cursor said was left to send there, so a loss is
reported in items wherever the cursor knew the segment, and from the damaged
records' own headers past that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.exporters.queue_format import MAGIC, OVERHEAD, Record, Unsent, claimed_items, parse_record
from agent.signals import Signal


@dataclass
class Loss:
    """Requests the queue had stored that recovery could not give back."""

    segment: str
    why: str
    records: int
    items: dict[Signal, int]
    exact: bool = True  # False: counted from the damaged records' own headers


@dataclass
class DamagedSegment:
    name: str
    damaged_bytes: int
    records_kept: int
    moved_to: str | None  # None: could not be moved (its good records are read where they are)
    problem: str = ""


@dataclass
class TornWrite:
    segment: str
    bytes: int
    items: dict[Signal, int]  # what the cut-off record's header says it held, where it got that far


@dataclass
class Recovery:
    """What `open` found: the records still to send, in order, and what was wrong."""

    records: list[Record] = field(default_factory=list)
    segment_sizes: dict[int, int] = field(default_factory=dict)
    torn: list[TornWrite] = field(default_factory=list)
    damaged: list[DamagedSegment] = field(default_factory=list)
    losses: list[Loss] = field(default_factory=list)
    # Segments of a format this reader does not know: (name, version), left in place.
    unknown_format: list[tuple[str, int]] = field(default_factory=list)
    cursor_problem: str = ""  # why the cursor was not used, when it was not

    @property
    def torn_bytes(self) -> int:
        return sum(t.bytes for t in self.torn)


def with_in_flight(data: bytes, good: list[tuple[Signal, int, int, int]], in_flight: list[Record]):
    """`good` plus the records the cursor lists in flight that still check out; and those that do not."""
    found = {pos - OVERHEAD for _, _, pos, _ in good}
    lost = []
    extra = []
    for record in in_flight:
        if record.offset in found:
            continue
        parsed = parse_record(memoryview(data)[:record.offset + record.size], record.offset)
        if parsed is None or parsed[3] != record.size:
            lost.append(record)
        else:
            extra.append(parsed)
    return sorted(extra + good, key=lambda g: g[2]), lost


def segment_loss(name: str, data: bytes, good: list[tuple[Signal, int, int, int]], damage: list[tuple[int, int]],
                 expected: Unsent | None, lost_in_flight: list[Record]) -> Loss | None:
    """What this segment should have given back and did not: counted against the cursor where it
    knew the segment, else from the damaged records' headers."""
    items: dict[Signal, int] = {}
    records = 0
    exact = True
    for record in lost_in_flight:
        items[record.signal] = items.get(record.signal, 0) + record.items
        records += 1
    damage_after = damage
    if expected is not None:
        found = [(signal, count) for signal, count, pos, size in good
                 if expected.start <= pos - OVERHEAD and pos - OVERHEAD + size <= expected.end]
        records += max(0, expected.records - len(found))
        for signal in Signal:
            missing = expected.items.get(signal, 0) - sum(c for s, c in found if s is signal)
            if missing > 0:
                items[signal] = items.get(signal, 0) + missing
        damage_after = [(max(a, expected.end), b) for a, b in damage if b > expected.end]
    for a, b in damage_after:  # past what the cursor knew: the headers are all there is
        for signal, count in claimed_items(data, a, b).items():
            items[signal] = items.get(signal, 0) + count
            exact = False
        records += data.count(MAGIC, a, b)
    if not records and not any(items.values()):
        return None
    if expected is not None and len(data) < expected.end:
        why = f"the file was cut short: it ends at byte {len(data)} of the {expected.end} written to it"
    elif damage:
        why = "damaged records"
    else:
        why = "the file holds fewer records than were written to it"
    return Loss(name, why, records, items, exact)
