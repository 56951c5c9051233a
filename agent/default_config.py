"""The config `vigil run` uses without `-c`: it serves with no backend at all.

OTLP receivers on 127.0.0.1:4317 (gRPC) and :4318 (HTTP), a `batch` processor,
and a `file` exporter per signal under `./vigil-data/`. When the standard
`OTEL_EXPORTER_OTLP_ENDPOINT` is set, an `otlp` exporter (or `otlphttp`, by
`OTEL_EXPORTER_OTLP_PROTOCOL`) sends everything there too, with the headers of
`OTEL_EXPORTER_OTLP_HEADERS`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

DATA_DIR = "./vigil-data"


def default_config(environ: dict[str, str]) -> dict[str, Any]:
    exporters: dict[str, Any] = {
        f"file/{signal}": {"path": f"{DATA_DIR}/{signal}.json",
                           "rotation": {"max_megabytes": 100, "max_backups": 5}}
        for signal in ("traces", "metrics", "logs")
    }
    backend = _backend_exporter(environ)
    if backend is not None:
        exporters[backend[0]] = backend[1]
    pipelines = {
        signal: {
            "receivers": ["otlp"],
            "processors": ["batch"],
            "exporters": [f"file/{signal}"] + ([backend[0]] if backend else []),
        }
        for signal in ("traces", "metrics", "logs")
    }
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:4317"},
                                             "http": {"endpoint": "127.0.0.1:4318"}}}},
        "processors": {"batch": {}},
        "exporters": exporters,
        "service": {"pipelines": pipelines},
    }


def _backend_exporter(environ: dict[str, str]) -> tuple[str, dict[str, Any]] | None:
    endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if not endpoint:
        return None
    headers = _parse_headers(environ.get("OTEL_EXPORTER_OTLP_HEADERS", ""))
    protocol = environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc").strip()
    if protocol.startswith("http/"):
        return "otlphttp", {"endpoint": endpoint, "headers": headers,
                            "encoding": "json" if protocol == "http/json" else "proto"}
    return "otlp", {"endpoint": _with_port(endpoint, 4317), "headers": headers}


def _with_port(endpoint: str, port: int) -> str:
    """`https://host` gets the protocol's default port, as the SDKs assume."""
    scheme, sep, rest = endpoint.rpartition("://")
    host = rest.rstrip("/")
    if ":" in host.rsplit("]", 1)[-1]:
        return endpoint
    return f"{scheme}{sep}{host}:{port}"


def _parse_headers(text: str) -> dict[str, str]:
    """`key1=value1,key2=value2` (values URL-encoded), as the OpenTelemetry SDKs read it."""
    headers = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = pair.partition("=")
        if sep:
            headers[unquote(key.strip())] = unquote(value.strip())
    return headers
