"""Shared config pieces for network endpoints and TLS."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, model_validator

from agent.configmodel import StrictModel


def split_host_port(endpoint: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` to its parts; raises ValueError naming the problem."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host:
        raise ValueError(f"invalid endpoint {endpoint!r}: expected host:port")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid endpoint {endpoint!r}: port must be a number from 0 to 65535")
    return host.strip("[]"), int(port)


def listen_endpoint(value: str) -> str:
    """A `host:port` to listen on, checked; `:port` (Go's form, which Collector configs use) is every
    interface, `0.0.0.0:port`."""
    if value.startswith(":"):
        value = "0.0.0.0" + value
    split_host_port(value)
    return value


ListenEndpoint = Annotated[str, AfterValidator(listen_endpoint)]
"""`host:port` (or `:port`) to listen on; port 0 picks a free port."""


class TlsClientConfig(StrictModel):
    """TLS for an exporter's connection, as the Collector's `configtls` client settings."""

    insecure: bool = False
    insecure_skip_verify: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name_override: str | None = None

    @model_validator(mode="after")
    def _check(self) -> TlsClientConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be set together")
        return self


def client_ssl_files(tls: TlsClientConfig) -> tuple[bytes | None, bytes | None, bytes | None]:
    """The CA, key and certificate files' contents (None where not set), for gRPC credentials."""

    def read(path: str | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    return read(tls.ca_file), read(tls.key_file), read(tls.cert_file)


def client_ssl_context(tls: TlsClientConfig) -> ssl.SSLContext:
    """An SSL context for an HTTPS client with these settings."""
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
