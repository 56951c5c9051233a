"""The status page's render time and weight (`agent.admin.page.render`), against the status API's JSON.

    .venv/bin/python bench/status_page.py
    .venv/bin/python bench/status_page.py --models 20 --features 100 --repeat 21

Input: the made-up status of `tests/admin/synthetic.py` (the ml processor's, the alerts processor's and
the scraping receivers' shapes): `--models` model versions of `--features` columns (every fifth
categorical, 20 categories; the rest numeric, 10 bins) plus the confidence, 48 windows, intervals and
label windows of history each, half of them with 8 drifted columns; 12 alerts; 8 GPUs. CPU time
(`time.process_time()`), median of `--repeat` rounds: the page's HTML against `json.dumps` of the same
status (what `GET /api/v1/status` serialises for each request). Printed: both times, their ratio and
the sizes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.admin import page  # noqa: E402
from tests.admin import synthetic  # noqa: E402


def timed(work, repeat: int) -> float:
    rounds = []
    for _ in range(repeat):
        start = time.process_time()
        work()
        rounds.append(time.process_time() - start)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=11, help="rounds per figure (median)")
    args = parser.parse_args()
    status, health, alerts = synthetic.status(models=args.models, features=args.features)
    html = page.render(status, health, alerts, now=synthetic.NOW)
    body = json.dumps(status, default=str)
    page_s = timed(lambda: page.render(status, health, alerts, now=synthetic.NOW), args.repeat)
    json_s = timed(lambda: json.dumps(status, default=str), args.repeat)
    print(f"status page: {args.models} model versions x {args.features} columns, 12 alerts, 8 GPUs; "
          f"median of {args.repeat} rounds (CPU time)")
    print(f"  page render   {page_s * 1000:8.1f} ms   {len(html.encode()) / 1000:8.1f} kB HTML")
    print(f"  status JSON   {json_s * 1000:8.1f} ms   {len(body.encode()) / 1000:8.1f} kB JSON")
    print(f"  ratio page / JSON: {page_s / json_s:.2f}")


if __name__ == "__main__":
    main()
