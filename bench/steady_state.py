"""Steady state: 10,000 prediction spans a second, sent evenly, to `vigil run` with its default config
and to rotel, in one run; the share of one core each uses and its resident memory.

Two shapes of traffic, the same spans a second: 512-span requests (about 20 a second) and
100-span requests (100 a second, as many small apps send). The spans are what an instrumented
app sends: an OpenTelemetry SDK resource (`service.*`, `telemetry.sdk.*`, `host.*`, `process.*`),
a trace and span id, `ml.prediction.id`, a confidence, 10 features (two categorical, some missing),
five ordinary attributes of mixed types, two models (one with two versions) in every request and
an exception event on one span in 50 (`realistic_payload.py`, shared with `passthrough.py --ml`).

Vigil runs the default config (`vigil run` with no -c: OTLP in, `ml` and `alerts`, files out)
moved to free ports and a temporary directory (with --split also without `ml` and `alerts`); rotel forwards to a local OTLP sink. Each round
starts each collector fresh (the order turns), sends for `--settle` seconds, then measures the
collector's CPU time (user + system, from psutil) over `--duration` seconds and its RSS at the
end; the figures are medians over `--rounds`. The sender runs in this process, not counted.
The machine this was written on has 2 cores shared with other work.

    .venv/bin/python bench/steady_state.py                       # 3 rounds of 30 s per shape
    .venv/bin/python bench/steady_state.py --rounds 1 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from agent.default_config import default_config  # noqa: E402
from agent.signals import Signal  # noqa: E402
from idle_cost import localised, without_monitoring  # noqa: E402
from passthrough import Collector, Sink, free_port, start_rotel  # noqa: E402
from realistic_payload import make_request, numbered  # noqa: E402

SPANS_PER_SECOND = 10_000
REQUESTS = itertools.count(1)  # numbers each request sent, so no prediction id repeats in a run


def start_vigil(workdir: Path, monitoring: bool = True) -> Collector:
    config = localised(default_config({}), workdir)
    if not monitoring:
        config = without_monitoring(config)
    grpc_endpoint = config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    http_endpoint = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    grpc_port, http_port = free_port(), free_port()  # localised binds port 0: say which, to find it
    config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] = grpc_endpoint.rsplit(":", 1)[0] + f":{grpc_port}"
    config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] = http_endpoint.rsplit(":", 1)[0] + f":{http_port}"
    path = workdir / "vigil.yaml"
    path.write_text(yaml.safe_dump(config))
    return Collector("vigil", [sys.executable, "-m", "agent", "run", "-c", str(path)], grpc_port, http_port, workdir)


async def send_steadily(port: int, bodies: list[bytes], per_second: float, seconds: float) -> tuple[int, int]:
    """Send `per_second` requests a second for `seconds`, evenly spaced; the requests that failed, and sent."""
    errors: list[BaseException] = []
    pending: set[asyncio.Future] = set()

    def done(task: asyncio.Future) -> None:
        pending.discard(task)
        if task.exception() is not None:
            errors.append(task.exception())

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(Signal.TRACES.grpc_method, request_serializer=None, response_deserializer=None)
        loop = asyncio.get_running_loop()
        start, n = loop.time(), 0
        while loop.time() - start < seconds:
            # bodies[k] was made with seed k
            task = asyncio.ensure_future(call(numbered(bodies[n % len(bodies)], n % len(bodies), next(REQUESTS)),
                                              timeout=10))
            pending.add(task)
            task.add_done_callback(done)
            n += 1
            await asyncio.sleep(max(0.0, start + n / per_second - loop.time()))
        await asyncio.gather(*pending, return_exceptions=True)
    if errors:
        print(f"  {len(errors)} of {n} requests failed, e.g. {errors[0]!r}".replace("\n", " ")[:200], file=sys.stderr)
    return len(errors), n


async def one_run(name: str, workdir: Path, sink: Sink, spans: int, args) -> dict:
    collector = start_rotel(workdir, sink.port) if name == "rotel" else start_vigil(workdir, name == "vigil")
    try:
        bodies = [make_request(spans, seed) for seed in range(20)]
        per_second = SPANS_PER_SECOND / spans
        await send_steadily(collector.grpc_port, bodies, per_second, args.settle)
        cpu0, t0 = collector.cpu(), time.monotonic()
        failed, sent = await send_steadily(collector.grpc_port, bodies, per_second, args.duration)
        cpu, wall = collector.cpu() - cpu0, time.monotonic() - t0
        rss = collector.rss()
    finally:
        collector.stop()
        log = workdir / f"{name}.log"
        if log.exists():
            (Path(tempfile.gettempdir()) / f"steady-{name}-last.log").write_bytes(log.read_bytes())
    return {"cpu_pct": 100 * cpu / wall, "rss_mib": rss / 2**20, "failed_pct": 100 * failed / sent}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds measured per run (default 30)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds sent before measuring (default 5)")
    parser.add_argument("--spans", type=int, action="append", help="spans per request (default 512 and 100)")
    parser.add_argument("--skip-rotel", action="store_true")
    parser.add_argument("--split", action="store_true", help="also run Vigil's default config without `ml` and "
                        "`alerts` (vigil-bare): what the monitoring costs and what the pass-through does")
    args = parser.parse_args()
    names = ["vigil"] + (["vigil-bare"] if args.split else []) + ([] if args.skip_rotel else ["rotel"])
    sink = Sink(Signal.TRACES)
    await sink.start()
    try:
        for spans in args.spans or [512, 100]:
            runs: dict[str, list[dict]] = {n: [] for n in names}
            for round_ in range(args.rounds):
                for name in (names if round_ % 2 == 0 else names[::-1]):
                    with tempfile.TemporaryDirectory(prefix=f"steady-{name}-") as tmp:
                        runs[name].append(await one_run(name, Path(tmp), sink, spans, args))
                    r = runs[name][-1]
                    print(f"  round {round_ + 1} {name:10} {spans}-span requests: {r['cpu_pct']:5.1f} % of a core, "
                          f"{r['rss_mib']:5.1f} MiB, {r['failed_pct']:.1f} % of requests failed", file=sys.stderr)
            print(f"\n{SPANS_PER_SECOND:,} spans/s in {spans}-span requests ({SPANS_PER_SECOND / spans:.0f}/s), "
                  f"medians of {args.rounds} rounds of {args.duration:.0f} s:")
            for name, rs in runs.items():
                print(f"  {name:10} {statistics.median(r['cpu_pct'] for r in rs):5.1f} % of a core  "
                      f"{statistics.median(r['rss_mib'] for r in rs):6.1f} MiB RSS  "
                      f"{statistics.median(r['failed_pct'] for r in rs):5.1f} % of requests refused or failed")
    finally:
        await sink.stop()


if __name__ == "__main__":
    asyncio.run(main())
