"""The `otlp` receiver's protection: TLS and mTLS, bearer tokens, concurrency and attribute limits.

The receiver runs for real on 127.0.0.1:0 and feeds a recording consumer;
clients are real gRPC channels and aiohttp sessions. Certificates are made
with the `openssl` command for each test session.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
from pathlib import Path

import aiohttp
import grpc
import pytest
from google.rpc import status_pb2

from agent import attributes
from agent.component import ComponentId, Settings
from agent.config import ConfigError, from_dict
from agent.receivers.otlp import OtlpReceiver, OtlpReceiverConfig
from agent.signals import Batch, Signal
from agent.telemetry import SelfTelemetry
from tests.otlp_data import traces
from tests.sink import InMemorySink

TOKEN = "s3cr3t-t0ken-value"
PROTOBUF = {"Content-Type": "application/x-protobuf"}


async def start(config: dict, consumer=None) -> tuple[OtlpReceiver, InMemorySink, SelfTelemetry]:
    telemetry = SelfTelemetry()
    recorder = consumer or InMemorySink()
    receiver = OtlpReceiver(OtlpReceiverConfig.model_validate(config), Settings(ComponentId("otlp"), telemetry),
                            {Signal.TRACES: recorder})
    await receiver.start()
    return receiver, recorder, telemetry


def protocols(**extra) -> dict:
    return {"protocols": {"grpc": {"endpoint": "127.0.0.1:0", **extra},
                          "http": {"endpoint": "127.0.0.1:0", **extra}}}


async def grpc_send(endpoint: str, body: bytes, metadata=(), credentials=None) -> None:
    channel = (grpc.aio.secure_channel(endpoint, credentials, options=[("grpc.ssl_target_name_override",
                                                                        "localhost")])
               if credentials else grpc.aio.insecure_channel(endpoint))
    async with channel:
        await channel.unary_unary(Signal.TRACES.grpc_method)(body, metadata=metadata, timeout=5)


# --- bearer tokens ---------------------------------------------------------------------------------


async def test_bearer_token_is_required_and_never_logged(caplog):
    caplog.set_level(logging.DEBUG)
    receiver, recorder, telemetry = await start(protocols(auth={"bearer_tokens": [TOKEN, "another"]}))
    body = traces(2).SerializeToString()
    endpoint = f"127.0.0.1:{receiver.grpc_port}"
    url = f"http://127.0.0.1:{receiver.http_port}/v1/traces"
    try:
        for metadata in [(), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)]:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await grpc_send(endpoint, body, metadata)
            assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert TOKEN not in (info.value.details() or "")
        await grpc_send(endpoint, body, (("authorization", f"Bearer {TOKEN}"),))
        await grpc_send(endpoint, body, (("authorization", "bearer another"),))
        async with aiohttp.ClientSession() as session:
            for headers in [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}]:
                async with session.post(url, data=body, headers={**PROTOBUF, **headers}) as response:
                    assert response.status == 401
                    assert response.headers["WWW-Authenticate"] == "Bearer"
                    status = status_pb2.Status.FromString(await response.read())
                    assert status.message == "missing or invalid bearer token"
            async with session.post(url, data=body, headers={**PROTOBUF, "Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 200
    finally:
        await receiver.shutdown()
    assert len(recorder.batches) == 3
    assert telemetry.total("vigil_receiver_unauthenticated_requests") == 6
    assert "bearer token auth" in caplog.text  # the start-up line says auth is on...
    assert TOKEN not in caplog.text  # ...and no line ever shows the token


def test_tokens_stay_out_of_config_dumps_and_empty_ones_are_refused():
    config = OtlpReceiverConfig.model_validate(protocols(auth={"bearer_tokens": [TOKEN]}))
    assert TOKEN not in repr(config) and TOKEN not in str(config.model_dump())
    doc = {"receivers": {"otlp": {"protocols": {"grpc": {"auth": {"bearer_tokens": ["${env:UNSET_TOKEN}"]}}}}},
           "exporters": {"debug": None},
           "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}}}}
    with pytest.raises(ConfigError) as info:
        from_dict(doc, environ={})
    assert info.value.problems == ["receivers.otlp.protocols.grpc.auth.bearer_tokens: a bearer token is empty "
                                   "(is its environment variable set?)"]


# --- TLS and mTLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, all signed by the CA."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("certs")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=vigil test CA",
        "-keyout", "ca.key", "-out", "ca.pem")
    (d / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.cnf", "-out", f"{name}.pem")
    return {n: d / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def client_context(certs, with_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    if with_cert:
        context.load_cert_chain(str(certs["client.pem"]), str(certs["client.key"]))
    return context


async def test_tls_serves_encrypted_only(certs):
    tls = {"cert_file": str(certs["server.pem"]), "key_file": str(certs["server.key"])}
    receiver, recorder, _ = await start(protocols(tls=tls))
    body = traces(1).SerializeToString()
    try:
        credentials = grpc.ssl_channel_credentials(certs["ca.pem"].read_bytes())
        await grpc_send(f"127.0.0.1:{receiver.grpc_port}", body, credentials=credentials)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await grpc_send(f"127.0.0.1:{receiver.grpc_port}", body)  # plaintext to a TLS port
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        async with aiohttp.ClientSession() as session:
            async with session.post(f"https://127.0.0.1:{receiver.http_port}/v1/traces", data=body,
                                    headers=PROTOBUF, ssl=client_context(certs, False)) as response:
                assert response.status == 200
            with pytest.raises(aiohttp.ClientError):
                async with session.post(f"http://127.0.0.1:{receiver.http_port}/v1/traces", data=body,
                                        headers=PROTOBUF):
                    pass
    finally:
        await receiver.shutdown()
    assert len(recorder.batches) == 2


async def test_mtls_requires_a_client_certificate_from_the_ca(certs):
    tls = {"cert_file": str(certs["server.pem"]), "key_file": str(certs["server.key"]),
           "client_ca_file": str(certs["ca.pem"])}
    receiver, recorder, _ = await start(protocols(tls=tls))
    body = traces(1).SerializeToString()
    ca = certs["ca.pem"].read_bytes()
    try:
        with pytest.raises(grpc.aio.AioRpcError):
            await grpc_send(f"127.0.0.1:{receiver.grpc_port}", body, credentials=grpc.ssl_channel_credentials(ca))
        with_cert = grpc.ssl_channel_credentials(ca, certs["client.key"].read_bytes(),
                                                 certs["client.pem"].read_bytes())
        await grpc_send(f"127.0.0.1:{receiver.grpc_port}", body, credentials=with_cert)
        url = f"https://127.0.0.1:{receiver.http_port}/v1/traces"
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                async with session.post(url, data=body, headers=PROTOBUF, ssl=client_context(certs, False)) as r:
                    await r.read()
            async with session.post(url, data=body, headers=PROTOBUF, ssl=client_context(certs, True)) as r:
                assert r.status == 200
    finally:
        await receiver.shutdown()
    assert len(recorder.batches) == 2


async def test_vigil_exports_to_a_vigil_gateway_over_mtls_with_a_token(certs, tmp_path):
    """The otlp exporter's tls and headers settings against the receiver's tls and auth."""
    from agent.exporters.otlp import FACTORY as OTLP_EXPORTER

    tls = {"cert_file": str(certs["server.pem"]), "key_file": str(certs["server.key"]),
           "client_ca_file": str(certs["ca.pem"])}
    receiver, recorder, _ = await start({"protocols": {"grpc": {"endpoint": "127.0.0.1:0", "tls": tls,
                                                                 "auth": {"bearer_tokens": [TOKEN]}}}})
    config = OTLP_EXPORTER.config_model.model_validate({
        "endpoint": f"https://127.0.0.1:{receiver.grpc_port}",
        "headers": {"authorization": f"Bearer {TOKEN}"},
        "tls": {"ca_file": str(certs["ca.pem"]), "cert_file": str(certs["client.pem"]),
                "key_file": str(certs["client.key"]), "server_name_override": "localhost"},
        "sending_queue": {"enabled": False}})
    exporter = OTLP_EXPORTER.create(config, Settings(ComponentId("otlp"), SelfTelemetry(), state_dir=tmp_path))
    await exporter.start()
    try:
        await exporter.consume(Batch(Signal.TRACES, traces(4)))
    finally:
        await exporter.shutdown()
        await receiver.shutdown()
    assert [b.items for b in recorder.batches] == [4]


# --- concurrency ------------------------------------------------------------------------------------


async def test_requests_over_max_concurrent_requests_are_refused_retryably():
    receiver, recorder, telemetry = await start({**protocols(), "limits": {"max_concurrent_requests": 2}},
                                                InMemorySink(delay=0.5))
    body = traces(1).SerializeToString()
    endpoint = f"127.0.0.1:{receiver.grpc_port}"
    url = f"http://127.0.0.1:{receiver.http_port}/v1/traces"
    try:
        held = [asyncio.create_task(grpc_send(endpoint, body)) for _ in range(2)]
        await asyncio.sleep(0.2)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await grpc_send(endpoint, body)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        assert info.value.details() == "too many concurrent requests"
        async with aiohttp.ClientSession() as session:
            async with session.post(url, data=body, headers=PROTOBUF) as response:
                assert response.status == 429
                assert response.headers["Retry-After"] == "1"
            await asyncio.gather(*held)
            async with session.post(url, data=body, headers=PROTOBUF) as response:
                assert response.status == 200  # slots are given back
    finally:
        await receiver.shutdown()
    assert len(recorder.batches) == 3
    assert telemetry.total("vigil_receiver_refused_requests_concurrency") == 2


# --- attribute limits --------------------------------------------------------------------------------


def hostile_traces():
    request = traces(2)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    for i in range(6):
        attributes.set_any_value(span.attributes.add(key=f"extra.{i}").value, i)
    first = span.attributes[0].value
    first.string_value = "x" * 100
    attributes.set_any_value(span.events.add(name="e").attributes.add(key="list").value, list(range(50)))
    nested = span.links.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8).attributes.add(key="kv").value
    for i in range(5):
        entry = nested.kvlist_value.values.add(key=f"k{i}")
        entry.value.bytes_value = b"\x00" * 64
    attributes.set_any_value(request.resource_spans[0].resource.attributes.add(key="big").value, "y" * 30)
    return request


async def test_attribute_limits_cut_and_count_like_the_sdks():
    limits = {"max_attributes": 4, "max_attribute_value_length": 16, "max_array_length": 3}
    receiver, recorder, telemetry = await start({**protocols(), "limits": limits})
    try:
        await grpc_send(f"127.0.0.1:{receiver.grpc_port}", hostile_traces().SerializeToString())
    finally:
        await receiver.shutdown()
    message = recorder.batches[0].message
    resource = message.resource_spans[0].resource
    span, untouched = message.resource_spans[0].scope_spans[0].spans
    assert len(span.attributes) == 4 and span.dropped_attributes_count == 4  # 8 attributes, 4 kept
    assert span.attributes[0].value.string_value == "x" * 16
    assert len(span.events[0].attributes[0].value.array_value.values) == 3
    kv = span.links[0].attributes[0].value.kvlist_value.values
    assert len(kv) == 3 and all(e.value.bytes_value == b"\x00" * 16 for e in kv)
    assert [a.value.string_value for a in resource.attributes if a.key == "big"] == ["y" * 16]
    assert len(untouched.attributes) == 2 and untouched.dropped_attributes_count == 0
    assert telemetry.total("vigil_receiver_dropped_attributes") == 4
    # The long string, the array, the kvlist, its 3 kept bytes values, the resource's string.
    assert telemetry.total("vigil_receiver_truncated_values") == 7


async def test_a_request_within_the_limits_is_forwarded_as_the_bytes_it_came_in():
    receiver, recorder, _ = await start({**protocols(), "limits": {"max_attributes": 64,
                                                                    "max_attribute_value_length": 1024}})
    body = traces(5).SerializeToString()
    try:
        await grpc_send(f"127.0.0.1:{receiver.grpc_port}", body)
    finally:
        await receiver.shutdown()
    assert recorder.batches[0].wire() == body
