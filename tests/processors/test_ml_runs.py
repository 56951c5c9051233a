"""The `ml` engine reads small requests in runs (their bytes joined, up to `COALESCE_ITEMS` items or
`COALESCE_SECONDS`), and a drift window closes at exactly `window.size` predictions: what it derives is
the same however the app batched its spans, one damaged request costs only its own predictions, and
whatever reads the engine sees every batch it was given."""

from __future__ import annotations

import asyncio
import math
import random
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from agent.attributes import set_any_value
from agent.component import ComponentId, Settings
from agent.processors.ml import engine as engine_module
from agent.processors.ml.config import MlProcessorConfig
from agent.processors.ml.engine import MlEngine
from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry
from tests.sink import InMemorySink

MODELS = [("fraud", "v3"), ("fraud", "v4"), ("churn", "2024-06")]


def request(start: int, spans: int) -> bytes:
    """Spans `start` .. `start + spans - 1` of one stream, a resource per model version, as an SDK sends."""
    message = ExportTraceServiceRequest()
    for m, (model, version) in enumerate(MODELS):
        resource = message.resource_spans.add()
        set_any_value(resource.resource.attributes.add(key="service.name").value, f"{model}-api")
        scope = resource.scope_spans.add()
        for k in range(start, start + spans):
            if k % len(MODELS) != m:
                continue
            rng = random.Random(k)
            span = scope.spans.add(name="predict", trace_id=rng.randbytes(16), span_id=rng.randbytes(8),
                                   start_time_unix_nano=1_700_000_000_000_000_000 + k * 1000,
                                   end_time_unix_nano=1_700_000_000_000_000_000 + k * 1000 + rng.randrange(10**7))
            for key, value in (("ml.model.name", model), ("ml.model.version", version),
                               ("ml.prediction.id", f"p-{k}"), ("ml.prediction.label", rng.choice("ab")),
                               ("ml.prediction.confidence", rng.uniform(0.5, 1)),
                               ("ml.feature.amount", rng.gauss(100 + 20 * (k > 2000), 15)),
                               ("ml.feature.country", rng.choice(["de", "fr", "us"])), ("http.status_code", 200)):
                set_any_value(span.attributes.add(key=key).value, value)
    return message.SerializeToString()


def requests_of(first: int, last: int, spans: int) -> list[Batch]:
    return [Batch.from_wire(Signal.TRACES, request(start, min(spans, last - start)))
            for start in range(first, last, spans)]


def without_times(value):
    """The metrics as a backend would compare them: values and attributes, not when they were written
    (nor the exemplars, which carry the time a prediction was observed)."""
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items()
                if k not in ("timeUnixNano", "startTimeUnixNano", "exemplars")}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


def same(a, b) -> bool:
    """Equal, but for the last bits of floats: an interval's sums (latency, confidence) add up a run's
    sum at a time, so how the spans were batched moves their rounding, and only that."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def engine_for(tmp_path: Path, telemetry: SelfTelemetry | None = None) -> tuple[MlEngine, InMemorySink]:
    config = MlProcessorConfig(reference={"warmup": 600}, window={"size": 900, "min_size": 100, "max_age": "1h"},
                               interval="1h")
    sink = InMemorySink()
    settings = Settings(ComponentId("ml"), telemetry or SelfTelemetry(), state_dir=tmp_path)
    return MlEngine(config, settings, {Signal.METRICS: sink}), sink


async def learned(engine: MlEngine) -> None:
    """The first 1,800 predictions (600 per version: each one's warmup), and their references learned."""
    engine.observe(Batch.from_wire(Signal.TRACES, request(0, 1800)))
    engine.flush()
    for _ in range(400):  # the references are learned in the thread pool
        if len(engine._models) == 3 and all(state.profile is not None for state in engine._models.values()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the references were not learned")


async def derived(tmp_path: Path, batches: list[Batch]) -> tuple[list, dict]:
    """Every metric point the engine wrote (in order, without times) and its status, for these batches
    after the references."""
    engine, sink = engine_for(tmp_path)
    await engine.start()
    await learned(engine)
    for batch in batches:
        engine.observe(batch)
        await asyncio.sleep(0)  # the worker runs between requests, as it does between an app's exports
    status = engine.status()
    await engine.shutdown()
    points = []
    for batch in sink.batches:
        for resource in MessageToDict(batch.message)["resourceMetrics"]:
            for scope in resource["scopeMetrics"]:
                points += without_times(scope["metrics"])
    models = {(m["model"], m["version"]): m["requests"] for m in status["models"]}
    return points, models


async def test_what_is_derived_is_the_same_however_the_spans_were_batched(tmp_path: Path, monkeypatch):
    # After the references (600 per version), 4,200 predictions over the three model versions: windows
    # of 900 and the 500 left at shutdown, with a shift in `amount` after the 2,000th.
    one_request = await derived(tmp_path / "a", requests_of(1800, 6000, 4200))
    small_requests = await derived(tmp_path / "b", requests_of(1800, 6000, 50))  # read in runs
    monkeypatch.setattr(engine_module, "COALESCE_ITEMS", 1)  # each request read as it comes
    one_at_a_time = await derived(tmp_path / "c", requests_of(1800, 6000, 70))
    points, models = one_request
    assert models == {version: 2000 for version in MODELS}
    drift_windows = [m for m in points if m["name"] == "ml.feature.drift.score"]
    assert len(drift_windows) == 3 * 2  # per version: 900 rows, then the 500 left at shutdown
    assert same(small_requests, one_request)
    assert same(one_at_a_time, one_request)
    # The windows' statistics to the bit.
    assert [m for m in small_requests[0] if m["name"].startswith("ml.feature.")] == \
        [m for m in points if m["name"].startswith("ml.feature.")]


async def test_a_damaged_request_in_a_run_costs_only_its_own_predictions(tmp_path: Path):
    telemetry = SelfTelemetry()
    engine, _ = engine_for(tmp_path, telemetry)
    await engine.start()
    good = requests_of(0, 300, 100)
    damaged = Batch(Signal.TRACES, wire=request(300, 100)[:-7], items=100)  # cut inside its last span
    for batch in (good[0], damaged, good[1], good[2]):
        engine.observe(batch)
    models = {m["model"] + "/" + m["version"]: m["requests"] for m in engine.status()["models"]}
    await engine.shutdown()
    assert models == {"fraud/v3": 100, "fraud/v4": 100, "churn/2024-06": 100}  # 300 of the good requests'
    assert telemetry.total("vigil_ml_errors") == 1  # the damaged one


async def test_what_reads_the_engine_sees_every_batch_it_was_given(tmp_path: Path, monkeypatch):
    engine, _ = engine_for(tmp_path)
    await engine.start()
    engine.observe(Batch.from_wire(Signal.TRACES, request(0, 30)))
    # Read at once (the run has not ended): the status reads the run first.
    assert sum(m["requests"] for m in engine.status()["models"]) == 30
    # Left alone, a run is read within COALESCE_SECONDS.
    engine.observe(Batch.from_wire(Signal.TRACES, request(30, 30)))
    await asyncio.sleep(engine_module.COALESCE_SECONDS + 0.1)
    assert engine._pending.batches == []
    assert sum(state.requests for state in engine._models.values()) == 60
    # A run that reaches COALESCE_ITEMS is read then, and so is one that reaches COALESCE_BYTES.
    engine.observe(Batch.from_wire(Signal.TRACES, request(60, engine_module.COALESCE_ITEMS)))
    assert engine._pending.batches == []
    monkeypatch.setattr(engine_module, "COALESCE_BYTES", 20_000)
    for start in range(5000, 5300, 30):
        engine.observe(Batch.from_wire(Signal.TRACES, request(start, 30)))
        assert engine._pending.bytes < 20_000
    assert engine._pending.items < 300
    await engine.shutdown()


@pytest.mark.parametrize("spans", [1, 899, 900, 901, 2000])
async def test_a_window_closes_at_exactly_window_size(tmp_path: Path, spans: int):
    engine, _ = engine_for(tmp_path)
    await engine.start()
    await learned(engine)
    closed = []
    engine._submit = lambda job: closed.append(job.rows)  # what each closed window holds
    start = 1800
    for _ in range(3):
        engine.observe(Batch.from_wire(Signal.TRACES, request(start, spans * 3)))  # `spans` per version
        start += spans * 3
    engine.flush()
    open_rows = {state.version: state.window.rows for state in engine._models.values()}
    await engine.shutdown()
    received = 3 * spans  # per version, after its reference
    assert closed[:3 * (received // 900)] == [900] * (3 * (received // 900))
    assert open_rows == {version: received % 900 for _, version in MODELS}
