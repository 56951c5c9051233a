"""The `ml` processor: drift, data health, confidence, performance and traffic per model version.

    processors:
      ml: {reference: {warmup: 5000}, window: {size: 2000}}
    service:
      pipelines:
        traces:  {receivers: [otlp], processors: [ml, batch], exporters: [otlp]}
        metrics: {receivers: [otlp, ml], processors: [batch], exporters: [otlp]}

In a traces or logs pipeline it passes data through unchanged and picks out
predictions (items with `ml.model.name`). Per model and version it learns a
reference from the first `warmup` predictions (kept under `state_dir`, so a
restart does not relearn it) or takes one from a profile file, then
evaluates windows of `window.size` predictions (or what came within
`window.max_age`, if at least `window.min_size`) against it. What it derives
goes, as OTLP metrics, to the metrics pipelines that list its id among their
receivers.

Besides the drift windows, per model version:

- every `interval`: requests and errors (`ml.predictions` by predicted
  class, `ml.prediction.errors` by error type), latency and confidence
  histograms, the low-confidence share and entropy, the divergence of each
  live version from the baseline version over the interval (canary), the
  label counters, and GenAI token and duration histograms from `gen_ai.*`
  spans;
- per drift window, when the reference carries labels (a profile built with
  `--label`): the label-free performance estimate and whether it is degraded;
- per window of joined labels: realised performance. Predictions with an
  `ml.prediction.id` wait for their label (`labels.ttl`, `labels.max_pending`)
  in a join kept under `state_dir` across restarts.

One `ml` id is one engine (`agent/ml/engine.py`): every pipeline that lists
it feeds the same windows. The engine, and numpy with it, is loaded only once a
batch may hold predictions (its bytes name `ml.model.name`, or its mapped name,
or a `gen_ai.` attribute) or a previous run left state to read: an agent that
sees no predictions pays a substring search per batch. Heavy work (building profiles, the tests) runs in a worker thread,
one window at a time; windows that pile up beyond a small queue are dropped
and counted rather than holding memory.
"""

from __future__ import annotations

import importlib
from typing import Any

from agent.component import Consumer, Factory, Kind, Settings
from agent.ml.config import MlProcessorConfig
from agent.ml.vocabulary import GENAI_PREFIX, MODEL_NAME
from agent.ml.paths import engine_state_dir
from agent.processors.observing import ObservingStage
from agent.signals import Batch, Signal


class LazyMlEngine:
    """The `ml` processor's shared state: the engine once there is something for it to do."""

    def __init__(self, config: MlProcessorConfig, settings: Settings, emit: dict[Signal, Consumer]) -> None:
        self._config = config
        self._settings = settings
        self._emit = emit
        self._engine: Any = None
        markers = [config.attributes.get(MODEL_NAME, MODEL_NAME)]
        if config.genai.enabled:
            markers.append(GENAI_PREFIX)
        self._markers = [m.encode() for m in markers]

    @property
    def engine(self) -> Any:
        """The running `agent.ml.engine.MlEngine`, or None while no prediction has come."""
        return self._engine

    async def start(self) -> None:
        saved = engine_state_dir(self._settings.state_dir, str(self._settings.id))
        if self._config.reference.profiles or saved.exists():
            await self._make().start()

    async def shutdown(self) -> None:
        if self._engine is not None:
            await self._engine.shutdown()

    def observe(self, batch: Batch) -> None:
        if self._engine is None:
            wire = batch.wire()
            if not any(marker in wire for marker in self._markers):
                return
            self._make().begin()  # nothing to load: start() found no state
        self._engine.observe(batch)

    def record_failure(self) -> None:
        if self._engine is not None:
            self._engine.record_failure()

    def status(self) -> dict:
        if self._engine is not None:
            return self._engine.status()
        return {"models": [], "drift_share_threshold": self._config.drift.drift_share,
                "labels": {"pending": 0, "waiting": 0, "max_pending": self._config.labels.max_pending}}

    def _make(self) -> Any:
        engine_module = importlib.import_module("agent.ml.engine")  # numpy and the statistics
        self._engine = engine_module.MlEngine(self._config, self._settings, self._emit)
        return self._engine


def _create_engine(config: MlProcessorConfig, settings: Settings, emit: dict[Signal, Consumer]) -> LazyMlEngine:
    return LazyMlEngine(config, settings, emit)


def _create(config: MlProcessorConfig, settings: Settings, signal: Signal, next: Consumer,
            shared: LazyMlEngine) -> ObservingStage:
    # The engine looks; the batch goes on unchanged.
    return ObservingStage(shared, next, settings.logger)


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type="ml",
    config_model=MlProcessorConfig,
    create=_create,
    signals=frozenset({Signal.TRACES, Signal.LOGS}),
    description="drift, data health, confidence, performance and traffic per model version, from prediction "
                "spans and logs; GenAI metrics from gen_ai spans",
    emits=frozenset({Signal.METRICS}),
    create_shared=_create_engine,
)
