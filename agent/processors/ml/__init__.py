"""The `ml` processor: drift, data health, confidence, performance and traffic per model version.

Its factory, and the lazy holder of its engine: the engine (`engine.py`, and
numpy with it) is loaded only once a batch may hold predictions (its bytes
name `ml.model.name`, or its mapped name, or a `gen_ai.` attribute, or
Triton's `triton.model_name`) or a previous run left state to read, so an
agent that sees no predictions pays a substring search per batch. The package: `config` (settings), `engine` (the
state per model version, observing a batch), `windows` (closing windows, the
worker and the ticker), `status` (the status JSON). docs/user-guide.md
describes what it derives and how to set it up.
"""

from __future__ import annotations

import importlib
from typing import Any

from agent.component import Consumer, Factory, Kind, Settings
from agent.ml.paths import engine_state_dir
from agent.ml.vocabulary import GENAI_PREFIX, MODEL_NAME, TRITON_MODEL_NAME
from agent.processors.ml.config import MlProcessorConfig
from agent.processors.ml.status import summary
from agent.processors.observing import ObservingStage
from agent.signals import Batch, Signal


class LazyMlEngine:
    """The `ml` processor's shared state: the engine once there is something for it to do."""

    def __init__(self, config: MlProcessorConfig, settings: Settings, emit: dict[Signal, Consumer]) -> None:
        self._config = config
        self._settings = settings
        self._emit = emit
        self._engine: Any = None
        markers = [config.attributes.get(MODEL_NAME, MODEL_NAME), TRITON_MODEL_NAME]
        if config.genai.enabled:
            markers.append(GENAI_PREFIX)
        self._markers = [m.encode() for m in markers]

    @property
    def engine(self) -> Any:
        """The running `agent.processors.ml.engine.MlEngine`, or None while no prediction has come."""
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
        return summary([], self._config)

    def _make(self) -> Any:
        engine_module = importlib.import_module("agent.processors.ml.engine")  # numpy and the statistics
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
