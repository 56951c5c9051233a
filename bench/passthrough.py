"""Pass-through cost of Vigil and rotel, side by side in one run.

Each collector runs as its own process (`otlp` receiver -> `batch` -> `otlp`
exporter), both exporting to the same kind of sink in this process. A load
generator sends the same pre-serialised OTLP requests to each, several in
flight, and the collector's own CPU accounting (user + system time, from
/proc) gives CPU seconds per million items once the sink has them all.

    .venv/bin/python bench/passthrough.py                       # traces over gRPC
    .venv/bin/python bench/passthrough.py --gzip                # gzip-compressed requests
    .venv/bin/python bench/passthrough.py --protocol http       # OTLP/HTTP protobuf
    .venv/bin/python bench/passthrough.py --signal logs         # or metrics
    .venv/bin/python bench/passthrough.py --ml                  # prediction spans through the ml processor
    .venv/bin/python bench/passthrough.py --rate 10000 --duration 60   # steady state: CPU % and peak RSS

With `--ml` the spans go through the `ml` processor, three payloads, each to a fresh Vigil and a
fresh rotel (all started first, then each collector once a round, the order turning round by
round): the headline, prediction spans as apps send them (`realistic_payload.py`: SDK
resources, `ml.prediction.id`, a confidence, 10 features, ordinary attributes, three model
versions, exception events), each request's prediction ids new to the run as an app's are; the
same without `ml.prediction.id` (what the label join costs); and spans carrying only a
prediction's attributes (model, version, 10 features, label, score).

Figures are medians over `--repeat` rounds, printed as ratios; the machine is
noisy, so read the ratio, not the absolute times.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import grpc
import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from agent.signals import Batch, Signal  # noqa: E402
from realistic_payload import make_request as realistic_request, numbered  # noqa: E402
from tests.otlp_data import request as build_request  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


# --- the payload -------------------------------------------------------------------


def make_request(signal: Signal, items: int, attributes: int, ml: bool, seed: int) -> bytes:
    """One pre-serialised request: `items` items with about `attributes` attributes each."""
    rng = random.Random(seed)
    message = build_request(signal, items)
    top = {Signal.TRACES: ("resource_spans", "scope_spans", "spans"),
           Signal.LOGS: ("resource_logs", "scope_logs", "log_records"),
           Signal.METRICS: ("resource_metrics", "scope_metrics", "metrics")}[signal]
    for resource in getattr(message, top[0]):
        for scope in getattr(resource, top[1]):
            for item in getattr(scope, top[2]):
                target = item.attributes if signal is not Signal.METRICS else None
                if target is None:
                    kind = item.WhichOneof("data")
                    for point in getattr(item, kind).data_points:
                        for k in range(min(attributes, 5)):
                            point.attributes.add(key=f"attr.{k}").value.string_value = f"v{k}"
                    continue
                if ml:
                    del target[:]  # the test data's own attributes name another model
                    target.add(key="ml.model.name").value.string_value = "fraud"
                    target.add(key="ml.model.version").value.string_value = "v3"
                    for f in range(10):
                        target.add(key=f"ml.feature.f{f}").value.double_value = rng.gauss(0, 1)
                    target.add(key="ml.prediction.label").value.string_value = rng.choice("01")
                    target.add(key="ml.prediction.score").value.double_value = rng.random()
                for k in range(attributes - len(target)):
                    value = target.add(key=f"http.attr.{k}").value
                    if k % 3 == 0:
                        value.int_value = rng.randrange(10_000)
                    else:
                        value.string_value = f"value-{rng.randrange(1000)}"
    return message.SerializeToString()


# --- the sink ------------------------------------------------------------------------


class Sink:
    """An OTLP gRPC server that counts the items it receives."""

    def __init__(self, signal: Signal) -> None:
        self.signal = signal
        self.items = 0
        self.port = 0
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        self._server = grpc.aio.server(options=[("grpc.max_receive_message_length", 256 << 20)])
        service, method = self.signal.grpc_method.lstrip("/").split("/")

        async def export(request: bytes, context) -> bytes:
            self.items += Batch.from_wire(self.signal, request).items
            return b""

        handler = grpc.unary_unary_rpc_method_handler(export)
        self._server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, {method: handler})])
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop(0)


# --- the collectors --------------------------------------------------------------------


class Collector:
    def __init__(self, name: str, argv: list[str], grpc_port: int, http_port: int, workdir: Path) -> None:
        self.name = name
        self.grpc_port, self.http_port = grpc_port, http_port
        self._log = open(workdir / f"{name}.log", "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir)
        try:
            wait_port(grpc_port)
            wait_port(http_port)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"{name} did not start: {(workdir / f'{name}.log').read_text()[-2000:]}")
        self.ps = psutil.Process(self.proc.pid)

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def rss(self) -> int:
        return self.ps.memory_info().rss

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def start_vigil(workdir: Path, sink_port: int, ml: bool) -> Collector:
    grpc_port, http_port = free_port(), free_port()
    processors = (["ml"] if ml else []) + ["batch"]
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}",
                                                      "max_recv_msg_size_mib": 64},
                                             "http": {"endpoint": f"127.0.0.1:{http_port}"}}}},
        "processors": {"batch": {"send_batch_size": 8192, "timeout": "200ms"},
                       **({"ml": {"reference": {"warmup": 1000}, "window": {"size": 5000}}} if ml else {})},
        "exporters": {"otlp": {"endpoint": f"127.0.0.1:{sink_port}", "tls": {"insecure": True},
                               "compression": "none", "sending_queue": {"queue_size": 5000}},
                      **({"debug": {}} if ml else {})},
        "service": {"state_dir": str(workdir / "state"), "telemetry": {"logs": {"level": "warn"}},
                    "pipelines": {s.value: {"receivers": ["otlp"], "processors": processors if s is Signal.TRACES
                                            else ["batch"], "exporters": ["otlp"]} for s in Signal}},
    }
    if ml:
        config["service"]["pipelines"]["metrics/ml"] = {"receivers": ["ml"], "exporters": ["debug"]}
    path = workdir / "vigil.yaml"
    path.write_text(yaml.safe_dump(config))
    return Collector("vigil", [sys.executable, "-m", "agent", "run", "-c", str(path)], grpc_port, http_port,
                     workdir)


def start_rotel(workdir: Path, sink_port: int) -> Collector:
    import rotel

    binary = Path(rotel.__file__).parent / "rotel-agent"
    grpc_port, http_port = free_port(), free_port()
    argv = [str(binary), "start", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
            "--otlp-http-endpoint", f"127.0.0.1:{http_port}", "--otlp-grpc-max-recv-msg-size-mib", "64",
            "--exporter", "otlp", "--otlp-exporter-endpoint", f"http://127.0.0.1:{sink_port}",
            "--otlp-exporter-protocol", "grpc", "--otlp-exporter-compression", "none",
            "--batch-max-size", "8192", "--batch-timeout", "200ms",
            "--pid-file", str(workdir / "rotel.pid"), "--log-file", str(workdir / "rotel-daemon.log")]
    return Collector("rotel", argv, grpc_port, http_port, workdir)


# --- the load generator ---------------------------------------------------------------------


class Requests:
    """Request bodies sent in turn. With `seeds` (the realistic payload's), each request's prediction
    ids are new to the run, as an app's are: the label join sees each id once."""

    def __init__(self, bodies: list[bytes], seeds: list[int] | None = None) -> None:
        self.bodies, self.seeds, self.sent = bodies, seeds, 0

    def next(self) -> bytes:
        k = self.sent % len(self.bodies)
        self.sent += 1
        body = self.bodies[k]
        return body if self.seeds is None else numbered(body, self.seeds[k], self.sent)


async def send_all(collector: Collector, signal: Signal, requests: Requests, count: int, concurrency: int,
                   protocol: str, compressed: bool, rate: float | None = None) -> float:
    """Send `count` requests, `concurrency` in flight; returns the wall seconds it took."""
    interval = None if rate is None else 1.0 / rate
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    started = time.monotonic()

    async def paced(i: int) -> None:
        if interval is not None:
            delay = started + i * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    if protocol == "grpc":
        compression = grpc.Compression.Gzip if compressed else grpc.Compression.NoCompression
        async with grpc.aio.insecure_channel(f"127.0.0.1:{collector.grpc_port}", compression=compression,
                                             options=[("grpc.max_send_message_length", 256 << 20)]) as channel:
            call = channel.unary_unary(signal.grpc_method)

            async def worker() -> None:
                while not queue.empty():
                    i = queue.get_nowait()
                    await paced(i)
                    body = requests.next()
                    while True:
                        try:
                            await call(body)
                            break
                        except grpc.aio.AioRpcError as exc:
                            if exc.code() is not grpc.StatusCode.UNAVAILABLE:
                                raise
                            await asyncio.sleep(0.05)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
    else:
        headers = {"Content-Type": "application/x-protobuf"}
        if compressed:
            headers["Content-Encoding"] = "gzip"
        url = f"http://127.0.0.1:{collector.http_port}/v1/{signal.value}"
        async with aiohttp.ClientSession() as session:
            async def worker() -> None:
                while not queue.empty():
                    i = queue.get_nowait()
                    await paced(i)
                    body = requests.next()
                    payload = gzip.compress(body) if compressed else body
                    while True:
                        async with session.post(url, data=payload, headers=headers) as response:
                            await response.read()
                            if response.status == 200:
                                break
                            if response.status not in (429, 503):
                                raise RuntimeError(f"{collector.name}: HTTP {response.status}")
                        await asyncio.sleep(0.05)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - started


async def one_round(collector: Collector, sink: Sink, args, requests: Requests, items_per_request: int) -> dict:
    expected = sink.items + args.requests * items_per_request
    cpu_before = collector.cpu()
    peak_rss = collector.rss()
    sending = asyncio.create_task(send_all(collector, sink.signal, requests, args.requests, args.concurrency,
                                           args.protocol, args.gzip, args.rate and args.rate / items_per_request))
    while not sending.done():
        peak_rss = max(peak_rss, collector.rss())
        await asyncio.sleep(0.2)
    wall = await sending
    deadline = time.monotonic() + 60
    while sink.items < expected and time.monotonic() < deadline:
        peak_rss = max(peak_rss, collector.rss())
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # let the exporter's last acknowledgements settle into the CPU count
    cpu = collector.cpu() - cpu_before
    delivered = sink.items - (expected - args.requests * items_per_request)
    sent_items = args.requests * items_per_request
    return {"cpu": cpu, "wall": wall, "items": sent_items, "delivered": delivered, "peak_rss": peak_rss,
            "generator_rate": sent_items / wall}


ML_PAYLOADS = ("realistic", "realistic-no-id", "prediction-only")
SEEDS = list(range(1, 9))  # a few bodies of each payload, sent in turn


def payloads(signal: Signal, args) -> dict[str, list[bytes]]:
    """The payloads to run, by name: each a few requests of the same shape (sent in turn)."""
    if not args.ml:
        return {signal.value: [make_request(signal, args.items, args.attributes, False, seed=1)]}
    builders = {"realistic": lambda seed: realistic_request(args.items, seed),
                "realistic-no-id": lambda seed: realistic_request(args.items, seed, prediction_id=False),
                "prediction-only": lambda seed: make_request(signal, args.items, args.attributes, True, seed)}
    return {name: [builders[name](seed) for seed in SEEDS] for name in args.payload or ML_PAYLOADS}


async def run_collectors(signal: Signal, args, runs: dict[str, list[bytes]], items_per_request: dict[str, int],
                         tmp: Path) -> dict[str, dict[str, list[dict]]]:
    """A fresh Vigil and a fresh rotel for each payload, all started and warmed up first; then
    `--repeat` rounds, each collector once a round, in an order that turns round by round. A change
    in the machine's speed during the run falls on every payload and collector alike, so the ratios
    between payloads (the label join's cost) hold as well as those between collectors."""
    started: list[tuple[str, str, Collector, Sink, Requests]] = []
    try:
        for payload, bodies in runs.items():
            for name in ("vigil", "rotel"):
                requests = Requests(bodies, SEEDS if payload == "realistic" else None)
                workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp))
                sink = Sink(signal)
                await sink.start()
                try:
                    collector = (start_vigil(workdir, sink.port, args.ml) if name == "vigil"
                                 else start_rotel(workdir, sink.port))
                except BaseException:
                    await sink.stop()
                    raise
                started.append((payload, name, collector, sink, requests))
        for payload, _, collector, sink, requests in started:
            await send_all(collector, signal, requests, 20, args.concurrency, args.protocol, args.gzip)  # warm up
            deadline = time.monotonic() + 30
            while sink.items < 20 * items_per_request[payload] and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        results: dict[str, dict[str, list[dict]]] = {payload: {"vigil": [], "rotel": []} for payload in runs}
        for round_ in range(args.repeat):
            for payload, name, collector, sink, requests in (started if round_ % 2 == 0 else started[::-1]):
                results[payload][name].append(
                    await one_round(collector, sink, args, requests, items_per_request[payload]))
    finally:
        for _, _, collector, sink, _ in started:
            collector.stop()
            await sink.stop()
    return results


def print_table(results: dict[str, list[dict]], args) -> dict[str, float]:
    """The table of one payload; returns each collector's median CPU seconds per million items."""
    print(f"{'collector':<10} {'CPU s / M items':>16} {'items / CPU s':>14} {'generator items/s':>18} "
          f"{'delivered':>10} {'peak RSS MiB':>13}")
    per_million = {}
    for name, rounds in results.items():
        cost = statistics.median(r["cpu"] / r["items"] * 1e6 for r in rounds)
        per_million[name] = cost
        delivered = sum(r["delivered"] for r in rounds) / sum(r["items"] for r in rounds)
        print(f"{name:<10} {cost:>16.2f} {1e6 / cost:>14,.0f} "
              f"{statistics.median(r['generator_rate'] for r in rounds):>18,.0f} {delivered:>10.1%} "
              f"{max(r['peak_rss'] for r in rounds) / 2**20:>13.1f}")
        if args.rate:
            r = rounds[0]
            print(f"{'':<10} steady state: {r['cpu'] / r['wall']:.2%} of one core over {r['wall']:.0f} s")
    return per_million


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signal", choices=[s.value for s in Signal], default="traces")
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    parser.add_argument("--gzip", action="store_true", help="gzip-compress the requests")
    parser.add_argument("--ml", action="store_true", help="prediction spans through the ml processor")
    parser.add_argument("--payload", choices=ML_PAYLOADS, action="append",
                        help="with --ml: only this payload (repeatable; default all three)")
    parser.add_argument("--items", type=int, default=512, help="items per request (default 512)")
    parser.add_argument("--attributes", type=int, default=20,
                        help="attributes per item (default 20; not the realistic payloads')")
    parser.add_argument("--requests", type=int, default=400, help="requests per round (default 400)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per collector (default 3)")
    parser.add_argument("--rate", type=float, help="steady state: items per second instead of as fast as possible")
    parser.add_argument("--duration", type=float, default=60, help="with --rate: seconds per round (default 60)")
    args = parser.parse_args()
    signal = Signal(args.signal)
    if args.ml and signal is not Signal.TRACES:
        parser.error("--ml goes with --signal traces")
    if args.payload and not args.ml:
        parser.error("--payload goes with --ml")
    runs = payloads(signal, args)
    items_per_request = {name: Batch.from_wire(signal, bodies[0]).items for name, bodies in runs.items()}
    if args.rate:
        args.requests = max(1, int(args.rate * args.duration / min(items_per_request.values())))
        args.repeat = 1

    for name, bodies in runs.items():
        size = statistics.mean(len(b) for b in bodies)
        print(f"payload {name}: {signal.value}, {items_per_request[name]} items per request, "
              f"{size / 1024:.0f} KiB ({size / items_per_request[name]:.0f} B an item)"
              f"{' (gzip)' if args.gzip else ''}, over {args.protocol}; {args.requests} requests per round, "
              f"{args.concurrency} in flight, {args.repeat} rounds"
              + (f"; paced at {args.rate:.0f} items/s for {args.duration:.0f} s" if args.rate else ""),
              flush=True)
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        results = await run_collectors(signal, args, runs, items_per_request, Path(tmp))
    costs: dict[str, dict[str, float]] = {}
    for name in runs:
        print(f"\npayload {name}:")
        costs[name] = print_table(results[name], args)

    print()
    if not args.ml:
        cost = costs[signal.value]
        ratio = cost["rotel"] / cost["vigil"]
        print(f"Vigil's items per CPU-second / rotel's: {ratio:.2f}x "
              f"({'Vigil cheaper' if ratio > 1 else 'rotel cheaper'}; target >= 4x)")
        return
    # rotel forwards them; Vigil also reads every prediction and evaluates its windows
    for name, cost in costs.items():
        headline = " (the headline; target >= 100,000 and >= 2x, moonshot 250,000)" if name == "realistic" else ""
        print(f"{name:<16} prediction spans through ml: {1e6 / cost['vigil']:>9,.0f} per CPU-second, "
              f"{cost['rotel'] / cost['vigil']:.2f}x rotel's pass-through of the same bytes{headline}")
    if "realistic" in costs and "realistic-no-id" in costs:
        with_id, without = costs["realistic"]["vigil"], costs["realistic-no-id"]["vigil"]
        rotel = costs["realistic"]["rotel"] / costs["realistic-no-id"]["rotel"] - 1
        print(f"the label join (ml.prediction.id on every span): {with_id / without - 1:+.1%} CPU per span "
              f"(target <= 5 %; rotel forwarding the id's bytes: {rotel:+.1%})")


if __name__ == "__main__":
    asyncio.run(main())
