"""A started `inference_proxy` receiver before a stand-in upstream, with an in-memory sink as its pipeline."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, AsyncIterator

from agent.component import ComponentId, Settings
from agent.receivers.inference_proxy import InferenceProxyConfig, InferenceProxyReceiver
from agent.signals import Signal
from agent.telemetry import SelfTelemetry
from tests.receivers.inference_proxy.upstreams import Upstream
from tests.sink import InMemorySink


@dataclass
class Proxy:
    receiver: InferenceProxyReceiver
    sink: InMemorySink
    telemetry: SelfTelemetry

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.receiver.port}"

    def count(self, name: str, **attributes: str) -> float:
        return self.telemetry.total(name, **attributes)


@contextlib.asynccontextmanager
async def running_proxy(upstream: Upstream | str, protocol: str = "openai", sink: InMemorySink | None = None,
                        **config: Any) -> AsyncIterator[Proxy]:
    url = upstream if isinstance(upstream, str) else upstream.url
    telemetry = SelfTelemetry()
    sink = sink or InMemorySink()
    receiver = InferenceProxyReceiver(
        InferenceProxyConfig(endpoint="127.0.0.1:0", upstream=url, protocol=protocol, **config),
        Settings(ComponentId("inference_proxy", "test"), telemetry), {Signal.TRACES: sink})
    await receiver.start()
    try:
        yield Proxy(receiver, sink, telemetry)
    finally:
        await receiver.shutdown()
        telemetry.shutdown()
