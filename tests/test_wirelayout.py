"""agent/_otlpscan.c reads by agent/wirelayout.py: what `scan` returns is what its stub (agent/_otlpscan.pyi)
lists, and the strings it leaves whole are those within vocabulary.MAX_STRING_LENGTH."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import agent
from agent.ml.vocabulary import MAX_STRING_LENGTH

_otlpscan = pytest.importorskip("agent._otlpscan")


def _scan(model: str) -> dict:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(name="predict")
    span.attributes.add(key="ml.model.name").value.string_value = model
    return _otlpscan.scan(request.SerializeToString(), False, (b"ml.",), b"")


def test_scan_returns_the_fields_its_stub_lists():
    stub = ast.parse((Path(agent.__file__).parent / "_otlpscan.pyi").read_text())
    (result,) = [node for node in stub.body if isinstance(node, ast.ClassDef) and node.name == "ScanResult"]
    fields = [node.target.id for node in result.body if isinstance(node, ast.AnnAssign)]
    assert sorted(_scan("fraud")) == sorted(fields)


def test_only_strings_beyond_the_cut_are_left_for_python_to_cut():
    assert _scan("a" * MAX_STRING_LENGTH)["plain_strings"]
    assert not _scan("a" * (MAX_STRING_LENGTH + 1))["plain_strings"]
    assert not _scan("")["plain_strings"]
