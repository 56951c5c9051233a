"""The building blocks every component's config model is made of.

A leaf: it imports nothing of Vigil, so any module may use it; the loader
(`agent/config.py`) sits above the registry and the components.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, defaults live in the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class OptionalPartsModel(StrictModel):
    """A model whose fields are optional parts, each on when its key is present.

    `grpc:` (or `cpu:`) with nothing after it turns that part on with its defaults, as in the
    Collector; a key left out leaves the part off.
    """

    @model_validator(mode="before")
    @classmethod
    def _empty_means_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: ({} if v is None else v) for k, v in data.items()}
        return data


# --- durations -------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """Go-style duration (`200ms`, `10s`, `1m30s`) to seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        return 0.0
    if not isinstance(value, str):
        raise ValueError(f"invalid duration {value!r}: use a number with a unit, e.g. 200ms, 10s, 5m")
    text = value.strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if not match:
            raise ValueError(f"invalid duration {value!r}: use a number with a unit, e.g. 200ms, 10s, 5m")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise ValueError(f"invalid duration {value!r}: use a number with a unit, e.g. 200ms, 10s, 5m")
    return total


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""A duration in the config, held as seconds."""


# --- errors ------------------------------------------------------------------


def format_validation_error(error: ValidationError, prefix: str) -> list[str]:
    """Turn pydantic's errors into `path: message` lines."""
    problems = []
    for err in error.errors():
        path = prefix
        for part in err["loc"]:
            path = f"{path}[{part}]" if isinstance(part, int) else join_path(path, str(part))
        kind = err["type"]
        if kind == "extra_forbidden":
            message = "unknown key"
        elif kind == "missing":
            message = "required field is missing"
        else:
            message = err["msg"].removeprefix("Value error, ")
            if kind not in ("value_error", "assertion_error") and "input" in err and not isinstance(
                    err["input"], (dict, list)):
                message += f" (got {err['input']!r})"
        problems.append(f"{path}: {message}")
    return problems


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
