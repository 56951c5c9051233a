"""A multiclass model's macro precision, recall and F1 estimated live: an app (the OpenTelemetry SDK)
sends its predicted class and top-class confidence, no labels; the ml processor, with a labelled
reference profile, exports `ml.model.{precision,recall,f1}.estimated` (ml.average = macro) per window,
the same numbers `agent.ml.performance.estimate` gives offline, close to scikit-learn's realised
values on the labels the test kept back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from agent.ml import performance, profile as profiles
from agent.ml.columns import RawColumn
from tests.conftest import otlp_receiver_config, read_json_lines, running_vigil
from tests.ml.test_estimates import cards
from tests.otlp_json_reading import attributes_of, items
from tests.processors.test_ml_exemplars import eventually, ml_status
from tests.sdk_apps import send_predictions

WINDOW = 1500


def estimated_points(path: Path) -> dict[str, list[tuple[dict, float]]]:
    out: dict[str, list[tuple[dict, float]]] = {}
    for _, _, metric in items(read_json_lines(path), "metrics"):
        if metric["name"].endswith(".estimated"):
            for p in metric["gauge"]["dataPoints"]:
                out.setdefault(metric["name"], []).append((attributes_of(p.get("attributes")), p["asDouble"]))
    return out


async def test_multiclass_macro_estimates_live(tmp_path: Path):
    labels, predicted, confidence = cards(0, 20_000)
    perf = performance.build(RawColumn.from_values(labels.tolist()), performance.Outputs(predicted, None, confidence,
                                                                                          None))
    profiles.save(profiles.Profile("cards", "", 20_000, {}, performance=perf), tmp_path / "cards.vigilprofile")
    labels, predicted, confidence = cards(1, WINDOW, shift=1.0)  # a window whose inputs moved
    rows = [(0.01, {"ml.model.name": "cards", "ml.model.version": "v1", "ml.prediction.label": str(p),
                    "ml.prediction.confidence": float(c)}) for p, c in zip(predicted, confidence)]
    config = {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "processors": {"ml": {"reference": {"profiles": [str(tmp_path / "cards.vigilprofile")]},
                              "window": {"size": WINDOW, "min_size": 50, "max_age": "1h"}}},
        "exporters": {"file/traces": {"path": str(tmp_path / "traces.json")},
                      "file/metrics": {"path": str(tmp_path / "metrics.json")}},
        "service": {"state_dir": str(tmp_path / "state"), "pipelines": {
            "traces": {"receivers": ["otlp"], "processors": ["ml"], "exporters": ["file/traces"]},
            "metrics": {"receivers": ["ml"], "exporters": ["file/metrics"]}}},
    }
    async with running_vigil(config) as vigil:
        await asyncio.to_thread(send_predictions, vigil.grpc_endpoint(), rows)
        assert await eventually(lambda: (ml_status(vigil.admin_url())["models"] or [{}])[0]
                                .get("windows_evaluated") == 1, timeout=30)
        status = (await asyncio.to_thread(ml_status, vigil.admin_url()))["models"][0]
    found = estimated_points(tmp_path / "metrics.json")
    offline = performance.estimate(perf, performance.Outputs(predicted, None, confidence, None))
    realized = {"precision": precision_score(labels, predicted, average="macro"),
                "recall": recall_score(labels, predicted, average="macro"),
                "f1": f1_score(labels, predicted, average="macro")}
    for metric, value in realized.items():
        ((attrs, live),) = found[f"ml.model.{metric}.estimated"]
        assert attrs["ml.average"] == "macro" and "ml.class" not in attrs
        assert live == pytest.approx(offline[metric], rel=1e-12)
        assert live == pytest.approx(value, abs=0.03), metric
        assert status["performance"]["estimated"][metric] == pytest.approx(live)
