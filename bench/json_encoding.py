"""What writing OTLP/JSON costs per span: the file and otlphttp exporters' encoder, in-process.

For each payload (`realistic_payload.py`'s prediction spans as apps send them, and
`passthrough.py --ml`'s prediction-only spans), 512 spans a request, times
`json_stream.pieces` four ways in one run, interleaved, on the CPU clock:

- `compiled`: as the exporters run it, each group of spans written straight from its bytes in C
  (agent/_otlpjson.c, by `json_wire`'s plans);
- `wire`: the same with `json_wire`'s Python writer (where the C one is not built);
- `parsed`: the same pieces with every group parsed by protobuf and encoded by `otlp_json.encode`
  (what `pieces` did before `json_wire`, and still does for a layout `json_wire` leaves to protobuf);
- `json_format`: `otlp_json.encode_with_json_format`, protobuf's own JSON printer (the reference).

Every text is checked to be the reference's, character for character. Prints µs per span, medians
of `--rounds`, and the ratios against `compiled`.

    .venv/bin/python bench/json_encoding.py                 # about 20 seconds
    .venv/bin/python bench/json_encoding.py --rounds 9 --profile
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

from agent import otlp_json  # noqa: E402
from agent.exporters import json_stream, json_wire  # noqa: E402
from agent.signals import Signal  # noqa: E402
from passthrough import make_request as prediction_only  # noqa: E402
from realistic_payload import make_request as realistic  # noqa: E402

SPANS = 512


def _pieces(wires: list[bytes]) -> list[str]:
    return ["".join(json_stream.pieces(Signal.TRACES, w)) for w in wires]


def _writing(compiled: bool):
    def encode(wires: list[bytes]) -> list[str]:
        saved, json_wire.COMPILED = json_wire.COMPILED, compiled
        try:
            return _pieces(wires)
        finally:
            json_wire.COMPILED = saved
    return encode


_compiled, _wire = _writing(True), _writing(False)


def _parsed(wires: list[bytes]) -> list[str]:
    levels = json_stream._LEVELS[Signal.TRACES]
    plans = [level.child_plan for level in levels]
    for level in levels:
        level.child_plan = None  # every group through protobuf and otlp_json.encode
    try:
        return _pieces(wires)
    finally:
        for level, plan in zip(levels, plans):
            level.child_plan = plan


def _json_format(wires: list[bytes]) -> list[str]:
    return [otlp_json.encode_with_json_format(ExportTraceServiceRequest.FromString(w)) for w in wires]


WAYS = {"compiled": _compiled, "wire": _wire, "parsed": _parsed, "json_format": _json_format}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=8, help="requests per round (default 8)")
    parser.add_argument("--profile", action="store_true", help="and a cProfile of `compiled` on the realistic payload")
    args = parser.parse_args()
    if json_wire._otlpjson is None:
        sys.exit("agent/_otlpjson.c is not built: .venv/bin/python setup.py build_ext --inplace")
    payloads = {"realistic": [realistic(SPANS, seed) for seed in range(args.requests)],
                "prediction-only": [prediction_only(Signal.TRACES, SPANS, 20, True, seed)
                                    for seed in range(args.requests)]}
    for name, wires in payloads.items():
        reference = _json_format(wires)
        for way, encode in WAYS.items():
            assert encode(wires) == reference, f"{way} differs from json_format on {name}"
        times: dict[str, list[float]] = {way: [] for way in WAYS}
        for _ in range(args.rounds):
            for way, encode in WAYS.items():
                start = time.process_time()
                encode(wires)
                times[way].append((time.process_time() - start) / (len(wires) * SPANS) * 1e6)
        size = sum(map(len, wires)) / len(wires) / SPANS
        print(f"{name} ({SPANS} spans a request, {size:.0f} B a span), medians of {args.rounds} rounds:")
        medians = {way: statistics.median(ts) for way, ts in times.items()}
        for way, m in medians.items():
            print(f"  {way:12} {m:7.1f} µs/span  ({min(times[way]):.1f}-{max(times[way]):.1f})  "
                  f"{m / medians['compiled']:6.2f}x compiled's")
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(_compiled, payloads["realistic"])
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
