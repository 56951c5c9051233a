"""The `inference` receiver: the metrics inference servers already expose, as one view per served model.

    inference:
      collection_interval: 10s
      servers:
        - {kind: triton, endpoint: 127.0.0.1:8002}
        - {kind: vllm, endpoint: 127.0.0.1:8000}
        - {kind: tgi, endpoint: 127.0.0.1:3000, model: meta-llama/Llama-3.1-8B-Instruct}
      discovery: {enabled: true}      # also scrape the servers running on this host
      health: {max_error_rate: 0.05, max_latency_p95: 1s, max_ttft_p95: 2s}

Kinds: triton, vllm, sglang, tgi, mlserver, llamacpp (`kinds/`, one module each). `config` is the
config model, `view` the per-model deltas, `metrics` the points written, `health` a model's verdict,
`receiver` the scrapes and `status()`; `discovery` and `gpu` find servers and their GPU use. The
metrics and each server's setup are in docs/inference-servers.md.
"""

from __future__ import annotations

from agent.component import Consumer, Factory, Kind, Settings
from agent.receivers.inference.config import InferenceReceiverConfig
from agent.signals import Signal


def _create(config: InferenceReceiverConfig, settings: Settings, consumers: dict[Signal, Consumer]):
    # Imported here: `vigil validate` and `vigil components` need only the config model, not aiohttp's client.
    from agent.receivers.inference.receiver import InferenceReceiver

    return InferenceReceiver(config, settings, consumers)


FACTORY = Factory(
    kind=Kind.RECEIVER,
    type="inference",
    config_model=InferenceReceiverConfig,
    create=_create,
    signals=frozenset({Signal.METRICS}),
    description="scrapes inference servers (Triton, vLLM, SGLang, TGI, MLServer, llama.cpp) into per-model metrics",
)
