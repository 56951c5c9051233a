"""The client's W3C trace context, so an observed call's span joins the client's trace."""

from __future__ import annotations

import os
import re

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_INVALID_TRACE, _INVALID_SPAN = "0" * 32, "0" * 16


def parent(traceparent: str | None) -> tuple[bytes, bytes]:
    """(trace id, parent span id) from a `traceparent` header; a new trace, without parent, when absent or invalid."""
    match = _TRACEPARENT.match(traceparent.strip().lower()) if traceparent else None
    if match is None or match[1] == _INVALID_TRACE or match[2] == _INVALID_SPAN:
        return os.urandom(16), b""
    return bytes.fromhex(match[1]), bytes.fromhex(match[2])
