"""What model monitoring costs an agent that sees no predictions: a shipped config, idle, with and
without its `ml` and `alerts` processors, in one run.

    .venv/bin/python bench/idle_cost.py                           # config/vigil.yaml (`make run`)
    .venv/bin/python bench/idle_cost.py --config builtin          # `vigil run` with no -c
    .venv/bin/python bench/idle_cost.py --config systemd/vigil.yaml --rounds 5 --duration 30

Each round starts `vigil run` twice, once on the config as shipped and once on the same config with
`ml` and `alerts` taken out of its processors and pipelines, alternating which goes first. Endpoints
are moved to free ports on 127.0.0.1 and files into a temporary directory; nothing else changes. After
`--settle` seconds past start-up it measures the child's CPU time over `--duration` seconds (share of
one core) and its resident memory, and prints the medians over `--rounds` and their ratio.
"""

from __future__ import annotations

import argparse
import copy
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.default_config import default_config  # noqa: E402

MONITORING = ("ml", "alerts")


def _is_monitoring(component_id: str) -> bool:
    return component_id.split("/")[0] in MONITORING


def without_monitoring(config: dict) -> dict:
    """The same config without `ml` and `alerts`: their processors, and pipelines fed only by them."""
    out = copy.deepcopy(config)
    out["processors"] = {k: v for k, v in (out.get("processors") or {}).items() if not _is_monitoring(k)}
    pipelines = {}
    for pid, p in out["service"]["pipelines"].items():
        p["processors"] = [c for c in p.get("processors", []) if not _is_monitoring(c)]
        p["receivers"] = [r for r in p["receivers"] if not _is_monitoring(r)]
        if p["receivers"]:
            pipelines[pid] = p
    out["service"]["pipelines"] = pipelines
    return out


def localised(config: dict, workdir: Path) -> dict:
    """Endpoints on port 0 of 127.0.0.1, files and state under `workdir`."""
    out = copy.deepcopy(config)
    for receiver in (out.get("receivers") or {}).values():
        for protocol in ((receiver or {}).get("protocols") or {}).values():
            protocol["endpoint"] = "127.0.0.1:0"
    for eid, exporter in (out.get("exporters") or {}).items():
        if eid.split("/")[0] == "prometheus":
            exporter["endpoint"] = "127.0.0.1:0"
        if eid.split("/")[0] == "file":
            exporter["path"] = str(workdir / f"{eid.replace('/', '-')}.json")
    for pid, processor in (out.get("processors") or {}).items():
        if pid.split("/")[0] == "alerts":  # relative rule files are read from the checkout
            processor["rule_files"] = [str(ROOT / f) for f in processor.get("rule_files", [])]
    service = out.setdefault("service", {})
    service["admin"] = {"endpoint": "127.0.0.1:0"}
    service["state_dir"] = str(workdir / "state")
    return out


def shipped(name: str) -> dict:
    if name == "builtin":
        return default_config({})
    text = (ROOT / name).read_text()
    # The service config names its state directory through systemd's variable, and its rule pack
    # where install.sh puts it.
    text = text.replace("${env:STATE_DIRECTORY:-/var/lib/vigil}", "/tmp/vigil-bench")
    return yaml.safe_load(text.replace("/etc/vigil/alerts/", "agent/alerts/"))


def measure(config: dict, duration: float, settle: float,
            on_log: Callable[[str], None] | None = None) -> tuple[float, float]:
    """(CPU % of one core, peak RSS MiB) of an idle `vigil run` on `config`; `on_log` gets its log."""
    with tempfile.TemporaryDirectory(prefix="vigil-idle-") as tmp:
        workdir = Path(tmp)
        path = workdir / "vigil.yaml"
        path.write_text(yaml.safe_dump(localised(config, workdir)))
        log_path = workdir / "vigil.log"
        with open(log_path, "wb") as log:
            child = subprocess.Popen([str(Path(sys.executable).parent / "vigil"), "run", "-c", str(path)],
                                     cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                     env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")})
        try:
            deadline = time.monotonic() + 60
            while b"Vigil is running" not in log_path.read_bytes():
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"vigil did not start:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.1)
            time.sleep(settle)
            proc = psutil.Process(child.pid)
            cpu0, start, rss = proc.cpu_times(), time.monotonic(), []
            while time.monotonic() - start < duration:
                rss.append(proc.memory_info().rss)
                time.sleep(1.0)
            cpu1 = proc.cpu_times()
            used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
            return 100 * used / (time.monotonic() - start), max(rss) / 2**20
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            if on_log is not None:
                on_log(log_path.read_text(errors="replace"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/vigil.yaml",
                        help="a config path relative to the checkout, or `builtin` (default config/vigil.yaml)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds measured per run (default 30)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after start-up before measuring")
    args = parser.parse_args()

    config = shipped(args.config)
    variants = {"as shipped": config, "without ml, alerts": without_monitoring(config)}
    if variants["as shipped"] == variants["without ml, alerts"]:
        print(f"{args.config} has neither ml nor alerts: both runs are the same config")
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for round_ in range(args.rounds):
        order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
        for name in order:
            results[name].append(measure(variants[name], args.duration, args.settle))
            cpu, rss = results[name][-1]
            print(f"round {round_ + 1} {name:<20} cpu {cpu:6.3f}% of a core  rss {rss:6.1f} MiB", flush=True)
    print(f"\n{args.config}, idle, medians of {args.rounds} rounds of {args.duration:.0f} s:")
    medians = {name: (statistics.median(c for c, _ in r), statistics.median(m for _, m in r))
               for name, r in results.items()}
    for name, (cpu, rss) in medians.items():
        print(f"  {name:<20} cpu {cpu:6.3f}% of a core  rss {rss:6.1f} MiB")
    (cpu_a, rss_a), (cpu_b, rss_b) = medians.values()
    print(f"  ratio                cpu {cpu_a / cpu_b if cpu_b else float('nan'):6.2f}x"
          f"             rss {rss_a / rss_b:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
