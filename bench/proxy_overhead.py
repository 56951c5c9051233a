"""Latency the `inference_proxy` receiver adds to a call, against calling the server directly, in one run.

Three processes: a small OpenAI-compatible (or V2) upstream (aiohttp, a fixed
answer), Vigil (`vigil run` with an `inference_proxy` receiver before that
upstream, its spans into a traces pipeline), and this load generator. At each
rate (open loop: request i is sent at start + i / rate, whatever the answers
before it did, and its latency counts from then) a phase calls the upstream
directly, then a phase calls it through the proxy (the order alternates by
round). Each round gives p50 and p99 of both and the difference; the table
gives the medians over `--rounds`, and the proxy's CPU per request (its
process's user + system time over the proxied phase / requests).

    .venv/bin/python bench/proxy_overhead.py                      # 200 and 1,000 requests/s, about 1 minute
    .venv/bin/python bench/proxy_overhead.py --protocol v2        # V2 infer calls (one prediction span a row)
    .venv/bin/python bench/proxy_overhead.py --stream             # OpenAI streaming (SSE) calls
    .venv/bin/python bench/proxy_overhead.py --forward-only       # the same calls, forwarded and not observed
    .venv/bin/python bench/proxy_overhead.py --rates 200 1000 2000 --duration 5 --rounds 7

The goal is 0.3 ms added at p50 and 1 ms at p99. The generator shares the
host's cores with both servers, so read the difference, not the absolute times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import aiohttp
import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
GOAL_P50_MS, GOAL_P99_MS = 0.3, 1.0

UPSTREAM = textwrap.dedent('''
    import json, sys
    from aiohttp import web
    CHAT = json.dumps({"id": "cmpl-1", "object": "chat.completion", "model": "llama-3-8b",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": "Hello there, friend."}}],
                       "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}}).encode()
    CHUNKS = [b'data: ' + json.dumps({"id": "cmpl-1", "model": "llama-3-8b", "choices": [
        {"index": 0, "delta": {"content": w}, "finish_reason": None}]}).encode() + b'\\n\\n'
        for w in ["Hello", " there", ",", " friend", "."]]
    USAGE = b'data: ' + json.dumps({"id": "cmpl-1", "model": "llama-3-8b", "choices": [],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5}}).encode() + b'\\n\\ndata: [DONE]\\n\\n'
    INFER = json.dumps({"model_name": "fraud", "model_version": "3", "outputs": [
        {"name": "score", "datatype": "FP32", "shape": [1], "data": [0.42]}]}).encode()

    async def chat(request):
        body = await request.json()
        if not body.get("stream"):
            return web.Response(body=CHAT, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in CHUNKS:
            await response.write(chunk)
        await response.write(USAGE)
        await response.write_eof()
        return response

    async def infer(request):
        await request.read()
        return web.Response(body=INFER, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v2/models/{name}/versions/{version}/infer", infer)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def vigil_config(workdir: Path, proxy_port: int, upstream_port: int, protocol: str) -> Path:
    config = {
        "receivers": {"inference_proxy": {"endpoint": f"127.0.0.1:{proxy_port}",
                                          "upstream": f"http://127.0.0.1:{upstream_port}", "protocol": protocol}},
        "processors": {"batch": {}},
        "exporters": {"debug": {}},
        "service": {"state_dir": str(workdir / "state"), "telemetry": {"logs": {"level": "warn"}},
                    "pipelines": {"traces": {"receivers": ["inference_proxy"], "processors": ["batch"],
                                             "exporters": ["debug"]}}},
    }
    path = workdir / "vigil.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def call(protocol: str, stream: bool) -> tuple[str, bytes]:
    if protocol == "v2":
        body = {"id": "r", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 8], "data": [0.5] * 8}]}
        return "/v2/models/fraud/versions/3/infer", json.dumps(body).encode()
    body = {"model": "llama-3-8b", "max_tokens": 16, "messages": [{"role": "user", "content": "Say hello."}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return "/v1/chat/completions", json.dumps(body).encode()


async def phase(session: aiohttp.ClientSession, url: str, body: bytes, rate: float,
                duration: float) -> tuple[list[float], float]:
    """Open-loop load at `rate` for `duration` s: each call's latency (s) from its scheduled send time, and
    the median lag of the sends behind their schedule (s; large when the generator cannot keep up)."""
    count = int(rate * duration)
    latencies: list[float] = []
    lags: list[float] = []
    errors = 0
    headers = {"Content-Type": "application/json"}

    async def one(scheduled: float) -> None:
        nonlocal errors
        lags.append(time.perf_counter() - scheduled)
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            if response.status != 200:
                errors += 1
        latencies.append(time.perf_counter() - scheduled)

    start = time.perf_counter() + 0.05
    tasks = []
    for i in range(count):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(scheduled)))
    await asyncio.gather(*tasks)
    if errors:
        raise RuntimeError(f"{errors} of {count} calls failed")
    return latencies, statistics.median(lags)


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


async def measure(args: argparse.Namespace, upstream_port: int, proxy_port: int, vigil: psutil.Process) -> dict:
    path, body = call(args.protocol, args.stream)
    direct, proxied = f"http://127.0.0.1:{upstream_port}{path}", f"http://127.0.0.1:{proxy_port}{path}"
    results: dict[float, list[dict]] = {rate: [] for rate in args.rates}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        for url in (direct, proxied):  # warm both: connections, imports, caches
            await phase(session, url, body, 200, 1.0)
        lagging = False
        for round_ in range(args.rounds):
            for rate in args.rates:
                got: dict[str, list[float]] = {}
                user = system = 0.0
                for which in (("direct", "proxy") if round_ % 2 == 0 else ("proxy", "direct")):
                    before = vigil.cpu_times()
                    got[which], lag = await phase(session, direct if which == "direct" else proxied, body, rate,
                                                  args.duration)
                    lagging |= lag > 0.001
                    if which == "proxy":
                        after = vigil.cpu_times()
                        user, system = after.user - before.user, after.system - before.system
                    await asyncio.sleep(0.3)  # the spans of the phase leave before the next
                row = {f"{w}_{q}": quantile(got[w], p) * 1000 for w in got for q, p in (("p50", .5), ("p99", .99))}
                row["cpu_us"] = (user + system) / len(got["proxy"]) * 1e6
                row["system_us"] = system / len(got["proxy"]) * 1e6
                results[rate].append(row)
                print(f"  round {round_ + 1} at {rate:g}/s: direct p50 {row['direct_p50']:.3f} p99 "
                      f"{row['direct_p99']:.3f} ms, proxy p50 {row['proxy_p50']:.3f} p99 {row['proxy_p99']:.3f} ms, "
                      f"{row['cpu_us']:.0f} µs CPU/request ({row['system_us']:.0f} system)", flush=True)
    if lagging:
        print("WARNING: the load generator fell more than 1 ms behind its schedule: this host could not keep "
              "up with the rate, so those figures measure the host's saturation, not the proxy")
    return results


def report(args: argparse.Namespace, results: dict) -> None:
    mode = args.protocol + (" streaming" if args.stream else "") + (", forwarded only" if args.forward_only else "")
    print(f"\nproxy overhead, {mode} calls, medians of {args.rounds} rounds of {args.duration:g} s per phase")
    print(f"{'rate/s':>7} {'direct p50':>11} {'proxy p50':>10} {'added p50':>10} {'direct p99':>11} "
          f"{'proxy p99':>10} {'added p99':>10} {'CPU/req':>9} {'(system)':>9}")
    for rate, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        added50 = statistics.median(r["proxy_p50"] - r["direct_p50"] for r in rows)
        added99 = statistics.median(r["proxy_p99"] - r["direct_p99"] for r in rows)
        print(f"{rate:>7g} {med['direct_p50']:>9.3f}ms {med['proxy_p50']:>8.3f}ms {added50:>8.3f}ms "
              f"{med['direct_p99']:>9.3f}ms {med['proxy_p99']:>8.3f}ms {added99:>8.3f}ms {med['cpu_us']:>7.0f}µs {med['system_us']:>7.0f}µs")
        print(f"{'':>7} added / goal: p50 {added50 / GOAL_P50_MS:.2f}, p99 {added99 / GOAL_P99_MS:.2f} "
              f"(goal {GOAL_P50_MS} ms p50, {GOAL_P99_MS} ms p99)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--protocol", choices=("openai", "v2"), default="openai")
    parser.add_argument("--stream", action="store_true", help="OpenAI streaming (SSE) calls")
    parser.add_argument("--forward-only", action="store_true",
                        help="the proxy observes the other protocol, so these calls are only forwarded")
    parser.add_argument("--rates", type=float, nargs="+", default=[200, 1000])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per phase")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        upstream_port, proxy_port = free_port(), free_port()
        observed = {"openai": "v2", "v2": "openai"}[args.protocol] if args.forward_only else args.protocol
        upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(upstream_port)])
        vigil_log = open(workdir / "vigil.log", "wb")
        vigil = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c",
                                  str(vigil_config(workdir, proxy_port, upstream_port, observed))],
                                 stdout=vigil_log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            wait_port(upstream_port, upstream)
            try:
                wait_port(proxy_port, vigil)
            except RuntimeError:
                raise RuntimeError(f"vigil did not start: {(workdir / 'vigil.log').read_text()[-2000:]}")
            print(f"upstream on {upstream_port}, vigil's proxy on {proxy_port}; {psutil.cpu_count()} CPUs, "
                  f"load {psutil.getloadavg()[0]:.2f}", flush=True)
            results = asyncio.run(measure(args, upstream_port, proxy_port, psutil.Process(vigil.pid)))
        finally:
            stop(vigil)
            stop(upstream)
            vigil_log.close()
    report(args, results)


if __name__ == "__main__":
    main()
