"""The server kinds the `inference` receiver understands, by name; each module maps one server's metrics.

A kind module has `KIND` (a `kinds.base.ServerKind`). The names are listed here without importing the
modules, so the config checks a kind cheaply.
"""

from __future__ import annotations

import importlib

KIND_NAMES = ("triton", "vllm", "sglang", "tgi", "mlserver", "llamacpp")


def kind(name: str):
    """The `ServerKind` of `name` (one of KIND_NAMES)."""
    return importlib.import_module(f"agent.receivers.inference.kinds.{name}").KIND
