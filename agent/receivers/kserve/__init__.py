"""The `kserve` receiver: KServe's inference logger as predictions, with no change to the model.

    receivers:
      kserve:
        endpoint: 0.0.0.0:8088      # the InferenceService's spec.predictor.logger.url
        pair_timeout: 30s
        payloads: {classes: [setosa, versicolor, virginica]}

Each logged request is paired with its response by CloudEvent id and turned
into one prediction span per row (`agent.receivers.payloads`). `config` is the
config model, `events` one POST read as a CloudEvent, `pairing` the half pairs
waiting, `receiver` the HTTP server; this module is the factory.
"""

from __future__ import annotations

from agent.component import Consumer, Factory, Kind, Settings
from agent.receivers.kserve.config import KServeReceiverConfig
from agent.receivers.kserve.receiver import KServeReceiver
from agent.signals import Signal


def _create(config: KServeReceiverConfig, settings: Settings, consumers: dict[Signal, Consumer]) -> KServeReceiver:
    return KServeReceiver(config, settings, consumers)


FACTORY = Factory(
    kind=Kind.RECEIVER,
    type="kserve",
    config_model=KServeReceiverConfig,
    create=_create,
    signals=frozenset({Signal.TRACES}),
    description="KServe's inference logger (CloudEvents) as prediction spans with ml.* attributes",
)
