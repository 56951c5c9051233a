"""The whole inference-app demo in one command: Vigil, the app, the game day, and what came of it.

    .venv/bin/python examples/inference_app/demo.py            # about three minutes
    .venv/bin/python examples/inference_app/demo.py --quick    # under a minute
    .venv/bin/python examples/inference_app/demo.py --quick --keep   # then leaves Vigil running

(`make demo` installs what it needs and runs the quick one.)

Starts `vigil run -c examples/inference_app/vigil.yaml` and the app on free
ports, runs examples/traffic.py against the app, waits for the last windows
and alert evaluations, stops both, and prints the alerts that fired and the
drifted features. Everything Vigil exported stays in --data-dir (default
./vigil-data/demo) as OTLP/JSON lines: traces.json, metrics.json, logs.json,
alerts.json, and the processes' logs in logs/. Vigil's admin endpoint (the
status page) is on a free port too, printed at the start; with --keep Vigil
keeps serving after the report, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _demo import (REPO, child, firing, free_port, keep_running, metric_points, port_open,  # noqa: E402
                   show_status_page, spans, vigil, wait_until)

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests per phase")
    parser.add_argument("--data-dir", default=str(REPO / "vigil-data" / "demo"))
    parser.add_argument("--settle", type=float, default=None,
                        help="seconds to wait after the traffic for the last windows and alerts (default 25, 8 quick)")
    parser.add_argument("--keep", action="store_true", help="leave Vigil running after the report, until Ctrl-C")
    args = parser.parse_args(argv)
    data = Path(args.data_dir).resolve()
    shutil.rmtree(data, ignore_errors=True)  # a fresh reference each run: the demo starts from nothing
    logs = data / "logs"
    grpc, http, app_port, admin = free_port(), free_port(), free_port(), free_port()
    env = {"VIGIL_OTLP_GRPC": f"127.0.0.1:{grpc}", "VIGIL_OTLP_HTTP": f"127.0.0.1:{http}", "VIGIL_DATA": str(data),
           "VIGIL_ADMIN": f"127.0.0.1:{admin}"}
    settle = args.settle if args.settle is not None else (8.0 if args.quick else 25.0)

    with vigil(HERE / "vigil.yaml", logs, env) as agent:
        wait_until(lambda: port_open(grpc) or agent.poll() is not None, 30, "Vigil to listen")
        if agent.poll() is not None:
            print((logs / "vigil.log").read_text(), file=sys.stderr)
            return 1
        with child("app", [sys.executable, str(HERE / "app.py"), "--port", str(app_port),
                           "--otlp-endpoint", f"http://127.0.0.1:{grpc}"], logs) as app:
            wait_until(lambda: port_open(app_port) or app.poll() is not None, 60, "the app to listen")
            if app.poll() is not None:
                print((logs / "app.log").read_text(), file=sys.stderr)
                return 1
            print(f"Vigil on 127.0.0.1:{grpc} (OTLP gRPC), the app on http://127.0.0.1:{app_port}", flush=True)
            show_status_page(admin)
            traffic = [sys.executable, str(REPO / "examples" / "traffic.py"), "--url", f"http://127.0.0.1:{app_port}",
                       "--otlp-endpoint", f"http://127.0.0.1:{grpc}"] + (["--quick"] if args.quick else [])
            subprocess.run(traffic, check=True, cwd=REPO)
        print(f"waiting {settle:g}s for the last windows and alert evaluations ...", flush=True)
        time.sleep(settle)
        if args.keep:
            report(data)
            keep_running(agent, admin)
            return 0
    report(data)
    return 0


def report(data: Path) -> None:
    predictions = [s for s in spans(data / "traces.json") if "ml.model.name" in s["attributes"]]
    failed = sum(1 for s in predictions if s["status"] == 2)
    print(f"\n{len(predictions)} prediction spans reached Vigil, {failed} of them errors")
    drifted = sorted({a.get("ml.feature.name") for a, p in metric_points(data / "metrics.json", "ml.feature.drifted")
                      if float(p.get("asDouble", p.get("asInt", 0))) == 1.0})
    print(f"drifted columns: {', '.join(drifted) or 'none'}")
    fired = firing(data / "alerts.json")
    print(f"\n{len(fired)} alert notifications (firing):")
    by_rule: dict[str, list[str]] = {}
    for rule, summary in fired:
        by_rule.setdefault(rule, []).append(summary)
    for rule, summaries in by_rule.items():
        print(f"  {rule} x{len(summaries)}, e.g. {summaries[0]}")
    print(f"\nEverything Vigil exported is in {data}/ (traces.json, metrics.json, logs.json, alerts.json).")


if __name__ == "__main__":
    sys.exit(main())
