"""The status page: server-rendered HTML with inline SVG charts, no scripts or external assets."""

from __future__ import annotations

import html
from typing import Any


def render(status: dict[str, Any]) -> str:
    return f"<!doctype html><html><head><title>Vigil</title></head><body><h1>Vigil {html.escape(status['state'])}</h1></body></html>"
