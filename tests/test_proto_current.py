"""The code generated from proto/ and committed under agent/proto/ is current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROTOS = sorted(p.relative_to(REPO / "proto").as_posix() for p in (REPO / "proto").rglob("*.proto"))


def test_protos_found():
    assert "vigil/v1/profile.proto" in PROTOS


@pytest.mark.parametrize("proto", PROTOS)
def test_generated_code_is_current(proto, tmp_path):
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the `test` extra) regenerates the code")
    result = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-Iproto", f"--python_out={tmp_path}",
                             f"--pyi_out={tmp_path}", proto], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, f"protoc failed on {proto}:\n{result.stderr}"
    stem = proto.removesuffix(".proto")
    for suffix in ("_pb2.py", "_pb2.pyi"):
        generated = tmp_path / f"{stem}{suffix}"
        committed = REPO / "agent" / "proto" / f"{stem}{suffix}"
        assert committed.exists(), f"{committed.relative_to(REPO)} is missing: run `make proto` and commit it"
        assert committed.read_bytes() == generated.read_bytes(), (
            f"{committed.relative_to(REPO)} is stale against proto/{proto}: run `make proto` and commit the result")
