"""Multivariate drift live: an app (the OpenTelemetry SDK) sends predictions whose `ml.embedding`
vectors shift, or whose numeric features change how they move together while each column keeps its
distribution; the ml processor's metrics (read from a `file` exporter's OTLP/JSON) say the window
drifted, its status carries `multivariate` and model health (the admin API) gives the reason. The
same traffic without the change: not drifted, no reason."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from tests.conftest import otlp_receiver_config, read_json_lines, running_vigil
from tests.otlp_json_reading import attributes_of, items
from tests.processors.test_ml_exemplars import eventually, ml_status
from tests.sdk_apps import send_predictions

WARMUP, WINDOW, DIMS = 400, 200, 16
MIX = np.random.default_rng(3).normal(size=(DIMS, DIMS)) / 4


def vigil_config(tmp: Path, multivariate: dict[str, Any]) -> dict[str, Any]:
    return {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "processors": {"ml": {"reference": {"warmup": WARMUP},
                              "window": {"size": WINDOW, "min_size": 50, "max_age": "1h"},
                              "drift": {"multivariate": multivariate}}},
        "exporters": {"file/traces": {"path": str(tmp / "traces.json")},
                      "file/metrics": {"path": str(tmp / "metrics.json")}},
        "service": {"state_dir": str(tmp / "state"), "pipelines": {
            "traces": {"receivers": ["otlp"], "processors": ["ml"], "exporters": ["file/traces"]},
            "metrics": {"receivers": ["ml"], "exporters": ["file/metrics"]}}},
    }


def embedding_rows(seed: int, n: int, shift: float) -> list[tuple[float, dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    vectors = (rng.normal(size=(n, DIMS)) + shift) @ MIX
    return [(0.01, {"ml.model.name": "search", "ml.model.version": "v1", "ml.prediction.confidence": 0.9,
                    "ml.embedding": v.tolist()}) for v in vectors]


def feature_rows(seed: int, n: int, rho: float) -> list[tuple[float, dict[str, Any]]]:
    """Three features on their own scales; each column's distribution is the same whatever `rho`."""
    cov = np.full((3, 3), rho)
    np.fill_diagonal(cov, 1.0)
    x = np.random.default_rng(seed).multivariate_normal(np.zeros(3), cov, size=n) * [1, 10, 100]
    return [(0.01, {"ml.model.name": "fraud", "ml.model.version": "v1", "ml.feature.a": float(a),
                    "ml.feature.b": float(b), "ml.feature.c": float(c)}) for a, b, c in x]


def health(admin_url: str, model: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{admin_url}/api/v1/models/{model}/health", timeout=5) as response:
        return json.load(response)


def multivariate_points(path: Path) -> list[tuple[str, dict[str, Any], float]]:
    out = []
    for _, _, metric in items(read_json_lines(path), "metrics"):
        if metric["name"].startswith(("ml.model.drift.multivariate", "ml.model.multivariate")):
            for p in metric["gauge"]["dataPoints"]:
                value = float(p.get("asDouble", p.get("asInt")))
                out.append((metric["name"], attributes_of(p.get("attributes")), value))
    return out


async def run(tmp: Path, multivariate: dict[str, Any], model: str, rows: list) -> tuple[dict, dict]:
    """Send `rows` (the warmup and 2 windows); the status entry and model health after the 2nd window."""
    async with running_vigil(vigil_config(tmp, multivariate)) as vigil:
        await asyncio.to_thread(send_predictions, vigil.grpc_endpoint(), rows)
        entry: dict[str, Any] = {}

        def two_windows() -> bool:
            models = ml_status(vigil.admin_url())["models"]
            entry.update(models[0] if models else {})
            return entry.get("windows_evaluated") == 2

        assert await eventually(two_windows, timeout=60), entry
        return entry, await asyncio.to_thread(health, vigil.admin_url(), model)


async def test_shifted_embeddings_drift_and_degrade_the_model(tmp_path: Path):
    rows = embedding_rows(1, WARMUP, 0.0) + embedding_rows(2, WINDOW, 0.0) + embedding_rows(3, WINDOW, 0.5)
    entry, verdict = await run(tmp_path, {"method": "mmd"}, "search", rows)
    found = entry["multivariate"]
    assert (found["method"], found["input"], found["tested"], found["rows"]) == ("mmd", "embedding", True, WINDOW)
    assert found["drifted"] and found["statistic"] > found["threshold"] and found["p_value"] < 0.005
    assert verdict["status"] == "degraded"
    assert any(r.startswith("multivariate drift (mmd on the embedding)") for r in verdict["reasons"]), verdict
    points = multivariate_points(tmp_path / "metrics.json")
    drifted = [v for name, a, v in points if name == "ml.model.multivariate.drifted"]
    assert drifted == [0, 1]  # the first window is like the reference, the second is not
    stats = [(a["ml.drift.method"], a["ml.model.name"], v) for name, a, v in points
             if name == "ml.model.drift.multivariate"]
    assert [s[:2] for s in stats] == [("mmd", "search")] * 2 and stats[1][2] == found["statistic"]
    assert not entry["drift"]["drifted_features"]  # no column is watched but the confidence


async def test_embeddings_that_do_not_move_do_not_drift(tmp_path: Path):
    rows = embedding_rows(4, WARMUP, 0.0) + embedding_rows(5, WINDOW, 0.0) + embedding_rows(6, WINDOW, 0.0)
    entry, verdict = await run(tmp_path, {"method": "mmd"}, "search", rows)
    assert entry["multivariate"]["tested"] and not entry["multivariate"]["drifted"]
    assert verdict["status"] == "ok" and not any("multivariate" in r for r in verdict["reasons"])
    assert [v for name, _, v in multivariate_points(tmp_path / "metrics.json")
            if name == "ml.model.multivariate.drifted"] == [0, 0]


async def test_a_correlation_change_drifts_the_features_taken_together(tmp_path: Path):
    rows = feature_rows(7, WARMUP, 0.9) + feature_rows(8, WINDOW, 0.9) + feature_rows(9, WINDOW, 0.0)
    entry, verdict = await run(tmp_path, {"models": {"fraud": "reconstruction"}, "input": "features"},
                               "fraud", rows)
    found = entry["multivariate"]
    assert (found["method"], found["input"], found["drifted"]) == ("reconstruction", "features", True), entry
    assert not entry["drift"]["drifted_features"]  # column by column nothing moved
    assert verdict["status"] == "degraded" and any("multivariate drift (reconstruction" in r
                                                   for r in verdict["reasons"])
    # The learned reference keeps the fit: the profile on disk has it.
    from agent.ml import profile as profiles
    (path,) = (tmp_path / "state").rglob("*.vigilprofile")
    (fit,) = profiles.load(path).multivariate
    assert fit.columns == ["a", "b", "c"] and fit.reconstruction is not None and fit.mmd is None


async def test_off_by_default_and_a_model_without_embeddings_says_why(tmp_path: Path):
    rows = feature_rows(10, WARMUP, 0.9) + feature_rows(11, WINDOW, 0.0) + feature_rows(12, WINDOW, 0.0)
    entry, _ = await run(tmp_path, {}, "fraud", rows)
    assert entry["multivariate"] is None
    assert not multivariate_points(tmp_path / "metrics.json")
    (tmp_path / "state").rename(tmp_path / "old-state")
    entry, verdict = await run(tmp_path, {"method": "mmd"}, "fraud", rows)  # input: embedding, none sent
    found = entry["multivariate"]
    assert not found["tested"] and found["reason"] == "the reference has no mmd fit on its embedding"
    assert verdict["status"] in ("ok", "degraded") and not any("multivariate" in r for r in verdict["reasons"])


def test_a_window_keeps_its_embeddings_bounded_and_of_one_width():
    from types import SimpleNamespace

    from agent.processors.ml.config import MultivariateConfig
    from agent.processors.ml.multivariate import Vectors, batch_vectors

    vectors = Vectors()
    assert vectors.joined() is None
    vectors.add(2, None)  # a batch without any: its rows are missing, row for row with the columns
    assert vectors.joined() is None
    vectors.add(3, np.ones((3, 4)))
    vectors.add(2, np.ones((2, 5)))  # another width than the window's first: missing rows
    joined = vectors.joined()
    assert joined.shape == (7, 4) and np.isnan(joined[:2]).all() and np.isnan(joined[5:]).all()
    assert (joined[2:5] == 1).all()
    config = MultivariateConfig(method="mmd", max_dims=8, models={"legacy": "off"})
    wide, narrow = SimpleNamespace(embeddings=np.ones((2, 9))), SimpleNamespace(embeddings=np.ones((2, 8)))
    assert batch_vectors(config, "search", wide) is None  # wider than max_dims: not kept
    assert batch_vectors(config, "search", narrow) is narrow.embeddings
    assert batch_vectors(config, "legacy", narrow) is None  # off for this model
    assert batch_vectors(MultivariateConfig(method="mmd", input="features"), "search", narrow) is None
    assert batch_vectors(config, "search", SimpleNamespace()) is None  # a reader without embeddings


def test_a_bad_setting_is_refused_by_name():
    import pytest
    from pydantic import ValidationError

    from agent.processors.ml.config import MlProcessorConfig

    for settings, field in (({"method": "energy"}, "drift.multivariate.method"),
                            ({"models": {"fraud": "pca"}}, "drift.multivariate.models.fraud"),
                            ({"input": "tensor"}, "drift.multivariate.input"),
                            ({"max_dims": 1}, "drift.multivariate.max_dims"),
                            ({"window": 5}, "drift.multivariate.window")):
        with pytest.raises(ValidationError, match=field.replace(".", r"\.")):
            MlProcessorConfig.model_validate({"drift": {"multivariate": settings}})
