"""What host metrics cost: CPU time per scrape of each scraper, and the idle agent's CPU and memory.

    .venv/bin/python bench/hostmetrics_cost.py                 # 100 scrapes each, then 120 s of idle agent
    .venv/bin/python bench/hostmetrics_cost.py --duration 30 --scrapes 50

Part 1 runs each host-wide scraper of the `hostmetrics` receiver in this
process, `--scrapes` times (12 ms apart) after two warm-up scrapes, and reports the median
CPU time of one scrape (time.process_time around it; psutil reads /proc, so
this is the cost of the reads plus building the OTLP message) and its median
wall time. The `process` scraper watching every process (what it does with no
filter) is shown too, for scale; the idle run below does not include it.

Part 2 starts `vigil run` as a child process with `hostmetrics` (every
host-wide scraper) at a 10 s collection interval exporting to a `file`
exporter, plus the `nvml` receiver at the same interval when this build has
one (`--no-nvml` leaves it out; if it cannot start, without a GPU, the run
falls back to hostmetrics alone). It waits for the first export and a few
settling seconds, then measures the child's CPU time over `--duration`
seconds (its share of one core) and its resident memory, and prints the ratio
to the target: 0.5% of one core. Nothing else runs in the agent: no OTLP
receiver, no traffic.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.configmodel import parse_duration  # noqa: E402
from agent.hostinfo import detect_host_resource  # noqa: E402
from agent.metrics_builder import MetricsBuilder  # noqa: E402
from agent.receivers import hostmetrics  # noqa: E402
from agent.receivers.hostmetrics.process import ProcessConfig, ProcessScraper  # noqa: E402

TARGET_PERCENT = 0.5  # of one core, for the idle agent
# Between two timed scrapes: longer than a clock tick (10 ms at HZ=100), so CPU times advance and the
# scrapers compute utilizations as they do in the agent.
GAP = 0.012


def scraper_costs(scrapes: int) -> list[tuple[str, float, float, int]]:
    """(scraper, median CPU ms, median wall ms, points per scrape) for each scraper."""
    resource = detect_host_resource()
    defaults = hostmetrics._HOST_WIDE
    scrapers = [cls(getattr(defaults, name)) for name, cls in hostmetrics._SCRAPERS.items()]
    scrapers.append(ProcessScraper(ProcessConfig()))
    results = []
    for scraper in scrapers:
        for _ in range(2):  # warm-up: caches, and the previous reading utilization needs
            scraper.scrape(MetricsBuilder(), resource)
        cpu, wall = [], []
        points = 0
        for _ in range(scrapes):
            time.sleep(GAP)  # let the kernel's counters move, as between real scrapes
            builder = MetricsBuilder()
            c0, w0 = time.process_time(), time.perf_counter()
            scraper.scrape(builder, resource)
            batch = builder.batch()
            c1, w1 = time.process_time(), time.perf_counter()
            cpu.append((c1 - c0) * 1000)
            wall.append((w1 - w0) * 1000)
            points = batch.items if batch is not None else 0
        name = scraper.name if scraper.name != "process" else f"process (all {len(psutil.pids())} processes)"
        results.append((name, statistics.median(cpu), statistics.median(wall), points))
    return results


def _has_nvml() -> bool:
    """Whether this build has the `nvml` receiver (agent/receivers/nvml.py or nvml/, registered)."""
    receivers = ROOT / "agent" / "receivers"
    if not ((receivers / "nvml.py").exists() or (receivers / "nvml").is_dir()):
        return False
    try:
        from agent import registry
        from agent.component import Kind
    except Exception as exc:  # a build that cannot load its registry cannot run either; say so below
        print(f"(cannot load the component registry: {exc!r})")
        return False
    return registry.lookup(Kind.RECEIVER, "nvml") is not None


def _config(out: Path, interval: str, nvml: bool) -> str:
    receivers = ["hostmetrics"] + (["nvml"] if nvml else [])
    text = f"""
receivers:
  hostmetrics:
    collection_interval: {interval}
    scrapers: {{cpu: , load: , memory: , paging: , disk: , filesystem: , network: , processes: }}
"""
    if nvml:
        text += f"  nvml:\n    collection_interval: {interval}\n"
    text += f"""
exporters:
  file: {{path: {str(out)!r}}}
service:
  pipelines:
    metrics: {{receivers: [{", ".join(receivers)}], exporters: [file]}}
  telemetry:
    logs: {{level: warning}}
"""
    return text


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def _stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def idle_agent(duration: float, interval: str, settle: float, nvml: bool, workdir: Path) -> dict:
    out = workdir / "metrics.json"
    config = workdir / "vigil.yaml"
    config.write_text(_config(out, interval, nvml))
    log = open(workdir / "vigil.log", "wb")
    child = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)], cwd=ROOT,
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while _lines(out) == 0:
            if child.poll() is not None:
                raise RuntimeError(f"vigil exited with {child.returncode}: "
                                   f"{(workdir / 'vigil.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("vigil wrote nothing within 30 s")
            time.sleep(0.1)
        time.sleep(settle)  # past start-up: imports, the first round of scrapes
        proc = psutil.Process(child.pid)
        lines0 = _lines(out)
        cpu0 = proc.cpu_times()
        start = time.monotonic()
        rss = []
        while time.monotonic() - start < duration:
            rss.append(proc.memory_info().rss)
            time.sleep(min(1.0, max(duration - (time.monotonic() - start), 0.0)))
            if child.poll() is not None:
                raise RuntimeError(f"vigil exited with {child.returncode} during the measurement")
        cpu1 = proc.cpu_times()
        elapsed = time.monotonic() - start
        rss.append(proc.memory_info().rss)
        try:
            uss = proc.memory_full_info().uss
        except (psutil.AccessDenied, AttributeError):
            uss = None
        used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        return {"elapsed": elapsed, "cpu_s": used, "cpu_percent": 100 * used / elapsed,
                "rss_mean": statistics.mean(rss), "rss_max": max(rss), "uss": uss,
                "exports": _lines(out) - lines0, "threads": proc.num_threads()}
    finally:
        _stop(child)
        log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120.0,
                        help="seconds to measure the idle agent (default 120)")
    parser.add_argument("--scrapes", type=int, default=100, help="scrapes per scraper in part 1 (default 100)")
    parser.add_argument("--interval", default="10s", help="the agent's collection_interval (default 10s)")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds to wait after the first export before measuring (default 3)")
    parser.add_argument("--no-nvml", action="store_true", help="leave the nvml receiver out of the idle run")
    parser.add_argument("--skip-scrapers", action="store_true", help="only the idle run")
    parser.add_argument("--skip-agent", action="store_true", help="only the per-scraper costs")
    args = parser.parse_args()

    print(f"host: {psutil.cpu_count()} logical CPUs, {psutil.virtual_memory().total / 2**30:.1f} GiB, "
          f"{len(psutil.pids())} processes; python {sys.version.split()[0]}, psutil {psutil.__version__}")

    if not args.skip_scrapers:
        print(f"\n== one scrape of each scraper (median of {args.scrapes}) ==")
        print(f"{'scraper':<32} {'cpu ms':>8} {'wall ms':>8} {'points':>7}")
        costs = scraper_costs(args.scrapes)
        for name, cpu, wall, points in costs:
            print(f"{name:<32} {cpu:8.3f} {wall:8.3f} {points:7d}")
        host_wide = [c for c in costs if not c[0].startswith("process ")]
        total = sum(c[1] for c in host_wide)
        interval_s = parse_duration(args.interval)
        print(f"{'host-wide scrapers, all':<32} {total:8.3f} {sum(c[2] for c in host_wide):8.3f} "
              f"{sum(c[3] for c in host_wide):7d}")
        if interval_s:
            predicted = 100 * total / 1000 / interval_s
            print(f"-> scraping alone at {args.interval}: {predicted:.4f}% of one core "
                  f"({predicted / TARGET_PERCENT:.3f} x the {TARGET_PERCENT}% target)")

    if not args.skip_agent:
        nvml = _has_nvml() and not args.no_nvml
        what = "hostmetrics" + (" + nvml" if nvml else "")
        print(f"\n== idle agent: {what} at {args.interval} -> file, measured over {args.duration:g} s ==")
        with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
            try:
                r = idle_agent(args.duration, args.interval, args.settle, nvml, Path(tmp))
            except RuntimeError as exc:
                if not nvml:
                    raise
                print(f"(with nvml the agent failed: {exc}; measuring hostmetrics alone)")
                r = idle_agent(args.duration, args.interval, args.settle, False, Path(tmp))
        print(f"CPU time        {r['cpu_s']:.3f} s over {r['elapsed']:.1f} s ({r['exports']} exports written)")
        print(f"CPU             {r['cpu_percent']:.3f}% of one core")
        print(f"target          {TARGET_PERCENT}% of one core -> ratio {r['cpu_percent'] / TARGET_PERCENT:.2f} "
              f"({'within' if r['cpu_percent'] <= TARGET_PERCENT else 'OVER'} target)")
        uss = f", USS {r['uss'] / 2**20:.1f} MiB" if r["uss"] is not None else ""
        print(f"memory          RSS mean {r['rss_mean'] / 2**20:.1f} MiB, max {r['rss_max'] / 2**20:.1f} MiB"
              f"{uss}; {r['threads']} threads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
