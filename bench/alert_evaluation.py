"""The alerts processor's evaluation of the shipped rule pack, with its SLO objectives and without.

The objectives read counters and latency histograms over windows of up to 3 days, where the pack's other
rules read 5 minutes: this measures what that history costs in evaluation time and stored samples.

    .venv/bin/python bench/alert_evaluation.py                  # 10 models, a day of points every 15 s
    .venv/bin/python bench/alert_evaluation.py --models 50 --hours 72

Each model sends what the ml processor writes for it: ml.predictions and ml.prediction.errors (cumulative
counters) and ml.prediction.duration (a delta histogram of 15 buckets), every `--interval` seconds of a
clock the benchmark moves. Then the engine evaluates every rule at the end of that history: medians of
`--rounds` rounds of `--evaluations` evaluations, and the ratio of the pack against the pack without
objectives.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.alerts.engine import RuleEngine  # noqa: E402
from agent.alerts.rules import RuleFile, load_rule_file  # noqa: E402
from tests.alerts.helpers import counter, histogram  # noqa: E402

PACK = Path(__file__).resolve().parents[1] / "agent" / "alerts" / "inference-rules.yaml"
BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]


def history(rules, models: int, hours: float, interval: float) -> RuleEngine:
    engine = RuleEngine(rules)
    start = now = 1_700_000_000.0
    total = 0
    resource = {"service.name": "api"}
    for _ in range(int(hours * 3600 / interval)):
        now += interval
        total += 100
        for m in range(models):
            attrs = {"ml.model.name": f"model-{m}", "ml.model.version": "1"}
            store = engine.store
            store.observe(counter("ml.predictions", [(total, attrs)], time_s=now, start_s=start, resource=resource), now)
            store.observe(counter("ml.prediction.errors", [(total // 100, {**attrs, "error.type": "timeout"})],
                                  time_s=now, start_s=start, resource=resource), now)
            store.observe(histogram("ml.prediction.duration", BOUNDS, [10] * 15, attrs, time_s=now, resource=resource),
                          now)
    engine.now = now  # type: ignore[attr-defined]
    return engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between exports")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--evaluations", type=int, default=5)
    args = parser.parse_args()
    raw = yaml.safe_load(PACK.read_text())
    variants = {"pack": load_rule_file(str(PACK)),
                "pack without slos": RuleFile.model_validate({"rules": raw["rules"]}).rules}
    print(f"{args.models} models, {args.hours:g} h of exports every {args.interval:g} s")
    medians: dict[str, float] = {}
    for name, rules in variants.items():
        engine = history(rules, args.models, args.hours, args.interval)
        rounds = []
        for _ in range(args.rounds):
            times = []
            for _ in range(args.evaluations):
                began = time.perf_counter()
                engine.evaluate(engine.now)  # type: ignore[attr-defined]
                times.append(time.perf_counter() - began)
            rounds.append(statistics.median(times))
        medians[name] = statistics.median(rounds)
        print(f"{name:18} {len(rules):3d} rules  {len(engine.store):5d} series  {engine.store.stored_samples:8d} "
              f"stored samples  {medians[name] * 1000:8.2f} ms per evaluation")
    print(f"ratio: the pack's evaluation takes {medians['pack'] / medians['pack without slos']:.1f}x the pack "
          f"without objectives")


if __name__ == "__main__":
    main()
