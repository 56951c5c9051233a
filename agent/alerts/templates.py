"""Summary and description templates: `{name}` or `{name:format}` placeholders.

    summary: "Feature {feature} of {model} {version} drifted (score {value:.2f})"

A placeholder names a label of the alert (`{ml.model.name}`, `{host.name}`,
`{hw.id}`, ...) or one of:

    value       the rule's value for the alert (a number)
    threshold   the rule's threshold
    alertname   the rule's name
    model       ml.model.name       version   ml.model.version
    feature     ml.feature.name     host      host.name
    service     service.name        gpu       hw.name, else hw.id

A label that is absent renders as `<none>`; `{{` and `}}` are literal braces.
A format spec applies to numbers only (`{value:.3f}`, `{value:.1%}`).
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

from agent.ml.vocabulary import FEATURE_NAME, MODEL_NAME, MODEL_VERSION, SERVICE_NAME

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_.\-]*)(?::([^{}]*))?\}")
ALIASES = {
    "model": (MODEL_NAME,),
    "version": (MODEL_VERSION,),
    "feature": (FEATURE_NAME,),
    "host": ("host.name",),
    "service": (SERVICE_NAME,),
    "gpu": ("hw.name", "hw.id"),
}
MISSING = "<none>"


def check(template: str) -> None:
    """Raise ValueError when `template` has a stray brace or a bad format spec."""
    stripped = _PLACEHOLDER.sub("", template)
    if "{" in stripped or "}" in stripped:
        raise ValueError(f"template {template!r} has an unmatched brace: write {{{{ or }}}} for a literal one")
    for found in _PLACEHOLDER.finditer(template):
        spec = found.group(2)
        if spec:
            try:
                format(1.5, spec)
            except ValueError as exc:
                raise ValueError(f"template {template!r}: bad format spec {spec!r}: {exc}") from None


def render(template: str, labels: Mapping[str, str], value: float | None, threshold: float) -> str:
    def replace(found: re.Match) -> str:
        text = found.group(0)
        if text in ("{{", "}}"):
            return text[0]
        name, spec = found.group(1), found.group(2)
        item: Any
        if name == "value":
            item = value
        elif name == "threshold":
            item = threshold
        elif name in labels:
            item = labels[name]
        else:
            item = next((labels[k] for k in ALIASES.get(name, ()) if k in labels), None)
        if item is None:
            return MISSING
        if spec and isinstance(item, (int, float)):
            if isinstance(item, float) and not math.isfinite(item):
                return str(item)
            return format(item, spec)
        if isinstance(item, float):
            return format(item, ".6g")
        return str(item)

    return _PLACEHOLDER.sub(replace, template)
