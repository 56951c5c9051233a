import asyncio

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.conftest import otlp_receiver_config, read_json_lines, running_vigil


async def test_sdk_span_reaches_file(tmp_path):
    out = tmp_path / "traces.json"
    config = {
        "receivers": {"otlp": otlp_receiver_config()},
        "exporters": {"file": {"path": str(out)}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}}},
    }
    async with running_vigil(config) as vigil:
        def send():
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(
                OTLPSpanExporter(endpoint=vigil.grpc_endpoint(), insecure=True)))
            with provider.get_tracer("t").start_as_current_span("hello"):
                pass
            provider.shutdown()

        await asyncio.to_thread(send)
        assert vigil.counter("vigil_receiver_accepted_spans", transport="grpc") == 1
    lines = read_json_lines(out)
    assert lines[0]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] == "hello"
