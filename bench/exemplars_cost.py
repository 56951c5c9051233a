"""What exemplars cost the `ml` processor: its hot path and its window evaluation, exemplars on against off.

    .venv/bin/python bench/exemplars_cost.py                # about a minute
    .venv/bin/python bench/exemplars_cost.py --window 5000

The payload is `bench/ml_hot_path.py`'s (`bench/passthrough.py --ml`'s requests
of 512 prediction spans, each with a trace and span id, 10 numeric features, a
label and a score among ~20 attributes). Two engines, one with `exemplars:
{enabled: true}` (the default) and one with `enabled: false`, each learn their
reference from the same batches; then, round after round and alternating which
goes first, each observes the same freshly parsed requests and evaluates the
windows that closed. Timed with `time.process_time()`, medians of `--repeat`
rounds:

- observe: `MlEngine.observe` per span (extraction, the interval's histograms
  and reservoirs, the window buffers);
- evaluate: `MlEngine._evaluate` per window (drift, health, histograms and,
  with exemplars on, their selection and the exemplars written);
- interval: writing the interval's metrics (latency and confidence histograms
  with their exemplars) per model version.

The last column gives the ratios on / off; `observe + evaluate` is the whole
per-span cost of the processor's work.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.component import ComponentId, Settings  # noqa: E402
from agent.processors.ml.config import MlProcessorConfig  # noqa: E402
from agent.processors.ml.engine import MlEngine  # noqa: E402
from agent.signals import Signal  # noqa: E402
from agent.telemetry import SelfTelemetry  # noqa: E402
from bench.ml_hot_path import parsed, timed  # noqa: E402
from bench.passthrough import make_request  # noqa: E402


def make_engine(tmp: Path, warmup: int, window: int, exemplars: bool) -> tuple[MlEngine, list]:
    config = MlProcessorConfig(reference={"warmup": warmup}, window={"size": window},
                               exemplars={"enabled": exemplars})
    engine = MlEngine(config, Settings(ComponentId("ml"), SelfTelemetry(), state_dir=tmp), {})
    jobs: list = []
    engine._submit = jobs.append  # windows are taken aside here, evaluated (and timed) apart
    return engine, jobs


def learn(engine: MlEngine, jobs: list, bodies: list[bytes]) -> None:
    i = 0
    while not jobs:
        engine.observe(parsed([bodies[i % len(bodies)]])[0])
        i += 1
    job = jobs.pop()
    assert job.kind == "reference"
    job.state.profile = engine._learn(job.state, job.rows, job.data)
    job.state.building = False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=512, help="spans per request (default 512)")
    parser.add_argument("--attributes", type=int, default=20, help="attributes per span (default 20)")
    parser.add_argument("--requests", type=int, default=40, help="requests per round (default 40)")
    parser.add_argument("--repeat", type=int, default=7, help="rounds (default 7)")
    parser.add_argument("--warmup", type=int, default=1000, help="reference warmup (default 1000)")
    parser.add_argument("--window", type=int, default=1000, help="window size (default 1000, the processor's)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    bodies = [make_request(Signal.TRACES, args.items, args.attributes, True, seed=s) for s in range(8)]
    requests = [bodies[i % len(bodies)] for i in range(args.requests)]
    spans = args.requests * args.items
    print(f"payload: {args.items} prediction spans x ~{args.attributes} attributes per request, {args.requests} "
          f"requests ({spans:,} spans) per round, {args.repeat} rounds; warmup {args.warmup}, window {args.window}")
    observe: dict[bool, list[float]] = {True: [], False: []}
    evaluate: dict[bool, list[float]] = {True: [], False: []}
    interval: dict[bool, list[float]] = {True: [], False: []}
    written: dict[bool, int] = {}
    with tempfile.TemporaryDirectory(prefix="vigil-exemplars-bench-") as tmp:
        engines = {on: make_engine(Path(tmp) / str(on), args.warmup, args.window, on) for on in (True, False)}
        for engine, jobs in engines.values():
            learn(engine, jobs, bodies)
        for round_ in range(args.repeat):
            for on in ((True, False) if round_ % 2 == 0 else (False, True)):
                engine, jobs = engines[on]
                batches = parsed(requests)
                jobs.clear()
                observe[on].append(timed(lambda: [engine.observe(b) for b in batches]) / spans)
                closed = [job for job in jobs if job.kind == "window"]
                seconds = timed(lambda: [engine._evaluate(j.state, j.rows, j.data, j.started_ns, j.traces)
                                         for j in closed])
                evaluate[on].append(seconds / max(len(closed), 1))
                taken = [(state, state.traffic.take_interval(), dict(state.traffic.by_class),
                          dict(state.traffic.by_error)) for state in engine._models.values()]
                out: list = []
                no_labels = ({}, {}, {}, {}, {})
                interval[on].append(timed(lambda: out.append(
                    engine._interval_metrics(taken, no_labels, engine._genai.take()))))
                batch = out[0]
                written[on] = sum(len(p.exemplars) for rm in batch.message.resource_metrics
                                  for sm in rm.scope_metrics for m in sm.metrics
                                  for p in m.histogram.data_points) if batch is not None else 0

    def us(values: list[float]) -> float:
        return statistics.median(values) * 1e6

    print(f"\n{'part':<36} {'exemplars on':>13} {'off':>10} {'on / off':>9}")
    for name, values, unit in (("observe, us per span", observe, 1.0), ("evaluate, ms per window", evaluate, 1e-3),
                               ("interval metrics, ms per write", interval, 1e-3)):
        on, off = us(values[True]) * unit, us(values[False]) * unit
        print(f"{name:<36} {on:>13.3f} {off:>10.3f} {on / off:>9.3f}")
    total = {on: us(observe[on]) + us(evaluate[on]) / args.window for on in (True, False)}
    print(f"{'observe + evaluate, us per span':<36} {total[True]:>13.3f} {total[False]:>10.3f} "
          f"{total[True] / total[False]:>9.3f}")
    print(f"\nexemplars on the interval's histogram points: {written[True]} (on), {written[False]} (off)")


if __name__ == "__main__":
    main()
