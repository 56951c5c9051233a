"""pprof, zpages, memory_ballast: accepted so Collector configs load, each said in one line to do nothing."""

from __future__ import annotations

from tests.vigil_cli import run_cli


def test_validate_warns_once_per_inert_extension(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("""
extensions:
  pprof:
    endpoint: localhost:1777
  zpages:
  memory_ballast:
    size_mib: 64
  zpages/unlisted:
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
exporters:
  debug:
service:
  extensions: [pprof, zpages, memory_ballast]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
""")
    result = run_cli("validate", "-c", str(path))
    assert result.returncode == 0, result.stderr
    warnings = [line.removeprefix(f"{path}: warning: ") for line in result.stderr.splitlines()]
    assert sorted(w.split(":")[0] for w in warnings) == ["extensions.memory_ballast", "extensions.pprof",
                                                         "extensions.zpages", "extensions.zpages/unlisted"]
    assert "extensions.zpages/unlisted: defined but not listed in service.extensions, so it does not run" in warnings
    assert all("accepted but does nothing in Vigil" in w for w in warnings if "unlisted" not in w)
    assert result.stdout == f"{path}: valid (1 pipeline)\n"
