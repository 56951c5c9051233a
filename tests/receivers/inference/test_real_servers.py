"""Real Triton and MLServer, watched by a real `vigil run` with the config a user writes.

Triton is the `tritonserver` binary that PyPI's nvidia-pytriton 0.7.0 ships (Triton 2.51.0), serving a
Python-backend model on CPU (tests/servers/triton/); MLServer 1.7.1 serves a scikit-learn iris classifier
(tests/servers/mlserver/). `make test` installs both (see tests/servers/__init__.py). Each test sends real
inferences, successes and failures, and reads what Vigil made of them: the `inference` receiver's view
in `GET /api/v1/status`, the exported metrics from `file` exporters, for Triton also its OpenTelemetry
trace mode's spans through the `ml` processor, and for MLServer the `inference_proxy` in front of it, up
to drift in the model health API.
"""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tests.conftest import free_port, read_json_lines, wait_for
from tests.otlp_json_reading import attributes_of, items
from tests.servers.mlserver_server import run_mlserver
from tests.servers.triton_server import run_triton
from tests.vigil_cli import VigilProcess, vigil_run

IRIS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except ValueError:  # MLServer answers a failing model with its traceback as text
            return error.code, {"error": text.decode(errors="replace")}


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def get_or_none(url: str) -> dict[str, Any]:
    """GET `url` as JSON; {} for a 404 (a model not seen yet)."""
    try:
        return get(url)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return {}
        raise


def start_vigil(tmp_path: Path, config: dict[str, Any]):
    path = tmp_path / "vigil.yaml"
    path.write_text(yaml.safe_dump(config))
    return vigil_run(["-c", str(path)], tmp_path)


def stop(vigil: VigilProcess) -> None:
    """SIGTERM, as systemd stops it: the exporters flush what they hold."""
    vigil.proc.send_signal(signal.SIGTERM)
    assert vigil.proc.wait(timeout=60) == 0, vigil.stderr()


def receiver_status(admin: str, receiver: str = "inference") -> dict[str, Any]:
    return get(f"http://{admin}/api/v1/status")["components"]["receivers"][receiver]["status"]


def model_entry(admin: str, model: str, version: str | None = "any") -> dict[str, Any] | None:
    return next((m for m in receiver_status(admin)["models"]
                 if m["model"] == model and version in ("any", m["version"])), None)


def sums(path: Path, name: str) -> dict[tuple, float]:
    """The exported points of counter `name` added up, by (service.name, ml.model.name, ml.model.version,
    error.type)."""
    out: dict[tuple, float] = defaultdict(float)
    for resource, _, metric in items(read_json_lines(path), "metrics"):
        if metric["name"] != name:
            continue
        for point in metric["sum"]["dataPoints"]:
            attributes = attributes_of(point.get("attributes"))
            value = float(point["asDouble"]) if "asDouble" in point else int(point["asInt"])
            out[(resource.get("service.name"), resource.get("ml.model.name"), resource.get("ml.model.version"),
                 attributes.get("error.type"))] += value
    return dict(out)


def points(path: Path, name: str) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(resource attributes, point attributes, point) of every exported point of metric `name`."""
    return [(resource, attributes_of(point.get("attributes")), point)
            for resource, _, metric in items(read_json_lines(path), "metrics") if metric["name"] == name
            for kind in ("sum", "gauge", "histogram") if kind in metric for point in metric[kind]["dataPoints"]]


def model_spans(path: Path) -> list[dict[str, Any]]:
    """Triton's per-model spans (named after the model) in a traces file."""
    return [s for _, _, s in items(read_json_lines(path), "traces") if s["name"] == "scorer"]


def scorer_request(rows: list[list[float]]) -> dict[str, Any]:
    return {"inputs": [{"name": "features", "shape": [len(rows), 4], "datatype": "FP32",
                        "data": [x for row in rows for x in row]}]}


def iris_request(rows: list[list[float]]) -> dict[str, Any]:
    return {"inputs": [{"name": "predict", "shape": [len(rows), len(rows[0])], "datatype": "FP64",
                        "data": [x for row in rows for x in row]}]}


def triton_config(tmp_path: Path, metrics_endpoint: str, admin: str, otlp_port: int) -> dict[str, Any]:
    """The inference receiver scraping Triton, and its spans through the ml processor."""
    return {
        "receivers": {
            "inference": {"collection_interval": "500ms", "timeout": "400ms",
                          "servers": [{"kind": "triton", "endpoint": metrics_endpoint}]},
            "otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{otlp_port}"}}}},
        "processors": {"ml": {"interval": "1h"}},  # the span-side metrics once, at shutdown
        "exporters": {"file/metrics": {"path": str(tmp_path / "metrics.json")},
                      "file/traces": {"path": str(tmp_path / "traces.json")}},
        "service": {"admin": {"endpoint": admin}, "state_dir": str(tmp_path / "state"), "pipelines": {
            "metrics": {"receivers": ["inference", "ml"], "exporters": ["file/metrics"]},
            "traces": {"receivers": ["otlp"], "processors": ["ml"], "exporters": ["file/traces"]}}},
    }


def test_triton_models_from_its_metrics_and_its_traces(tmp_path: Path) -> None:
    otlp_port, admin_port = free_port(), free_port()
    with run_triton(tmp_path, traces_url=f"http://127.0.0.1:{otlp_port}/v1/traces") as triton:
        admin = f"127.0.0.1:{admin_port}"
        with start_vigil(tmp_path, triton_config(tmp_path, triton.metrics_endpoint, admin, otlp_port)) as vigil:
            vigil.wait_running()
            assert wait_for(lambda: (model_entry(admin, "scorer") or {}).get("up"), timeout=20), vigil.stderr()
            infer = f"{triton.http_url}/v2/models/scorer/infer"
            for k in range(6):
                status, body = post(infer, scorer_request([[k, 1, 2, 3], [0, 0, 0, 1]]))
                assert status == 200 and body["outputs"][0]["data"] == [k + 6.0, 1.0]
            for _ in range(2):  # the model raises on a negative feature: Triton counts a BACKEND failure
                assert post(infer, scorer_request([[-1, 0, 0, 0]]))[0] == 500
            assert wait_for(lambda: (model_entry(admin, "scorer") or {}).get("requests") == 8, timeout=20), \
                receiver_status(admin)
            model = model_entry(admin, "scorer")
            # Triton exports its spans in batches: wait for all eight requests' before stopping.
            assert wait_for(lambda: len(model_spans(tmp_path / "traces.json")) == 8, timeout=20)
            metrics = tmp_path / "metrics.json"
            assert wait_for(lambda: sums(metrics, "ml.predictions").get(("triton", "scorer", "1", None)) == 8)
            errors = sums(metrics, "ml.prediction.errors")
            models = get(f"http://{admin}/api/v1/models")["models"]
            # Triton stops: the receiver says it is down and why, and its model with it.
            triton.process.stop()
            assert wait_for(lambda: not receiver_status(admin)["servers"][0]["up"], timeout=20)
            (server,) = receiver_status(admin)["servers"]
            down = model_entry(admin, "scorer")
            down_health = get(f"http://{admin}/api/v1/models/scorer/health")
            stop(vigil)

    assert (model["version"], model["source"], model["up"], model["errors"]) == ("1", "triton", True, 2)
    # Triton's counters give a mean (cumulative duration / requests); no histogram unless configured.
    assert model["latency_from"] == "mean" and model["latency_mean_s"] > 0
    assert server["reason"] and (down["up"], down["health"]["status"]) == (False, "failing"), (server, down)
    # The models view lists it twice: served (from Triton's metrics) and watched (from its spans).
    served = [(m["version"], m["requests"], m["errors"]) for m in models if m["model"] == "scorer"
              and m.get("source") == "triton"]
    watched = [(m["version"], m["requests"]) for m in models if m["model"] == "scorer" and m.get("source") == "spans"]
    assert (served, watched) == ([("1", 8, 2)], [("1", 8)]), models
    # A circuit breaker asking once Triton is down is told to fall back.
    assert down_health["status"] == "failing", down_health

    # Triton keeps a series per reason (zero for the others); the two failures are the backend's.
    assert {k: v for k, v in errors.items() if v} == {("triton", "scorer", "1", "BACKEND"): 2}
    # From Triton's spans (one per request, named after the model, with triton.model_name and version),
    # the ml processor's own per-model counts and latency histogram. Triton 2.51 does not mark a failed
    # request's span as an error, so its errors are known from the metrics only.
    span_side = {name: [(a, p) for r, a, p in points(metrics, name)
                        if r.get("service.name") == "triton-inference-server"]
                 for name in ("ml.predictions", "ml.prediction.duration")}
    (counted,), (timed,) = span_side["ml.predictions"], span_side["ml.prediction.duration"]
    assert (counted[0]["ml.model.name"], counted[0]["ml.model.version"], int(counted[1]["asInt"])) == ("scorer", "1", 8)
    assert int(timed[1]["count"]) == 8
    # The spans' durations, added up, are the histogram's sum.
    spans = model_spans(tmp_path / "traces.json")
    total = sum(int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"]) for s in spans) / 1e9
    assert abs(timed[1]["sum"] - total) < 1e-6 * len(spans)


def test_triton_stopping_adds_no_requests(tmp_path: Path) -> None:
    # Triton, unloading its models as it stops, drops a model's success series before its failure ones.
    admin = f"127.0.0.1:{free_port()}"
    with run_triton(tmp_path) as triton:
        with start_vigil(tmp_path, triton_config(tmp_path, triton.metrics_endpoint, admin, free_port())) as vigil:
            vigil.wait_running()
            infer = f"{triton.http_url}/v2/models/scorer/infer"
            assert [post(infer, scorer_request([row]))[0] for row in ([1, 2, 3, 4], [2, 3, 4, 5], [-1, 0, 0, 0])] \
                == [200, 200, 500]
            assert wait_for(lambda: (model_entry(admin, "scorer") or {}).get("requests") == 3, timeout=20)
            triton.process.stop()
            assert wait_for(lambda: not receiver_status(admin)["servers"][0]["up"], timeout=20)
            stop(vigil)
    assert sums(tmp_path / "metrics.json", "ml.predictions")[("triton", "scorer", "1", None)] == 3


def test_mlserver_model_from_its_metrics_and_predictions_through_the_proxy(tmp_path: Path) -> None:
    admin_port, proxy_port = free_port(), free_port()
    with run_mlserver(tmp_path) as mlserver:
        admin, proxy = f"127.0.0.1:{admin_port}", f"http://127.0.0.1:{proxy_port}"
        config = {
            "receivers": {
                "inference": {"collection_interval": "500ms", "timeout": "400ms",
                              "servers": [{"kind": "mlserver", "endpoint": mlserver.metrics_endpoint}]},
                "inference_proxy/iris": {"endpoint": f"127.0.0.1:{proxy_port}", "upstream": mlserver.http_url,
                                         "protocol": "v2",
                                         "payloads": {"feature_names": {"predict": IRIS_COLUMNS}}}},
            "exporters": {"file/metrics": {"path": str(tmp_path / "metrics.json")},
                          "file/traces": {"path": str(tmp_path / "traces.json")}},
            "service": {"admin": {"endpoint": admin}, "pipelines": {
                "metrics": {"receivers": ["inference"], "exporters": ["file/metrics"]},
                "traces": {"receivers": ["inference_proxy/iris"], "exporters": ["file/traces"]}}},
        }
        with start_vigil(tmp_path, config) as vigil:
            vigil.wait_running()
            assert wait_for(lambda: receiver_status(admin)["servers"][0]["up"], timeout=20), receiver_status(admin)
            direct = post(f"{mlserver.http_url}/v2/models/iris/versions/v1/infer", iris_request(IRIS))
            for _ in range(4):
                proxied = post(f"{proxy}/v2/models/iris/versions/v1/infer", iris_request(IRIS))
                assert proxied[0] == 200
                assert proxied[1]["outputs"] == direct[1]["outputs"]  # the proxy changes nothing
            bad = post(f"{proxy}/v2/models/iris/versions/v1/infer", iris_request([[5.1, 3.5, 1.4]]))
            assert bad[0] == 500  # three features for a four-feature model: the runtime fails
            # MLServer labels a request that names no version "None", whatever the model's settings say.
            assert post(f"{mlserver.http_url}/v2/models/iris/infer", iris_request(IRIS[:1]))[0] == 200
            assert wait_for(lambda: (model_entry(admin, "iris", "v1") or {}).get("requests") == 6
                            and (model_entry(admin, "iris", None) or {}).get("requests") == 1, timeout=20), \
                receiver_status(admin)
            model, unversioned = model_entry(admin, "iris", "v1"), model_entry(admin, "iris", None)
            models = get(f"http://{admin}/api/v1/models")["models"]
            stop(vigil)

    assert (model["source"], model["up"], model["errors"]) == ("mlserver", True, 1)
    assert (unversioned["source"], unversioned["errors"]) == ("mlserver", 0)
    assert sorted((m["version"] or "", m["requests"], m["errors"]) for m in models
                  if m["model"] == "iris" and m.get("source") == "mlserver") == [("", 1, 0), ("v1", 6, 1)], models
    assert model["latency_mean_s"] > 0
    metrics = tmp_path / "metrics.json"
    assert sums(metrics, "ml.predictions")[("mlserver", "iris", "v1", None)] == 6
    assert sum(v for (_, model_name, _, _), v in sums(metrics, "ml.prediction.errors").items()
               if model_name == "iris") == 1
    # Through the proxy: one prediction span per row, with the named features and the predicted class.
    rows = [s for _, _, s in items(read_json_lines(tmp_path / "traces.json"), "traces")
            if attributes_of(s.get("attributes")).get("ml.model.name") == "iris"]
    good = [attributes_of(s["attributes"]) for s in rows if "ml.prediction.label" in attributes_of(s["attributes"])]
    assert len(good) == 4 * len(IRIS)
    (failed,) = [s for s in rows if "ml.prediction.label" not in attributes_of(s["attributes"])]
    assert failed["status"].get("code") == 2, failed  # the server's 500: an error span, with its features
    first = good[0]
    assert [first[f"ml.feature.{c}"] for c in IRIS_COLUMNS] == IRIS[0]
    assert first["ml.model.version"] == "v1"
    # Integer classes become label strings, as an app would write them.
    classes = {str(c) for c in direct[1]["outputs"][0]["data"]}
    assert sorted({a["ml.prediction.label"] for a in good}) == sorted(classes)



def test_drift_in_an_mlserver_model_s_inputs_through_the_proxy_with_no_app_change(tmp_path: Path) -> None:
    from sklearn.datasets import load_iris

    admin_port, proxy_port = free_port(), free_port()
    rows = load_iris().data[np.random.default_rng(3).integers(0, 150, 600)]
    rows[200:, 1] += 1.0  # after the reference's 200 rows, the sepals are a centimetre wider
    with run_mlserver(tmp_path) as mlserver:
        admin, proxy = f"127.0.0.1:{admin_port}", f"http://127.0.0.1:{proxy_port}"
        config = {
            "receivers": {"inference_proxy/iris": {
                "endpoint": f"127.0.0.1:{proxy_port}", "upstream": mlserver.http_url, "protocol": "v2",
                "payloads": {"feature_names": {"predict": IRIS_COLUMNS}}}},
            "processors": {"ml": {"reference": {"warmup": 200}, "window": {"size": 200, "min_size": 100}}},
            "exporters": {"file/traces": {"path": str(tmp_path / "traces.json")},
                          "file/metrics": {"path": str(tmp_path / "metrics.json")}},
            "service": {"admin": {"endpoint": admin}, "state_dir": str(tmp_path / "state"), "pipelines": {
                "traces": {"receivers": ["inference_proxy/iris"], "processors": ["ml"], "exporters": ["file/traces"]},
                "metrics": {"receivers": ["ml"], "exporters": ["file/metrics"]}}},
        }
        with start_vigil(tmp_path, config) as vigil:
            vigil.wait_running()
            for start in range(0, len(rows), 50):  # the reference's 200 rows, then two windows' worth
                if start == 200:  # as in service: the drift comes after the reference was learned
                    assert wait_for(lambda: "reference learned" in vigil.stderr(), timeout=30), vigil.stderr()
                batch = rows[start:start + 50].tolist()
                assert post(f"{proxy}/v2/models/iris/versions/v1/infer", iris_request(batch))[0] == 200
            health = f"http://{admin}/api/v1/models/iris/health"
            assert wait_for(lambda: get_or_none(health).get("status", "ok") != "ok", timeout=30), \
                (get_or_none(health), get(f"http://{admin}/api/v1/status")["components"], vigil.stderr()[-3000:])
            verdict = get_or_none(health)
            stop(vigil)
    # One of the five columns (four features, the predicted class) moved: degraded, naming it.
    assert (verdict["status"], verdict["reasons"]) == ("degraded", ["feature drift: sepal_width (1 of 5 columns)"])
