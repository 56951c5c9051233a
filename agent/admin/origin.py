"""Refuses the state-changing admin requests a web page can make a browser send (reload, silences).

Any page open on the host can make the browser send a POST to 127.0.0.1:13133. Browsers mark such
requests, and those marks are what this checks, as Go's net/http CrossOriginProtection does:

- GET, HEAD and OPTIONS pass: they change nothing.
- `Sec-Fetch-Site` (every browser since 2023): `same-origin` and `none` (the user's own action)
  pass, anything else is refused.
- `Origin`: it must be this endpoint as the request names it (the `Host` header), and that name an
  IP address, `localhost` or the configured host: a page whose own name resolves to 127.0.0.1 (DNS
  rebinding) is same-origin by its headers alone. `null` is refused.
- The content types a form or a script can send without the browser asking first (a CORS
  preflight): `application/x-www-form-urlencoded`, `multipart/form-data`, `text/plain`. Refused
  whatever the headers, for browsers that send neither of them; the admin API takes JSON.

Clients that send none of these marks (`vigil alerts`, curl, scripts) pass.
"""

from __future__ import annotations

import ipaddress
from typing import Mapping
from urllib.parse import urlsplit

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_CONTENT_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})


def refusal(method: str, headers: Mapping[str, str], endpoint_host: str) -> str | None:
    """Why this request looks sent by a browser on another site's behalf, or None if it may pass."""
    if method.upper() in SAFE_METHODS:
        return None
    fetch_site = headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
        return f"a cross-origin request (Sec-Fetch-Site: {fetch_site[:40]})"
    origin = headers.get("Origin")
    if origin is not None:
        host = headers.get("Host", "")
        if origin == "null" or _host_port(origin) != host.lower():
            return f"a cross-origin request (Origin: {origin[:100]})"
        if not _trusted_name(host, endpoint_host):
            return f"a request to the host name {host[:100]!r}, which is not this endpoint's"
    content_type = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if content_type in FORM_CONTENT_TYPES:
        return f"a form's content type ({content_type}); send application/json or no body"
    return None


def _host_port(origin: str) -> str | None:
    """`scheme://host[:port]` as a Host header would name it (the port only when not the scheme's)."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = 80 if parts.scheme == "http" else 443
    return host.lower() if port in (None, default) else f"{host}:{port}".lower()


def _trusted_name(host_header: str, endpoint_host: str) -> bool:
    name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    name = name.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost") or name == endpoint_host.lower():
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
