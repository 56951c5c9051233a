"""Fuzzing the OTLP/JSON written off the wire (`json_stream.pieces` over `json_wire`): for any bytes
protobuf parses, the text is what `otlp_json.encode` writes for the parsed message; bytes protobuf
refuses are refused too, never written."""

from __future__ import annotations

from google.protobuf.message import DecodeError
from hypothesis import given, strategies as st

from agent import otlp_json
from agent.exporters import json_stream
from agent.signals import Signal
from tests.fuzz.conftest import cases, count
from tests.fuzz.test_fuzz_decoders import VALID, mutated

SIGNALS = st.sampled_from(list(Signal))


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


@cases(1500)
@given(st.data())
def test_mutated_requests_are_written_as_protobuf_parses_them(data):
    count("OTLP/JSON off the wire: mutated requests")
    signal = data.draw(SIGNALS)
    written_as_parsed(signal, data.draw(mutated(VALID[signal])))


@cases(500)
@given(SIGNALS, st.binary(max_size=256))
def test_random_bytes_are_written_as_protobuf_parses_them(signal, body):
    count("OTLP/JSON off the wire: random bytes")
    written_as_parsed(signal, body)
