"""Fuzzing the OTLP/JSON written off the wire (`json_stream.pieces` over `json_wire`): for any bytes
protobuf parses, the text is what `otlp_json.encode` writes for the parsed message; bytes protobuf
refuses are refused too, never written. Both writers: the compiled one (agent/_otlpjson.c) and the
Python one."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, strategies as st

from agent import otlp_json
from agent.exporters import json_stream, json_wire
from agent.signals import Signal
from tests.fuzz.conftest import cases, count
from tests.fuzz.test_fuzz_decoders import VALID, mutated

SIGNALS = st.sampled_from(list(Signal))
WRITERS = [pytest.param(True, id="compiled", marks=pytest.mark.skipif(json_wire._otlpjson is None,
                                                                       reason="agent/_otlpjson.c is not built")),
           pytest.param(False, id="python")]


@contextmanager
def writing(compiled: bool):
    saved, json_wire.COMPILED = json_wire.COMPILED, compiled
    try:
        yield
    finally:
        json_wire.COMPILED = saved


def _parsed_and_encoded(signal: Signal, wire: bytes) -> str:
    return otlp_json.encode(signal.request_type.FromString(wire))


def written_as_parsed(signal: Signal, wire: bytes) -> None:
    """As the file exporter writes: the pieces, or where the wire walker gives up (ValueError), the parsed
    message's text."""
    try:
        expected = _parsed_and_encoded(signal, wire)
    except DecodeError:  # whatever protobuf refuses, the writer must not write
        expected = None
    try:
        text = "".join(json_stream.pieces(signal, wire))
    except ValueError:
        try:
            text = _parsed_and_encoded(signal, wire)
        except DecodeError:
            text = None
    except DecodeError:
        text = None
    assert text == expected


@pytest.mark.parametrize("compiled", WRITERS)
@cases(1500)
@given(data=st.data())
def test_mutated_requests_are_written_as_protobuf_parses_them(compiled, data):
    count("OTLP/JSON off the wire: mutated requests")
    signal = data.draw(SIGNALS)
    with writing(compiled):
        written_as_parsed(signal, data.draw(mutated(VALID[signal])))


@pytest.mark.parametrize("compiled", WRITERS)
@cases(500)
@given(signal=SIGNALS, body=st.binary(max_size=256))
def test_random_bytes_are_written_as_protobuf_parses_them(compiled, signal, body):
    count("OTLP/JSON off the wire: random bytes")
    with writing(compiled):
        written_as_parsed(signal, body)
