"""The `ml` processor's engine: the state per model version, and how a batch is observed into it.

`observe` takes a batch's predictions into their model versions' warmup and
windows, its labels into the join and its GenAI calls into their series;
windows that fill are closed into work for `Windows` (its base class, in
`windows.py`). Model versions are made on first sight, within the limits.
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from agent.component import Consumer, Settings
from agent.hostinfo import detect_host_resource
from agent.ml import drift, labels as label_join, performance
from agent.ml import profile as profiles
from agent.ml.columns import RawColumn
from agent.ml.exemplars import Traces
from agent.ml.genai import GenAi
from agent.ml.paths import engine_state_dir, label_join_path, profile_path
from agent.ml.predictions import Extracted
from agent.ml.sources.otlp import Extractor
from agent.ml.traffic import Traffic
from agent.ml.vocabulary import PREDICTION_LABEL, PREDICTION_SCORE, PREDICTION_VALUE
from agent.processors.ml.config import MlProcessorConfig
from agent.processors.ml.exemplars import exemplar_status
from agent.processors.ml.history import History
from agent.processors.ml.multivariate import batch_vectors
from agent.processors.ml.status import model_status, summary
from agent.processors.ml.windows import Buffer, Windows, rows_of
from agent.signals import Batch, Signal, merge

if TYPE_CHECKING:
    from agent.ml.predictions import Labels, Predictions


@dataclass
class ModelState:
    model: str
    version: str
    service_name: str
    profile: profiles.Profile | None = None
    building: bool = False  # the reference is being built from the warmup
    warmup: Buffer = field(default_factory=Buffer)
    window: Buffer = field(default_factory=Buffer)
    windows_evaluated: int = 0
    features: set[str] = field(default_factory=set)  # the names taken so far, at most max_features
    # For status(): predictions seen, and the last window's verdict and counts (set in the worker thread).
    requests: int = 0
    last_drift: drift.DriftResult | None = None
    last_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # categorical columns
    last_window_ns: int = 0
    last_seen: float = 0.0  # monotonic time of its last prediction or label
    traffic: Traffic | None = None
    labeled: list[label_join.Joined] = field(default_factory=list)  # joined labels not yet evaluated
    labeled_since: float = 0.0  # monotonic time of the first of them
    last_estimate: dict[str, float] = field(default_factory=dict)
    last_realized: dict[str, float] = field(default_factory=dict)
    degraded: dict[str, bool] = field(default_factory=dict)  # by source: estimated, realized
    window_exemplars: list[dict] = field(default_factory=list)  # the last window's telling rows, for status()
    last_multivariate: dict | None = None  # the last window's multivariate drift, for status()
    last_window_bins: dict[str, dict] = field(default_factory=dict)  # numeric columns, on a widened axis
    history: History = field(default_factory=History)  # the recent windows and intervals, for status()


# Small requests are read together: reading a request has a cost of its own beyond its spans' (a few
# dozen numpy calls per model version in it), which many small requests pay many times over. A run ends
# at this many items or bytes (joining them copies the bytes once), at this age, or when anything reads
# the engine's state.
COALESCE_ITEMS = 4096
COALESCE_BYTES = 4 << 20
COALESCE_SECONDS = 0.2


class _Pending:
    """The batches observed but not yet read, with the timer that reads them."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.items = self.bytes = 0
        self.timer: asyncio.TimerHandle | None = None

    def add(self, batch: Batch) -> None:
        # Its bytes as they are now: a processor after this one may edit the batch before it is read.
        wire = batch.wire()
        self.batches.append(Batch(batch.signal, wire=wire, items=batch.items))
        self.items += batch.items
        self.bytes += len(wire)

    def take(self) -> list[Batch]:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batches, self.batches, self.items, self.bytes = self.batches, [], 0, 0
        return batches


class MlEngine(Windows):
    """One `ml` processor id: its models' state, windows and the metrics it derives."""

    def __init__(self, config: MlProcessorConfig, settings: Settings, emit: dict[Signal, Consumer]) -> None:
        super().__init__()
        self._config = config
        self._emit_to = emit  # filled by the pipeline builder once the metrics pipelines exist
        self._emit = None
        self._log = settings.logger
        self._id = str(settings.id)
        self._state_dir = engine_state_dir(settings.state_dir, self._id)
        self._extractor = Extractor(config.attributes, config.limits.max_features)
        self._models = {}
        self._file_profiles: dict[tuple[str, str], profiles.Profile] = {}
        self._host = detect_host_resource().get("host.name", "")
        self._started_ns = time.time_ns()
        t = settings.telemetry
        self._attrs = {"processor": self._id}
        self._predictions = t.counter("vigil_ml_predictions", "predictions seen by the ml processor")
        self._dropped = t.counter("vigil_ml_dropped_predictions",
                                  "predictions not analysed (limits, a full work queue), by reason")
        self._dropped_features = t.counter("vigil_ml_dropped_feature_values",
                                           "feature values ignored beyond limits.max_features")
        self._failures = t.counter("vigil_ml_errors", "errors inside the ml processor; data still passed on")
        self._dropped_labels = t.counter("vigil_ml_dropped_labels", "labels not joined: for models beyond limits")
        self._dropped_genai = t.counter("vigil_ml_dropped_genai_calls", "GenAI calls beyond genai.max_series")
        lc = config.labels
        self._join = label_join.LabelJoin(lc.ttl, lc.max_pending, lc.wait)
        self._join_path = label_join_path(self._state_dir)
        self._genai = GenAi(config.genai.max_series)
        self._exemplars = config.exemplars.max_per_point if config.exemplars.enabled else 0
        self._trace_url = settings.trace_url
        self._pending = _Pending()

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        await self.load()
        self.begin()

    async def load(self) -> None:
        """Read what a previous run left: profile files and the label join."""
        for path in self._config.reference.profiles:
            loaded = await asyncio.to_thread(profiles.load, path)
            self._file_profiles[(loaded.model_name, loaded.model_version)] = loaded
        try:
            if await asyncio.to_thread(label_join.load, self._join, self._join_path):
                self._log.info("label join: %d predictions and %d labels still waiting, from %s",
                               len(self._join.pending), len(self._join.waiting), self._join_path)
        except Exception as exc:  # a damaged file: start with nothing waiting rather than not start
            self._log.warning("cannot read the label join state %s (%s); starting with nothing waiting",
                              self._join_path, exc)

    def begin(self) -> None:
        """Start the worker and the ticker (on the event loop)."""
        self._emit = self._emit_to.get(Signal.METRICS)
        if self._emit is None:
            self._log.warning("no metrics pipeline lists %s among its receivers: its metrics go nowhere",
                              self._id)
        self._start_work()

    async def shutdown(self) -> None:
        await self._finish_work()

    def status(self) -> dict:
        """For `vigil status`, the status page and model health (see `status.py`)."""
        self.flush()
        join = self._join
        entries = []
        for state in list(self._models.values()):
            entry = model_status(state, self._config, join)
            entry["exemplars"] = exemplar_status(state, self._exemplars, self._trace_url)
            entry["multivariate"] = state.last_multivariate
            entries.append(entry)
        return summary(entries, self._config, len(join.pending), len(join.waiting))

    # --- the hot path ----------------------------------------------------------------

    def record_failure(self) -> None:
        self._failures.add(1, self._attrs)

    def observe(self, batch: Batch) -> None:
        """Take the predictions in `batch` into their models' windows (the batch is not changed).

        Batches are read in runs (see `_Pending`); what reads the state flushes the run first."""
        pending = self._pending
        if pending.batches and pending.batches[0].signal is not batch.signal:
            self.flush()  # the engine sees every signal's batches in the order they came
        pending.add(batch)
        if pending.items >= COALESCE_ITEMS or pending.bytes >= COALESCE_BYTES:
            self.flush()
        elif pending.timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop (a script, a test): nothing would flush the run later
                self.flush()
                return
            pending.timer = loop.call_later(COALESCE_SECONDS, self.flush)

    def flush(self) -> None:
        """Observe the batches that wait, as one."""
        batches = self._pending.take()
        if not batches:
            return
        try:
            dropped_before = self._extractor.dropped_features
            extracted = self._extract(batches)
            if self._extractor.dropped_features > dropped_before:
                self._dropped_features.add(self._extractor.dropped_features - dropped_before, self._attrs)
            self._take(extracted)
        except Exception:
            self.record_failure()
            self._log.exception("ml processor failed on %d %s batches; they were passed on unexamined",
                                len(batches), batches[0].signal.value)

    def _extract(self, batches: list[Batch]) -> Extracted:
        """The predictions of `batches`, read as one request (their bytes joined); where that fails, each
        batch on its own, so one damaged request costs only its own predictions."""
        try:
            return self._extractor.extract_all(merge(batches))
        except Exception:
            if len(batches) == 1:
                raise
        found = Extracted([], [], [])
        for batch in batches:
            try:
                part = self._extractor.extract_all(batch)
            except Exception:
                self.record_failure()
                self._log.exception("ml processor failed on a %s batch; it was passed on unexamined",
                                    batch.signal.value)
                continue
            found.predictions += part.predictions
            found.labels += part.labels
            found.genai += part.genai
        return found

    def _take(self, extracted: Extracted) -> None:
        now = time.time()
        now_ns = int(now * 1e9)
        for found in extracted.predictions:
            self._predictions.add(found.rows, self._attrs)
            state = self._state(found)
            if state is None:
                self._dropped.add(found.rows, {**self._attrs, "reason": "limit"})
                continue
            state.requests += found.rows
            outputs = found.outputs()
            traces = Traces.of(found.trace_ids, found.span_ids, found.rows, now_ns) if self._exemplars else None
            state.traffic.add(found, outputs, traces)
            if found.ids:
                self._wait_for_labels(state, found, outputs, now)
            columns = {**self._features(state, found), **outputs}
            vectors = batch_vectors(self._config.drift.multivariate, state.model, found)
            rows, start = found.rows, 0
            if state.profile is None and not state.building:
                # The reference is exactly the first `warmup` predictions; the rest of the batch
                # that completes it goes on to the first window.
                take = min(rows, self._config.reference.warmup - state.warmup.rows)
                state.warmup.add(take, {n: c.rows(0, take) for n, c in columns.items()} if take < rows else columns)
                state.warmup.vectors.add(take, None if vectors is None else vectors[:take])
                if state.warmup.rows < self._config.reference.warmup:
                    continue
                self._build_reference(state)
                start = take
            self._into_windows(state, rows, columns, traces, vectors, start)
        for found_labels in extracted.labels:
            self._take_labels(found_labels, now)
        if extracted.genai and self._config.genai.enabled:
            dropped = self._genai.dropped
            for calls in extracted.genai:
                self._genai.add(calls)
            if self._genai.dropped > dropped:
                self._dropped_genai.add(self._genai.dropped - dropped, self._attrs)

    def _into_windows(self, state: ModelState, rows: int, columns: dict[str, RawColumn], traces: Traces | None,
                      vectors: np.ndarray | None, start: int = 0) -> None:
        """Rows `start` and on into the open window; each window closes at exactly `window.size` rows, so
        the windows are the same however the app (or a collector before Vigil) batched its spans."""
        size = self._config.window.size
        while start < rows:
            # While the reference is built the window grows past size (`_close_backlog` cuts it later).
            take = rows - start if state.profile is None else min(rows - start, max(size - state.window.rows, 0))
            if take:
                part = (columns, traces, vectors) if take == rows else \
                    rows_of(columns, traces, vectors, start, start + take)
                state.window.add(take, part[0], part[1])
                state.window.vectors.add(take, part[2])
                start += take
            if state.window.rows >= size:
                self._close_window(state)

    def _wait_for_labels(self, state: ModelState, found: Predictions, outputs: dict[str, RawColumn],
                         now: float) -> None:
        rows = np.asarray(found.id_rows)
        n = rows.size

        def numbers(name: str) -> array:  # the join keeps them as an array("d"): no float per value
            return array("d", outputs[name].numbers[rows].astype(float, copy=False).tobytes()) \
                if name in outputs else array("d", [math.nan]) * n

        predicted = performance.categories(outputs[PREDICTION_LABEL])[rows].tolist() \
            if PREDICTION_LABEL in outputs else [None] * n
        joined = self._join.add_predictions(state.model, state.version, found.ids, predicted,
                                            numbers(PREDICTION_SCORE), numbers(PREDICTION_VALUE), now)
        if joined:
            self._joined(joined)

    def _take_labels(self, found: Labels, now: float) -> None:
        model = found.model
        join = self._join
        # Labels of a model with no prediction seen yet (they can come first) are taken for at most
        # max_models such models over the agent's life: the label counters' cardinality stays bounded.
        known = model in join.received or any(m == model for m, _ in self._models) or model in join.models()
        if not known and len(join.received) >= self._config.limits.max_models:
            self._dropped_labels.add(len(found.ids), {**self._attrs, "reason": "limit"})
            return
        joined = self._join.add_labels(model, found.ids, found.values, now)
        if joined:
            self._joined(joined)

    def _joined(self, joined: list[label_join.Joined]) -> None:
        """Joined labels into their model version's window of labels."""
        for item in joined:
            # After a restart a label can join a prediction made before it, ahead of any new prediction
            # of that version: its state is made here then.
            state = self._state_of(item.model, item.version, "")
            if state is None:
                continue
            if not state.labeled:
                state.labeled_since = time.monotonic()
            state.labeled.append(item)
            if len(state.labeled) >= self._config.labels.window.size:
                self._close_labels(state)

    # --- the model versions ------------------------------------------------------------

    def _state(self, found: Predictions) -> ModelState | None:
        state = self._state_of(found.model, found.version, found.service_name)
        if state is not None and not state.service_name:
            state.service_name = found.service_name  # made for a label before any prediction came
        return state

    def _state_of(self, model: str, version: str, service_name: str) -> ModelState | None:
        """The model version's state, made on first sight (None beyond the limits)."""
        key = (model, version)
        state = self._models.get(key)
        now = time.monotonic()
        if state is not None:
            state.last_seen = now
            return state
        limits = self._config.limits
        versions = [k for k in self._models if k[0] == model]
        if len(versions) >= limits.max_versions:
            if not self._expire([[k] for k in versions], now):  # one of its versions
                return None
        elif not versions and len(models := self._versions_by_model()) >= limits.max_models:
            if not self._expire(list(models.values()), now):  # a whole model
                return None
        state = self._models[key] = ModelState(model, version, service_name, last_seen=now)
        limits, config = self._config.limits, self._config
        state.traffic = Traffic(config.latency.buckets, config.confidence.buckets, config.confidence.low_threshold,
                                limits.max_classes, limits.max_error_types, self._exemplars)
        state.profile = self._known_profile(model, version)
        if state.profile is not None:
            self._log.info("%s %s: using the reference from %s", model, version or "-",
                           state.profile.source or "a profile file")
        return state

    def _versions_by_model(self) -> dict[str, list[tuple[str, str]]]:
        by_model: dict[str, list[tuple[str, str]]] = {}
        for key in self._models:
            by_model.setdefault(key[0], []).append(key)
        return by_model

    def _expire(self, candidates: list[list[tuple[str, str]]], now: float) -> bool:
        """Make room: forget the least recently seen of `candidates` (each a group of model versions that
        go together) once idle for limits.expire_after and not building a reference; whether one went."""
        def last_seen(keys: list[tuple[str, str]]) -> float:
            states = [self._models[k] for k in keys]
            return now if any(s.building for s in states) else max(s.last_seen for s in states)

        idle = [keys for keys in candidates if now - last_seen(keys) >= self._config.limits.expire_after]
        if not idle:
            return False
        gone = min(idle, key=last_seen)
        for k in gone:
            del self._models[k]
        self._log.info("%s: no prediction for %ds; its slot goes to a new model version",
                       ", ".join(f"{m} {v or '-'}" for m, v in gone), self._config.limits.expire_after)
        return True

    def _features(self, state: ModelState, found: Predictions) -> dict[str, RawColumn]:
        """The features the model version keeps: its reference's, or the first `max_features` names
        seen across batches (the extractor bounds one batch only)."""
        features = found.features()
        if state.profile is not None:
            return {name: c for name, c in features.items() if name in state.profile.features}
        kept = {}
        for name, column in features.items():
            if name not in state.features:
                if len(state.features) >= self._config.limits.max_features:
                    continue
                state.features.add(name)
            kept[name] = column
        return kept

    def _known_profile(self, model: str, version: str) -> profiles.Profile | None:
        for key in ((model, version), (model, "")):
            if key in self._file_profiles:
                return self._file_profiles[key]
        path = profile_path(self._state_dir, model, version)
        if path.exists():
            try:
                return profiles.load(path)
            except Exception as exc:  # a damaged file: learn again rather than stop
                self._log.warning("cannot read the learned reference %s (%s); learning it again", path, exc)
        return None
