"""The `kserve` receiver on 127.0.0.1:0, sent real HTTP posts shaped as KServe's inference logger sends them.

KServe's logger (kserve/kserve pkg/logger/handler.go and worker.go, KServe 0.21 / master at 0217bdab)
posts each logged request, then each 200 response, as a binary-mode CloudEvent: `Ce-Specversion`,
`Ce-Id` shared by the pair, `Ce-Type` `org.kubeflow.serving.inference.request` / `.response`,
`Ce-Source`, `Ce-Time`, the extensions `Ce-Inferenceservicename`, `Ce-Namespace`, `Ce-Component`,
`Ce-Endpoint` and `Ce-Metadata`, and the payload with the request's Content-Type. KServe needs a
Kubernetes cluster, so these posts are built from that source; the structured-mode posts follow the
CloudEvents JSON format (cloudevents/spec v1.0.2 cloudevents/formats/json-format.md).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from agent.attributes import as_dict
from agent.component import ComponentId, Kind, Settings
from agent.errors import RefusedError
from agent.ml import vocabulary as v
from agent.receivers.kserve.config import KServeReceiverConfig
from agent.receivers.kserve.receiver import KServeReceiver
from agent.signals import Signal
from agent.telemetry import SelfTelemetry
from tests.conftest import async_wait_for, read_json_lines, running_vigil
from tests.receivers.test_otlp_protection import certs, client_context
from tests.sink import InMemorySink

SHARED_FIXTURES = (certs,)  # a CA and a server certificate, made with openssl, for the TLS test
REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
IRIS_V2_REQUEST = {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32",
                               "data": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}]}
IRIS_V2_RESPONSE = {"model_name": "sklearn-iris", "model_version": None, "id": "4f5c", "parameters": None,
                    "outputs": [{"name": "output-0", "shape": [2], "datatype": "INT32", "parameters": None,
                                 "data": [1, 2]}]}
IRIS_V1_REQUEST = {"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}
IRIS_V1_RESPONSE = {"predictions": [1, 1]}


def binary_headers(ce_id: str, kind: str, time: str = "2026-01-05T10:00:00.000000Z") -> dict[str, str]:
    """The headers KServe's logger sends (sdk-go's binary encoding writes them as Ce-Xxx)."""
    return {"Ce-Specversion": "1.0", "Ce-Id": ce_id, "Ce-Type": kind, "Ce-Source": "http://localhost:9081/",
            "Ce-Time": time, "Ce-Inferenceservicename": "sklearn-iris", "Ce-Namespace": "kserve-test",
            "Ce-Component": "predictor", "Ce-Endpoint": "sklearn-iris-predictor-default", "Ce-Metadata": "{}",
            "Content-Type": "application/json"}


def structured(ce_id: str, kind: str, data) -> dict:
    return {"specversion": "1.0", "id": ce_id, "type": kind, "source": "http://localhost:9081/",
            "time": "2026-01-05T10:00:00Z", "datacontenttype": "application/json",
            "inferenceservicename": "sklearn-iris", "namespace": "kserve-test", "component": "predictor",
            "endpoint": "default", "data": data}


class Logger:
    """Posts events to one running receiver, as the logger would."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url, self.session = url, session

    async def binary(self, ce_id: str, kind: str, payload, **headers) -> tuple[int, dict]:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        async with self.session.post(self.url, data=body, headers={**binary_headers(ce_id, kind), **headers}) as r:
            return r.status, await r.json()

    async def structured(self, event, content_type: str = "application/cloudevents+json") -> tuple[int, dict]:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        async with self.session.post(self.url, data=body, headers={"Content-Type": content_type}) as r:
            return r.status, await r.json()


@pytest.fixture
async def receiver():
    made = []

    async def make(sink: InMemorySink, **config):
        telemetry = SelfTelemetry()
        component = KServeReceiver(KServeReceiverConfig(endpoint="127.0.0.1:0", **config),
                                   Settings(ComponentId("kserve"), telemetry), {Signal.TRACES: sink})
        await component.start()
        session = aiohttp.ClientSession()
        made.append((component, session))
        return component, Logger(f"http://127.0.0.1:{component.port}/", session)

    yield make
    for component, session in made:
        await session.close()
        await component.shutdown()


def spans(sink: InMemorySink) -> list[dict]:
    return [as_dict(s.attributes) for s in sink.spans()]


async def test_a_binary_mode_v2_pair_is_one_prediction_span_per_row_with_the_logger_s_resource(receiver):
    sink = InMemorySink()
    component, logger = await receiver(sink)
    assert await logger.binary("4f5c", REQUEST, IRIS_V2_REQUEST) == (200, {})
    assert sink.batches == []  # waiting for its response
    assert await logger.binary("4f5c", RESPONSE, IRIS_V2_RESPONSE,
                               **{"Ce-Time": "2026-01-05T10:00:00.012500Z"}) == (200, {})
    (resource_spans,) = sink.batches[0].message.resource_spans
    assert as_dict(resource_spans.resource.attributes) == {
        "service.name": "sklearn-iris", v.K8S_NAMESPACE: "kserve-test", v.KSERVE_COMPONENT: "predictor",
        v.KSERVE_ENDPOINT: "sklearn-iris-predictor-default"}
    assert spans(sink) == [
        {v.MODEL_NAME: "sklearn-iris", v.PREDICTION_ID: "4f5c-0", "ml.feature.input-0.0": 6.8,
         "ml.feature.input-0.1": 2.8, "ml.feature.input-0.2": 4.8, "ml.feature.input-0.3": 1.4,
         v.PREDICTION_LABEL: "1"},
        {v.MODEL_NAME: "sklearn-iris", v.PREDICTION_ID: "4f5c-1", "ml.feature.input-0.0": 6.0,
         "ml.feature.input-0.1": 3.4, "ml.feature.input-0.2": 4.5, "ml.feature.input-0.3": 1.6,
         v.PREDICTION_LABEL: "2"}]
    # timed from the request event's ce-time to the response's
    assert {s.end_time_unix_nano - s.start_time_unix_nano for s in sink.spans()} == {12_500_000}
    assert component.status()["events"] == {"waiting": 1, "paired": 1} and component.status()["waiting"] == 0


async def test_a_structured_mode_v1_pair_out_of_order_is_paired_and_named_by_the_event_id(receiver):
    sink = InMemorySink()
    component, logger = await receiver(sink, payloads={"feature_names": {"instances": ["sl", "sw", "pl", "pw"]}})
    assert (await logger.structured(structured("e-9", RESPONSE, IRIS_V1_RESPONSE)))[0] == 200
    assert (await logger.structured(structured("e-9", REQUEST, IRIS_V1_REQUEST)))[0] == 200
    rows = spans(sink)
    assert [r[v.PREDICTION_ID] for r in rows] == ["e-9-0", "e-9-1"]
    assert rows[0]["ml.feature.sl"] == 6.8 and rows[1]["ml.feature.pw"] == 1.6
    assert [r[v.PREDICTION_LABEL] for r in rows] == ["1", "1"]


async def test_structured_data_base64_and_data_as_a_json_string_are_read(receiver):
    import base64

    sink = InMemorySink()
    component, logger = await receiver(sink)
    request = structured("b", REQUEST, None)
    del request["data"]
    request["data_base64"] = base64.b64encode(json.dumps(IRIS_V1_REQUEST).encode()).decode()
    assert (await logger.structured(request))[0] == 200
    assert (await logger.structured(structured("b", RESPONSE, json.dumps(IRIS_V1_RESPONSE))))[0] == 200
    assert len(spans(sink)) == 2


async def test_duplicates_are_answered_200_counted_and_never_delivered_twice(receiver):
    sink = InMemorySink()
    component, logger = await receiver(sink)
    for kind in (REQUEST, REQUEST, RESPONSE, RESPONSE, REQUEST):
        assert (await logger.binary("d1", kind, IRIS_V2_REQUEST if kind == REQUEST else IRIS_V2_RESPONSE))[0] == 200
    assert len(spans(sink)) == 2
    assert component.status()["events"] == {"waiting": 1, "duplicate": 3, "paired": 1}
    assert component.status()["waiting"] == 0  # a late duplicate does not wait for a partner


async def test_an_unpaired_request_expires_and_is_counted(receiver):
    sink = InMemorySink()
    component, logger = await receiver(sink, pair_timeout="200ms")
    await logger.binary("lonely", REQUEST, IRIS_V2_REQUEST)
    assert await async_wait_for(lambda: component.status()["events"].get("expired") == 1, timeout=5)
    assert component.status()["waiting"] == 0 and component.status()["waiting_bytes"] == 0
    await logger.binary("lonely", RESPONSE, IRIS_V2_RESPONSE)  # too late: it waits in its turn, alone
    assert sink.batches == [] and component.status()["waiting"] == 1


async def test_past_max_pending_the_oldest_half_pair_is_dropped_and_counted(receiver):
    sink = InMemorySink()
    component, logger = await receiver(sink, max_pending=2)
    for ce_id in ("a", "b", "c"):
        await logger.binary(ce_id, REQUEST, IRIS_V2_REQUEST)
    assert component.status()["events"]["evicted"] == 1 and component.status()["waiting"] == 2
    await logger.binary("a", RESPONSE, IRIS_V2_RESPONSE)  # its request went: this one waits, b's goes
    assert sink.batches == [] and component.status()["events"]["evicted"] == 2
    await logger.binary("c", RESPONSE, IRIS_V2_RESPONSE)
    assert len(spans(sink)) == 2 and component.status()["waiting"] == 1  # a's response


async def test_a_refusing_pipeline_gets_503_and_the_resent_event_pairs_again(receiver):
    sink = InMemorySink(fail_next=[RefusedError("queue full", retry_after=3)])
    component, logger = await receiver(sink)
    await logger.binary("r", REQUEST, IRIS_V2_REQUEST)
    async with logger.session.post(logger.url, data=json.dumps(IRIS_V2_RESPONSE),
                                   headers=binary_headers("r", RESPONSE)) as answer:
        assert answer.status == 503 and answer.headers["Retry-After"] == "3"
        assert "queue full" in (await answer.json())["error"]
    assert await logger.binary("r", RESPONSE, IRIS_V2_RESPONSE) == (200, {})
    assert len(spans(sink)) == 2 and sink.calls == 2


@pytest.mark.parametrize("change, field", [
    ({"Ce-Id": ""}, "ce-id"),
    ({"Ce-Type": "com.example.other"}, "ce-type"),
    ({"Ce-Specversion": "0.3"}, "ce-specversion"),
    ({"Ce-Source": ""}, "ce-source"),
])
async def test_a_malformed_binary_event_is_400_naming_the_header(receiver, change, field):
    sink = InMemorySink()
    component, logger = await receiver(sink)
    headers = {**binary_headers("m", REQUEST), **change}
    headers = {k: h for k, h in headers.items() if h}
    async with logger.session.post(logger.url, data=json.dumps(IRIS_V2_REQUEST), headers=headers) as answer:
        assert answer.status == 400
        assert (await answer.json())["error"].startswith(field + ": ")
    assert component.status()["events"] == {"malformed": 1}


async def test_bodies_that_cannot_be_read_are_400_naming_the_field_and_the_receiver_keeps_serving(receiver):
    sink = InMemorySink()
    component, logger = await receiver(sink)
    status, body = await logger.binary("x", REQUEST, b"not json")
    assert status == 400 and body["error"].startswith("data: ")
    status, body = await logger.binary("x", REQUEST, b"[" * 100_000 + b"]" * 100_000)  # past json's depth
    assert status == 400 and body["error"].startswith("data: ")
    status, body = await logger.structured(b"{")
    assert status == 400 and body["error"].startswith("body: ")
    event = structured("x", REQUEST, IRIS_V2_REQUEST)
    del event["data"]
    status, body = await logger.structured(event)
    assert status == 400 and body["error"].startswith("data: missing")
    status, body = await logger.structured([event], "application/cloudevents-batch+json")
    assert status == 415
    # a payload whose shape does not match its data is found once paired: 400, counted, skipped
    bad = {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3]}]}
    assert (await logger.binary("bad", REQUEST, bad))[0] == 200
    status, body = await logger.binary("bad", RESPONSE, IRIS_V2_RESPONSE)
    assert status == 400 and body["error"].startswith("data.inputs[0].data: holds 3 values")
    assert component.status()["events"]["payload_shape"] == 1
    # and the next good pair goes through
    await logger.binary("ok", REQUEST, IRIS_V2_REQUEST)
    await logger.binary("ok", RESPONSE, IRIS_V2_RESPONSE)
    assert len(spans(sink)) == 2


async def test_an_event_over_the_size_limit_is_413(receiver):
    sink = InMemorySink()
    component, logger = await receiver(sink, max_request_body_size=1000)
    big = {"instances": [[1.0] * 300]}
    status, body = await logger.binary("big", REQUEST, big)
    assert status == 413 and "max_request_body_size" in body["error"]

    async def chunks():  # sent without a Content-Length
        yield json.dumps(big).encode()

    async with logger.session.post(logger.url, data=chunks(), headers=binary_headers("big2", REQUEST)) as answer:
        assert answer.status == 413
    assert component.status()["events"] == {"too_large": 2}


async def test_vigil_runs_the_receiver_from_config_and_exports_the_predictions(tmp_path: Path):
    out = tmp_path / "traces.jsonl"
    config = {"receivers": {"kserve": {"endpoint": "127.0.0.1:0",
                                       "payloads": {"classes": ["setosa", "versicolor", "virginica"],
                                                    "embedding_min_width": 4}}},
              "exporters": {"file": {"path": str(out)}},
              "service": {"pipelines": {"traces": {"receivers": ["kserve"], "exporters": ["file"]}}}}
    async with running_vigil(config) as vigil:
        url = f"http://127.0.0.1:{vigil.receiver('kserve').port}/"
        response = {"outputs": [{"name": "probabilities", "shape": [2, 3], "datatype": "FP32",
                                 "data": [0.9, 0.05, 0.05, 0.1, 0.7, 0.2]}]}
        async with aiohttp.ClientSession() as session:
            logger = Logger(url, session)
            await logger.binary("v", REQUEST, IRIS_V2_REQUEST)
            assert await logger.binary("v", RESPONSE, response) == (200, {})
        assert await async_wait_for(lambda: read_json_lines(out))
    (span, _) = [s for line in read_json_lines(out) for rs in line["resourceSpans"]
                 for ss in rs["scopeSpans"] for s in ss["spans"]]
    attributes = {a["key"]: a["value"] for a in span["attributes"]}
    assert attributes[v.MODEL_NAME] == {"stringValue": "sklearn-iris"}
    assert len(attributes[v.EMBEDDING]["arrayValue"]["values"]) == 4
    assert [c["stringValue"] for c in attributes[v.MODEL_CLASSES]["arrayValue"]["values"]] == [
        "setosa", "versicolor", "virginica"]


async def test_the_ml_processor_sees_drift_in_a_kserve_model_s_inputs_with_no_app_change(tmp_path: Path):
    import numpy as np

    config = {"receivers": {"kserve": {"endpoint": "127.0.0.1:0",
                                       "payloads": {"feature_names": {"input-0": ["sl", "sw", "pl", "pw"]}}}},
              "processors": {"ml": {"reference": {"warmup": 200}, "window": {"size": 200, "min_size": 100}}},
              "exporters": {"file": {"path": str(tmp_path / "traces.json")},
                            "file/metrics": {"path": str(tmp_path / "metrics.json")}},
              "service": {"state_dir": str(tmp_path / "state"),
                          "pipelines": {"traces": {"receivers": ["kserve"], "processors": ["ml"],
                                                   "exporters": ["file"]},
                                        "metrics": {"receivers": ["ml"], "exporters": ["file/metrics"]}}}}
    rng = np.random.default_rng(7)

    def call(shift: float) -> tuple[dict, dict]:
        x = rng.normal([5.8, 3.0, 3.8, 1.2], 0.4, size=(50, 4)) + [shift, 0, 0, 0]
        labels = (x[:, 2] > 3.8).astype(int)
        return ({"inputs": [{"name": "input-0", "shape": [50, 4], "datatype": "FP32", "data": x.ravel().tolist()}]},
                {"outputs": [{"name": "output-0", "shape": [50], "datatype": "INT32", "data": labels.tolist()}]})

    async with running_vigil(config) as vigil, aiohttp.ClientSession() as session:
        logger = Logger(f"http://127.0.0.1:{vigil.receiver('kserve').port}/", session)
        for i, shift in enumerate([0.0] * 4 + [3.0] * 5):
            request, response = call(shift)
            await logger.binary(f"c{i}", REQUEST, request)
            assert await logger.binary(f"c{i}", RESPONSE, response) == (200, {})

        async def health() -> dict:
            async with session.get(vigil.admin_url("/api/v1/models/sklearn-iris/health")) as answer:
                return await answer.json()

        deadline = asyncio.get_running_loop().time() + 20
        while (await health())["status"] == "ok" and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        body = await health()  # one of the five columns (four features, the label) moved: degraded
        assert (body["status"], body["reasons"]) == ("degraded", ["feature drift: sl (1 of 5 columns)"]), body
        async with session.get(vigil.admin_url("/api/v1/models")) as answer:
            (model,) = [m for m in (await answer.json())["models"] if m["model"] == "sklearn-iris"]
        assert model["requests"] == 450


def test_a_wrong_role_or_key_in_the_config_is_refused_with_its_path():
    from agent import config as config_module

    def problems(kserve: dict) -> list[str]:
        raw = {"receivers": {"kserve": kserve}, "exporters": {"debug": {}},
               "service": {"pipelines": {"traces": {"receivers": ["kserve"], "exporters": ["debug"]}}}}
        with pytest.raises(config_module.ConfigError) as caught:
            config_module.from_dict(raw, "<test>")
        return caught.value.problems

    wrong_role = problems({"payloads": {"outputs": {"y": "class"}}})
    assert any(p.startswith("receivers.kserve.payloads.outputs.y:") for p in wrong_role)
    assert any(p.startswith("receivers.kserve.pair_timeout:") for p in problems({"pair_timeout": "0s"}))
    assert any(p.startswith("receivers.kserve.payload:") for p in problems({"payload": {}}))


async def test_the_logger_s_content_type_is_whatever_the_client_sent_and_the_body_is_still_read(receiver):
    sink = InMemorySink()
    component, logger = await receiver(sink)
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d @iris-input.json` sends
    await logger.binary("f", REQUEST, IRIS_V1_REQUEST, **form)
    assert await logger.binary("f", RESPONSE, IRIS_V1_RESPONSE, **form) == (200, {})
    assert len(spans(sink)) == 2


def test_the_user_doc_s_kserve_config_loads():
    import re

    import yaml

    from agent import config as config_module

    text = (Path(__file__).resolve().parents[3] / "docs" / "inference-servers.md").read_text()
    section = text[text.index("## KServe's inference logger"):]
    raw = yaml.safe_load(re.findall(r"```yaml\n(.*?)```", section, re.S)[0])
    raw["exporters"] = {"otlp": {"endpoint": "127.0.0.1:4317"}}
    loaded = config_module.from_dict(raw, "docs/inference-servers.md")
    kserve = loaded.component(Kind.RECEIVER, ComponentId("kserve")).config
    assert kserve.payloads.classes == ["setosa", "versicolor", "virginica"] and kserve.pair_timeout == 30.0


async def test_an_https_logger_url_is_served_with_tls(receiver, certs):
    sink = InMemorySink()
    component, logger = await receiver(sink, tls={"cert_file": str(certs["server.pem"]),
                                                  "key_file": str(certs["server.key"])})
    logger.url = logger.url.replace("http://", "https://")
    context = client_context(certs, with_cert=False)
    for kind, payload in ((REQUEST, IRIS_V2_REQUEST), (RESPONSE, IRIS_V2_RESPONSE)):
        async with logger.session.post(logger.url, data=json.dumps(payload), headers=binary_headers("t", kind),
                                       ssl=context) as answer:
            assert answer.status == 200
    assert len(spans(sink)) == 2
    with pytest.raises(aiohttp.ClientError):  # plaintext to the TLS port
        await Logger(logger.url.replace("https://", "http://"), logger.session).binary("p", REQUEST, IRIS_V2_REQUEST)


async def test_with_unpaired_requests_features_a_request_alone_becomes_a_features_only_prediction(receiver):
    sink = InMemorySink()
    component, logger = await receiver(sink, pair_timeout="200ms", unpaired_requests="features")
    await logger.binary("only", REQUEST, IRIS_V2_REQUEST)  # logger.mode: request
    await logger.binary("resp", RESPONSE, IRIS_V2_RESPONSE)  # a response alone has nothing to show
    # The two came a moment apart, so a sweep may expire (and deliver) the request before the response.
    assert await async_wait_for(lambda: component.status()["events"].get("unpaired_delivered") == 1
                                and component.status()["events"].get("expired") == 2, timeout=5)
    rows = spans(sink)
    assert [r[v.PREDICTION_ID] for r in rows] == ["only-0", "only-1"]
    assert rows[0]["ml.feature.input-0.0"] == 6.8 and not any(k.startswith("ml.prediction.l") for k in rows[0])
    assert component.status()["events"]["expired"] == 2 and component.status()["waiting"] == 0


async def test_an_unpaired_request_the_pipelines_refuse_is_dropped_and_counted(receiver):
    sink = InMemorySink(fail_next=[RefusedError("queue full")])
    component, logger = await receiver(sink, pair_timeout="100ms", unpaired_requests="features")
    await logger.binary("only", REQUEST, IRIS_V2_REQUEST)
    assert await async_wait_for(lambda: component.status()["events"].get("unpaired_refused") == 1, timeout=5)
    assert sink.batches == [] and sink.calls == 1
