"""The `ml` processor's engine: the state per model version, its windows and schedule, and the
metrics and status it derives (the processor itself is `agent/processors/ml.py`)."""


from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.component import Consumer, Settings
from agent.errors import ConsumerError
from agent.hostinfo import detect_host_resource
from agent.metrics_builder import Instrument, MetricSpec, MetricsBuilder
from agent.ml import drift, extract, health, labels as label_join, metrics as ml_metrics, performance
from agent.ml import profile as profiles
from agent.ml.columns import RawColumn, concat_all
from agent.ml.config import MlProcessorConfig
from agent.ml.paths import engine_state_dir, safe_name as _safe
from agent.ml.genai import GenAi
from agent.ml.traffic import Traffic, divergences
from agent.signals import Batch, Signal

G = Instrument.GAUGE
FEATURE_DRIFT_SCORE = MetricSpec("ml.feature.drift.score", "1", G,
                                 "Effect size of the column's drift in the window (method in ml.drift.method)")
FEATURE_DRIFT_P_VALUE = MetricSpec("ml.feature.drift.p_value", "1", G,
                                   "p-value of the column's drift test, corrected across the model's columns")
FEATURE_DRIFTED = MetricSpec("ml.feature.drifted", "1", G, "1 when the column drifted in the window")
MODEL_DRIFT_SHARE = MetricSpec("ml.model.drift.share", "1", G, "Share of the model's columns that drifted")
MODEL_DRIFTED = MetricSpec("ml.model.drifted", "1", G, "1 when the share of drifted columns reached drift_share")
DRIFT_WINDOWS = MetricSpec("ml.drift.windows", "{window}", Instrument.COUNTER, "Windows evaluated")
HEALTH = {
    "missing": MetricSpec("ml.feature.missing.ratio", "1", G, "Share of predictions without the value"),
    "sentinel": MetricSpec("ml.feature.sentinel.ratio", "1", G, "Share of values equal to a sentinel"),
    "type_mismatch": MetricSpec("ml.feature.type_mismatch.ratio", "1", G,
                                "Share of values of another type than the reference's"),
    "out_of_range": MetricSpec("ml.feature.out_of_range.ratio", "1", G,
                               "Share of values outside the reference's range"),
    "unseen_category": MetricSpec("ml.feature.unseen_category.ratio", "1", G,
                                  "Share of values in categories the reference never had"),
}
FEATURE_VALUE = MetricSpec("ml.feature.value", "1", Instrument.HISTOGRAM,
                           "Values of a numeric column in the window, on the reference's quantile bins")


class _Buffer:
    """Columns collected over several batches, joined when taken."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, dict[str, RawColumn]]] = []
        self.rows = 0
        self.started = time.monotonic()
        self.started_ns = time.time_ns()

    def add(self, rows: int, columns: dict[str, RawColumn]) -> None:
        if not self.chunks:
            self.started, self.started_ns = time.monotonic(), time.time_ns()
        self.chunks.append((rows, columns))
        self.rows += rows

    def columns(self) -> dict[str, RawColumn]:
        names = {name: None for _, columns in self.chunks for name in columns}
        return {name: concat_all([columns[name] if name in columns else RawColumn.missing(rows)
                                  for rows, columns in self.chunks])
                for name in names}


@dataclass
class _ModelState:
    model: str
    version: str
    service_name: str
    profile: profiles.Profile | None = None
    building: bool = False  # the reference is being built from the warmup
    warmup: _Buffer = field(default_factory=_Buffer)
    window: _Buffer = field(default_factory=_Buffer)
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


class MlEngine:
    """One `ml` processor id: its models' state, windows and the metrics it derives."""

    def __init__(self, config: MlProcessorConfig, settings: Settings, emit: dict[Signal, Consumer]) -> None:
        self._config = config
        self._emit_to = emit  # filled by the pipeline builder once the metrics pipelines exist
        self._emit: Consumer | None = None
        self._log = settings.logger
        self._id = str(settings.id)
        self._state_dir = engine_state_dir(settings.state_dir, self._id)
        self._extractor = extract.Extractor(config.attributes, config.limits.max_features)
        self._models: dict[tuple[str, str], _ModelState] = {}
        self._file_profiles: dict[tuple[str, str], profiles.Profile] = {}
        self._host = detect_host_resource().get("host.name", "")
        self._started_ns = time.time_ns()
        self._jobs: asyncio.Queue = asyncio.Queue(maxsize=8)
        self._tasks: list[asyncio.Task] = []
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
        self._join_path = self._state_dir / "@labels.pb"  # '@' is quoted in model directory names: no clash
        self._join_saved = time.monotonic()
        self._join_unwritable = False
        self._genai = GenAi(config.genai.max_series)
        self._last_interval = time.monotonic()
        self._flushing = asyncio.Lock()
        self._stopping = asyncio.Event()

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
        self._stopping = asyncio.Event()
        self._tasks = [asyncio.create_task(self._work(), name=f"{self._id}-worker"),
                       asyncio.create_task(self._tick(), name=f"{self._id}-ticker")]

    async def shutdown(self) -> None:
        # The ticker finishes what it is doing (an interval being written, the join being saved:
        # cancelling it there would lose the one and race the last save), then stops.
        self._stopping.set()
        worker, ticker = self._tasks or (None, None)
        if ticker is not None:
            await asyncio.gather(ticker, return_exceptions=True)
        # Evaluate what is pending so the last partial windows are not lost, then stop.
        for state in self._models.values():
            self._close_window(state, final=True)
            self._close_labels(state, final=True)
        await self._jobs.join()
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        self._tasks = []
        await self._flush_interval()
        await self._save_join()

    # --- the hot path ----------------------------------------------------------------

    def record_failure(self) -> None:
        self._failures.add(1, self._attrs)

    def observe(self, batch: Batch) -> None:
        """Take the predictions in `batch` into their models' windows (the batch is not changed)."""
        dropped_before = self._extractor.dropped_features
        extracted = self._extractor.extract_all(batch)
        if self._extractor.dropped_features > dropped_before:
            self._dropped_features.add(self._extractor.dropped_features - dropped_before, self._attrs)
        now = time.time()
        for found in extracted.predictions:
            self._predictions.add(found.rows, self._attrs)
            state = self._state(found)
            if state is None:
                self._dropped.add(found.rows, {**self._attrs, "reason": "limit"})
                continue
            state.requests += found.rows
            outputs = found.outputs()
            state.traffic.add(found, outputs)
            if found.ids:
                self._wait_for_labels(state, found, outputs, now)
            columns = {**self._features(state, found), **outputs}
            rows = found.rows
            if state.profile is None and not state.building:
                # The reference is exactly the first `warmup` predictions; the rest of the batch
                # that completes it goes on to the first window.
                take = min(rows, self._config.reference.warmup - state.warmup.rows)
                state.warmup.add(take, {n: c.rows(0, take) for n, c in columns.items()} if take < rows else columns)
                if state.warmup.rows < self._config.reference.warmup:
                    continue
                self._build_reference(state)
                rows -= take
                if rows == 0:
                    continue
                columns = {n: c.rows(take, take + rows) for n, c in columns.items()}
            state.window.add(rows, columns)
            if state.window.rows >= self._config.window.size:
                self._close_window(state)
        for found_labels in extracted.labels:
            self._take_labels(found_labels, now)
        if extracted.genai and self._config.genai.enabled:
            dropped = self._genai.dropped
            for calls in extracted.genai:
                self._genai.add(calls)
            if self._genai.dropped > dropped:
                self._dropped_genai.add(self._genai.dropped - dropped, self._attrs)

    def _wait_for_labels(self, state: _ModelState, found: extract.Predictions, outputs: dict[str, RawColumn],
                         now: float) -> None:
        rows = np.asarray(found.id_rows)
        n = rows.size

        def numbers(name: str) -> list[float]:
            return outputs[name].numbers[rows].tolist() if name in outputs else [math.nan] * n

        predicted = performance.categories(outputs[extract.LABEL])[rows].tolist() if extract.LABEL in outputs \
            else [None] * n
        joined = self._join.add_predictions(state.model, state.version, found.ids, predicted,
                                            numbers(extract.SCORE), numbers(extract.VALUE), now)
        if joined:
            self._joined(joined)

    def _take_labels(self, found: extract.Labels, now: float) -> None:
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

    def _state(self, found: extract.Predictions) -> _ModelState | None:
        state = self._state_of(found.model, found.version, found.service_name)
        if state is not None and not state.service_name:
            state.service_name = found.service_name  # made for a label before any prediction came
        return state

    def _state_of(self, model: str, version: str, service_name: str) -> _ModelState | None:
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
        state = self._models[key] = _ModelState(model, version, service_name, last_seen=now)
        limits, config = self._config.limits, self._config
        state.traffic = Traffic(config.latency.buckets, config.confidence.buckets, config.confidence.low_threshold,
                                limits.max_classes, limits.max_error_types)
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

    def _features(self, state: _ModelState, found: extract.Predictions) -> dict[str, RawColumn]:
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
        path = self._profile_path(model, version)
        if path.exists():
            try:
                return profiles.load(path)
            except Exception as exc:  # a damaged file: learn again rather than stop
                self._log.warning("cannot read the learned reference %s (%s); learning it again", path, exc)
        return None

    def _profile_path(self, model: str, version: str) -> Path:
        return self._state_dir / _safe(model) / f"{_safe(version or '-')}.vigilprofile"

    # --- work for the worker thread --------------------------------------------------

    def _build_reference(self, state: _ModelState) -> None:
        state.building = True
        rows, columns = state.warmup.rows, state.warmup.columns()
        state.warmup = _Buffer()
        self._submit(("reference", state, rows, columns, 0))

    def _close_window(self, state: _ModelState, final: bool = False) -> None:
        window = state.window
        if state.profile is None or window.rows == 0:
            if state.profile is None and window.rows > 4 * self._config.window.size:
                # The reference is still being built and the window keeps growing: bound it.
                self._dropped.add(window.rows, {**self._attrs, "reason": "no_reference"})
                state.window = _Buffer()
            return
        if window.rows < self._config.window.min_size and final:
            return
        state.window = _Buffer()
        self._submit(("window", state, window.rows, window.columns(), window.started_ns))

    def _close_labels(self, state: _ModelState, final: bool = False) -> None:
        labeled = state.labeled
        if not labeled or (final and len(labeled) < self._config.labels.window.min_size):
            return
        state.labeled = []
        truth = RawColumn.from_values([j.label for j in labeled])
        predicted = np.array([j.predicted for j in labeled], dtype=object)
        outputs = performance.Outputs(
            predicted if (predicted != None).any() else None,  # noqa: E711
            _numbers([j.score for j in labeled]), None, _numbers([j.value for j in labeled]))
        started_ns = time.time_ns() - int((time.monotonic() - state.labeled_since) * 1e9)
        self._submit(("labels", state, len(labeled), (truth, outputs), started_ns))

    def _submit(self, job: tuple) -> None:
        try:
            self._jobs.put_nowait(job)
        except asyncio.QueueFull:
            _, state, rows, _, _ = job
            if job[0] == "reference":
                state.building = False  # try again with the next warmup
            self._dropped.add(rows, {**self._attrs, "reason": "busy"})
            self._log.warning("ml work queue full: dropped a %s of %d predictions of %s",
                              "window of labels" if job[0] == "labels" else "window", rows, state.model)

    async def _work(self) -> None:
        while True:
            kind, state, rows, columns, started_ns = await self._jobs.get()
            try:
                if kind == "reference":
                    state.profile = await asyncio.to_thread(self._learn, state, rows, columns)
                    state.building = False
                    self._log.info("%s %s: reference learned from %d predictions", state.model,
                                   state.version or "-", rows)
                elif kind == "labels":
                    batch = await asyncio.to_thread(self._evaluate_labels, state, columns)
                    await self._send(batch)
                else:
                    batch = await asyncio.to_thread(self._evaluate, state, rows, columns, started_ns)
                    await self._send(batch)
            except Exception:
                self._failures.add(1, self._attrs)
                self._log.exception("ml processor failed on a %s of %s", kind, state.model)
                if kind == "reference":
                    state.building = False
            finally:
                self._jobs.task_done()

    async def _tick(self) -> None:
        """Close windows that have waited `max_age`, however few predictions they hold; write the
        interval's metrics when it is due; expire and save the label join."""
        config = self._config
        period = min(config.window.max_age / 4, config.interval / 4, config.labels.save_interval, 5.0)
        labels_window = config.labels.window
        while True:
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=period)
                return
            except asyncio.TimeoutError:
                pass
            now = time.monotonic()
            for state in list(self._models.values()):
                window = state.window
                if (window.rows >= config.window.min_size
                        and now - window.started >= config.window.max_age):
                    self._close_window(state)
                if (len(state.labeled) >= labels_window.min_size
                        and now - state.labeled_since >= labels_window.max_age):
                    self._close_labels(state)
            try:
                self._join.expire(time.time())
                if now - self._last_interval >= config.interval:
                    await self._flush_interval()
                if self._join.changed and now - self._join_saved >= config.labels.save_interval:
                    await self._save_join()
            except Exception:
                self._failures.add(1, self._attrs)
                self._log.exception("ml processor failed writing its interval metrics")

    async def _save_join(self) -> None:
        self._join_saved = time.monotonic()
        if not self._join.changed:
            return
        snapshot = self._join.snapshot()
        self._join.changed = False
        try:
            await asyncio.to_thread(label_join.save, snapshot, self._join_path)
            self._join_unwritable = False
        except OSError as exc:
            self._join.changed = True
            if not self._join_unwritable:  # say it once, not every save_interval
                self._log.warning("cannot keep the label join in %s (%s); a restart will forget the "
                                  "predictions waiting for labels", self._join_path, exc)
            self._join_unwritable = True

    async def _flush_interval(self) -> None:
        """The interval's traffic, confidence, canary, label and GenAI metrics."""
        async with self._flushing:
            self._last_interval = time.monotonic()
            join = self._join
            taken = [(state, state.traffic.take_interval(), dict(state.traffic.by_class),
                      dict(state.traffic.by_error)) for state in list(self._models.values())
                     if state.traffic is not None]
            counters = (dict(join.received), dict(join.matched), dict(join.expired), dict(join.unmatched),
                        dict(join.pending_count))
            calls = self._genai.take()
            batch = await asyncio.to_thread(self._interval_metrics, taken, counters, calls)
            await self._send(batch)

    def _interval_metrics(self, taken: list, counters: tuple, calls: GenAi) -> Batch | None:
        out = MetricsBuilder()
        resources: dict[str, Any] = {}

        def resource(service: str):
            rm = resources.get(service)
            if rm is None:
                rm = resources[service] = out.resource({"service.name": service or "unknown_service",
                                                        "host.name": self._host})
            return rm

        by_model: dict[str, dict[str, Any]] = {}
        service_of: dict[str, str] = {}
        for state, interval, by_class, by_error in taken:
            model_attrs = {"ml.model.name": state.model, "ml.model.version": state.version}
            ml_metrics.write_traffic(resource(state.service_name), model_attrs, by_class, by_error, interval,
                                     self._started_ns)
            by_model.setdefault(state.model, {})[state.version] = interval
            service_of.setdefault(state.model, state.service_name)
        canary = self._config.canary
        for model, intervals in by_model.items():
            if len(intervals) < 2:
                continue
            baseline = canary.baselines.get(model) or next(iter(intervals))  # versions in the order first seen
            found = divergences(intervals, baseline, canary.min_predictions)
            ml_metrics.write_divergences(resource(service_of[model]), model, found)
        received, matched, expired, unmatched, pending = counters
        models = set(received) | {m for m, _ in matched} | {m for m, _, _ in expired} | \
            {m for m, _ in unmatched} | {m for m, _ in pending}
        for model in sorted(models):
            ml_metrics.write_labels(
                resource(service_of.get(model, "")), model, received.get(model, 0),
                {v: n for (m, v), n in matched.items() if m == model},
                {(v, r): n for (m, v, r), n in expired.items() if m == model},
                {r: n for (m, r), n in unmatched.items() if m == model},
                {v: n for (m, v), n in pending.items() if m == model}, self._started_ns)
        ml_metrics.write_genai(resource, calls)
        return out.batch()

    def _learn(self, state: _ModelState, rows: int, columns: dict[str, RawColumn]) -> profiles.Profile:
        def kind_of(name: str) -> str | None:
            if name in self._config.categorical:
                return profiles.CATEGORICAL
            return profiles.NUMERIC if name in self._config.numeric else None

        sentinels = self._config.drift.sentinels
        features = {n: profiles.build_column(n, c, kind_of(n), sentinels=sentinels) for n, c in columns.items()
                    if n not in extract.OUTPUTS}
        outputs = {n: profiles.build_column(n, c, profiles.CATEGORICAL if n == extract.LABEL else kind_of(n),
                                            sentinels=sentinels)
                   for n, c in columns.items() if n in extract.OUTPUTS}
        learned = profiles.Profile(state.model, state.version, rows, features, outputs, source="warmup")
        path = self._profile_path(state.model, state.version)
        try:
            profiles.save(learned, path)
        except OSError as exc:  # the reference still serves; only a restart has to learn it again
            self._log.warning("%s %s: cannot keep the learned reference in %s (%s); it will be learned again "
                              "after a restart", state.model, state.version or "-", path, exc)
        return learned

    def _evaluate(self, state: _ModelState, rows: int, columns: dict[str, RawColumn],
                  started_ns: int) -> Batch | None:
        # One view per column: the drift tests, health checks and histograms share its masks and values.
        views = drift.views(state.profile, columns, rows, self._config.drift.sentinels)
        result = drift.evaluate(state.profile, columns, rows, self._config.drift, views)
        state.windows_evaluated += 1
        self._remember(state, result)
        out = MetricsBuilder()
        rm = out.resource({"service.name": state.service_name or "unknown_service", "host.name": self._host})
        model_attrs = {"ml.model.name": state.model, "ml.model.version": state.version}
        rm.record(MODEL_DRIFT_SHARE, result.share, model_attrs)
        rm.record(MODEL_DRIFTED, int(result.detected), model_attrs)
        rm.record(DRIFT_WINDOWS, state.windows_evaluated, model_attrs, self._started_ns)
        perf = state.profile.performance
        if perf is not None and perf.can_estimate:
            estimate = performance.estimate(perf, performance.Outputs.from_columns(columns))
            if estimate:
                state.degraded["estimated"] = ml_metrics.write_estimate(
                    rm, model_attrs, perf, estimate, self._config.performance.sigma,
                    list(self._config.performance.metrics))
                state.last_estimate = estimate
        for name, reference in state.profile.columns().items():
            view = views[name]
            attrs = {**model_attrs, "ml.feature.name": name}
            col = result.columns[name]
            if col.tested:
                rm.record(FEATURE_DRIFT_SCORE, col.score, {**attrs, "ml.drift.method": col.method})
                rm.record(FEATURE_DRIFT_P_VALUE, col.p_adjusted, attrs)
                rm.record(FEATURE_DRIFTED, int(col.drifted), attrs)
            for key, value in health.column_health(reference, view).as_dict().items():
                rm.record(HEALTH[key], value, attrs)
            if reference.kind == profiles.NUMERIC and col.current_counts is not None and reference.bin_edges.size:
                values, ordered = view.usable_numbers, view.sorted_numbers
                rm.record_histogram(FEATURE_VALUE, reference.bin_edges, col.current_counts, float(values.sum()),
                                    attrs, started_ns,
                                    float(ordered[0]) if values.size else None,
                                    float(ordered[-1]) if values.size else None)
        return out.batch()

    def _evaluate_labels(self, state: _ModelState, payload: tuple) -> Batch | None:
        truth, outputs = payload
        perf = state.profile.performance if state.profile is not None else None
        result = performance.evaluate_labels(perf, truth, outputs)
        if result is None:
            return None
        out = MetricsBuilder()
        rm = out.resource({"service.name": state.service_name or "unknown_service", "host.name": self._host})
        model_attrs = {"ml.model.name": state.model, "ml.model.version": state.version}
        config = self._config
        verdict = ml_metrics.write_realized(rm, model_attrs, result, perf, config.performance.sigma,
                                            list(config.performance.metrics), config.limits.max_classes)
        if verdict is not None:
            state.degraded["realized"] = verdict
        summary = ({**result.summary(), "rows": result.rows} if isinstance(result, performance.Classification)
                   else dict(result))
        state.last_realized = summary
        return out.batch()

    # --- status, for `vigil status`, the status page and model health ---------------------

    def _remember(self, state: _ModelState, result: drift.DriftResult) -> None:
        counts = {name: dict(zip(col.categories, col.current_counts.tolist()))
                  for name, col in result.columns.items() if col.categories is not None}
        state.last_drift, state.last_counts, state.last_window_ns = result, counts, time.time_ns()

    def status(self) -> dict:
        """Per model and version: requests, reference, windows evaluated, the last window's drift
        with each column's reference and current distribution (JSON-ready; NaN as null)."""
        models = []
        for state in list(self._models.values()):
            profile = state.profile
            entry: dict = {
                "model": state.model, "version": state.version, "service": state.service_name,
                "requests": state.requests, "windows_evaluated": state.windows_evaluated,
                "phase": "monitoring" if profile is not None else "learning",
                "warmup": None if profile is not None else {"rows": state.warmup.rows,
                                                           "needed": self._config.reference.warmup},
                "reference": None if profile is None else {"source": profile.source or "profile",
                                                           "rows": profile.rows},
                "window": {"rows": state.window.rows, "size": self._config.window.size},
                "drift": None,
                **self._traffic_status(state),
            }
            result = state.last_drift
            if result is not None and profile is not None:
                features = {}
                for name, reference in profile.columns().items():
                    col = result.columns.get(name)
                    if col is None:
                        continue
                    if reference.kind == profiles.NUMERIC:
                        distribution = {"bounds": reference.bin_edges.tolist(),
                                        "reference": reference.bin_counts.tolist(),
                                        "current": None if col.current_counts is None
                                        else col.current_counts.tolist()}
                    else:
                        current = state.last_counts.get(name, {})
                        names = list(reference.categories) + [c for c in current if c not in reference.categories]
                        distribution = {"categories": names,
                                        "reference": [reference.categories.get(c, 0) for c in names],
                                        "current": [current.get(c, 0) for c in names]}
                    features[name] = {"kind": reference.kind, "output": name in profile.predictions,
                                      "tested": col.tested, "drifted": col.drifted, "method": col.method,
                                      "score": _finite(col.score), "p_value": _finite(col.p_adjusted),
                                      "distribution": distribution}
                entry["drift"] = {"share": result.share, "detected": result.detected,
                                  "drifted_features": result.drifted_columns,
                                  "time_unix_nano": state.last_window_ns, "features": features}
            models.append(entry)
        return {"models": models, "drift_share_threshold": self._config.drift.drift_share,
                "labels": {"pending": len(self._join.pending), "waiting": len(self._join.waiting),
                           "max_pending": self._config.labels.max_pending}}

    def _traffic_status(self, state: _ModelState) -> dict[str, Any]:
        """Requests, errors, latency and confidence of the recent past (the last interval and the
        current one), and the last estimated and realised performance."""
        traffic = state.traffic
        if traffic is None:
            return {}
        recent = traffic.recent()
        latency = recent.duration
        return {
            "errors": traffic.errors,
            "error_rate": _finite(traffic.errors / traffic.requests) if traffic.requests else None,
            "recent": {"requests": recent.requests, "errors": recent.errors,
                       "error_rate": _finite(recent.errors / recent.requests) if recent.requests else None},
            "latency_seconds": {f"p{round(q * 100)}": _finite(latency.quantile(q)) for q in (0.5, 0.95, 0.99)},
            "confidence_mean": _finite(recent.confidence.mean()),
            "low_confidence_ratio": _finite(recent.low_confidence / recent.confidence.count)
            if recent.confidence.count else None,
            "estimated_accuracy": _finite(state.last_estimate.get("accuracy", math.nan)),
            "realized_accuracy": _finite(state.last_realized.get("accuracy", math.nan)),
            "performance": {"estimated": {k: _finite(v) for k, v in state.last_estimate.items()},
                            "realized": {k: _finite(v) for k, v in state.last_realized.items()},
                            "degraded": dict(state.degraded)},
            "pending_labels": self._join.pending_count.get((state.model, state.version), 0),
        }

    async def _send(self, batch: Batch | None) -> None:
        if batch is None or self._emit is None:
            return
        try:
            await self._emit.consume(batch)
        except ConsumerError as exc:
            self._dropped.add(batch.items, {**self._attrs, "reason": "metrics_refused"})
            self._log.warning("metrics pipelines refused drift metrics: %s", exc)


def _finite(value: float) -> float | None:
    return value if value == value and value not in (float("inf"), float("-inf")) else None


def _numbers(values: list[float]) -> np.ndarray:
    return np.array(values, dtype=float)
