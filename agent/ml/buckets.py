"""Histogram bucket bounds: Vigil's defaults and the check every configured list must pass."""

from __future__ import annotations

import math
from typing import Sequence

# Prediction latency, seconds: about ×1.5 per bucket from 1 ms to 60 s.
DURATION_BOUNDS = (0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
                   0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0)
# Top-class probability: fine near 1, where most predictions of a good model sit.
CONFIDENCE_BOUNDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
# The GenAI semantic conventions' bounds for gen_ai.client.token.usage and .operation.duration.
TOKEN_BOUNDS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
GENAI_DURATION_BOUNDS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96,
                         81.92)


def check_bounds(bounds: Sequence[float]) -> list[float]:
    """`bounds` as a list, or ValueError when they are not finite and strictly increasing."""
    values = [float(b) for b in bounds]
    if not values:
        raise ValueError("needs at least one bucket bound")
    if not all(math.isfinite(v) for v in values):
        raise ValueError("bucket bounds must be finite")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError("bucket bounds must be strictly increasing")
    return values
