"""Game day for exporters and their queues: real `vigil run` processes on 127.0.0.1.

    senders (gRPC / HTTP) ─▶ vigil run "agent" (exporter + sending queue) ─▶ backend (a Vigil, or a server here)

Faults played: a request that balloons in the `file` exporter, a disk too small for one segment,
a record stuck in retry while the rest drains (then kill -9), a backend that comes back after an
outage, a slow backend with the in-memory byte bound, and a power cut under each fsync policy.
Figures are printed (run with -s).
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
import yaml

from tests.conftest import free_port, wait_for
from tests.vigil_cli import VigilProcess, vigil_run

MIB = 1024 * 1024


def _memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of `pid`, in MiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields


def _start(tmp_path: Path, config: dict) -> tuple[Path, list[str]]:
    path = tmp_path / "vigil.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, ["-c", str(path)]


# --- defect 4: the file exporter --------------------------------------------------------------


@pytest.mark.timeout(180)
def test_game_day_file_exporter_memory_stays_bounded_for_millions_of_resources(tmp_path):
    """20 MiB of empty ResourceSpans through batch ─▶ file: peak RSS a small multiple of the request."""
    port = free_port()
    out = tmp_path / "traces.json"
    config = {"receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{port}",
                                                            "max_recv_msg_size_mib": 64}}}},
              "processors": {"batch": {"send_batch_size": 8192, "timeout": "200ms"}},
              "exporters": {"file": {"path": str(out)}},
              "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                                   "exporters": ["file"]}},
                          "state_dir": str(tmp_path / "state"), "admin": {"endpoint": "127.0.0.1:0"}}}
    _, args = _start(tmp_path, config)
    request = b"\n\0" * (10 << 20)
    with vigil_run(args, tmp_path) as vigil:
        vigil.wait_running()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 * MIB)])
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        export(b"", timeout=30)  # warm up: the first request loads what every request needs
        assert wait_for(lambda: out.exists() and out.read_bytes().endswith(b"\n"), 30)
        before = _memory(vigil.proc.pid)["VmRSS"]
        started = time.monotonic()
        export(request, timeout=120)
        channel.close()
        # Written when the line ends: the file exporter is done with the request.
        assert wait_for(lambda: out.stat().st_size > 30 * MIB and out.read_bytes().endswith(b"\n"), 150), \
            vigil.stderr()
        written = time.monotonic() - started
        time.sleep(0.5)
        after = _memory(vigil.proc.pid)
    peak = after["VmHWM"] - before
    print(f"\nfile exporter, 20 MiB of empty ResourceSpans: RSS {before:.0f} MiB before, peak +{peak:.0f} MiB, "
          f"{after['VmRSS']:.0f} MiB after; written in {written:.1f}s")
    assert out.read_bytes().splitlines()[-1] == b'{"resourceSpans":[' + b",".join([b"{}"] * (10 << 20)) + b"]}"
    # The receiver holds the request (20 MiB) and gRPC its buffers: a few times its size, not 50.
    assert peak < 5 * len(request) / MIB
    assert after["VmRSS"] - before < len(request) / MIB
