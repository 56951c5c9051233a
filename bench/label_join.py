"""What the label join costs per prediction, below its capacity and at it, and what saving it costs.

    .venv/bin/python bench/label_join.py              # about 20 seconds
    .venv/bin/python bench/label_join.py --rounds 7

`agent.ml.labels.LabelJoin` with the default `labels` config (max_pending 100,000), fed as the
`ml` processor feeds it: per request of 512 spans, one call per model version (three), each id
new (as apps send them), none with its label waiting. Timed on the CPU clock, medians of
`--rounds`: a prediction while fewer than `max_pending` wait, one at capacity (each new one
expires the oldest, which is remembered as closed), and `save` of the full join (100,000
pending and 100,000 closed) with its snapshot. Then what the join holds, in bytes per pending
prediction (with its id string and predicted class, each a string of its own as the wire reader
makes them) and per closed id, from tracemalloc: the join filled to `max_pending`, then fed as
many again (each new one closing the oldest).
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import tempfile
import time
import tracemalloc
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.ml import labels  # noqa: E402

MAX_PENDING = 100_000
VERSIONS = [("fraud", "v3", 171), ("fraud", "v4", 171), ("churn", "2024-06", 170)]


def requests(first: int, count: int) -> list[list[tuple]]:
    """`count` requests' calls (model, version, ids, predicted, scores, values), ids new from `first`."""
    out, n = [], first
    for _ in range(count):
        calls = []
        for model, version, size in VERSIONS:
            ids = [f"{n + i:012d}-{(n + i) * 2654435761 % 2**32:08x}" for i in range(size)]
            n += size
            # scores and values as the ml processor hands them over: array("d")
            calls.append((model, version, ids, ["approve"] * size, array("d", [0.7]) * size,
                          array("d", [math.nan]) * size))
        out.append(calls)
    return out


def feed(join, calls: list[list[tuple]], now: float) -> float:
    gc.collect()
    started = time.process_time()
    for request in calls:
        for model, version, ids, predicted, scores, values in request:
            join.add_predictions(model, version, ids, predicted, scores, values, now)
        now += 0.05
    return time.process_time() - started


def held_bytes() -> tuple[float, float]:
    """Bytes the join holds per pending prediction (at max_pending, nothing closed) and per closed id."""
    gc.collect()
    tracemalloc.start()
    try:
        join = labels.LabelJoin(ttl=7 * 24 * 3600.0, max_pending=MAX_PENDING, wait=300.0)
        start, now, n = tracemalloc.get_traced_memory()[0], time.time(), 0
        used = []
        for _ in range(2):  # to max_pending, then as many again
            while n < MAX_PENDING * (len(used) + 1):
                for model, version, size in VERSIONS:
                    size = min(size, MAX_PENDING * (len(used) + 1) - n)
                    # new strings each, as decoded from the wire
                    ids = [f"{n + i:012d}-{(n + i) * 2654435761 % 2**32:08x}" for i in range(size)]
                    predicted = [("approve", "review", "deny")[i % 3].encode().decode() for i in range(size)]
                    join.add_predictions(model, version, ids, predicted, array("d", [0.7]) * size,
                                         array("d", [math.nan]) * size, now)
                    n += size
                now += 0.05
            del ids, predicted
            gc.collect()
            used.append(tracemalloc.get_traced_memory()[0] - start)
        assert len(join.pending) == len(join.closed) == MAX_PENDING
        return used[0] / MAX_PENDING, (used[1] - used[0]) / MAX_PENDING
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=40, help="requests of 512 predictions per round")
    args = parser.parse_args()
    per_round = args.requests * 512
    below, at, save_s, size = [], [], [], 0
    with tempfile.TemporaryDirectory(prefix="vigil-labels-bench-") as tmp:
        path = Path(tmp) / "labels.pb"
        for r in range(args.rounds):
            join = labels.LabelJoin(ttl=7 * 24 * 3600.0, max_pending=MAX_PENDING, wait=300.0)
            now = time.time()
            below.append(feed(join, requests(0, args.requests), now) / per_round)
            filled = len(join.pending)
            fill = requests(filled, (MAX_PENDING * 2 - filled) // 512 + 1)  # pending and closed full
            feed(join, fill, now + 10)
            at.append(feed(join, requests(10**7 * (r + 1), args.requests), now + 3600) / per_round)
            gc.collect()
            started = time.process_time()
            labels.save(join.snapshot(), path)
            save_s.append(time.process_time() - started)
            size = path.stat().st_size
    print(f"label join, {args.rounds} rounds of {per_round:,} predictions (medians, CPU time)")
    print(f"  a prediction below max_pending: {statistics.median(below) * 1e6:6.2f} us "
          f"({min(below) * 1e6:.2f}-{max(below) * 1e6:.2f})")
    print(f"  a prediction at max_pending:    {statistics.median(at) * 1e6:6.2f} us "
          f"({min(at) * 1e6:.2f}-{max(at) * 1e6:.2f})")
    print(f"  saving the full join:           {statistics.median(save_s) * 1e3:6.1f} ms for {size / 1e6:.1f} MB")
    held = [held_bytes() for _ in range(args.rounds)]
    print(f"  held per pending prediction:    {statistics.median(h[0] for h in held):6.0f} bytes")
    print(f"  held per closed id besides:     {statistics.median(h[1] for h in held):6.0f} bytes")


if __name__ == "__main__":
    main()
