"""The `ml` engine's windows: what is buffered, when a window closes, and the work that follows.

A closed window becomes a `Job` on a small queue; one worker runs each job in
the thread pool (learning a reference, evaluating a drift window, evaluating a
window of joined labels) and sends what it derives on. A ticker closes windows
that waited `max_age`, writes the interval's metrics and saves the label join.
Jobs beyond the queue are dropped and counted rather than holding memory.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from agent.errors import ConsumerError
from agent.metrics_builder import MetricsBuilder
from agent.ml import distribution, drift, health, labels as label_join, metrics as ml_metrics, performance
from agent.ml import profile as profiles
from agent.ml.columns import RawColumn, concat_all
from agent.ml.exemplars import Traces, join as join_traces
from agent.ml.genai import GenAi
from agent.ml.paths import profile_path
from agent.ml.traffic import Interval, divergences
from agent.ml.vocabulary import OUTPUTS, PREDICTION_LABEL
from agent.processors.ml import multivariate as live_multivariate
from agent.processors.ml.exemplars import window_exemplars
from agent.processors.ml.status import remember
from agent.signals import Batch

if TYPE_CHECKING:
    import logging
    from pathlib import Path

    from agent.component import Consumer
    from agent.processors.ml.config import MlProcessorConfig
    from agent.processors.ml.engine import ModelState


class Buffer:
    """Columns collected over several batches, joined when taken."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, dict[str, RawColumn]]] = []
        self.traces: list[tuple[int, Traces | None]] = []  # per chunk: its rows' trace ids, for exemplars
        self.vectors = live_multivariate.Vectors()  # the rows' ml.embedding, for multivariate drift
        self.rows = 0
        self.started = time.monotonic()
        self.started_ns = time.time_ns()

    def add(self, rows: int, columns: dict[str, RawColumn], traces: Traces | None = None) -> None:
        if not self.chunks:
            self.started, self.started_ns = time.monotonic(), time.time_ns()
        self.chunks.append((rows, columns))
        self.traces.append((rows, traces))
        self.rows += rows

    def columns(self) -> dict[str, RawColumn]:
        names = {name: None for _, columns in self.chunks for name in columns}
        return {name: concat_all([columns[name] if name in columns else RawColumn.missing(rows)
                                  for rows, columns in self.chunks])
                for name in names}


def rows_of(columns: dict[str, RawColumn], traces: Traces | None, vectors: np.ndarray | None, start: int,
            stop: int) -> tuple[dict[str, RawColumn], Traces | None, np.ndarray | None]:
    """Rows start..stop-1 of a batch's or a window's columns, trace ids and vectors (views)."""
    return ({n: c.rows(start, stop) for n, c in columns.items()},
            None if traces is None else traces.rows(start, stop),
            None if vectors is None else vectors[start:stop])


REFERENCE, WINDOW, LABELS = "reference", "window", "labels"


class Job(NamedTuple):
    """Work for the thread pool: one closed window of a model version."""

    kind: str  # REFERENCE (the warmup), WINDOW or LABELS
    state: ModelState
    rows: int
    data: Any  # the columns; for LABELS, (truth, performance.Outputs)
    started_ns: int  # when the window began
    traces: Traces | None = None  # WINDOW: its rows' trace ids, for exemplars
    vectors: Any = None  # REFERENCE and WINDOW: the rows' embeddings (rows x dims) or None


class Windows:
    """The half of `MlEngine` that closes windows and runs the work on them.

    `MlEngine` holds the state these methods read; the attributes below are set by it."""

    _id: str
    _config: MlProcessorConfig
    _models: dict[tuple[str, str], ModelState]
    _state_dir: Path
    _join: label_join.LabelJoin
    _join_path: Path
    _genai: GenAi
    _emit: Consumer | None
    _host: str
    _started_ns: int
    _log: logging.Logger
    _attrs: dict[str, str]
    _dropped: Any  # self-telemetry counters
    _failures: Any

    def flush(self) -> None:
        """Observe the batches that wait to be read (`MlEngine.flush`)."""
        raise NotImplementedError

    def __init__(self) -> None:
        self._jobs: asyncio.Queue[Job] = asyncio.Queue(maxsize=8)
        self._tasks: list[asyncio.Task] = []
        self._join_saved = time.monotonic()
        self._join_unwritable = False
        self._last_interval = time.monotonic()
        self._flushing = asyncio.Lock()
        self._stopping = asyncio.Event()

    # --- running and stopping -----------------------------------------------------------------

    def _start_work(self) -> None:
        """Start the worker and the ticker (on the event loop)."""
        self._stopping = asyncio.Event()
        self._tasks = [asyncio.create_task(self._work(), name=f"{self._id}-worker"),
                       asyncio.create_task(self._tick(), name=f"{self._id}-ticker")]

    async def _finish_work(self) -> None:
        # The ticker finishes what it is doing (an interval being written, the join being saved:
        # cancelling it there would lose the one and race the last save), then stops.
        self._stopping.set()
        worker, ticker = self._tasks or (None, None)
        if ticker is not None:
            await asyncio.gather(ticker, return_exceptions=True)
        self.flush()
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

    # --- closing windows ------------------------------------------------------------------------

    def _build_reference(self, state: ModelState) -> None:
        state.building = True
        rows, columns, vectors = state.warmup.rows, state.warmup.columns(), state.warmup.vectors.joined()
        state.warmup = Buffer()
        self._submit(Job(REFERENCE, state, rows, columns, 0, vectors=vectors))

    def _close_window(self, state: ModelState, final: bool = False) -> None:
        window = state.window
        if state.profile is None or window.rows == 0:
            if state.profile is None and window.rows > 4 * self._config.window.size:
                # The reference is still being built and the window keeps growing: bound it.
                self._dropped.add(window.rows, {**self._attrs, "reason": "no_reference"})
                state.window = Buffer()
            return
        if window.rows < self._config.window.min_size and final:
            return
        state.window = Buffer()
        self._submit(Job(WINDOW, state, window.rows, window.columns(), window.started_ns,
                         join_traces(window.traces) if self._config.exemplars.enabled else None,
                         window.vectors.joined()))

    def _close_backlog(self, state: ModelState) -> None:
        """The window that grew while the reference was built, closed as the full windows it holds (each
        `window.size` predictions, in order); the rest stays open."""
        window, size = state.window, self._config.window.size
        if window.rows < size:
            return
        columns, vectors = window.columns(), window.vectors.joined()
        traces = join_traces(window.traces) if self._config.exemplars.enabled else None
        full = window.rows - window.rows % size
        state.window = Buffer()
        for start in range(0, full, size):
            part, part_traces, part_vectors = rows_of(columns, traces, vectors, start, start + size)
            self._submit(Job(WINDOW, state, size, part, window.started_ns, part_traces, part_vectors))
        if full < window.rows:
            part, part_traces, part_vectors = rows_of(columns, traces, vectors, full, window.rows)
            state.window.add(window.rows - full, part, part_traces)
            state.window.vectors.add(window.rows - full, part_vectors)

    def _close_labels(self, state: ModelState, final: bool = False) -> None:
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
        self._submit(Job(LABELS, state, len(labeled), (truth, outputs), started_ns))

    def _submit(self, job: Job) -> None:
        try:
            self._jobs.put_nowait(job)
        except asyncio.QueueFull:
            if job.kind == REFERENCE:
                job.state.building = False  # try again with the next warmup
            self._dropped.add(job.rows, {**self._attrs, "reason": "busy"})
            self._log.warning("ml work queue full: dropped a %s of %d predictions of %s",
                              "window of labels" if job.kind == LABELS else "window", job.rows, job.state.model)

    # --- the worker and the ticker --------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            kind, state, rows, data, started_ns, traces, vectors = await self._jobs.get()
            try:
                if kind == REFERENCE:
                    state.profile = await asyncio.to_thread(self._learn, state, rows, data, vectors)
                    state.building = False
                    self._log.info("%s %s: reference learned from %d predictions", state.model,
                                   state.version or "-", rows)
                    # Predictions that came while the reference was built: the windows they filled are
                    # evaluated now, rather than when the next batch or max_age comes.
                    self._close_backlog(state)
                elif kind == LABELS:
                    batch = await asyncio.to_thread(self._evaluate_labels, state, data)
                    await self._send(batch)
                else:
                    batch = await asyncio.to_thread(self._evaluate, state, rows, data, started_ns, traces, vectors)
                    await self._send(batch)
            except Exception:
                self._failures.add(1, self._attrs)
                self._log.exception("ml processor failed on a %s of %s", kind, state.model)
                if kind == REFERENCE:
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
            self.flush()
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
        self.flush()  # the predictions that came in the interval are counted in it
        async with self._flushing:
            now = time.monotonic()
            seconds, self._last_interval = now - self._last_interval, now
            join = self._join
            taken = [(state, state.traffic.take_interval(), dict(state.traffic.by_class),
                      dict(state.traffic.by_error)) for state in list(self._models.values())
                     if state.traffic is not None]
            for state, interval, _, _ in taken:
                state.history.interval(interval, seconds)
            counters = (dict(join.received), dict(join.matched), dict(join.expired), dict(join.unmatched),
                        dict(join.pending_count))
            calls = self._genai.take()
            batch = await asyncio.to_thread(self._interval_metrics, taken, counters, calls)
            await self._send(batch)

    async def _send(self, batch: Batch | None) -> None:
        if batch is None or self._emit is None:
            return
        try:
            await self._emit.consume(batch)
        except ConsumerError as exc:
            self._dropped.add(batch.items, {**self._attrs, "reason": "metrics_refused"})
            self._log.warning("metrics pipelines refused drift metrics: %s", exc)

    # --- the jobs, in the thread pool ------------------------------------------------------------

    def _learn(self, state: ModelState, rows: int, columns: dict[str, RawColumn],
               vectors: np.ndarray | None = None) -> profiles.Profile:
        def kind_of(name: str) -> str | None:
            if name in self._config.categorical:
                return profiles.CATEGORICAL
            return profiles.NUMERIC if name in self._config.numeric else None

        sentinels = self._config.drift.sentinels
        features = {n: profiles.build_column(n, c, kind_of(n), sentinels=sentinels) for n, c in columns.items()
                    if n not in OUTPUTS}
        outputs = {n: profiles.build_column(n, c, profiles.CATEGORICAL if n == PREDICTION_LABEL else kind_of(n),
                                            sentinels=sentinels)
                   for n, c in columns.items() if n in OUTPUTS}
        learned = profiles.Profile(state.model, state.version, rows, features, outputs, source="warmup")
        self._fit_multivariate(state, learned, columns, vectors)
        path = profile_path(self._state_dir, state.model, state.version)
        try:
            profiles.save(learned, path)
        except OSError as exc:  # the reference still serves; only a restart has to learn it again
            self._log.warning("%s %s: cannot keep the learned reference in %s (%s); it will be learned again "
                              "after a restart", state.model, state.version or "-", path, exc)
        return learned

    def _evaluate(self, state: ModelState, rows: int, columns: dict[str, RawColumn],
                  started_ns: int, traces: Traces | None = None, vectors: np.ndarray | None = None) -> Batch | None:
        profile, config = state.profile, self._config
        # One view per column: the drift tests, health checks and histograms share its masks and values.
        views = drift.views(profile, columns, rows, config.drift.sentinels)
        result = drift.evaluate(profile, columns, rows, config.drift, views)
        # Counted once the whole window is in the status: a reader that sees the count sees its results.
        number = state.windows_evaluated + 1
        remember(state, result, distribution.numeric_windows(profile.columns(), views))
        healths = {name: health.column_health(reference, views[name])
                   for name, reference in profile.columns().items()}
        exemplars = window_exemplars(state, profile, result, views, healths, traces, config.exemplars.max_per_point)
        out = MetricsBuilder()
        rm = ml_metrics.service_resource(out, state.service_name, self._host)
        model = ml_metrics.model_attributes(state.model, state.version)
        ml_metrics.write_drift(rm, model, result, number, self._started_ns, exemplars)
        perf = profile.performance
        estimate = None
        if perf is not None and perf.can_estimate:
            estimate = performance.estimate(perf, performance.Outputs.from_columns(columns))
            if estimate:
                state.degraded["estimated"] = ml_metrics.write_estimate(
                    rm, model, perf, estimate, config.performance.sigma, list(config.performance.metrics))
                state.last_estimate = estimate
        ml_metrics.write_columns(rm, model, profile, result, views, healths, started_ns, exemplars)
        self._evaluate_multivariate(state, rows, columns, vectors, rm, model, number)
        state.history.window(result, rows, estimate, state.last_multivariate)
        state.windows_evaluated = number
        return out.batch()

    def _fit_multivariate(self, state: ModelState, learned: profiles.Profile, columns: dict[str, RawColumn],
                          vectors: np.ndarray | None) -> None:
        fitted, problem = live_multivariate.fit(self._config.drift.multivariate, learned, columns, vectors,
                                                self._config.drift.sentinels)
        if fitted is not None:
            learned.multivariate.append(fitted)
        elif problem:
            self._log.warning("%s %s: no multivariate drift: %s", state.model, state.version or "-", problem)

    def _evaluate_multivariate(self, state: ModelState, rows: int, columns: dict[str, RawColumn],
                               vectors: np.ndarray | None, rm: Any, model: dict[str, str], number: int) -> None:
        config = self._config.drift
        found = live_multivariate.evaluate(config.multivariate, state.profile, rows, columns, vectors,
                                           config.sentinels, seed=number)
        state.last_multivariate = found
        if found is not None:
            ml_metrics.write_multivariate(rm, model, found)

    def _evaluate_labels(self, state: ModelState, data: tuple) -> Batch | None:
        truth, outputs = data
        perf = state.profile.performance if state.profile is not None else None
        result = performance.evaluate_labels(perf, truth, outputs)
        if result is None:
            return None
        out = MetricsBuilder()
        rm = ml_metrics.service_resource(out, state.service_name, self._host)
        model = ml_metrics.model_attributes(state.model, state.version)
        config = self._config
        verdict = ml_metrics.write_realized(rm, model, result, perf, config.performance.sigma,
                                            list(config.performance.metrics), config.limits.max_classes)
        if verdict is not None:
            state.degraded["realized"] = verdict
        summary = ({**result.summary(), "rows": result.rows} if isinstance(result, performance.Classification)
                   else dict(result))
        state.last_realized = summary
        state.history.realized(summary)
        return out.batch()

    def _interval_metrics(self, taken: list, counters: tuple, calls: GenAi) -> Batch | None:
        out = MetricsBuilder()
        resource = ml_metrics.Resources(out, self._host)
        by_model: dict[str, dict[str, Interval]] = {}
        service_of: dict[str, str] = {}
        for state, interval, by_class, by_error in taken:
            attrs = ml_metrics.model_attributes(state.model, state.version)
            ml_metrics.write_traffic(resource(state.service_name), attrs, by_class, by_error, interval,
                                     self._started_ns, self._config.confidence.low_threshold)
            by_model.setdefault(state.model, {})[state.version] = interval
            service_of.setdefault(state.model, state.service_name)
        canary = self._config.canary
        for model, intervals in by_model.items():
            if len(intervals) < 2:
                continue
            baseline = canary.baselines.get(model) or next(iter(intervals))  # versions in the order first seen
            found = divergences(intervals, baseline, canary.min_predictions)
            ml_metrics.write_divergences(resource(service_of[model]), model, found)
        ml_metrics.write_label_counters(resource, service_of, *counters, self._started_ns)
        ml_metrics.write_genai(resource, calls)
        return out.batch()


def _numbers(values: list[float]) -> np.ndarray:
    return np.array(values, dtype=float)
