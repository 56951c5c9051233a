"""The `inference_proxy` receiver: placed in front of an inference server, it forwards and observes.

Clients call the proxy's `endpoint` instead of the server; every request goes
to `upstream` untouched and every response comes back as it comes, streams
chunk by chunk (`forward`). For the calls of its `protocol` it keeps a
bounded copy (`exchange`) and queues it (`observer`); off the forwarding path
those become spans in the traces pipelines the receiver is in: a V2 (Open
Inference Protocol) call one prediction span per row (`v2`, through
`agent.receivers.payloads`), an OpenAI-compatible call a GenAI span named and
attributed as vLLM's (`openai`). docs/inference-servers.md is the user guide.
"""

from __future__ import annotations

from agent.component import Consumer, Factory, Kind, Settings
from agent.receivers.inference_proxy.config import InferenceProxyConfig
from agent.receivers.inference_proxy.receiver import InferenceProxyReceiver
from agent.signals import Signal


def _create(config: InferenceProxyConfig, settings: Settings,
            consumers: dict[Signal, Consumer]) -> InferenceProxyReceiver:
    return InferenceProxyReceiver(config, settings, consumers)


FACTORY = Factory(
    kind=Kind.RECEIVER,
    type="inference_proxy",
    config_model=InferenceProxyConfig,
    create=_create,
    signals=frozenset({Signal.TRACES}),
    description="a reverse proxy before an inference server (V2 or OpenAI API): prediction and GenAI spans",
)

__all__ = ["FACTORY", "InferenceProxyConfig", "InferenceProxyReceiver"]
