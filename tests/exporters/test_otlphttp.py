"""The `otlphttp` exporter end to end: Vigil's OTLP receiver → exporter → a real aiohttp backend."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time

import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2

from agent import otlp_json
from agent.signals import Signal
from tests.conftest import async_wait_for, otlp_receiver_config, running_vigil
from tests.exporters.backends import FAST_RETRY, HttpReply, http_backend, partial_success_response, reserve_port
from tests.otlp_data import item_names, request, send_grpc, send_span_batches, trace_id, traces


def exporter(endpoint: str | None, **extra) -> dict:
    config = {"retry_on_failure": FAST_RETRY, **extra}
    if endpoint:
        config["endpoint"] = endpoint
    return config


def vigil_config(exporter_config: dict, signals=(Signal.TRACES,)) -> dict:
    return {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "exporters": {"otlphttp": exporter_config},
        "service": {"pipelines": {s.value: {"receivers": ["otlp"], "exporters": ["otlphttp"]}
                                  for s in signals}},
    }


def counter(vigil, what: str, signal: Signal = Signal.TRACES) -> float:
    return vigil.counter(f"vigil_exporter_{what}_{signal.item_name}", exporter="otlphttp")


async def test_each_signal_is_posted_to_its_path_under_the_endpoint():
    bodies = {s: request(s, 3).SerializeToString() for s in Signal}
    async with http_backend() as backend:
        config = vigil_config(exporter(backend.url("/otlp/")), signals=list(Signal))
        async with running_vigil(config) as vigil:
            for signal, body in bodies.items():
                await send_grpc(vigil.grpc_endpoint(), signal, body)
            assert await async_wait_for(lambda: len(backend.requests) == 3)
            for signal in Signal:
                assert await async_wait_for(lambda: counter(vigil, "sent", signal) == 3)
    by_path = {r.path: r for r in backend.requests}
    assert set(by_path) == {"/otlp/v1/traces", "/otlp/v1/metrics", "/otlp/v1/logs"}
    for signal, body in bodies.items():
        got = by_path[f"/otlp/v1/{signal.value}"]
        assert got.method == "POST"
        assert got.headers["Content-Type"] == "application/x-protobuf"
        assert got.body == body


async def test_per_signal_endpoint_overrides_the_base():
    async with http_backend() as backend:
        config = vigil_config(exporter(backend.url("/base"), traces_endpoint=backend.url("/custom/spans")),
                              signals=[Signal.TRACES, Signal.METRICS])
        async with running_vigil(config) as vigil:
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, request(Signal.TRACES, 1))
            await send_grpc(vigil.grpc_endpoint(), Signal.METRICS, request(Signal.METRICS, 1))
            assert await async_wait_for(lambda: len(backend.requests) == 2)
    assert sorted(r.path for r in backend.requests) == ["/base/v1/metrics", "/custom/spans"]


@pytest.mark.parametrize("signal", list(Signal), ids=lambda s: s.value)
async def test_json_encoding(signal):
    sent = request(signal, 3)
    async with http_backend() as backend:
        config = vigil_config(exporter(backend.url(), encoding="json"), signals=[signal])
        async with running_vigil(config) as vigil:
            await send_grpc(vigil.grpc_endpoint(), signal, sent)
            assert await async_wait_for(lambda: backend.ok_requests())
            assert await async_wait_for(lambda: counter(vigil, "sent", signal) == 3)
    got = backend.requests[0]
    assert got.headers["Content-Type"] == "application/json"
    assert otlp_json.decode(signal, got.body) == sent
    if signal is not Signal.METRICS:  # spans and log records carry ids, written as hex
        assert trace_id(0).hex() in got.body.decode()


@pytest.mark.parametrize("compression", ["gzip", "none"])
async def test_compression(compression):
    body = traces(20, payload="feature vector " * 50).SerializeToString()
    async with http_backend() as backend:
        config = vigil_config(exporter(backend.url(), compression=compression))
        async with running_vigil(config) as vigil:
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, body)
            assert await async_wait_for(lambda: backend.ok_requests())
    got = backend.requests[0]
    assert got.body == body
    if compression == "gzip":
        assert got.headers["Content-Encoding"] == "gzip"
        assert got.raw[:2] == b"\x1f\x8b" and len(got.raw) < len(body) / 10
    else:
        assert "Content-Encoding" not in got.headers
        assert got.raw == body


async def test_headers_are_sent():
    async with http_backend() as backend:
        config = vigil_config(exporter(backend.url(), headers={"signoz-ingestion-key": "s3cr3t",
                                                                "X-Tenant": "team-a"}))
        async with running_vigil(config) as vigil:
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(1))
            assert await async_wait_for(lambda: backend.ok_requests())
    headers = backend.requests[0].headers
    assert headers["signoz-ingestion-key"] == "s3cr3t"
    assert headers["X-Tenant"] == "team-a"


async def test_503_is_retried_until_success():
    body = traces(3).SerializeToString()
    async with http_backend() as backend:
        backend.script = [HttpReply(503), HttpReply(503)]
        async with running_vigil(vigil_config(exporter(backend.url()))) as vigil:
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, body)
            assert await async_wait_for(lambda: counter(vigil, "sent") == 3)
            assert counter(vigil, "send_failed") == 0
    assert [r.reply.status for r in backend.requests] == [503, 503, 200]
    assert backend.requests[-1].body == body


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_in_seconds_is_honoured(status):
    async with http_backend() as backend:
        backend.script = [HttpReply(status, headers={"Retry-After": "1"})]
        async with running_vigil(vigil_config(exporter(backend.url()))) as vigil:
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(2))
            assert await async_wait_for(lambda: counter(vigil, "sent") == 2)
    assert len(backend.requests) == 2
    gap = backend.requests[1].at - backend.requests[0].at
    assert 0.9 <= gap < 2.5, gap  # the backoff alone would have waited about 0.1s


async def test_retry_after_as_an_http_date_is_honoured():
    async with http_backend() as backend:
        # HTTP dates have whole seconds: this one is between 1 and 2 seconds away.
        when = email.utils.formatdate(time.time() + 2, usegmt=True)
        backend.script = [HttpReply(429, headers={"Retry-After": when})]
        async with running_vigil(vigil_config(exporter(backend.url()))) as vigil:
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(2))
            assert await async_wait_for(lambda: counter(vigil, "sent") == 2)
    assert len(backend.requests) == 2
    gap = backend.requests[1].at - backend.requests[0].at
    assert 0.8 <= gap < 3.0, gap


@pytest.mark.parametrize("encoding", ["proto", "json"])
async def test_400_is_not_retried_and_its_message_is_logged(encoding, caplog):
    caplog.set_level(logging.WARNING, logger="vigil")  # whatever an earlier test did to logging
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="span 7 has no trace id")
    if encoding == "json":
        reply = HttpReply(400, body=json_format.MessageToJson(status).encode(), content_type="application/json")
    else:
        reply = HttpReply(400, body=status.SerializeToString())
    async with http_backend() as backend:
        backend.default = reply
        async with running_vigil(vigil_config(exporter(backend.url(), encoding=encoding))) as vigil:
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(4))
            assert await async_wait_for(lambda: counter(vigil, "send_failed") == 4)
            await asyncio.sleep(0.6)  # several retry intervals
            assert len(backend.requests) == 1
            assert counter(vigil, "sent") == 0
    assert "HTTP 400" in caplog.text and "span 7 has no trace id" in caplog.text


async def test_connection_refused_is_retried_until_the_backend_is_up():
    port = reserve_port()
    async with running_vigil(vigil_config(exporter(f"http://127.0.0.1:{port}"))) as vigil:
        await send_span_batches(vigil.grpc_endpoint(), 3)
        await asyncio.sleep(0.4)
        assert counter(vigil, "sent") == 0
        async with http_backend(port) as backend:
            assert await async_wait_for(lambda: counter(vigil, "sent") == 6)
            assert counter(vigil, "send_failed") == 0
    arrived = [n for r in backend.requests for n in item_names(Signal.TRACES, Signal.TRACES.request_type.FromString(r.body))]
    assert sorted(arrived) == sorted(f"span-{k}" for k in range(6))


@pytest.mark.parametrize("encoding", ["proto", "json"])
async def test_partial_success_is_counted_not_retried(encoding, caplog):
    caplog.set_level(logging.WARNING, logger="vigil")  # whatever an earlier test did to logging
    response = partial_success_response(Signal.TRACES, 2, "2 spans too large")
    if encoding == "json":
        reply = HttpReply(body=json.dumps(json_format.MessageToDict(response)).encode(),
                          content_type="application/json")
    else:
        reply = HttpReply(body=response.SerializeToString())
    async with http_backend() as backend:
        backend.default = reply
        async with running_vigil(vigil_config(exporter(backend.url(), encoding=encoding))) as vigil:
            await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(5))
            assert await async_wait_for(lambda: counter(vigil, "rejected") == 2)
            await asyncio.sleep(0.5)
            assert counter(vigil, "sent") == 3
            assert counter(vigil, "send_failed") == 0
            assert len(backend.requests) == 1
    assert "2 spans too large" in caplog.text
