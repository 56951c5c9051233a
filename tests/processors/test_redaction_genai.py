"""config/examples/redaction-genai.yaml, run as written by `vigil run`, with an OpenTelemetry SDK app's
GenAI and prediction telemetry: what reaches the OTLP backend has no e-mail address, card number or
API key left in gen_ai.input.messages / gen_ai.output.messages, ml.feature.* strings or log bodies,
and everything else as the app sent it. And its redaction processor on what OpenLLMetry's real
instrumentation of the openai client sends."""

from __future__ import annotations

import asyncio
import json
import signal

import yaml

from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from agent import attributes
from agent.signals import Signal
from tests.conftest import async_wait_for, free_port, otlp_receiver_config, read_json_lines, running_vigil
from tests.exporters.backends import grpc_backend
from tests.otlp_json_reading import attributes_of, items
from tests.receivers.inference_proxy.test_real_clients import instrumented_client
from tests.servers.openai_standin import MODEL, REPLY, openai_standin
from tests.vigil_cli import REPO, clean_env, vigil_run

CONFIG = REPO / "config" / "examples" / "redaction-genai.yaml"

EMAIL, CARD, AMEX = "jane.doe@example.co.uk", "4111 1111 1111 1111", "3782-822463-10005"
OPENAI_KEY, AWS_KEY = "sk-proj-Ab3dEf6hIj9kLmN0pQrStUvWxYz", "AKIAIOSFODNN7EXAMPLE"
SECRETS = (EMAIL, CARD, AMEX, OPENAI_KEY, AWS_KEY, "jane.doe@", "4111", "sk-proj", "AKIA")


def _messages(text: str, role: str) -> str:
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}])


PROMPT = f"I am {EMAIL}; my card is {CARD} (or Amex {AMEX}). Use key {OPENAI_KEY} and {AWS_KEY}."
ANSWER = f"Thanks! I will e-mail {EMAIL} a receipt for the card ending 1111."


def _send(endpoint: str) -> None:
    """What a GenAI app and a model server send: a chat span, a prediction span, a prompt log record."""
    resource = Resource.create({"service.name": "support-bot"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
    tracer = tracer_provider.get_tracer("opentelemetry.instrumentation.openai")
    with tracer.start_as_current_span("chat gpt-4o", attributes={
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
            "gen_ai.input.messages": _messages(PROMPT, "user"), "gen_ai.output.messages": _messages(ANSWER, "assistant"),
            "gen_ai.usage.input_tokens": 42, "gen_ai.usage.output_tokens": 17, "openai.api_key": "whatever-it-is"}):
        pass
    with tracer.start_as_current_span("predict", attributes={
            "ml.model.name": "fraud", "ml.model.version": "v3", "ml.prediction.label": "ok",
            "ml.feature.email": EMAIL, "ml.feature.card": CARD.replace(" ", ""), "ml.feature.amount": 12.5,
            "ml.feature.country": "NZ"}):
        pass
    tracer_provider.shutdown()
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=endpoint,
                                                                                      insecure=True)))
    logger_provider.get_logger("support-bot").emit(body=f"prompt: {PROMPT}", attributes={"user.email": EMAIL})
    logger_provider.shutdown()


def _items(backend, signal_: Signal) -> list:
    found = []
    for call in backend.ok_calls(signal_):
        for resource in (call.message.resource_spans if signal_ is Signal.TRACES else call.message.resource_logs):
            for scope in (resource.scope_spans if signal_ is Signal.TRACES else resource.scope_logs):
                found += list(scope.spans if signal_ is Signal.TRACES else scope.log_records)
    return found


async def test_the_shipped_genai_redaction_config_masks_what_it_promises(tmp_path):
    grpc_port, admin_port = free_port(), free_port()
    async with grpc_backend() as backend:
        env = clean_env(OTLP_GRPC_ENDPOINT=f"127.0.0.1:{grpc_port}", OTLP_HTTP_ENDPOINT="127.0.0.1:0",
                        OTLP_BACKEND=backend.endpoint, VIGIL_ADMIN_ENDPOINT=f"127.0.0.1:{admin_port}")
        with vigil_run(["-c", str(CONFIG)], tmp_path, env) as vigil:
            await asyncio.to_thread(vigil.wait_running)
            await asyncio.to_thread(_send, f"127.0.0.1:{grpc_port}")
            assert await async_wait_for(lambda: len(_items(backend, Signal.TRACES)) >= 2
                                        and _items(backend, Signal.LOGS), 15), vigil.stderr()
            vigil.proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(vigil.proc.wait, 30) == 0, vigil.stderr()

    spans = {span.name: attributes.as_dict(span.attributes) for span in _items(backend, Signal.TRACES)}
    assert set(spans) == {"chat gpt-4o", "predict"}
    chat, predict = spans["chat gpt-4o"], spans["predict"]
    assert json.loads(chat["gen_ai.input.messages"]) == [{"role": "user", "parts": [{"type": "text", "content":
                                                         "I am ****; my card is **** (or Amex ****). "
                                                         "Use key **** and ****."}]}]
    assert json.loads(chat["gen_ai.output.messages"])[0]["parts"][0]["content"] == \
        "Thanks! I will e-mail **** a receipt for the card ending 1111."
    assert chat["openai.api_key"] == "****"  # a key named as a secret: the whole value
    # What is not secret arrives as it was sent: the token counts, the model, the operation.
    assert (chat["gen_ai.usage.input_tokens"], chat["gen_ai.usage.output_tokens"]) == (42, 17)
    assert (chat["gen_ai.request.model"], chat["gen_ai.operation.name"]) == ("gpt-4o", "chat")
    assert chat["redaction.masked.count"] == 3
    assert predict == {"ml.model.name": "fraud", "ml.model.version": "v3", "ml.prediction.label": "ok",
                       "ml.feature.email": "****", "ml.feature.card": "****", "ml.feature.amount": 12.5,
                       "ml.feature.country": "NZ", "redaction.masked.count": 2}
    (record,) = _items(backend, Signal.LOGS)
    assert record.body.string_value == "prompt: I am ****; my card is **** (or Amex ****). Use key **** and ****."
    assert attributes.as_dict(record.attributes)["user.email"] == "****"
    exported = b"".join(call.message.SerializeToString() for call in backend.ok_calls())
    assert not [secret for secret in SECRETS if secret.encode() in exported]


async def test_openllmetry_prompts_and_completions_are_masked_by_the_shipped_redaction(tmp_path):
    """The real openai client, instrumented by OpenLLMetry, against the OpenAI stand-in, through the shipped
    config's redaction/genai processor (then ml, as the file has it): its prompt and completion attributes
    reach the exporter masked, the token usage as it was."""
    shipped = yaml.safe_load(CONFIG.read_text())["processors"]
    traces_file = tmp_path / "traces.json"
    config = {
        "receivers": {"otlp": otlp_receiver_config(grpc=False)},
        "processors": {"redaction/genai": shipped["redaction/genai"], "ml": {"interval": "1h"}},
        "exporters": {"file": {"path": str(traces_file)}},
        "service": {"state_dir": str(tmp_path / "state"), "pipelines": {
            "traces": {"receivers": ["otlp"], "processors": ["redaction/genai", "ml"], "exporters": ["file"]},
            "metrics": {"receivers": ["ml"], "exporters": ["file"]}}},
    }
    async with openai_standin() as server:
        async with running_vigil(config) as vigil:
            async with instrumented_client(f"{server.url}/v1", vigil.http_url("/v1/traces")) as client:
                await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}])
    lines = read_json_lines(traces_file)
    (span,) = [attributes_of(s.get("attributes")) for _, _, s in items(lines, "traces")]
    # OpenLLMetry 0.62.4 writes the conversation as the GenAI conventions' JSON messages.
    assert json.loads(span["gen_ai.input.messages"])[0]["parts"][0]["content"] == \
        "I am ****; my card is **** (or Amex ****). Use key **** and ****."
    assert json.loads(span["gen_ai.output.messages"])[0]["parts"][0]["content"] == " ".join(REPLY)
    assert span["gen_ai.usage.input_tokens"] > 0 and span["redaction.masked.count"] == 1
    text = traces_file.read_text()
    assert not [secret for secret in SECRETS if secret in text]
