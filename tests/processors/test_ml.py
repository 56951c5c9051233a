"""The `ml` processor on the live path, with real parts.

The app is the OpenTelemetry SDK (spans or log records carrying `ml.*`
attributes, exported over OTLP/gRPC; its exporters block, so it runs in a
thread), Vigil runs in-process, and what a user would look at is read back
from `file` exporters: the drift and data-health metrics, the traces and logs
that passed through, the learned reference under `service.state_dir`.

Data are seeded numpy draws: numeric features a, b, c ~ N(0, 1), a
categorical `country`, and a score independent of the features (so a shift
in a feature moves that feature only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agent import config as config_module
from agent.ml import profile as profiles
from agent.ml.columns import RawColumn
from tests.conftest import async_wait_for, otlp_receiver_config, read_json_lines, running_vigil
from tests.otlp_json_reading import attributes_of, number_value
from tests.sdk_apps import by_span_id, logs_in, spans_in

MODEL, VERSION, SERVICE = "fraud", "v3", "fraud-api"
FEATURES = ("a", "b", "c", "country")
OUTPUTS = ("ml.prediction.label", "ml.prediction.score", "ml.prediction.confidence")
COLUMNS = FEATURES + OUTPUTS  # what a window is tested on: every feature and output
NUMERIC = ("a", "b", "c", "ml.prediction.score", "ml.prediction.confidence")
COUNTRIES, COUNTRY_SHARES = ["DE", "FR", "US", "BR"], [0.4, 0.3, 0.2, 0.1]
ML_LOGGER = "vigil.processors.ml"

GAUGES = ("ml.feature.drift.score", "ml.feature.drift.p_value", "ml.feature.drifted",
          "ml.model.drift.share", "ml.model.drifted", "ml.feature.missing.ratio",
          "ml.feature.sentinel.ratio", "ml.feature.type_mismatch.ratio", "ml.feature.out_of_range.ratio",
          "ml.feature.unseen_category.ratio")
DELTA, CUMULATIVE = 1, 2  # AggregationTemporality in OTLP/JSON


# --- the app's data ---------------------------------------------------------------------------------


def predictions(n: int, *, seed: int, model: str = MODEL, version: str = VERSION, shift_a: float = 0.0,
                missing_b: float = 0.0, string_c: float = 0.0) -> list[dict[str, Any]]:
    """`n` predictions as the attributes an app puts on its spans.

    `shift_a`: mean of feature a, in standard deviations; `missing_b`: share of predictions without b;
    `string_c`: share of predictions that send the string "n/a" for the numeric feature c.
    """
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(shift_a, 1.0, n), rng.normal(0.0, 1.0, n), rng.normal(0.0, 1.0, n)
    country = rng.choice(COUNTRIES, n, p=COUNTRY_SHARES)
    score = rng.beta(2.0, 5.0, n)
    drop_b, text_c = rng.random(n) < missing_b, rng.random(n) < string_c
    rows = []
    for i in range(n):
        row: dict[str, Any] = {
            "ml.model.name": model, "ml.model.version": version, "ml.prediction.id": f"{seed}-{i}",
            "ml.feature.a": float(a[i]), "ml.feature.b": float(b[i]), "ml.feature.c": float(c[i]),
            "ml.feature.country": str(country[i]),
            "ml.prediction.label": "fraud" if score[i] >= 0.5 else "ok", "ml.prediction.score": float(score[i]),
        }
        if drop_b[i]:
            del row["ml.feature.b"]
        if text_c[i]:
            row["ml.feature.c"] = "n/a"
        rows.append(row)
    return rows


def numbers_of(rows: list[dict[str, Any]], feature: str) -> list[float]:
    values = (row.get(f"ml.feature.{feature}") for row in rows)
    return [v for v in values if isinstance(v, float) and math.isfinite(v)]


# --- the app ----------------------------------------------------------------------------------------


class PredictionApp:
    """An inference app made of the OpenTelemetry SDK: one span per prediction, exported over OTLP/gRPC
    by a BatchSpanProcessor (or one export per span with `batch=False`). Blocking: call it through
    `asyncio.to_thread`. It records what it sent, to compare with what came out of Vigil."""

    def __init__(self, endpoint: str, service: str = SERVICE, *, batch: bool = True,
                 max_attributes: int = 128) -> None:
        self.recorded = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": service}),
                                       span_limits=SpanLimits(max_span_attributes=max_attributes))
        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=10)
        self.provider.add_span_processor(SimpleSpanProcessor(self.recorded))
        self.provider.add_span_processor(
            BatchSpanProcessor(exporter, max_queue_size=100_000, max_export_batch_size=500,
                               schedule_delay_millis=60_000) if batch else SimpleSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("inference-app", "1.0")

    def predict(self, rows: list[dict[str, Any]]) -> None:
        """One span per row; returns once every span has been exported."""
        for row in rows:
            with self.tracer.start_as_current_span("predict", attributes=row):
                pass
        assert self.provider.force_flush(30_000)

    def sent(self) -> list[dict[str, Any]]:
        return [{"name": s.name, "traceId": f"{s.context.trace_id:032x}", "spanId": f"{s.context.span_id:016x}",
                 "parentSpanId": "", "attributes": {k: list(v) if isinstance(v, tuple) else v
                                                    for k, v in s.attributes.items()}}
                for s in self.recorded.get_finished_spans()]

    def close(self) -> None:
        self.provider.shutdown()


@contextlib.asynccontextmanager
async def prediction_app(endpoint: str, **kwargs: Any):
    app = await asyncio.to_thread(PredictionApp, endpoint, **kwargs)
    try:
        yield app
    finally:
        await asyncio.to_thread(app.close)


async def send(app: PredictionApp, rows: list[dict[str, Any]]) -> None:
    await asyncio.to_thread(app.predict, rows)


# --- Vigil ------------------------------------------------------------------------------------------


def vigil_config(tmp: Path, ml: dict[str, Any], *, signal: str = "traces") -> dict[str, Any]:
    """otlp → `signal` pipeline with `ml` → file; `ml`'s metrics → file/metrics."""
    return {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "processors": {"ml": ml},
        "exporters": {f"file/{signal}": {"path": str(tmp / f"{signal}.json")},
                      "file/metrics": {"path": str(tmp / "metrics.json")}},
        "service": {
            "state_dir": str(tmp / "state"),
            "pipelines": {
                signal: {"receivers": ["otlp"], "processors": ["ml"], "exporters": [f"file/{signal}"]},
                "metrics": {"receivers": ["ml"], "exporters": ["file/metrics"]},
            },
        },
    }


def ml_config(warmup: int = 1000, size: int = 1000, min_size: int = 100, **more: Any) -> dict[str, Any]:
    # A long max_age: windows close by count only, so each phase of a test is one window.
    return {"reference": {"warmup": warmup}, "window": {"size": size, "min_size": min_size, "max_age": "1h"},
            **more}


def learned_path(state_dir: Path, model: str = MODEL, version: str = VERSION) -> Path:
    return state_dir / "ml" / "ml" / model / f"{version}.vigilprofile"


class LogLines(logging.Handler):
    """The messages the `ml` processor logs, as an operator reads them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def count(self, text: str) -> int:
        return sum(text in m for m in self.messages)


@contextlib.contextmanager
def ml_log() -> Iterator[LogLines]:
    logger = logging.getLogger(ML_LOGGER)
    handler, level = LogLines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def reference_learned(log: LogLines, model: str = MODEL, version: str = VERSION, times: int = 1) -> None:
    assert await async_wait_for(lambda: log.count(f"{model} {version}: reference learned") >= times,
                                timeout=20), log.messages


# --- reading the derived metrics back ---------------------------------------------------------------


@dataclass
class Window:
    """What one evaluated window produced: one resource's metrics, by name."""

    resource: dict[str, Any]
    metrics: dict[str, dict[str, Any]]

    def points(self, name: str) -> list[dict[str, Any]]:
        metric = self.metrics[name]
        kind = next(k for k in ("gauge", "sum", "histogram") if k in metric)
        return metric[kind]["dataPoints"]

    def value(self, name: str) -> float:
        (point,) = self.points(name)
        return number_value(point)

    def by_feature(self, name: str) -> dict[str, float]:
        out = {}
        for point in self.points(name):
            feature = attributes_of(point["attributes"])["ml.feature.name"]
            assert feature not in out, f"two {name} points for {feature}"
            out[feature] = number_value(point)
        return out

    def histogram(self, feature: str) -> dict[str, Any]:
        (point,) = [p for p in self.points("ml.feature.value")
                    if attributes_of(p["attributes"])["ml.feature.name"] == feature]
        return point

    @property
    def model(self) -> tuple[str, str]:
        (point,) = self.points("ml.drift.windows")
        attrs = attributes_of(point["attributes"])
        return attrs["ml.model.name"], attrs["ml.model.version"]


def windows_in(path: Path) -> list[Window]:
    """Every evaluated drift window in a metrics file, in the order they were written (the interval's
    traffic metrics, written beside them, are not windows)."""
    out = []
    for line in read_json_lines(path):
        for rm in line.get("resourceMetrics", []):
            metrics = {m["name"]: m for sm in rm.get("scopeMetrics", []) for m in sm.get("metrics", [])}
            if "ml.drift.windows" in metrics:
                out.append(Window(attributes_of(rm.get("resource", {}).get("attributes", [])), metrics))
    return out


async def windows_written(path: Path, count: int, timeout: float = 20.0) -> list[Window]:
    assert await async_wait_for(lambda: len(windows_in(path)) >= count, timeout=timeout), windows_in(path)
    return windows_in(path)


def drifted(window: Window) -> set[str]:
    return {name for name, value in window.by_feature("ml.feature.drifted").items() if value == 1}


# --- one app, one Vigil: warmup, then windows of normal, shifted, incomplete and mistyped data ------------


@dataclass
class Scenario:
    state_dir: Path
    phases: dict[str, list[dict[str, Any]]]
    windows: dict[str, Window]
    sent: list[dict[str, Any]]
    received: list[dict[str, Any]]
    log: list[str]


PHASES = ("normal", "shift", "missing", "strings")


async def _run_scenario(tmp: Path) -> Scenario:
    phases = {
        "warmup": predictions(1000, seed=1),
        "normal": predictions(1000, seed=2),
        "shift": predictions(1000, seed=3, shift_a=1.0),
        "missing": predictions(1000, seed=4, missing_b=0.2),
        "strings": predictions(1000, seed=5, string_c=0.1),
    }
    with ml_log() as log:
        async with running_vigil(vigil_config(tmp, ml_config(warmup=1000, size=1000, min_size=100))) as vigil:
            async with prediction_app(vigil.grpc_endpoint()) as app:
                await send(app, phases["warmup"])
                await reference_learned(log)
                assert windows_in(tmp / "metrics.json") == []  # the warmup is not a window
                for k, phase in enumerate(PHASES, 1):
                    await send(app, phases[phase])
                    await windows_written(tmp / "metrics.json", k)
                sent = app.sent()
            errors = vigil.counter("vigil_ml_errors")
        assert errors == 0
    windows = windows_in(tmp / "metrics.json")
    assert len(windows) == len(PHASES)  # shutdown had no partial window to flush
    return Scenario(tmp / "state", phases, dict(zip(PHASES, windows)), sent,
                    spans_in(read_json_lines(tmp / "traces.json")), log.messages)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Scenario:
    return asyncio.run(_run_scenario(tmp_path_factory.mktemp("ml-live")))


def test_a_mean_shift_flips_only_that_feature_and_raises_the_drift_share(scenario: Scenario):
    normal, shift = scenario.windows["normal"], scenario.windows["shift"]
    assert normal.by_feature("ml.feature.drifted") == {name: 0 for name in COLUMNS}
    assert shift.by_feature("ml.feature.drifted") == {**{name: 0 for name in COLUMNS}, "a": 1}
    assert normal.value("ml.model.drift.share") == 0.0
    assert shift.value("ml.model.drift.share") == pytest.approx(1 / len(COLUMNS))
    assert normal.value("ml.model.drifted") == shift.value("ml.model.drifted") == 0  # 1/7 < drift_share 0.5
    # A 1σ shift is a normed Wasserstein distance of about 1, far from chance.
    assert 0.8 < shift.by_feature("ml.feature.drift.score")["a"] < 1.2
    assert shift.by_feature("ml.feature.drift.p_value")["a"] < 1e-6
    assert normal.by_feature("ml.feature.drift.score")["a"] < 0.1


def test_absent_attributes_show_as_the_missing_ratio(scenario: Scenario):
    window = scenario.windows["missing"]
    rows = scenario.phases["missing"]
    absent = sum("ml.feature.b" not in row for row in rows) / len(rows)
    missing = window.by_feature("ml.feature.missing.ratio")
    assert missing["b"] == pytest.approx(0.2, abs=0.05)
    assert missing["b"] == pytest.approx(absent)
    assert {name: v for name, v in missing.items() if name != "b"} == {name: 0.0 for name in COLUMNS if name != "b"}
    assert drifted(window) == set()  # fewer values, same distribution
    assert window.histogram("b")["count"] == str(len(numbers_of(rows, "b")))


def test_a_string_for_a_numeric_feature_is_a_type_mismatch_and_breaks_nothing(scenario: Scenario):
    window = scenario.windows["strings"]
    rows = scenario.phases["strings"]
    strings = sum(row["ml.feature.c"] == "n/a" for row in rows)
    assert strings > 0
    mismatch = window.by_feature("ml.feature.type_mismatch.ratio")
    assert mismatch["c"] == pytest.approx(strings / len(rows))
    assert {name: v for name, v in mismatch.items() if name != "c"} == {name: 0.0 for name in COLUMNS if name != "c"}
    assert window.by_feature("ml.feature.missing.ratio")["c"] == 0.0  # a wrong type is not a missing value
    assert drifted(window) == set()
    histogram = window.histogram("c")  # the numbers that did come
    assert int(histogram["count"]) == len(rows) - strings == len(numbers_of(rows, "c"))
    # The spans with the string arrived, as sent.
    received = {s["spanId"]: s for s in scenario.received}
    with_string = [s for s in scenario.sent if s["attributes"].get("ml.feature.c") == "n/a"]
    assert len(with_string) == strings
    assert all(received[s["spanId"]]["attributes"] == s["attributes"] for s in with_string)


def test_metric_names_types_attributes_and_resource(scenario: Scenario):
    learned = profiles.load(learned_path(scenario.state_dir))
    for k, phase in enumerate(PHASES, 1):
        window = scenario.windows[phase]
        assert window.resource["service.name"] == SERVICE
        assert window.resource.get("host.name")
        assert set(window.metrics) == {*GAUGES, "ml.drift.windows", "ml.feature.value"}
        for name in GAUGES:
            assert set(window.metrics[name]) >= {"gauge"}, name
            assert window.metrics[name]["unit"] == "1"
            for point in window.points(name):
                attrs = attributes_of(point["attributes"])
                assert attrs["ml.model.name"] == MODEL and attrs["ml.model.version"] == VERSION
        for name in GAUGES:
            if name.startswith("ml.feature."):
                assert set(window.by_feature(name)) == set(COLUMNS), name
            else:
                assert [attributes_of(p["attributes"]) for p in window.points(name)] == [
                    {"ml.model.name": MODEL, "ml.model.version": VERSION}], name
        methods = {attributes_of(p["attributes"])["ml.feature.name"]: attributes_of(p["attributes"])["ml.drift.method"]
                   for p in window.points("ml.feature.drift.score")}
        assert methods == {**{n: "wasserstein_normed" for n in NUMERIC},
                           "country": "jensen_shannon", "ml.prediction.label": "jensen_shannon"}
        assert all("ml.drift.method" not in attributes_of(p["attributes"])
                   for p in window.points("ml.feature.drifted"))

        windows = window.metrics["ml.drift.windows"]
        assert windows["unit"] == "{window}"
        assert windows["sum"]["isMonotonic"] is True
        assert windows["sum"]["aggregationTemporality"] == CUMULATIVE
        assert window.value("ml.drift.windows") == k

        histograms = window.metrics["ml.feature.value"]["histogram"]
        assert histograms["aggregationTemporality"] == DELTA
        assert {attributes_of(p["attributes"])["ml.feature.name"] for p in histograms["dataPoints"]} == set(NUMERIC)
        rows = scenario.phases[phase]
        for feature in ("a", "b", "c"):
            point = window.histogram(feature)
            reference = learned.features[feature]
            assert point["explicitBounds"] == reference.bin_edges.tolist()
            counts = [int(c) for c in point["bucketCounts"]]
            assert len(counts) == len(point["explicitBounds"]) + 1
            values = numbers_of(rows, feature)
            assert sum(counts) == int(point["count"]) == len(values)
            assert point["sum"] == pytest.approx(sum(values))
            assert point["min"] == min(values) and point["max"] == max(values)
            assert int(point["startTimeUnixNano"]) < int(point["timeUnixNano"])
    starts = {scenario.windows[p].points("ml.drift.windows")[0]["startTimeUnixNano"] for p in PHASES}
    assert len(starts) == 1  # one cumulative series
    # Each window's histogram covers its own span of time, after the previous one's.
    intervals = [(int(scenario.windows[p].histogram("a")["startTimeUnixNano"]),
                  int(scenario.windows[p].histogram("a")["timeUnixNano"])) for p in PHASES]
    assert all(prev[1] <= nxt[0] for prev, nxt in zip(intervals, intervals[1:]))


def test_traces_pass_through_unchanged(scenario: Scenario):
    assert len(scenario.sent) == 5000
    assert by_span_id(scenario.received) == by_span_id(scenario.sent)
    first = scenario.received[0]["attributes"]
    assert first == scenario.phases["warmup"][0]
    assert not any(key.startswith("vigil") for s in scenario.received for key in s["attributes"])


def test_the_learned_reference_is_kept_in_state_dir(scenario: Scenario):
    path = learned_path(scenario.state_dir)
    assert path.exists()
    # The learned reference, and the predictions (they carry ml.prediction.id) waiting for labels.
    assert sorted(p.relative_to(scenario.state_dir) for p in scenario.state_dir.rglob("*") if p.is_file()) == [
        Path("ml/ml/@labels.pb"), Path("ml/ml/fraud/v3.vigilprofile")]
    learned = profiles.load(path)
    assert (learned.model_name, learned.model_version, learned.rows, learned.source) == (MODEL, VERSION, 1000,
                                                                                         "warmup")
    assert set(learned.features) == set(FEATURES)
    assert set(learned.predictions) == set(OUTPUTS)
    assert learned.features["country"].kind == profiles.CATEGORICAL
    assert learned.features["country"].categories.keys() == set(COUNTRIES)
    a = learned.features["a"]
    assert a.kind == profiles.NUMERIC and abs(a.mean) < 0.1 and abs(a.std - 1) < 0.1
    assert sum("reference learned from 1000 predictions" in m for m in scenario.log) == 1


async def test_a_restarted_agent_does_not_relearn(scenario: Scenario, tmp_path: Path):
    shutil.copytree(scenario.state_dir, tmp_path / "state")
    before = learned_path(tmp_path / "state").read_bytes()
    with ml_log() as log:
        async with running_vigil(vigil_config(tmp_path, ml_config(warmup=1000, size=300, min_size=100))) as vigil:
            async with prediction_app(vigil.grpc_endpoint()) as app:
                await send(app, predictions(300, seed=30, shift_a=1.0))  # no warmup first
                (window,) = await windows_written(tmp_path / "metrics.json", 1)
    assert drifted(window) == {"a"}
    assert window.value("ml.drift.windows") == 1
    assert window.histogram("a")["explicitBounds"] == profiles.load(
        learned_path(scenario.state_dir)).features["a"].bin_edges.tolist()
    assert log.count("reference learned") == 0
    assert learned_path(tmp_path / "state").read_bytes() == before


async def test_a_state_dir_that_cannot_be_written_still_gives_metrics(tmp_path: Path):
    config = vigil_config(tmp_path, ml_config(warmup=200, size=200, min_size=50))
    (tmp_path / "state").write_text("a file where the state directory should be")
    with ml_log() as log:
        async with running_vigil(config) as vigil:
            async with prediction_app(vigil.grpc_endpoint()) as app:
                await send(app, predictions(200, seed=35))
                await reference_learned(log)
                await send(app, predictions(200, seed=36, shift_a=1.0))
                (window,) = await windows_written(tmp_path / "metrics.json", 1)
            errors = vigil.counter("vigil_ml_errors")
    assert drifted(window) == {"a"}
    assert errors == 0
    assert log.count("cannot keep the learned reference") == 1


# --- a reference from a profile file ------------------------------------------------------------------


def build_profile(rows: list[dict[str, Any]], version: str) -> profiles.Profile:
    """What `vigil profile` would build from training data: every feature and the predicted label."""
    features = {name: profiles.build_column(name, RawColumn.from_values([r.get(f"ml.feature.{name}") for r in rows]))
                for name in FEATURES}
    label = profiles.build_column("ml.prediction.label",
                                  RawColumn.from_values([r["ml.prediction.label"] for r in rows]))
    return profiles.Profile(MODEL, version, len(rows), features, {"ml.prediction.label": label},
                            source="training set")


@pytest.mark.parametrize("profile_version", [VERSION, ""], ids=["this-version", "any-version"])
async def test_a_profile_file_is_the_reference_without_warmup(tmp_path: Path, profile_version: str):
    profile = build_profile(predictions(2000, seed=40), profile_version)
    profiles.save(profile, tmp_path / "fraud.vigilprofile")
    config = ml_config(warmup=1000, size=300, min_size=100,
                       reference={"warmup": 1000, "profiles": [str(tmp_path / "fraud.vigilprofile")]})
    with ml_log() as log:
        async with running_vigil(vigil_config(tmp_path, config)) as vigil:
            async with prediction_app(vigil.grpc_endpoint()) as app:
                await send(app, predictions(300, seed=41))
                await windows_written(tmp_path / "metrics.json", 1)
                await send(app, predictions(300, seed=42, shift_a=1.0))
                normal, shift = await windows_written(tmp_path / "metrics.json", 2)
    assert normal.model == shift.model == (MODEL, VERSION)
    columns = (*FEATURES, "ml.prediction.label")  # what the profile has; the score is not compared
    assert normal.by_feature("ml.feature.drifted") == {name: 0 for name in columns}
    assert shift.by_feature("ml.feature.drifted") == {**{name: 0 for name in columns}, "a": 1}
    assert shift.histogram("a")["explicitBounds"] == profile.features["a"].bin_edges.tolist()
    assert log.count("using the reference from training set") == 1
    assert log.count("reference learned") == 0
    # No reference learned, none stored: only the predictions waiting for their labels.
    assert [p.name for p in (tmp_path / "state").rglob("*") if p.is_file()] == ["@labels.pb"]


async def test_shutdown_flushes_a_partial_window(tmp_path: Path):
    profiles.save(build_profile(predictions(2000, seed=50), ""), tmp_path / "fraud.vigilprofile")
    config = ml_config(size=1000, min_size=100,
                       reference={"warmup": 1000, "profiles": [str(tmp_path / "fraud.vigilprofile")]})
    async with running_vigil(vigil_config(tmp_path, config)) as vigil:
        async with prediction_app(vigil.grpc_endpoint()) as app:
            await send(app, predictions(150, seed=51, version="v3"))  # >= min_size
            await send(app, predictions(60, seed=52, version="v4"))  # < min_size: not a window
        await asyncio.sleep(0.2)
        assert windows_in(tmp_path / "metrics.json") == []  # neither window is full
    (window,) = windows_in(tmp_path / "metrics.json")
    assert window.model == (MODEL, "v3")
    assert window.histogram("a")["count"] == "150"
    assert window.by_feature("ml.feature.missing.ratio")["a"] == 0.0
    assert window.value("ml.drift.windows") == 1


# --- predictions in log records ------------------------------------------------------------------------


def send_logs(endpoint: str, batches: list[list[dict[str, Any]]], service: str) -> None:
    """An app that logs one record per prediction with the OpenTelemetry SDK (blocking)."""
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    provider.add_log_record_processor(BatchLogRecordProcessor(
        OTLPLogExporter(endpoint=endpoint, insecure=True, timeout=10), max_queue_size=10_000,
        max_export_batch_size=200, schedule_delay_millis=60_000))
    logger = provider.get_logger("inference-app.predictions")
    try:
        for rows in batches:
            for row in rows:
                logger.emit(body="prediction", attributes=row)
            assert provider.force_flush(30_000)
    finally:
        provider.shutdown()


async def test_log_records_with_ml_attributes_are_predictions(tmp_path: Path):
    config = vigil_config(tmp_path, ml_config(warmup=200, size=200, min_size=50), signal="logs")
    warmup, shifted = predictions(200, seed=60), predictions(200, seed=61, shift_a=1.0)
    with ml_log() as log:
        async with running_vigil(config) as vigil:
            await asyncio.to_thread(send_logs, vigil.grpc_endpoint(), [warmup], "fraud-logger")
            await reference_learned(log)
            await asyncio.to_thread(send_logs, vigil.grpc_endpoint(), [shifted], "fraud-logger")
            (window,) = await windows_written(tmp_path / "metrics.json", 1)
    assert window.resource["service.name"] == "fraud-logger"
    assert window.model == (MODEL, VERSION)
    assert drifted(window) == {"a"}
    assert learned_path(tmp_path / "state").exists()
    records = logs_in(read_json_lines(tmp_path / "logs.json"))
    assert [r["attributes"] for r in records] == warmup + shifted  # passed on unchanged, in order
    assert {r["body"] for r in records} == {"prediction"}


# --- other attribute conventions -------------------------------------------------------------------------


def arize(row: dict[str, Any]) -> dict[str, Any]:
    """A prediction in the attribute names of another convention."""
    renamed = {"ml.model.name": "arize.model_id", "ml.model.version": "arize.model_version",
               "ml.prediction.label": "arize.prediction_label", "ml.prediction.score": "arize.prediction_score",
               "ml.prediction.id": "arize.prediction_id"}
    return {renamed.get(k, k.replace("ml.feature.", "features.")): v for k, v in row.items()}


async def test_the_attributes_mapping_reads_other_conventions(tmp_path: Path):
    mapping = {"ml.model.name": "arize.model_id", "ml.model.version": "arize.model_version",
               "ml.prediction.label": "arize.prediction_label", "ml.prediction.score": "arize.prediction_score",
               "ml.feature.*": "features.*"}
    config = vigil_config(tmp_path, ml_config(warmup=200, size=200, min_size=50, attributes=mapping))
    warmup = [arize(r) for r in predictions(200, seed=70, model="churn", version="2024-06")]
    shifted = [arize(r) for r in predictions(200, seed=71, model="churn", version="2024-06", shift_a=1.0)]
    assert not any(k.startswith("ml.") for k in warmup[0])
    with ml_log() as log:
        async with running_vigil(config) as vigil:
            async with prediction_app(vigil.grpc_endpoint()) as app:
                await send(app, warmup)
                await reference_learned(log, "churn", "2024-06")
                await send(app, shifted)
                (window,) = await windows_written(tmp_path / "metrics.json", 1)
                sent = app.sent()
    assert window.model == ("churn", "2024-06")
    assert set(window.by_feature("ml.feature.drifted")) == set(COLUMNS)
    assert drifted(window) == {"a"}
    learned = profiles.load(learned_path(tmp_path / "state", "churn", "2024-06"))
    assert set(learned.features) == set(FEATURES)
    # The spans keep the app's own names.
    assert by_span_id(spans_in(read_json_lines(tmp_path / "traces.json"))) == by_span_id(sent)


# --- bad input --------------------------------------------------------------------------------------------


def junk(n: int, seed: int) -> list[dict[str, Any]]:
    """Predictions of the model "weird": infinities and NaN, 10 kB strings, lists, bools and bytes."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        x = [math.inf, -math.inf, math.nan][i % 3] if i % 5 == 0 else float(rng.normal())
        rows.append({
            "ml.model.name": "weird", "ml.model.version": "1",
            "ml.feature.x": x,
            "ml.feature.text": "€" * 10_000 if i % 2 else "t" * 10_000,
            "ml.feature.n": [1.0, 2.0] if i % 4 == 0 else float(rng.normal()),  # a list where numbers belong
            "ml.feature.flag": bool(i % 2),
            "ml.feature.blob": bytes([i % 256]) * 16,
            "ml.prediction.score": [math.nan, math.inf, 0.3, 0.7][i % 4],
            "ml.prediction.label": ["a", "b"] if i % 7 == 0 else "ok",
        })
    return rows


async def test_bad_input_never_breaks_the_processor_nor_grows_its_state(tmp_path: Path):
    limits = {"max_models": 5, "max_features": 20}
    config = vigil_config(tmp_path, ml_config(warmup=20, size=50, min_size=10, limits=limits))
    state = tmp_path / "state"
    wide = {"ml.model.name": "wide", **{f"ml.feature.f{k}": float(k) for k in range(5000)}}
    long_name = "m" * 10_000
    with ml_log() as log:
        async with running_vigil(config) as vigil:
            async with prediction_app(vigil.grpc_endpoint(), max_attributes=6000) as app, \
                    prediction_app(vigil.grpc_endpoint(), batch=False) as one_by_one:
                await send(app, predictions(20, seed=80))  # a good model, tracked first
                await reference_learned(log)
                await send(app, junk(20, seed=81))
                await reference_learned(log, "weird", "1")
                await send(app, [wide] * 20)  # 5,000 features on each span
                await reference_learned(log, "wide", "-")
                # A feature name per request (an id in the name), one request per export.
                await send(one_by_one, [{"ml.model.name": "leaky", "ml.feature.a": 1.0 * i,
                                         f"ml.feature.user_{i}": 1.0} for i in range(40)])
                await reference_learned(log, "leaky", "-")
                await send(app, [{"ml.model.name": 42}, {"ml.model.name": True}, {"ml.model.name": b"\x00m"},
                                 {"ml.model.name": ["a", "b"]}, {"ml.model.name": 1.5},
                                 {"ml.model.name": ""}])  # not predictions
                await send(app, [{"ml.model.name": long_name, "ml.model.version": "v" * 10_000,
                                  "ml.feature.a": float(i)} for i in range(30)])  # the fifth model
                await reference_learned(log, "m" * 256, "v" * 256)  # names are cut at 256 characters
                await send(app, [{"ml.model.name": f"model-{k}", "ml.feature.a": 1.0} for k in range(100)])
                assert await vigil.counter_when(100, "vigil_ml_dropped_predictions", reason="limit") == 100

                # After all that, valid data still makes metrics, junk too, and the agent answers.
                await send(app, predictions(50, seed=82, shift_a=1.0))
                await send(app, junk(50, seed=83))
                written = await windows_written(tmp_path / "metrics.json", 2)
                sent = app.sent() + one_by_one.sent()
            errors = vigil.counter("vigil_ml_errors")
    assert errors == 0, log.messages
    by_model = {w.model: w for w in written}
    assert drifted(by_model[(MODEL, VERSION)]) == {"a"}
    weird = by_model[("weird", "1")]
    assert weird.by_feature("ml.feature.out_of_range.ratio")["x"] > 0  # the infinities
    assert weird.by_feature("ml.feature.missing.ratio")["x"] == pytest.approx(3 / 50)  # NaN at i = 5, 20, 35
    assert weird.by_feature("ml.feature.type_mismatch.ratio")["n"] == pytest.approx(13 / 50)  # the lists
    for name in GAUGES:
        if name.endswith(".ratio"):
            assert all(0.0 <= v <= 1.0 for v in weird.by_feature(name).values()), name

    # Bounded: five models at most, 20 features each, however many names came.
    models = {p.parent.name for p in state.rglob("*.vigilprofile")}
    assert len(models) <= 5 and "model-0" not in models
    assert profiles.load(learned_path(state, "wide", "-")).features.keys() == {f"f{k}" for k in range(20)}
    assert len(profiles.load(learned_path(state, "leaky", "-")).features) == 20
    assert all(len(p.name) <= 255 for p in state.rglob("*"))  # a 10 kB model name is still a file name
    assert {w.model[0] for w in windows_in(tmp_path / "metrics.json")} <= {
        MODEL, "weird", "wide", "leaky", long_name[:256]}
    # Every span reached the traces file as it was sent, whatever it carried (10 kB strings whole).
    received = {s["spanId"]: s["attributes"] for s in spans_in(read_json_lines(tmp_path / "traces.json"))}
    assert len(received) == len(sent)
    for span in sent:
        got = received[span["spanId"]]
        assert got.keys() == span["attributes"].keys()
        assert all(got[k] == v for k, v in span["attributes"].items() if isinstance(v, str))


# --- config ------------------------------------------------------------------------------------------------


def problems_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(config_module.ConfigError) as caught:
        config_module.from_dict(raw, "<test>")
    return caught.value.problems


def base_config(pipelines: dict[str, Any]) -> dict[str, Any]:
    return {"receivers": {"otlp": otlp_receiver_config()}, "processors": {"ml": {}},
            "exporters": {"file": {"path": "/tmp/x.json"}}, "service": {"pipelines": pipelines}}


def test_config_ml_as_a_receiver_but_in_no_pipeline_is_an_error():
    assert problems_of(base_config({
        "traces": {"receivers": ["otlp"], "exporters": ["file"]},
        "metrics": {"receivers": ["ml"], "exporters": ["file"]},
    })) == ["service.pipelines.metrics.receivers: processor 'ml' is listed as a receiver but is in no "
            "pipeline's processors, so it never sees data"]


def test_config_ml_in_a_metrics_pipeline_is_an_error():
    assert problems_of(base_config({
        "metrics": {"receivers": ["otlp"], "processors": ["ml"], "exporters": ["file"]},
    })) == ["service.pipelines.metrics.processors[0]: processor 'ml' does not support metrics"]


def test_config_ml_does_not_produce_traces():
    assert problems_of(base_config({
        "traces": {"receivers": ["otlp", "ml"], "processors": ["ml"], "exporters": ["file"]},
    })) == ["service.pipelines.traces.receivers[1]: processor 'ml' does not produce traces"]


def test_config_ml_in_traces_and_logs_feeding_metrics_is_valid():
    config = config_module.from_dict(base_config({
        "traces": {"receivers": ["otlp"], "processors": ["ml"], "exporters": ["file"]},
        "logs": {"receivers": ["otlp"], "processors": ["ml"], "exporters": ["file"]},
        "metrics": {"receivers": ["otlp", "ml"], "exporters": ["file"]},
    }), "<test>")
    metrics = config.pipelines[next(p for p in config.pipelines if str(p) == "metrics")]
    assert [str(r) for r in metrics.receivers] == ["otlp"]
    assert [str(d) for d in metrics.derived_from] == ["ml"]
    assert config.warnings == []


def test_shutdown_stops_a_batch_in_front_of_ml_before_the_engine_and_the_engine_before_its_metrics():
    from agent.config import from_dict
    from agent.pipeline import build
    from agent.telemetry import SelfTelemetry

    config = from_dict({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {"batch": {}, "batch/metrics": {}, "ml": {}},
        "exporters": {"debug": {}},
        "service": {"pipelines": {
            "traces": {"receivers": ["otlp"], "processors": ["batch", "ml"], "exporters": ["debug"]},
            "metrics": {"receivers": ["ml"], "processors": ["batch/metrics"], "exporters": ["debug"]}}},
    })
    names = [name for name, _, _ in build(config, SelfTelemetry()).shutdown_order()]
    assert names.index("processors.batch (traces)") < names.index("processors.ml")
    assert names.index("processors.ml") < names.index("processors.batch/metrics (metrics)")
    assert names.index("processors.batch/metrics (metrics)") < names.index("exporters.debug")
    assert names[0] == "receivers.otlp"


def test_an_ml_processor_that_sees_no_prediction_loads_neither_its_engine_nor_numpy(tmp_path):
    # The engine, and numpy with it, comes only with a batch that may hold predictions.
    code = """
import asyncio, sys
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from agent.component import ComponentId, Settings
from agent.processors import ml
from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry

async def main():
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(name="GET /", trace_id=b"t" * 16, span_id=b"s" * 8)
    span.attributes.add(key="http.method").value.string_value = "GET"
    settings = Settings(ComponentId("ml"), SelfTelemetry(), state_dir=sys.argv[1])
    engine = ml.FACTORY.create_shared(ml.FACTORY.config_model(), settings, {})
    await engine.start()
    engine.observe(Batch.from_wire(Signal.TRACES, request.SerializeToString()))
    assert engine.status()["models"] == [] and engine.engine is None
    await engine.shutdown()

asyncio.run(main())
print(sorted(m for m in ("numpy", "scipy", "agent.processors.ml.engine") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"
