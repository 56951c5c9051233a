"""The legacy-app demo in one command: a service with JSON logs and /metrics, watched by Vigil.

    .venv/bin/python examples/legacy_app/demo.py            # about a minute
    .venv/bin/python examples/legacy_app/demo.py --quick    # about 20 seconds
    .venv/bin/python examples/legacy_app/demo.py --quick --keep   # then leaves Vigil running

Starts `vigil run -c examples/legacy_app/vigil.yaml` and examples/legacy_app/app.py
on free ports; the app predicts a stream of iris measurements, rotating its
log as it goes, and shifts the petal measurements half-way. Then it prints
what Vigil made of it: prediction records read from the log (and rotations
survived), the drifted features, and the app's own metrics as scraped.
Output stays in --data-dir (default ./vigil-data/legacy). Vigil's status page
is on a free port, printed at the start; with --keep Vigil keeps serving
after the report, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _demo import (REPO, child, free_port, keep_running, log_records, metric_points, port_open,  # noqa: E402
                   show_status_page, vigil, wait_until)

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-dir", default=str(REPO / "vigil-data" / "legacy"))
    parser.add_argument("--keep", action="store_true", help="leave Vigil running after the report, until Ctrl-C")
    args = parser.parse_args(argv)
    data = Path(args.data_dir).resolve()
    shutil.rmtree(data, ignore_errors=True)
    logs = data / "logs"
    metrics_port, admin = free_port(), free_port()
    count, rate = (1200, 200.0) if args.quick else (3000, 50.0)
    env = {"VIGIL_DATA": str(data), "LEGACY_LOG_DIR": str(data / "app"),
           "LEGACY_METRICS": f"127.0.0.1:{metrics_port}", "VIGIL_ADMIN": f"127.0.0.1:{admin}"}
    with vigil(HERE / "vigil.yaml", logs, env) as agent:
        time.sleep(1.0)
        if agent.poll() is not None:
            print((logs / "vigil.log").read_text(), file=sys.stderr)
            return 1
        with child("app", [sys.executable, str(HERE / "app.py"), "--log-file", str(data / "app" / "predictions.jsonl"),
                           "--metrics-port", str(metrics_port), "--count", str(count), "--rate", str(rate),
                           "--drift-after", str(count // 2), "--rotate-bytes", "60000"], logs) as app:
            wait_until(lambda: port_open(metrics_port) or app.poll() is not None, 60, "the app to serve /metrics")
            print(f"the app writes {data / 'app' / 'predictions.jsonl'} and serves "
                  f"http://127.0.0.1:{metrics_port}/metrics; Vigil reads both", flush=True)
            show_status_page(admin)
            wait_until(lambda: "made" in (logs / "app.log").read_text() or app.poll() is not None,
                       count / rate + 60, "the app to finish")
            wait_until(lambda: _records(data) >= count, 30, "Vigil to read every line")
            time.sleep(6)  # one more scrape, and the last window closes at shutdown
        if args.keep:
            report(data, count)
            keep_running(agent, admin)
            return 0
    report(data, count)
    return 0


def _records(data: Path) -> int:
    return sum(1 for r in log_records(data / "logs.json") if "ml.model.name" in r["attributes"])


def report(data: Path, count: int) -> None:
    backups = len(list((data / "app").glob("predictions.jsonl.*")))
    print(f"\nthe app made {count} predictions, rotating its log as it went ({backups} backups on disk)")
    print(f"Vigil read {_records(data)} prediction records from it")
    drifted = sorted({a.get("ml.feature.name") for a, p in metric_points(data / "metrics.json", "ml.feature.drifted")
                      if float(p.get("asDouble", p.get("asInt", 0))) == 1.0})
    print(f"drifted columns: {', '.join(drifted) or 'none'}")
    up = [float(p.get("asDouble", 0)) for _, p in metric_points(data / "metrics.json", "up")]
    print(f"scraped /metrics {len(up)} times, {up.count(1.0)} answered (up = 1); "
          f"iris_predictions_total at the last scrape: {_last_total(data):.0f}")
    print(f"\nEverything Vigil exported is in {data}/ (logs.json, metrics.json).")


def _last_total(data: Path) -> float:
    points = metric_points(data / "metrics.json", "iris_predictions_total")
    last: dict[str, float] = {}
    for attributes, point in points:
        last[attributes.get("predicted_class", "")] = float(point.get("asDouble", 0))
    return sum(last.values())


if __name__ == "__main__":
    sys.exit(main())
