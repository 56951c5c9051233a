"""Reference profiles: what one model version's inputs and outputs looked like.

A profile is built from reference rows (a training file, or a model
version's first predictions) and stored as the `vigil.v1.Profile` protobuf.
Per column it keeps what the drift tests and health checks need: the type,
quantile bin edges and counts, a reservoir sample, moments, the range, the
missing count, and category counts. When the reference had ground-truth
labels, it also keeps what `agent.ml.performance` learned from them: a
calibration map and the metrics with their spread; when asked, what the
multivariate methods (`agent.ml.multivariate`) fitted on the reference.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from agent.ml import stats
from agent.ml.calibration import BINNED, ISOTONIC, Calibration
from agent.ml.columns import ColumnView, RawColumn
from agent.ml.multivariate import MmdReference, MultivariateReference, ReconstructionReference
from agent.ml.performance import BINARY, MULTICLASS, REGRESSION, PerformanceProfile
from agent.ml.statistics import CATEGORICAL, NUMERIC
from agent.proto.vigil.v1 import profile_pb2
from agent.statefile import write_atomic

NUMBER = "number"
STRING = "string"

DEFAULT_BINS = 10
DEFAULT_RESERVOIR = 10_000
# Integer-valued numbers with this many distinct values or fewer are taken as categories.
MAX_INTEGER_CATEGORIES = 10


@dataclass
class ColumnProfile:
    name: str
    kind: str  # NUMERIC or CATEGORICAL
    value_type: str  # NUMBER or STRING: the type values had in the reference
    count: int
    missing: int
    # numeric
    bin_edges: np.ndarray = field(default_factory=lambda: np.empty(0))
    bin_counts: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    reservoir: np.ndarray = field(default_factory=lambda: np.empty(0))
    mean: float = 0.0
    std: float = 0.0
    min: float = 0.0
    max: float = 0.0
    # categorical
    categories: dict[str, int] = field(default_factory=dict)

    @property
    def is_numeric(self) -> bool:
        return self.kind == NUMERIC

    @property
    def missing_share(self) -> float:
        return self.missing / self.count if self.count else 0.0


@dataclass
class Profile:
    model_name: str
    model_version: str
    rows: int
    features: dict[str, ColumnProfile]
    predictions: dict[str, ColumnProfile] = field(default_factory=dict)
    source: str = ""
    created_time_unix_nano: int = field(default_factory=time.time_ns)
    performance: PerformanceProfile | None = None  # only when the reference had labels
    # The multivariate methods' fits: the numeric features jointly, each embedding column; when asked for.
    multivariate: list[MultivariateReference] = field(default_factory=list)

    def columns(self) -> dict[str, ColumnProfile]:
        """Features and prediction outputs together, as the drift tests see them."""
        return {**self.features, **self.predictions}


def infer_kind(column: RawColumn) -> str:
    """Strings are categorical; numbers numeric, unless they are few distinct integers."""
    return _infer_kind(column.numbers[column.is_number], int(column.is_string.sum()))


def _infer_kind(numbers: np.ndarray, strings: int) -> str:
    if strings > numbers.size:
        return CATEGORICAL
    finite = numbers[np.isfinite(numbers)]
    if finite.size and np.all(finite == np.round(finite)) and np.unique(finite).size <= MAX_INTEGER_CATEGORIES:
        return CATEGORICAL
    return NUMERIC


def build_column(name: str, column: RawColumn, kind: str | None = None, bins: int = DEFAULT_BINS,
                 reservoir_size: int = DEFAULT_RESERVOIR, seed: int = 0,
                 sentinels: Sequence[float | str] = ()) -> ColumnProfile:
    """The profile of one reference column; `kind` overrides the inferred kind.

    Sentinel values are left out of the distribution (bins, reservoir, moments, range,
    categories), as windows leave them out of the tests: a sentinel is a missing value
    in disguise, and in the reference it would make every window look drifted.
    """
    # One view: its type masks look at each Python object once, and only where there is no number.
    view = ColumnView(column, sentinels)
    is_string, is_number = view.is_string, view.is_number
    strings, numbers = int(is_string.sum()), int(is_number.sum())
    kind = kind or _infer_kind(column.numbers[is_number], strings)
    value_type = STRING if strings > numbers else NUMBER
    profile = ColumnProfile(name, kind, value_type, count=len(column),
                            missing=int((~(is_string | is_number)).sum()))
    if kind == CATEGORICAL:
        counts = view.usable_category_counts  # RawColumn.usable_categories, counted
        profile.categories = {str(n): int(counts[n]) for n in sorted(counts)}
        return profile
    values = column.usable_numbers(sentinels)
    if values.size == 0:
        return profile
    # Inner quantile edges, deduplicated: a column with few distinct values gets fewer bins.
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
    profile.bin_edges = edges
    profile.bin_counts = stats.bin_counts(values, edges)
    if values.size > reservoir_size:
        values_sample = np.random.default_rng(seed).choice(values, reservoir_size, replace=False)
    else:
        values_sample = values
    profile.reservoir = np.sort(values_sample)
    profile.mean, profile.std = float(values.mean()), float(values.std())
    profile.min, profile.max = float(values.min()), float(values.max())
    return profile


# --- protobuf ------------------------------------------------------------------

_KINDS = {NUMERIC: profile_pb2.COLUMN_KIND_NUMERIC, CATEGORICAL: profile_pb2.COLUMN_KIND_CATEGORICAL}
_TYPES = {NUMBER: profile_pb2.VALUE_TYPE_NUMBER, STRING: profile_pb2.VALUE_TYPE_STRING}


def to_proto(profile: Profile) -> profile_pb2.Profile:
    message = profile_pb2.Profile(
        model_name=profile.model_name, model_version=profile.model_version, rows=profile.rows,
        source=profile.source, created_time_unix_nano=profile.created_time_unix_nano)
    for target, columns in ((message.features, profile.features), (message.predictions, profile.predictions)):
        for column in columns.values():
            target.append(_column_to_proto(column))
    if profile.performance is not None:
        message.performance.CopyFrom(_performance_to_proto(profile.performance))
    message.multivariate.extend(_multivariate_to_proto(m) for m in profile.multivariate)
    return message


def _multivariate_to_proto(m: MultivariateReference) -> profile_pb2.MultivariateProfile:
    message = profile_pb2.MultivariateProfile(columns=m.columns, embedding=m.embedding, mean=m.mean.tolist(),
                                              scale=m.scale.tolist())
    if m.mmd is not None:
        message.mmd.CopyFrom(profile_pb2.MmdProfile(
            projected_dims=m.mmd.projection.shape[0], projection=m.mmd.projection.ravel().tolist(),
            sample_rows=m.mmd.sample.shape[0], sample=m.mmd.sample.ravel().tolist(), bandwidth=m.mmd.bandwidth,
            margin=m.mmd.margin))
    if m.reconstruction is not None:
        r = m.reconstruction
        message.reconstruction.CopyFrom(profile_pb2.ReconstructionProfile(
            component_count=r.components.shape[0], components=r.components.ravel().tolist(),
            error_mean=r.error_mean, error_std=r.error_std, rows=r.rows))
    return message


def _multivariate_from_proto(m: profile_pb2.MultivariateProfile) -> MultivariateReference:
    name = f"embedding {m.embedding!r}" if m.embedding else f"features {', '.join(m.columns)}"
    dims = len(m.mean)
    if dims == 0 or len(m.scale) != dims:
        raise ValueError(f"multivariate {name}: {dims} means and {len(m.scale)} scales")

    def matrix(values, rows: int, what: str) -> np.ndarray:
        if len(values) != rows * dims:
            raise ValueError(f"multivariate {name}: {what} has {len(values)} values, not {rows} x {dims}")
        return np.array(values, dtype=float).reshape(rows, dims)

    reference = MultivariateReference(list(m.columns), m.embedding, np.array(m.mean, dtype=float),
                                      np.array(m.scale, dtype=float))
    if m.HasField("mmd"):
        projection = matrix(m.mmd.projection, m.mmd.projected_dims, "the projection")
        width = m.mmd.projected_dims or dims
        if len(m.mmd.sample) != m.mmd.sample_rows * width:
            raise ValueError(f"multivariate {name}: the sample has {len(m.mmd.sample)} values, not "
                             f"{m.mmd.sample_rows} x {width}")
        sample = np.array(m.mmd.sample, dtype=float).reshape(m.mmd.sample_rows, width)
        reference.mmd = MmdReference(projection, sample, m.mmd.bandwidth, m.mmd.margin)
    if m.HasField("reconstruction"):
        r = m.reconstruction
        reference.reconstruction = ReconstructionReference(matrix(r.components, r.component_count, "components"),
                                                           r.error_mean, r.error_std, r.rows)
    return reference


_PROBLEMS = {BINARY: profile_pb2.PROBLEM_TYPE_BINARY, MULTICLASS: profile_pb2.PROBLEM_TYPE_MULTICLASS,
             REGRESSION: profile_pb2.PROBLEM_TYPE_REGRESSION}
_METHODS = {ISOTONIC: profile_pb2.CALIBRATION_METHOD_ISOTONIC, BINNED: profile_pb2.CALIBRATION_METHOD_BINNED}


def _performance_to_proto(p: PerformanceProfile) -> profile_pb2.PerformanceProfile:
    message = profile_pb2.PerformanceProfile(
        problem=_PROBLEMS[p.problem], positive_class=p.positive_class, classes=p.classes, threshold=p.threshold,
        reference=p.reference, estimated=p.estimated, estimated_std=p.estimated_std,
        realized_std=p.realized_std, window_rows=p.window_rows, labeled_rows=p.labeled_rows,
        error_confusion=[] if p.error_confusion is None else p.error_confusion.ravel().tolist())
    c = p.calibration
    if c is not None:
        message.calibration.CopyFrom(profile_pb2.Calibration(
            method=_METHODS[c.method], x=c.x.tolist(), y=c.y.tolist(), brier_raw=c.brier_raw,
            brier_calibrated=c.brier_calibrated, folds=c.folds, applied=c.applied))
    return message


def _performance_from_proto(m: profile_pb2.PerformanceProfile) -> PerformanceProfile:
    problem = {v: k for k, v in _PROBLEMS.items()}.get(m.problem)
    if problem is None:
        raise ValueError(f"performance: unknown problem type {m.problem}")
    calibration = None
    if m.HasField("calibration"):
        method = {v: k for k, v in _METHODS.items()}.get(m.calibration.method)
        if method is None:
            raise ValueError(f"performance: unknown calibration method {m.calibration.method}")
        c = m.calibration
        calibration = Calibration(method, np.array(c.x, dtype=float), np.array(c.y, dtype=float), c.brier_raw,
                                  c.brier_calibrated, c.folds, c.applied)
    k = len(m.classes)
    if m.error_confusion and len(m.error_confusion) != k * k:
        raise ValueError(f"performance: error_confusion has {len(m.error_confusion)} values, not {k} x {k} classes")
    confusion = np.array(m.error_confusion, dtype=float).reshape(k, k) if m.error_confusion else None
    return PerformanceProfile(problem, m.positive_class, list(m.classes), m.threshold, calibration,
                              dict(m.reference), dict(m.estimated), dict(m.estimated_std), dict(m.realized_std),
                              m.window_rows, m.labeled_rows, confusion)


def _column_to_proto(c: ColumnProfile) -> profile_pb2.ColumnProfile:
    message = profile_pb2.ColumnProfile(name=c.name, kind=_KINDS[c.kind], value_type=_TYPES[c.value_type],
                                        count=c.count, missing=c.missing)
    if c.kind == NUMERIC:
        message.numeric.CopyFrom(profile_pb2.NumericProfile(
            bin_edges=c.bin_edges.tolist(), bin_counts=c.bin_counts.tolist(), reservoir=c.reservoir.tolist(),
            mean=c.mean, std=c.std, min=c.min, max=c.max, count=int(c.bin_counts.sum())))
    else:
        message.categorical.CopyFrom(profile_pb2.CategoricalProfile(
            categories=list(c.categories), counts=list(c.categories.values())))
    return message


def from_proto(message: profile_pb2.Profile) -> Profile:
    def columns(items) -> dict[str, ColumnProfile]:
        return {m.name: _column_from_proto(m) for m in items}

    performance = _performance_from_proto(message.performance) if message.HasField("performance") else None
    return Profile(message.model_name, message.model_version, message.rows, columns(message.features),
                   columns(message.predictions), message.source, message.created_time_unix_nano, performance,
                   [_multivariate_from_proto(m) for m in message.multivariate])


def _column_from_proto(m: profile_pb2.ColumnProfile) -> ColumnProfile:
    kind = {v: k for k, v in _KINDS.items()}.get(m.kind)
    value_type = {v: k for k, v in _TYPES.items()}.get(m.value_type, NUMBER)
    if kind is None:
        raise ValueError(f"column {m.name!r}: unknown kind {m.kind}")
    column = ColumnProfile(m.name, kind, value_type, m.count, m.missing)
    if kind == NUMERIC:
        n = m.numeric
        column.bin_edges = np.array(n.bin_edges, dtype=float)
        column.bin_counts = np.array(n.bin_counts, dtype=np.int64)
        column.reservoir = np.array(n.reservoir, dtype=float)
        column.mean, column.std, column.min, column.max = n.mean, n.std, n.min, n.max
    else:
        column.categories = dict(zip(m.categorical.categories, (int(c) for c in m.categorical.counts)))
    return column


def save(profile: Profile, path: str | Path) -> None:
    """Write the profile atomically (a crash leaves the old file or the new one, never half)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, to_proto(profile).SerializeToString())


def load(path: str | Path) -> Profile:
    message = profile_pb2.Profile()
    message.ParseFromString(Path(path).read_bytes())
    return from_proto(message)
