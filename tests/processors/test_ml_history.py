"""The ml processor's history for the status page: the last windows and intervals per model version,
bounded; and each numeric column's window on an axis widened to its own range."""

from __future__ import annotations

import numpy as np

from agent.component import ComponentId
from agent.ml import distribution, drift, profile as profiles
from agent.ml.columns import ColumnView, RawColumn
from agent.ml.config import DriftConfig
from agent.processors.ml.history import History
from agent.signals import Signal
from tests.admin.traffic import ml_vigil_config, prediction_spans
from tests.conftest import async_wait_for, running_vigil
from tests.otlp_data import send_grpc


async def test_the_status_keeps_each_window_and_interval_in_order(tmp_path):
    config = ml_vigil_config(tmp_path)
    config["processors"]["ml"]["interval"] = "1s"
    async with running_vigil(config) as vigil:
        endpoint = vigil.grpc_endpoint()
        engine = vigil.service.graph.shared[ComponentId("ml")]
        await send_grpc(endpoint, Signal.TRACES, prediction_spans(400, seed=1))
        assert await async_wait_for(lambda: engine.status()["models"][0]["phase"] == "monitoring")
        for i, shift in enumerate((0, 30, 0)):
            await send_grpc(endpoint, Signal.TRACES, prediction_spans(400, seed=10 + i, start=400 * (i + 1),
                                                                      shift=shift))
            assert await async_wait_for(lambda: engine.status()["models"][0]["windows_evaluated"] == i + 1)
        assert await async_wait_for(lambda: engine.status()["models"][0]["history"]["intervals"], timeout=15)
        entry = engine.status()["models"][0]

    windows = entry["history"]["windows"]
    assert [w["rows"] for w in windows] == [400, 400, 400]
    times = [w["time_unix_nano"] for w in windows]
    assert times == sorted(times)
    age = entry["history"]["columns"].index("age")
    assert [age in w["drifted"] for w in windows] == [False, True, False]
    scores = [w["scores"][age] for w in windows]
    assert scores[1] > scores[0] and scores[1] > scores[2]  # the effect size shows the shift
    assert len(windows[0]["scores"]) == len(entry["history"]["columns"]) == len(entry["drift"]["features"])
    interval = entry["history"]["intervals"][0]
    assert interval["requests"] > 0 and interval["errors"] == 0
    assert 0.005 < interval["latency_seconds"]["p50"] <= interval["latency_seconds"]["p99"] < 0.05
    # The last window's age on the widened axis: its range, not a pile-up in the open top bin.
    window = entry["drift"]["features"]["age"]["distribution"]["window"]
    assert sum(window["counts"]) == 400 and window["bounds"] == sorted(window["bounds"])


def test_the_history_keeps_only_the_last_windows():
    reference = profiles.Profile("m", "1", 500, {"x": profiles.build_column("x", values(0, 500))})
    history = History(size=5)
    for i in range(12):
        result = drift.evaluate(reference, {"x": values(i, 200)}, 200, DriftConfig())
        history.window(result, 200 + i, {"accuracy": 0.9, "rows": 200}, None)
    kept = history.status()["windows"]
    assert [w["rows"] for w in kept] == [207, 208, 209, 210, 211]
    assert kept[-1]["estimated"] == {"accuracy": 0.9} and kept[-1]["multivariate"] is None
    # Another reference (other columns): the windows measured against the old one go.
    other = profiles.Profile("m", "1", 500, {"y": profiles.build_column("y", values(0, 500))})
    history.window(drift.evaluate(other, {"y": values(1, 200)}, 200, DriftConfig()), 300, None, None)
    assert history.status()["columns"] == ["y"] and [w["rows"] for w in history.status()["windows"]] == [300]


def test_a_far_shift_widens_the_axis_to_the_window_range():
    reference = profiles.build_column("x", values(0, 2000))
    view = ColumnView(values(0, 1000, mean=100))
    bounds, counts = distribution.window_bins(reference, view.sorted_numbers)
    assert bounds[-1] >= view.sorted_numbers[-1] and sum(counts) == 1000
    ref_bounds, _ = distribution.reference_bins(reference)
    beyond = [n for lo, n in zip(bounds, counts) if lo >= ref_bounds[-1]]
    assert len(beyond) == distribution.MAX_EXTRA_BINS and sum(beyond) == 1000  # spread out, not in one bin
    # A window inside the reference's range keeps the reference's bins.
    inside = ColumnView(values(1, 300))
    bounds, counts = distribution.window_bins(reference, np.clip(inside.sorted_numbers, *ref_bounds[::len(ref_bounds) - 1]))
    assert bounds == ref_bounds and sum(counts) == 300


def values(seed: int, n: int, mean: float = 0.0) -> RawColumn:
    return RawColumn.from_values(np.random.default_rng(seed).normal(mean, 1, n).tolist())
