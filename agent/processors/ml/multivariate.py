"""Multivariate drift in the `ml` processor: the methods of `agent.ml.multivariate`, live.

For a model version whose method is not off (`drift.multivariate`), the warmup's embeddings
(`ml.embedding`, buffered beside the columns) or its numeric features taken together are fitted
when the reference is learned and kept in the learned profile; a profile file brings its own fit
(`vigil profile build --multivariate`). Each window is tested in the thread pool with the other
statistics; the result becomes `ml.model.drift.multivariate` and `ml.model.multivariate.drifted`,
the status entry's `multivariate` and a reason in model health.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from agent.ml import multivariate as mv
from agent.ml.columns import RawColumn
from agent.ml.profile import Profile
from agent.ml.vocabulary import EMBEDDING
from agent.processors.ml.history import finite

if TYPE_CHECKING:
    from agent.ml.predictions import Predictions
    from agent.processors.ml.config import MultivariateConfig

OFF = "off"
MIN_REFERENCE_ROWS = 100  # usable warmup rows a fit needs


class Vectors:
    """A buffer's embedding rows, batch by batch and row for row with its columns (a batch without any, or of
    another width than the first's, as rows of NaN); bounded as the buffer is, by its rows."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, np.ndarray | None]] = []

    def add(self, rows: int, vectors: np.ndarray | None) -> None:
        if rows:
            self.chunks.append((rows, vectors))

    def joined(self) -> np.ndarray | None:
        """All rows, or None when no batch had any."""
        first = next((v for _, v in self.chunks if v is not None), None)
        if first is None:
            return None
        dims = first.shape[1]
        return np.concatenate([v if v is not None and v.shape[1] == dims else np.full((rows, dims), np.nan)
                               for rows, v in self.chunks])


def method_of(config: MultivariateConfig, model: str) -> str:
    return config.models.get(model, config.method)


def batch_vectors(config: MultivariateConfig, model: str, found: Predictions) -> np.ndarray | None:
    """The batch's embeddings when the model's multivariate drift reads them (None otherwise)."""
    if config.input != "embedding" or method_of(config, model) == OFF:
        return None
    vectors = getattr(found, "embeddings", None)
    if vectors is None or vectors.ndim != 2 or vectors.shape[1] > config.max_dims:
        return None
    return vectors


def fit(config: MultivariateConfig, profile: Profile, columns: dict[str, RawColumn], vectors: np.ndarray | None,
        sentinels: list, seed: int = 0) -> tuple[mv.MultivariateReference | None, str]:
    """The method's fit on the warmup, or None and why not."""
    method = method_of(config, profile.model_name)
    if method == OFF:
        return None, ""
    names: list[str] = []
    if config.input == "embedding":
        if vectors is None:
            return None, f"no {EMBEDDING} in the reference's predictions"
        rows = vectors
    else:
        names = feature_names(config, profile)
        if len(names) < 2:
            return None, f"{len(names)} numeric feature(s) in the reference; taken together needs 2 or more"
        rows = mv.feature_rows([columns[n] for n in names], sentinels)
    usable = int(np.count_nonzero(~np.isnan(rows).all(axis=1)))
    if usable < MIN_REFERENCE_ROWS:
        return None, f"{usable} reference rows with {_input(config, names)}; fitting needs {MIN_REFERENCE_ROWS}"
    rows = rows[~np.isnan(rows).all(axis=1)]
    return mv.fit(rows, (method,), columns=names, embedding=EMBEDDING if not names else "", sample=config.sample,
                  seed=seed), ""


def feature_names(config: MultivariateConfig, profile: Profile) -> list[str]:
    numeric = [n for n, c in profile.features.items() if c.is_numeric]
    return [n for n in config.features if n in profile.features and profile.features[n].is_numeric] \
        if config.features else numeric


def reference_fit(config: MultivariateConfig, profile: Profile, method: str) -> mv.MultivariateReference | None:
    """The profile's fit of `method` on the configured input."""
    for found in profile.multivariate:
        if getattr(found, method) is None or bool(found.embedding) != (config.input == "embedding"):
            continue
        return found
    return None


def evaluate(config: MultivariateConfig, profile: Profile, window_rows: int, columns: dict[str, RawColumn],
             vectors: np.ndarray | None, sentinels: list, seed: int) -> dict[str, Any] | None:
    """The window's multivariate drift for the status (JSON-ready), or None when off."""
    method = method_of(config, profile.model_name)
    if method == OFF:
        return None
    out: dict[str, Any] = {"method": method, "input": config.input, "statistic": None, "threshold": None,
                           "p_value": None, "drifted": False, "tested": False, "rows": 0, "reason": None}
    reference = reference_fit(config, profile, method)
    if reference is None:
        out["reason"] = f"the reference has no {method} fit on its {config.input}"
        return out
    if reference.embedding:
        rows = vectors
        if rows is None:
            out["reason"] = f"no {EMBEDDING} in the window"
            return out
        if rows.shape[1] != reference.dims:
            out["reason"] = (f"the window's {EMBEDDING} has {rows.shape[1]} dimensions, the reference's "
                             f"{reference.dims}")
            return out
    else:
        rows = mv.feature_rows([columns[n] if n in columns else RawColumn.missing(window_rows)
                                for n in reference.columns], sentinels)
    result = mv.test(reference, method, rows, seed=seed)
    out.update(statistic=finite(result.statistic), threshold=finite(result.threshold),
               p_value=finite(result.p_value), drifted=result.drifted, tested=result.tested, rows=result.rows)
    if not result.tested:
        out["reason"] = f"{result.rows} usable rows; testing needs {mv.Settings().min_rows}"
    return out


def _input(config: MultivariateConfig, names: list[str]) -> str:
    return EMBEDDING if config.input == "embedding" else f"any of {', '.join(names)}"
