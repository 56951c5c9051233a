"""What one scrape of an inference server costs the `inference` receiver, against the `prometheus` receiver.

    .venv/bin/python bench/inference_scrape.py                 # about 20 seconds
    .venv/bin/python bench/inference_scrape.py --rounds 9

The same page (Triton with 1, 10 and 100 models; vLLM with 1 model), built from the servers'
documented names, goes through both receivers' blocking part: the `inference` receiver's read (parse,
the kind's mapping, the per-model deltas, the OTLP points) and the `prometheus` receiver's `convert`
(parse, OTLP points with start times). Each is timed on the CPU clock over many scrapes, after a
warm-up; the table gives the median per scrape of `--rounds` rounds and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

from agent.metrics_builder import MetricsBuilder
from agent.receivers.inference import metrics
from agent.receivers.inference.kinds import kind
from agent.receivers.inference.kinds.base import Page
from agent.receivers.inference.view import ServerView
from agent.receivers.prometheus.convert import Target, convert


def triton_page(models: int, step: int) -> str:
    lines = []
    for name, kind_, value in (("nv_inference_request_success", "counter", 1000),
                               ("nv_inference_request_duration_us", "counter", 10**7),
                               ("nv_inference_queue_duration_us", "counter", 10**5),
                               ("nv_inference_count", "counter", 4000), ("nv_inference_exec_count", "counter", 1000),
                               ("nv_inference_pending_request_count", "gauge", 3)):
        lines.append(f"# TYPE {name} {kind_}")
        lines += [f'{name}{{model="model{m}",version="1"}} {value + step * 7}' for m in range(models)]
    lines.append("# TYPE nv_inference_request_failure counter")
    lines += [f'nv_inference_request_failure{{model="model{m}",reason="{r}",version="1"}} {step}'
              for m in range(models) for r in ("REJECTED", "CANCELED", "BACKEND", "OTHER")]
    return "\n".join(lines) + "\n"


def vllm_page(step: int) -> str:
    labels = 'engine="0",model_name="llama"'
    lines = [f"# TYPE vllm:{g} gauge\nvllm:{g}{{{labels}}} 3" for g in
             ("num_requests_running", "num_requests_waiting", "kv_cache_usage_perc")]
    for c in ("prompt_tokens_total", "generation_tokens_total", "num_preemptions_total"):
        lines.append(f"# TYPE vllm:{c} counter\nvllm:{c}{{{labels}}} {1000 + step * 10}")
    for h in ("time_to_first_token_seconds", "e2e_request_latency_seconds", "request_queue_time_seconds",
              "request_time_per_output_token_seconds"):
        lines.append(f"# TYPE vllm:{h} histogram")
        bounds = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
        lines += [f'vllm:{h}_bucket{{{labels},le="{b}"}} {i * 10 + step}' for i, b in enumerate(bounds)]
        lines += [f'vllm:{h}_bucket{{{labels},le="+Inf"}} {200 + step}', f"vllm:{h}_count{{{labels}}} {200 + step}",
                  f"vllm:{h}_sum{{{labels}}} {50 + step}"]
    return "\n".join(lines) + "\n"


def inference_scrape(server_kind, view: ServerView, text: str) -> None:
    page = Page(text)
    deltas = view.update(server_kind.read(page, None), page.process_start)
    builder = MetricsBuilder()
    for (model, version), delta in deltas.items():
        attributes = {"ml.model.name": model} if version is None else {"ml.model.name": model,
                                                                       "ml.model.version": version}
        metrics.write(builder.resource({**attributes, "service.name": server_kind.name}), delta, 1, attributes)
    builder.batch()


def timed(scrape, pages: list[str], scrapes: int) -> float:
    for text in pages[:5]:
        scrape(text)
    started = time.process_time()
    for i in range(scrapes):
        scrape(pages[i % len(pages)])
    return (time.process_time() - started) / scrapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scrapes", type=int, default=200)
    args = parser.parse_args()
    cases = [(f"triton, {n} model{'s' * (n > 1)}", "triton", [triton_page(n, s) for s in range(20)])
             for n in (1, 10, 100)]
    cases.append(("vllm, 1 model", "vllm", [vllm_page(s) for s in range(20)]))
    print(f"{'page':<20} {'bytes':>7} {'inference µs':>13} {'prometheus µs':>14} {'ratio':>6}")
    for label, name, pages in cases:
        server_kind = kind(name)
        scrapes = max(20, args.scrapes // max(1, len(pages[0]) // 2000))
        ours, peer = [], []
        for _ in range(args.rounds):
            view = ServerView()
            ours.append(timed(lambda text: inference_scrape(server_kind, view, text), pages, scrapes))
            target = Target("job", "127.0.0.1:1", "http://127.0.0.1:1/metrics", {"service.name": "job"}, 10, 5,
                            1 << 24, True)
            peer.append(timed(lambda text: convert(target, text, "text/plain", time.time_ns()), pages, scrapes))
        a, b = statistics.median(ours), statistics.median(peer)
        print(f"{label:<20} {len(pages[0]):>7} {a * 1e6:>13.0f} {b * 1e6:>14.0f} {a / b:>6.2f}")


if __name__ == "__main__":
    main()
