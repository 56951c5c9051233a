"""Who may send to a receiver: TLS (and mTLS) on its listeners, and bearer-token auth.

For a gateway Vigil that other hosts send to. Both are off by default: a
receiver binds 127.0.0.1 unless configured otherwise, and local apps need
neither. Tokens are `SecretStr`s, so a config dump or a validation error
never shows them, and no log line here includes a header or a token.
"""

from __future__ import annotations

import hmac
import ssl
from pathlib import Path
from typing import Literal

import grpc
from pydantic import Field, SecretStr, field_validator

from agent.configmodel import StrictModel


class TlsServerConfig(StrictModel):
    """The Collector's `configtls` server settings: a certificate, and a CA to require client certificates."""

    cert_file: str
    key_file: str
    # mTLS: clients must present a certificate signed by this CA.
    client_ca_file: str | None = None
    min_version: Literal["1.2", "1.3"] = "1.2"


class BearerAuthConfig(StrictModel):
    """Requests must carry `Authorization: Bearer <token>` with one of these tokens."""

    bearer_tokens: list[SecretStr] = Field(min_length=1)

    @field_validator("bearer_tokens")
    @classmethod
    def _not_empty(cls, tokens: list[SecretStr]) -> list[SecretStr]:
        if any(not t.get_secret_value() for t in tokens):
            # An unset ${env:VAR} becomes "": that must not turn into "any empty token is fine".
            raise ValueError("a bearer token is empty (is its environment variable set?)")
        return tokens


def server_ssl_context(tls: TlsServerConfig) -> ssl.SSLContext:
    """An SSL context for the HTTP listener."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3 if tls.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file:
        context.load_verify_locations(tls.client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def grpc_server_credentials(tls: TlsServerConfig) -> grpc.ServerCredentials:
    """Credentials for the gRPC listener (gRPC's TLS is 1.2 or newer)."""
    key, cert = Path(tls.key_file).read_bytes(), Path(tls.cert_file).read_bytes()
    client_ca = Path(tls.client_ca_file).read_bytes() if tls.client_ca_file else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


class BearerAuth:
    """Checks an Authorization header value against the configured tokens, in constant time."""

    def __init__(self, config: BearerAuthConfig) -> None:
        self._tokens = [t.get_secret_value().encode() for t in config.bearer_tokens]

    def allows(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        given = token.strip().encode()
        # Compare with every token (no early exit), so timing says nothing about which nearly matched.
        matches = [hmac.compare_digest(given, t) for t in self._tokens]
        return any(matches)


def describe(tls: TlsServerConfig | None, auth: BearerAuthConfig | None) -> str:
    """How a listener is protected, for its start-up log line (never the secrets)."""
    parts = []
    if tls is not None:
        parts.append("mTLS" if tls.client_ca_file else "TLS")
    if auth is not None:
        parts.append("bearer token auth")
    return f" ({', '.join(parts)})" if parts else ""
