"""The `predictionlog` receiver: tails JSON-lines prediction logs and turns each line into a prediction.

    predictionlog:
      include: [/var/log/fraud/predictions*.jsonl]
      start_at: end                 # or beginning; only for files found on the very first run
      model_name: fraud             # for lines that do not name their model
      feature_names: [amount, age, country, hour]    # names for features logged as a list
      resource: {service.name: fraud-api}

For inference services that are not instrumented with OpenTelemetry but
write one JSON object per prediction. `config` is the config model, `mapper`
a line into a log record, `tailer` the files followed, `receiver` the polls;
this module is the factory.
"""

from __future__ import annotations

from agent.component import Consumer, Factory, Kind, Settings
from agent.receivers.predictionlog.config import PredictionLogReceiverConfig
from agent.receivers.predictionlog.receiver import PredictionLogReceiver
from agent.signals import Signal


def _create(config: PredictionLogReceiverConfig, settings: Settings,
            consumers: dict[Signal, Consumer]) -> PredictionLogReceiver:
    return PredictionLogReceiver(config, settings, consumers)


FACTORY = Factory(
    kind=Kind.RECEIVER,
    type="predictionlog",
    config_model=PredictionLogReceiverConfig,
    create=_create,
    signals=frozenset({Signal.LOGS}),
    description="tails JSON-lines prediction logs into log records with ml.* attributes",
)
