"""The `resource` processor: the Collector's insert/update/upsert/delete/from_attribute semantics."""

from __future__ import annotations

import pytest

from agent import attributes, otlp_json
from agent import config as config_module
from agent.component import ComponentId, Settings
from agent.processors import resource as resource_module
from agent.service import Service
from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry
from tests.conftest import otlp_receiver_config, read_json_lines, running_vigil
from tests.otlp_data import logs, metrics, send_grpc, traces
from tests.sink import InMemorySink


async def run(actions: list[dict], message, signal: Signal = Signal.TRACES, typed: bool = False) -> list[dict]:
    """Pass `message` through a resource processor; each resource's attributes as a dict, afterwards.

    With `typed`, each value comes with the AnyValue field that holds it (`int_value`, ...).
    """
    model = resource_module.FACTORY.config_model.model_validate({"attributes": actions})
    down = InMemorySink()
    processor = resource_module.FACTORY.create(model, Settings(ComponentId("resource"), SelfTelemetry()),
                                               signal, down)
    # Come in as wire bytes, as a receiver hands them on; read what goes out from its wire bytes.
    before = Batch(signal, wire=message.SerializeToString())
    items = before.items
    await processor.consume(before)
    (after,) = down.batches
    assert after.items == items
    out = signal.request_type.FromString(after.wire())
    resources = Batch(signal, out).resources()
    if typed:
        return [{kv.key: (kv.value.WhichOneof("value"), attributes.any_value(kv.value))
                 for kv in r.resource.attributes} for r in resources]
    return [attributes.as_dict(r.resource.attributes) for r in resources]


ORIGINAL = {"service.name": "svc-0", "host.id": 0}  # what tests.otlp_data puts on resource 0


async def test_insert_adds_only_when_absent():
    got = await run([{"key": "env", "value": "prod", "action": "insert"},
                     {"key": "service.name", "value": "other", "action": "insert"}], traces(1))
    assert got == [{**ORIGINAL, "env": "prod"}]


async def test_update_changes_only_when_present():
    got = await run([{"key": "service.name", "value": "renamed", "action": "update"},
                     {"key": "env", "value": "prod", "action": "update"}], traces(1))
    assert got == [{"service.name": "renamed", "host.id": 0}]


async def test_upsert_adds_or_changes():
    got = await run([{"key": "service.name", "value": "renamed", "action": "upsert"},
                     {"key": "env", "value": "prod", "action": "upsert"}], traces(1))
    assert got == [{"service.name": "renamed", "host.id": 0, "env": "prod"}]


async def test_delete_removes_and_ignores_missing_keys():
    got = await run([{"key": "host.id", "action": "delete"},
                     {"key": "not.there", "action": "delete"}], traces(1))
    assert got == [{"service.name": "svc-0"}]


async def test_from_attribute_copies_the_value_with_its_type():
    got = await run([{"key": "host.copy", "from_attribute": "host.id", "action": "insert"},
                     {"key": "service.name", "from_attribute": "host.id", "action": "update"},
                     {"key": "skipped", "from_attribute": "not.there", "action": "upsert"}], traces(1),
                    typed=True)
    assert got == [{"service.name": ("int_value", 0), "host.id": ("int_value", 0),
                    "host.copy": ("int_value", 0)}]


async def test_actions_apply_in_order():
    got = await run([{"key": "a", "value": "first", "action": "insert"},
                     {"key": "b", "from_attribute": "a", "action": "insert"},
                     {"key": "a", "action": "delete"}], traces(1))
    assert got == [{**ORIGINAL, "b": "first"}]


@pytest.mark.parametrize("signal,message", [(Signal.TRACES, traces(2, resources=3)),
                                            (Signal.METRICS, metrics(2, points=2, resources=3)),
                                            (Signal.LOGS, logs(2, resources=3))],
                         ids=lambda v: v.value if isinstance(v, Signal) else "")
async def test_every_resource_of_every_signal(signal, message):
    got = await run([{"key": "env", "value": "prod", "action": "upsert"}], message, signal)
    assert got == [{"service.name": f"svc-{i}", "host.id": i, "env": "prod"} for i in range(3)]


async def test_value_types_from_yaml_are_kept(tmp_path):
    out = tmp_path / "traces.json"
    text = f"""
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:0"}}
processors:
  resource:
    attributes:
      - {{key: replicas, value: 3, action: upsert}}
      - {{key: ratio, value: 0.25, action: upsert}}
      - {{key: canary, value: true, action: upsert}}
      - {{key: version, value: "3", action: upsert}}
      - {{key: env, value: prod, action: upsert}}
exporters:
  file: {{path: "{out}"}}
service:
  pipelines:
    traces: {{receivers: [otlp], processors: [resource], exporters: [file]}}
"""
    service = Service(config_module.parse(text))
    await service.start()
    try:
        port = service.graph.receivers[ComponentId("otlp")].grpc_port
        await send_grpc(f"127.0.0.1:{port}", Signal.TRACES, traces(2))
    finally:
        await service.shutdown()
    (line,) = out.read_text().splitlines()
    message = otlp_json.decode(Signal.TRACES, line)
    values = {kv.key: kv.value for kv in message.resource_spans[0].resource.attributes}
    assert values["replicas"].WhichOneof("value") == "int_value" and values["replicas"].int_value == 3
    assert values["ratio"].WhichOneof("value") == "double_value" and values["ratio"].double_value == 0.25
    assert values["canary"].WhichOneof("value") == "bool_value" and values["canary"].bool_value is True
    assert values["version"].WhichOneof("value") == "string_value" and values["version"].string_value == "3"
    assert values["env"].string_value == "prod"
    # The spans themselves are untouched.
    assert list(message.resource_spans[0].scope_spans) == list(traces(2).resource_spans[0].scope_spans)


async def test_a_pipeline_without_the_processor_sees_the_original(tmp_path):
    edited, plain = tmp_path / "edited.json", tmp_path / "plain.json"
    config = {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "processors": {"resource": {"attributes": [{"key": "host.id", "action": "delete"}]}},
        "exporters": {"file/edited": {"path": str(edited)}, "file/plain": {"path": str(plain)}},
        "service": {"pipelines": {
            "traces/edited": {"receivers": ["otlp"], "processors": ["resource"], "exporters": ["file/edited"]},
            "traces/plain": {"receivers": ["otlp"], "exporters": ["file/plain"]},
        }},
    }
    async with running_vigil(config) as vigil:
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(1))
    edited_attrs = read_json_lines(edited)[0]["resourceSpans"][0]["resource"]["attributes"]
    plain_attrs = read_json_lines(plain)[0]["resourceSpans"][0]["resource"]["attributes"]
    assert [a["key"] for a in edited_attrs] == ["service.name"]
    assert [a["key"] for a in plain_attrs] == ["service.name", "host.id"]


@pytest.mark.parametrize("action,message", [
    ({"key": "k", "action": "delete", "value": "v"}, "delete takes no value"),
    ({"key": "k", "action": "delete", "from_attribute": "x"}, "delete takes no value"),
    ({"key": "k", "action": "insert"}, "insert needs a value or from_attribute"),
    ({"key": "k", "action": "upsert"}, "upsert needs a value or from_attribute"),
    ({"key": "k", "action": "update", "value": "v", "from_attribute": "x"}, "not both"),
    ({"key": "k", "action": "rename", "value": "v"}, "action"),
])
def test_config_errors_name_the_action(action, message):
    config = {
        "receivers": {"otlp": otlp_receiver_config()},
        "processors": {"resource": {"attributes": [{"key": "ok", "value": 1, "action": "insert"}, action]}},
        "exporters": {"debug": {}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["resource"],
                                             "exporters": ["debug"]}}},
    }
    with pytest.raises(config_module.ConfigError) as error:
        config_module.from_dict(config)
    text = str(error.value)
    assert "processors.resource.attributes[1]" in text
    assert message in text
