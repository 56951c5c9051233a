"""The config `vigil run` uses without `-c`: it serves with no backend at all.

OTLP receivers on 127.0.0.1:4317 (gRPC) and :4318 (HTTP), the `ml` processor
on spans and log records (its metrics join the others), `alerts` with the
shipped rule pack (logged as they fire, recorded in the logs file), a `batch`
processor, and a `file` exporter per signal under `./vigil-data/`. When the standard
`OTEL_EXPORTER_OTLP_ENDPOINT` is set, an `otlp` exporter (or `otlphttp`, by
`OTEL_EXPORTER_OTLP_PROTOCOL`) sends everything there too, with the headers of
`OTEL_EXPORTER_OTLP_HEADERS`.
"""

from __future__ import annotations

from importlib import resources
from typing import Any
from urllib.parse import unquote

DATA_DIR = "./vigil-data"
# The shipped alert rule pack, inside the installed package.
RULE_PACK = str(resources.files("agent.alerts") / "inference-rules.yaml")


def default_config(environ: dict[str, str]) -> dict[str, Any]:
    exporters: dict[str, Any] = {
        f"file/{signal}": {"path": f"{DATA_DIR}/{signal}.json",
                           "rotation": {"max_megabytes": 100, "max_backups": 5}}
        for signal in ("traces", "metrics", "logs")
    }
    backend = _backend_exporter(environ)
    if backend is not None:
        exporters[backend[0]] = backend[1]
    also = [backend[0]] if backend else []
    pipelines = {
        "traces": {"receivers": ["otlp"], "processors": ["ml", "batch"], "exporters": ["file/traces", *also]},
        "metrics": {"receivers": ["otlp", "ml"], "processors": ["alerts", "batch"],
                    "exporters": ["file/metrics", *also]},
        "logs": {"receivers": ["otlp"], "processors": ["ml", "batch"], "exporters": ["file/logs", *also]},
        # Alert records carry ml.model.name: kept out of the ml processor's way.
        "logs/alerts": {"receivers": ["alerts"], "processors": ["batch"], "exporters": ["file/logs", *also]},
    }
    return {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:4317"},
                                             "http": {"endpoint": "127.0.0.1:4318"}}}},
        "processors": {
            "ml": {},
            "alerts": {"rule_files": [RULE_PACK], "notifiers": {"log": {}}, "route": {"notifiers": ["log"]}},
            "batch": {},
        },
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
