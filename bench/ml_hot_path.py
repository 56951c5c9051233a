"""The `ml` processor's hot path in-process: CPU per span of extraction, observe and window evaluation.

    .venv/bin/python bench/ml_hot_path.py                  # windows of 1,000 and 5,000; about a minute
    .venv/bin/python bench/ml_hot_path.py --window 1000    # one window size
    .venv/bin/python bench/ml_hot_path.py --profile        # and a cProfile of each part

The payload is `bench/passthrough.py --ml`'s: requests of 512 prediction spans,
each with `ml.model.name`/`version`, 10 numeric features, a label and a score
among ~20 attributes. The requests are parsed into `Batch` objects before the
clock starts (a fresh set for every round, so no round reads messages an
earlier one already walked), as the otlp receiver hands them on. Timed with
`time.process_time()` around the work only, medians of `--repeat` rounds:

- extract: `Extractor.extract_all` on each batch;
- observe: `MlEngine.observe` on each batch, once the reference is learned
  (extraction included; windows that close are taken aside, not evaluated);
- evaluate: `MlEngine._evaluate` (drift, health, histograms, metrics) on each
  window of `--window` predictions that observe closed, what the worker
  thread runs per window; shown per window and spread over its spans. By
  default for windows of 1,000 (the processor's default) and 5,000
  (`passthrough.py --ml`'s): a window's cost is mostly per column, so the
  smaller window pays more per span;
- total: observe + evaluate per span, and as spans per CPU-second
  (issue 9's target: >= 100,000 end to end, which also pays for receiving,
  batching and exporting: about 5 us a span without ml).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import logging
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.component import ComponentId, Settings  # noqa: E402
from agent.ml.sources.otlp import Extractor  # noqa: E402
from agent.processors.ml.config import MlProcessorConfig  # noqa: E402
from agent.processors.ml.engine import MlEngine  # noqa: E402
from agent.signals import Batch, Signal  # noqa: E402
from agent.telemetry import SelfTelemetry  # noqa: E402
from bench.passthrough import make_request  # noqa: E402
from bench.realistic_payload import make_request as realistic_request, numbered  # noqa: E402


def parsed(bodies: list[bytes]) -> list[Batch]:
    batches = [Batch.from_wire(Signal.TRACES, body) for body in bodies]
    for b in batches:
        b.items  # noqa: B018 (the receiver counts items before the ml processor sees the batch)
    return batches


def make_engine(tmp: Path, warmup: int, window: int) -> tuple[MlEngine, list[tuple]]:
    config = MlProcessorConfig(reference={"warmup": warmup}, window={"size": window})
    engine = MlEngine(config, Settings(ComponentId("ml"), SelfTelemetry(), state_dir=tmp), {})
    jobs: list[tuple] = []
    engine._submit = jobs.append  # windows are taken aside here, evaluated (and timed) apart
    return engine, jobs


def learn(engine: MlEngine, jobs: list[tuple], bodies: list[bytes]) -> None:
    """Feed batches until the reference job comes, then learn it as the worker would."""
    i = 0
    while not jobs:
        engine.observe(parsed([bodies[i % len(bodies)]])[0])
        i += 1
    kind, state, rows, columns, *_ = jobs.pop()
    assert kind == "reference"
    state.profile = engine._learn(state, rows, columns)
    state.building = False


def timed(fn) -> float:
    gc.collect()
    started = time.process_time()
    fn()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=512, help="spans per request (default 512)")
    parser.add_argument("--attributes", type=int, default=20, help="attributes per span (default 20)")
    parser.add_argument("--requests", type=int, default=40, help="requests per round (default 40)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=1000, help="reference warmup (passthrough --ml: 1000)")
    parser.add_argument("--window", type=int, action="append",
                        help="window size, repeatable (default: 1000, the processor's default, and 5000, "
                             "passthrough --ml's)")
    parser.add_argument("--payload", choices=["prediction-only", "realistic", "realistic-no-id"],
                        default="prediction-only",
                        help="passthrough --ml's payload: prediction-only (default), realistic (every span "
                             "with an ml.prediction.id, each request's ids new to the run) or realistic-no-id")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each part")
    parser.add_argument("--sort", default="tottime", help="with --profile: the order (default tottime; cumulative)")
    parser.add_argument("--lines", type=int, default=14, help="with --profile: the functions shown (default 14)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    if args.payload.startswith("realistic"):
        bodies = [realistic_request(args.items, seed=s, prediction_id=args.payload == "realistic")
                  for s in range(1, 9)]
        sent = iter(range(1000, 10**6))

        def request_bodies() -> list[bytes]:
            # Renumbered per request, as passthrough.py sends them: the label join sees each id once.
            return [numbered(bodies[i % 8], i % 8 + 1, next(sent)) for i in range(args.requests)]
    else:
        bodies = [make_request(Signal.TRACES, args.items, args.attributes, True, seed=s) for s in range(8)]
        fixed = [bodies[i % len(bodies)] for i in range(args.requests)]

        def request_bodies() -> list[bytes]:
            return fixed
    for window in args.window or [1000, 5000]:
        run(args, bodies, request_bodies, window)


def run(args: argparse.Namespace, bodies: list[bytes], request_bodies, window: int) -> None:
    spans = args.requests * Batch.from_wire(Signal.TRACES, bodies[0]).items
    print(f"payload: {spans // args.requests} prediction spans x ~{args.attributes} attributes per request, "
          f"{args.requests} requests ({spans:,} spans) per round, {args.repeat} rounds; "
          f"warmup {args.warmup}, window {window}")

    with tempfile.TemporaryDirectory(prefix="vigil-ml-bench-") as tmp:
        extractor = Extractor()
        engine, jobs = make_engine(Path(tmp), args.warmup, window)
        learn(engine, jobs, bodies)
        if args.payload == "realistic":
            # The label join at capacity, as in a run where ids never repeat: each new prediction
            # expires the oldest one waiting.
            n = engine._join.max_pending
            engine._join.add_predictions("fill", "", [f"fill-{i}" for i in range(n)], [None] * n, [0.0] * n,
                                         [0.0] * n, time.time())
        extract_s, observe_s, evaluate_s, windows, window_rows = [], [], [], [], []
        profiles = {name: cProfile.Profile() for name in ("extract", "observe", "evaluate")} if args.profile \
            else {}
        for _ in range(args.repeat):
            batches = parsed(request_bodies())
            extract_s.append(timed(lambda: [extractor.extract_all(b) for b in batches]))
            batches = parsed(request_bodies())
            jobs.clear()
            observe_s.append(timed(lambda: [engine.observe(b) for b in batches]))
            closed = [job for job in jobs if job[0] == "window"]
            evaluate_s.append(timed(lambda: [engine._evaluate(state, rows, columns, started)
                                             for _, state, rows, columns, started, *_ in closed]))
            windows.append(len(closed))
            window_rows.append(sum(job[2] for job in closed))
        if profiles:
            batches = parsed(request_bodies())
            profiles["extract"].runcall(lambda: [extractor.extract_all(b) for b in batches])
            batches = parsed(request_bodies())
            jobs.clear()
            profiles["observe"].runcall(lambda: [engine.observe(b) for b in batches])
            closed = [job for job in jobs if job[0] == "window"]
            profiles["evaluate"].runcall(lambda: [engine._evaluate(state, rows, columns, started)
                                                  for _, state, rows, columns, started, *_ in closed])

    observe_us = statistics.median(observe_s) / spans * 1e6
    per_window = statistics.median(e / w for e, w in zip(evaluate_s, windows) if w) if any(windows) else 0.0
    evaluate_us = statistics.median(e / r for e, r in zip(evaluate_s, window_rows) if r) * 1e6 \
        if any(window_rows) else 0.0
    total_us = observe_us + evaluate_us
    print()
    print(f"{'part':<34} {'us / span':>10} {'min-max':>16}")

    def row(name: str, values: list[float], per: list[int] | int) -> None:
        us = [v / (p if isinstance(per, list) else per) * 1e6
              for v, p in zip(values, per if isinstance(per, list) else [per] * len(values)) if p]
        print(f"{name:<34} {statistics.median(us):>10.2f} {min(us):>7.2f}-{max(us):<8.2f}")

    row("extract (Extractor.extract_all)", extract_s, spans)
    row("observe (MlEngine.observe)", observe_s, spans)
    row(f"evaluate (per window of {window})", evaluate_s, window_rows)
    print(f"{'evaluate, ms per window':<34} {per_window * 1e3:>10.2f}")
    print(f"\nobserve + evaluate: {total_us:.2f} us per span = {1e6 / total_us:,.0f} spans per CPU-second "
          f"(the ml processor alone; issue 9's target end to end: >= 100,000)")
    for name, profile in profiles.items():
        print(f"\n--- cProfile: {name}, window {window} (by {args.sort}) ---")
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.lines)
    print()


if __name__ == "__main__":
    main()
