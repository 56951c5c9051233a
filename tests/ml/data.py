"""Small builders shared by the ml engine tests."""

from __future__ import annotations

import numpy as np

from agent.ml.columns import RawColumn


def numbers(values) -> RawColumn:
    """A column of numbers only (NaN where missing), built without a pass over Python objects."""
    values = np.asarray(values, dtype=float)
    return RawColumn(values, np.full(values.size, None, dtype=object))


def strings(values) -> RawColumn:
    """A column of strings only (None where missing)."""
    values = np.asarray(values, dtype=object)
    return RawColumn(np.full(values.size, np.nan), values)


def categories(rng: np.random.Generator, names: list[str], shares: list[float], n: int) -> RawColumn:
    return strings(rng.choice(np.array(names, dtype=object), size=n, p=shares))
