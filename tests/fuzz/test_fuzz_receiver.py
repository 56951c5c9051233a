"""Fuzzing the running `otlp` receiver over real sockets, and the attribute limits' guarantees.

Hostile requests go to a receiver on 127.0.0.1:0 (in its own event loop, in a
thread) over HTTP and gRPC. Every answer must be a success or a 4xx /
INVALID_ARGUMENT carrying a google.rpc.Status with a message, never a 5xx or a
dropped connection; and once the fuzzing is over, valid data still arrives.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import threading

import grpc
import pytest
from google.rpc import status_pb2
from hypothesis import given, strategies as st

from agent import attributes
from agent.component import ComponentId, Settings
from agent.receivers.limits import AttributeLimits, AttributeLimitsConfig
from agent.receivers.otlp import OtlpReceiver, OtlpReceiverConfig
from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry
from tests.fuzz.conftest import cases, count
from tests.fuzz.test_fuzz_decoders import SIGNALS, VALID, mutated
from tests.otlp_data import traces
from tests.sink import InMemorySink

PATHS = {Signal.TRACES: "/v1/traces", Signal.METRICS: "/v1/metrics", Signal.LOGS: "/v1/logs"}


class ReceiverThread:
    """An otlp receiver running in an event loop of its own, so synchronous clients can hammer it."""

    def __init__(self) -> None:
        self.recorder = InMemorySink()  # counts each batch's items as it arrives: they must parse
        config = OtlpReceiverConfig.model_validate({
            "protocols": {"grpc": {"endpoint": "127.0.0.1:0"},
                          "http": {"endpoint": "127.0.0.1:0", "max_request_body_size": 64 * 1024}},
            "limits": {"max_attributes": 8, "max_attribute_value_length": 64, "max_array_length": 8}})
        self.receiver = OtlpReceiver(config, Settings(ComponentId("otlp"), SelfTelemetry()),
                                     {s: self.recorder for s in Signal})
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ReceiverThread:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self.loop).result(10)
        self.http = http.client.HTTPConnection("127.0.0.1", self.receiver.http_port, timeout=10)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.receiver.grpc_port}")
        return self

    def __exit__(self, *exc) -> None:
        self.http.close()
        self.channel.close()
        asyncio.run_coroutine_threadsafe(self.receiver.shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
        try:
            self.http.request("POST", path, body=body, headers=headers)
            response = self.http.getresponse()
            return response.status, response.getheader("Content-Type", ""), response.read()
        except (http.client.HTTPException, ConnectionError):
            self.http.close()  # the server closed the connection: open a new one, and say so
            raise


@pytest.fixture(scope="module")
def receiver():
    with ReceiverThread() as running:
        yield running
        # After everything the fuzzing sent, valid data still arrives.
        before = len(running.recorder.batches)
        status, _, _ = running.post("/v1/traces", traces(2).SerializeToString(),
                                    {"Content-Type": "application/x-protobuf"})
        running.channel.unary_unary(Signal.TRACES.grpc_method)(traces(2).SerializeToString(), timeout=5)
        assert status == 200 and len(running.recorder.batches) == before + 2


def check_error_body(status: int, content_type: str, body: bytes) -> None:
    assert status in (200, 400, 413, 415), status
    if status == 200:
        return
    if content_type.startswith("application/json"):
        from google.protobuf import json_format

        message = json_format.Parse(body.decode(), status_pb2.Status()).message
    else:
        message = status_pb2.Status.FromString(body).message
    assert message  # every refusal says what was wrong


@st.composite
def http_requests(draw):
    signal = draw(SIGNALS)
    kind = draw(st.sampled_from(["protobuf", "json", "random"]))
    if kind == "protobuf":
        body, content_type = draw(mutated(VALID[signal])), "application/x-protobuf"
    elif kind == "json":
        from agent import otlp_json
        from tests.fuzz.test_fuzz_decoders import valid_request

        body, content_type = draw(mutated(otlp_json.encode(valid_request(signal)).encode())), "application/json"
    else:
        body = draw(st.binary(max_size=300))
        content_type = draw(st.sampled_from(["application/x-protobuf", "application/json", "text/plain", "",
                                             "application/json; charset=utf-8"]))
    encoding = draw(st.sampled_from(["", "", "gzip", "gzip", "deflate", "br", "gzip, gzip"]))
    if encoding == "gzip" and draw(st.booleans()):
        body = gzip.compress(body)
        if draw(st.booleans()):
            body = draw(mutated(body))
    if draw(st.integers(0, 20)) == 0:
        body = gzip.compress(b"\x00" * 1_000_000) if encoding == "gzip" else b"\x0a" * 70_000  # bomb, oversized
    headers = {"Content-Type": content_type} if content_type else {}
    if encoding:
        headers["Content-Encoding"] = encoding
    return PATHS[signal], body, headers


@cases(700)
@given(http_requests())
def test_http_receiver_answers_hostile_requests_with_4xx_and_a_message(receiver, request):
    count("receiver: hostile HTTP requests")
    path, body, headers = request
    check_error_body(*receiver.post(path, body, headers))


@cases(400)
@given(SIGNALS, st.data())
def test_grpc_receiver_answers_hostile_requests_with_invalid_argument(receiver, signal, data):
    count("receiver: hostile gRPC requests")
    body = data.draw(st.one_of(mutated(VALID[signal]), st.binary(max_size=300)))
    try:
        receiver.channel.unary_unary(signal.grpc_method)(body, timeout=5)
    except grpc.RpcError as exc:
        assert exc.code() is grpc.StatusCode.INVALID_ARGUMENT, exc
        assert exc.details()


# --- the attribute limits' guarantees ---------------------------------------------------------------

ANY_VALUES = st.recursive(
    st.text(max_size=40) | st.binary(max_size=40) | st.integers(-2 ** 63, 2 ** 63 - 1) | st.booleans(),
    lambda children: st.lists(children, max_size=12) | st.dictionaries(st.text(max_size=5), children, max_size=6),
    max_leaves=15)


@cases(400)
@given(st.lists(st.tuples(st.text(max_size=6), ANY_VALUES), max_size=12), st.integers(0, 10), st.integers(0, 30),
       st.integers(0, 10))
def test_attribute_limits_hold_for_any_values(pairs, max_attributes, max_length, max_array):
    count("attribute limits: any values")
    request = traces(1)
    del request.resource_spans[0].resource.attributes[:]
    span = request.resource_spans[0].scope_spans[0].spans[0]
    del span.attributes[:]
    for key, value in pairs:
        attributes.set_any_value(span.attributes.add(key=key).value, value)
    before = len(span.attributes)
    batch = Batch(Signal.TRACES, wire=request.SerializeToString())
    limits = AttributeLimits(AttributeLimitsConfig(max_attributes=max_attributes,
                                                   max_attribute_value_length=max_length,
                                                   max_array_length=max_array))
    dropped, _ = limits.apply(batch)
    span = Batch(Signal.TRACES, wire=batch.wire()).message.resource_spans[0].scope_spans[0].spans[0]
    if max_attributes:
        assert len(span.attributes) == min(before, max_attributes)
        assert span.dropped_attributes_count == dropped == before - len(span.attributes)

    def check(value) -> None:
        kind = value.WhichOneof("value")
        if kind in ("string_value", "bytes_value") and max_length:
            assert len(getattr(value, kind)) <= max_length
        elif kind == "array_value":
            assert not max_array or len(value.array_value.values) <= max_array
            for v in value.array_value.values:
                check(v)
        elif kind == "kvlist_value":
            assert not max_array or len(value.kvlist_value.values) <= max_array
            for kv in value.kvlist_value.values:
                check(kv.value)

    for attribute in span.attributes:
        check(attribute.value)
