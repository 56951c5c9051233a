"""The `prometheus` receiver: scrapes `/metrics` endpoints and turns what they expose into OTLP metrics.

    prometheus:
      config:
        scrape_configs:
          - job_name: legacy-app
            scrape_interval: 15s
            static_configs:
              - targets: [127.0.0.1:8000]
                labels: {team: fraud}
          - job_name: dcgm
            static_configs: [{targets: [127.0.0.1:9400]}]

For apps that expose prometheus_client metrics, the DCGM exporter or node
exporter. `config` is the config model, `convert` a page into OTLP,
`receiver` the scrapes; this module is the factory.
"""

from __future__ import annotations

from agent.component import Consumer, Factory, Kind, Settings
from agent.receivers.prometheus.config import PrometheusReceiverConfig
from agent.receivers.prometheus.receiver import PrometheusReceiver
from agent.signals import Signal


def _create(config: PrometheusReceiverConfig, settings: Settings,
            consumers: dict[Signal, Consumer]) -> PrometheusReceiver:
    return PrometheusReceiver(config, settings, consumers)


FACTORY = Factory(
    kind=Kind.RECEIVER,
    type="prometheus",
    config_model=PrometheusReceiverConfig,
    create=_create,
    signals=frozenset({Signal.METRICS}),
    description="scrapes Prometheus /metrics endpoints (prometheus_client apps, DCGM, node exporter) into OTLP",
)
