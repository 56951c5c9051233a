"""The `otlp` receiver against hostile senders: huge or deep bodies, stalled and abandoned uploads and calls.

The receiver runs for real on 127.0.0.1:0 and feeds a recording consumer;
hostile clients are raw sockets (and, for gRPC, a raw HTTP/2 client,
`tests.http2`), so a test controls every byte and every pause; well-behaved
ones are aiohttp sessions and gRPC channels.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
import grpc
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2

from agent.component import ComponentId, Settings
from agent.errors import InvalidDataError
from agent.receivers.otlp import OtlpReceiver, OtlpReceiverConfig
from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry
from tests.conftest import async_wait_for
from tests.http2 import StallingClient
from tests.otlp_data import send_grpc, traces
from tests.sink import InMemorySink

PROTOBUF = {"Content-Type": "application/x-protobuf"}
PATHS = {Signal.TRACES: "/v1/traces", Signal.METRICS: "/v1/metrics", Signal.LOGS: "/v1/logs"}


async def start(http: dict | None = None, limits: dict | None = None, consumer=None, grpc: dict | None = None):
    telemetry = SelfTelemetry()
    recorder = consumer or InMemorySink()
    config = OtlpReceiverConfig.model_validate({
        "protocols": {"grpc": {"endpoint": "127.0.0.1:0", **(grpc or {})},
                      "http": {"endpoint": "127.0.0.1:0", **(http or {})}},
        "limits": limits or {}})
    receiver = OtlpReceiver(config, Settings(ComponentId("otlp"), telemetry), {s: recorder for s in Signal})
    await receiver.start()
    return receiver, recorder, telemetry


async def raw_request(port: int, headers: dict[str, str], body: bytes = b"", path: str = "/v1/traces"):
    """A connection with a POST's head (and `body`) written and nothing more: the test decides the rest."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": "127.0.0.1", **PROTOBUF, **headers}.items())
    writer.write(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + body)
    await writer.drain()
    return reader, writer


def logged(caplog) -> str:
    """What the receiver and aiohttp logged, without grpc's poller calling back into an earlier test's closed loop.

    Each test runs on a new event loop; grpc.aio's poller thread may still hold
    the previous one and log "Event loop is closed", which is about the test
    harness, not the request under test.
    """
    kept = [r for r in caplog.records if "PollerCompletionQueue" not in r.getMessage()]
    return "\n".join(caplog.handler.format(r) for r in kept)


async def read_response(reader: asyncio.StreamReader, timeout: float = 10) -> tuple[int, bytes, dict]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), timeout)
    return int(lines[0].split(" ", 2)[1]), body, headers


async def post_ok(receiver: OtlpReceiver, session: aiohttp.ClientSession) -> int:
    async with session.post(f"http://127.0.0.1:{receiver.http_port}/v1/traces",
                            data=traces(1).SerializeToString(), headers=PROTOBUF) as response:
        return response.status


# --- defect 5: deep JSON was a 500 with a RecursionError, and a 100-deep one a 400 as long as the document ---


def deep_json(signal: Signal, levels: int) -> bytes:
    """A request whose first item's first attribute is an array nested `levels` deep."""
    value = '{"arrayValue":{"values":[' * levels + '{"stringValue":"x"}' + "]}}" * levels
    attribute = '{"key":"k","value":' + value + "}"
    item = {Signal.TRACES: ('"scopeSpans":[{"spans":[{"name":"s","attributes":[', "]}]}]"),
            Signal.METRICS: ('"scopeMetrics":[{"metrics":[{"name":"m","gauge":{"dataPoints":[{"asInt":"1",'
                             '"attributes":[', "]}]}}]}]"),
            Signal.LOGS: ('"scopeLogs":[{"logRecords":[{"attributes":[', "]}]}]")}[signal]
    top = {Signal.TRACES: "resourceSpans", Signal.METRICS: "resourceMetrics", Signal.LOGS: "resourceLogs"}[signal]
    return (f'{{"{top}":[{{' + item[0] + attribute + item[1] + "}]}").encode()


@pytest.mark.parametrize("signal", list(Signal), ids=[s.value for s in Signal])
def test_the_deep_requests_are_json(signal):
    json.loads(deep_json(signal, 50))


@pytest.mark.parametrize("signal", list(Signal), ids=[s.value for s in Signal])
@pytest.mark.parametrize("levels", [50, 1_000, 100_000])
async def test_deeply_nested_json_is_a_short_400_on_every_signal(signal, levels, caplog):
    receiver, recorder, _ = await start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{receiver.http_port}{PATHS[signal]}",
                                    data=deep_json(signal, levels),
                                    headers={"Content-Type": "application/json"}) as response:
                status, answer = response.status, await response.read()
            assert await post_ok(receiver, session) == 200  # and it serves on
    finally:
        await receiver.shutdown()
    assert status == 400, answer
    error = json_format.Parse(answer, status_pb2.Status())
    assert error.code == code_pb2.INVALID_ARGUMENT
    assert "nested deeper than 100 messages" in error.message
    assert len(error.message) < 300 and error.message.count("arrayValue") <= 3, error.message
    assert "Traceback" not in logged(caplog) and "RecursionError" not in logged(caplog)
    assert len(recorder.batches) == 1


class Refuses:
    """A pipeline that refuses every batch with a very long message, as a processor might."""

    async def consume(self, batch: Batch) -> None:
        raise InvalidDataError("bad data: " + "x" * 100_000)


async def test_every_error_message_is_cut_short_on_both_protocols():
    receiver, _, _ = await start(consumer=Refuses())
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{receiver.http_port}/v1/traces",
                                    data=traces(1).SerializeToString(), headers=PROTOBUF) as response:
                assert response.status == 400
                message = status_pb2.Status.FromString(await response.read()).message
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await send_grpc(f"127.0.0.1:{receiver.grpc_port}", Signal.TRACES, traces(1))
    finally:
        await receiver.shutdown()
    assert message.startswith("bad data: xxx") and len(message) == 512 and message.endswith("...")
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT and len(info.value.details()) == 512


# --- defect 2: stalled uploads held every concurrency slot; a huge Content-Length waited for its body ---


async def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent():
    receiver, recorder, _ = await start(http={"max_request_body_size": 1_000_000})
    try:
        started = time.monotonic()
        reader, writer = await raw_request(receiver.http_port, {"Content-Length": "500000000"})
        status, answer, headers = await read_response(reader)
        took = time.monotonic() - started
        writer.close()
    finally:
        await receiver.shutdown()
    assert status == 413 and took < 1.0, (status, took)
    assert status_pb2.Status.FromString(answer).message == "request body larger than 1000000 bytes"
    # What the sender still sends is read and dropped for a few seconds (aiohttp's lingering close, as
    # nginx's), so that it sees this answer rather than a reset; then the connection closes.
    assert headers["connection"] == "close"
    assert recorder.batches == []


async def test_stalled_uploads_cannot_starve_well_behaved_senders():
    receiver, recorder, _ = await start(limits={"max_concurrent_requests": 4})
    stalled = []
    try:
        # Twice as many stalled uploads as the concurrency limit: headers and a little body, then nothing.
        for _ in range(8):
            stalled.append(await raw_request(receiver.http_port, {"Content-Length": "1000000"}, b"\x0a" * 100))
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as session:
            statuses = await asyncio.gather(*(post_ok(receiver, session) for _ in range(20)))
        await send_grpc(f"127.0.0.1:{receiver.grpc_port}", Signal.TRACES, traces(1))
    finally:
        for _, writer in stalled:
            writer.close()
        await receiver.shutdown()
    assert statuses == [200] * 20
    assert len(recorder.batches) == 21


async def test_a_body_not_received_within_read_timeout_is_answered_408_and_its_connection_closed():
    receiver, recorder, telemetry = await start(http={"read_timeout": "500ms"})
    try:
        started = time.monotonic()
        reader, writer = await raw_request(receiver.http_port, {"Content-Length": "1000"}, b"\x0a" * 10)
        status, answer, headers = await read_response(reader)
        took = time.monotonic() - started
        writer.close()
        # A slow sender that finishes in time is served.
        reader, writer = await raw_request(receiver.http_port, {"Content-Length": str(len(body := traces(2)
                                                                                         .SerializeToString()))})
        for i in range(0, len(body), 20):
            writer.write(body[i:i + 20])
            await asyncio.sleep(0.01)
        slow_status, _, _ = await read_response(reader)
        writer.close()
    finally:
        await receiver.shutdown()
    assert status == 408 and 0.5 <= took < 2.0, (status, took)
    error = status_pb2.Status.FromString(answer)
    assert error.code == code_pb2.DEADLINE_EXCEEDED
    assert error.message == "request body not received within 0.5 s (read_timeout)"
    assert headers["connection"] == "close"
    assert slow_status == 200 and [b.items for b in recorder.batches] == [2]
    assert telemetry.total("vigil_receiver_incomplete_requests", reason="read_timeout") == 1


# --- defect 12: one full traceback per client that disconnected mid-body ---


async def test_senders_that_disconnect_mid_body_are_counted_and_summed_up_in_one_line(caplog):
    caplog.set_level(logging.DEBUG)
    receiver, recorder, telemetry = await start()
    try:
        for _ in range(50):
            reader, writer = await raw_request(receiver.http_port, {"Content-Length": "100000"}, b"\x0a" * 500)
            await asyncio.sleep(0.005)
            writer.close()
        await asyncio.sleep(0.3)
        async with aiohttp.ClientSession() as session:
            assert await post_ok(receiver, session) == 200
    finally:
        await receiver.shutdown()
    assert telemetry.total("vigil_receiver_incomplete_requests", reason="disconnected") == 50
    assert "Traceback" not in logged(caplog) and "Error handling request" not in logged(caplog)
    lines = [r.getMessage() for r in caplog.records if "did not arrive whole" in r.getMessage()]
    # The first at once, the rest summed up (here: when the receiver stops, within the minute).
    assert lines == ["1 request(s) did not arrive whole: 1 over http, the sender went away",
                     "49 request(s) did not arrive whole: 49 over http, the sender went away"]
    assert len(recorder.batches) == 1


# --- defect 3: partial gRPC messages were buffered without limit ---------------------------------------


async def stalled_calls(receiver: OtlpReceiver, calls: int, connections: int = 1) -> list[StallingClient]:
    """`calls` gRPC calls on each of `connections` connections (one after another), each sending half of a
    200 kB message."""
    clients = []
    for _ in range(connections):
        client = await StallingClient("127.0.0.1", receiver.grpc_port, Signal.TRACES.grpc_method).connect()
        await client.start_calls(calls, 200_000, 100_000, patience=0.3)
        clients.append(client)
    return clients


async def test_grpc_calls_waiting_for_their_message_are_bounded_the_longest_waiting_cancelled():
    receiver, recorder, telemetry = await start(grpc={"max_receiving_calls": 4})
    try:
        clients = await stalled_calls(receiver, 1, connections=6)  # 6 stalled calls: 2 too many

        def evictions() -> tuple[float, int]:
            return (telemetry.total("vigil_receiver_incomplete_requests", reason="evicted"),
                    sum(len(c.reset) for c in clients))

        # Both sides of an eviction (the counter, the client's reset) come when the loop gets to them.
        await async_wait_for(lambda: evictions() == (2, 2), timeout=10)
        evicted, reset = evictions()
        # A well-behaved call still gets through: it makes room by cancelling the longest waiting.
        await send_grpc(f"127.0.0.1:{receiver.grpc_port}", Signal.TRACES, traces(2))
        evicted_after = telemetry.total("vigil_receiver_incomplete_requests", reason="evicted")
        for c in clients:
            await c.close()
    finally:
        await receiver.shutdown()
    assert (evicted, reset) == (2, 2)
    assert evicted_after == 3
    assert [b.items for b in recorder.batches] == [2]


async def test_a_grpc_call_whose_message_does_not_arrive_within_read_timeout_is_cancelled():
    receiver, recorder, telemetry = await start(grpc={"read_timeout": "500ms"})
    try:
        started = time.monotonic()
        (client,) = await stalled_calls(receiver, 3)
        while len(client.reset) < 3 and time.monotonic() - started < 5:
            await asyncio.sleep(0.05)
        took = time.monotonic() - started
        await client.close()
        await send_grpc(f"127.0.0.1:{receiver.grpc_port}", Signal.TRACES, traces(1))
    finally:
        await receiver.shutdown()
    assert client.reset == {1, 3, 5} and 0.5 <= took < 2.0, (client.reset, took)
    assert telemetry.total("vigil_receiver_incomplete_requests", transport="grpc", reason="read_timeout") == 3
    assert [b.items for b in recorder.batches] == [1]


async def test_grpc_streams_per_connection_are_limited_by_default():
    receiver, _, _ = await start(grpc={"max_receiving_calls": 0})  # only the streams' limit, here
    try:
        (client,) = await stalled_calls(receiver, 105)
        await client.close()
    finally:
        await receiver.shutdown()
    assert len(client.reset) == 5  # refused by HTTP/2 past max_concurrent_streams (100)


async def test_malformed_http_is_answered_400_and_summed_up_not_logged_with_a_traceback_each(caplog):
    receiver, recorder, telemetry = await start()
    answers = []
    try:
        for head, body in [({"Transfer-Encoding": "chunked"}, b"zz\r\nxx\r\n0\r\n\r\n"),  # not a chunk size
                           ({"X-Long": "x" * 10_000}, b""),  # a header over aiohttp's 8190 bytes
                           ({"Content-Length": "-5"}, b"")] * 10:
            reader, writer = await raw_request(receiver.http_port, head, body)
            answers.append((await read_response(reader))[0])
            writer.close()
        async with aiohttp.ClientSession() as session:
            assert await post_ok(receiver, session) == 200
    finally:
        await receiver.shutdown()
    assert answers == [400] * 30
    assert telemetry.total("vigil_receiver_incomplete_requests", reason="malformed") == 30
    assert "Traceback" not in logged(caplog) and "Error handling request" not in logged(caplog)
    lines = [r.getMessage() for r in caplog.records if "did not arrive whole" in r.getMessage()]
    assert lines == ["1 request(s) did not arrive whole: 1 over http, not valid HTTP (answered 400)",
                     "29 request(s) did not arrive whole: 29 over http, not valid HTTP (answered 400)"]
