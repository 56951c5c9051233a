"""What reading an inference payload into prediction spans costs, against parsing its JSON.

For three V2 calls (iris: 50 rows x 4 columns; tabular: 1,000 x 20; embeddings: 256 x 384),
times `v2_rows` + `prediction_spans` + serialising the spans, and `json.loads` of the same
request and response bodies (the least any reader of them pays), medians of several rounds;
prints microseconds per call, per row, and the ratio to `json.loads`.

    .venv/bin/python bench/payload_rows.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from agent.receivers.payloads import PayloadConfig, prediction_spans, v2_rows

CASES = {"iris 50x4": (50, 4), "tabular 1000x20": (1000, 20), "embedding 256x384": (256, 384)}


def bodies(rows: int, width: int) -> tuple[bytes, bytes]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, width)).astype(np.float32)
    p = rng.dirichlet([1, 1, 1], size=rows)
    request = {"id": "bench", "inputs": [{"name": "x", "shape": [rows, width], "datatype": "FP32",
                                          "data": x.ravel().tolist()}]}
    response = {"outputs": [{"name": "p", "shape": [rows, 3], "datatype": "FP32", "data": p.ravel().tolist()}]}
    return json.dumps(request).encode(), json.dumps(response).encode()


def timed(fn, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    config = PayloadConfig(max_elements=10**7, max_features=1000)
    print(f"{'call':<20}{'json.loads µs':>15}{'rows+spans µs':>15}{'µs/row':>9}{'ratio':>8}")
    for name, (rows, width) in CASES.items():
        request_body, response_body = bodies(rows, width)
        request, response = json.loads(request_body), json.loads(response_body)

        def parse():
            json.loads(request_body), json.loads(response_body)

        def read():
            found = v2_rows(request, response, model="m", config=config)
            prediction_spans(found, start_ns=1, end_ns=2, service_name="s").SerializeToString()

        repeat = max(1, 2000 // rows)
        parse_s = statistics.median(timed(parse, repeat) for _ in range(args.rounds))
        read_s = statistics.median(timed(read, repeat) for _ in range(args.rounds))
        print(f"{name:<20}{parse_s * 1e6:>15.0f}{read_s * 1e6:>15.0f}{read_s * 1e6 / rows:>9.1f}"
              f"{read_s / parse_s:>8.1f}")


if __name__ == "__main__":
    main()
