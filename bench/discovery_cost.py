"""What finding inference servers costs an idle agent: one scan measured directly, then `vigil run` with an
`inference` receiver doing discovery against the same config without it, in one run.

    .venv/bin/python bench/discovery_cost.py                          # about 15 minutes
    .venv/bin/python bench/discovery_cost.py --rounds 1 --duration 60 # a short look
    .venv/bin/python bench/discovery_cost.py --skip-agent             # only the scan itself

1. **One scan.** `discover()` called `--scans` times in this process: the median CPU time and wall time
   of one scan, the number of processes on the host, and what that is as a share of one core at the
   receiver's default interval (60 s).
2. **The agent.** Each round starts `vigil run` on the built-in config (`vigil run` with no -c) three
   ways, in an order that turns each round: without an `inference` receiver; with one doing discovery at
   its default interval; with one doing discovery every second (sixty times the work, to make it
   visible). `bench/idle_cost.py`'s `measure` gives each run's CPU (share of one core over `--duration`
   seconds after `--settle`) and peak RSS; the medians over `--rounds` and their ratios are printed.
   A host that runs an inference server makes the agent scrape it, which is no longer idle: each run
   says how many servers the agent found (its log), and the medians leave out runs that found one
   (marked `*` where every run did).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from agent.default_config import default_config  # noqa: E402
from agent.receivers.inference.discovery import discover  # noqa: E402
from idle_cost import measure  # noqa: E402

DEFAULT_INTERVAL = 60.0


def with_discovery(config: dict, interval: str | None) -> dict:
    """`config` plus an `inference` receiver with discovery on, in its metrics pipeline."""
    out = copy.deepcopy(config)
    receiver: dict = {"discovery": {"enabled": True}}
    if interval is not None:
        receiver["discovery"]["interval"] = interval
    out.setdefault("receivers", {})["inference"] = receiver
    out["service"]["pipelines"]["metrics"]["receivers"].append("inference")
    return out


def one_scan(scans: int) -> None:
    found = discover()
    cpu, wall = [], []
    for _ in range(scans):
        c0, w0 = time.process_time(), time.perf_counter()
        discover()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    cpu_ms, wall_ms = 1000 * statistics.median(cpu), 1000 * statistics.median(wall)
    print(f"one scan, median of {scans}: cpu {cpu_ms:.2f} ms  wall {wall_ms:.2f} ms  "
          f"({len(psutil.pids())} processes on this host)")
    print(f"  at the default interval ({DEFAULT_INTERVAL:.0f} s): "
          f"{100 * cpu_ms / 1000 / DEFAULT_INTERVAL:.4f}% of a core")
    print(f"  found: {', '.join(f'{s.kind} {s.endpoint} (pid {s.pid})' for s in found) or 'no server'}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=130.0,
                        help="seconds measured per run (default 130: two scans at the default interval)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after start-up before measuring")
    parser.add_argument("--scans", type=int, default=50, help="scans timed in the first part (default 50)")
    parser.add_argument("--skip-agent", action="store_true", help="only time one scan")
    args = parser.parse_args()

    one_scan(args.scans)
    if args.skip_agent:
        return 0
    config = default_config({})
    variants = {"without inference": config, "discovery every 60s": with_discovery(config, None),
                "discovery every 1s": with_discovery(config, "1s")}
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in variants}
    names = list(variants)
    for round_ in range(args.rounds):
        order = names[round_ % len(names):] + names[:round_ % len(names)]
        for name in order:
            logs: list[str] = []
            cpu, rss = measure(variants[name], args.duration, args.settle, logs.append)
            found = sum(line.count("found a ") for line in logs)
            results[name].append((cpu, rss, found))
            note = f"  found {found} server(s) and scraped them: not idle" if found else ""
            print(f"round {round_ + 1} {name:<20} cpu {cpu:6.3f}% of a core  rss {rss:6.1f} MiB{note}", flush=True)
    print(f"\nbuilt-in config, idle, medians of {args.rounds} rounds of {args.duration:.0f} s:")
    medians = {}
    for name, runs in results.items():
        idle = [r for r in runs if not r[2]]
        used = idle or runs
        medians[name] = (statistics.median(r[0] for r in used), statistics.median(r[1] for r in used),
                         "" if idle else "*", len(runs) - len(idle))
    base_cpu, base_rss = medians["without inference"][:2]
    for name, (cpu, rss, mark, left_out) in medians.items():
        ratio = f"cpu {cpu / base_cpu:6.2f}x  rss {rss / base_rss:5.2f}x" if base_cpu else ""
        dropped = f"  ({left_out} run(s) that found a server left out)" if left_out and not mark else ""
        print(f"  {name:<20} cpu {cpu:6.3f}%{mark:1} of a core  rss {rss:6.1f} MiB  {ratio}{dropped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
