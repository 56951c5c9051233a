"""A chunk of current data analysed against the reference: drift and data health of every reference
column, and the model's performance (estimated from calibrated scores, realised where the chunk has
labels), as the JSON contract of `vigil analyze` has them (README.md, "Offline analysis").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from agent.ml import drift, health, multivariate as mv, parallel, performance as performances, statistics
from agent.ml.columns import ColumnView, RawColumn
from agent.ml.config import DriftConfig
from agent.ml.drift import ColumnDrift, DriftResult
from agent.ml.health import ColumnHealth
from agent.ml.offline.errors import OfflineError
from agent.ml.offline.reference import model_outputs
from agent.ml.performance import CLASSIFICATION_METRICS, REGRESSION_METRICS, PerformanceProfile
from agent.ml.profile import ColumnProfile, Profile
from agent.ml.tables import Table
from agent.ml.vocabulary import OUTPUTS

# The metrics a chunk is called degraded on, as the ml processor's performance.metrics default.
DEFAULT_WATCHED = ("accuracy", "roc_auc", "mae")


@dataclass
class Multivariate:
    """A multivariate method to run on every chunk: its fitted reference and settings."""
    method: str
    reference: mv.MultivariateReference
    settings: mv.Settings = mv.Settings()

    def run(self, table: Table, sentinels: Sequence[float | str], seed: int) -> dict[str, Any]:
        """The chunk's `drift.multivariate` object."""
        ref = self.reference
        if ref.embedding:
            rows = table.vectors[ref.embedding]
            if rows.shape[1] == 0:  # no row of the chunk had an embedding
                rows = np.full((rows.shape[0], ref.dims), math.nan)
        else:
            rows = mv.feature_rows([table.columns[name] for name in ref.columns], list(sentinels))
        if rows.shape[1] != ref.dims:
            raise OfflineError(f"--embedding {ref.embedding}: lists of {rows.shape[1]} numbers, the reference's "
                               f"have {ref.dims}")
        result = mv.test(ref, self.method, rows, self.settings, seed=seed)
        return {"method": self.method, "statistic": number(result.statistic),
                "threshold": number(result.threshold) if result.tested else None,
                "p_value": number(result.p_value), "drifted": bool(result.drifted)}


def analyze(reference: Profile, chunks: Iterable[Table], config: DriftConfig) -> dict[str, Any]:
    """The whole report (the JSON contract)."""
    return {"reference_rows": int(reference.rows),
            "chunks": [analyze_chunk(reference, table, config, i) for i, table in enumerate(chunks)]}


def analyze_chunk(reference: Profile, table: Table, config: DriftConfig, index: int = 0, *,
                  slots: dict[str, str] | None = None, truth: RawColumn | None = None, sigma: float = 3.0,
                  watched: Sequence[str] = DEFAULT_WATCHED,
                  multivariate: Multivariate | None = None, loss: Any = None) -> dict[str, Any]:
    """One chunk's report (the JSON contract's `chunks[i]`): drift and health of every reference column,
    and `performance` when the reference carries labels or `truth` (the chunk's labels) is given.

    `slots` maps the stored outputs (`ml.prediction.score`, …) to the chunk's columns (default: the
    stored names). `multivariate` adds `drift.multivariate`; `loss` (a regression reference's
    `estimates.LossModel`) the estimated MAE and RMSE."""
    profiled = reference.columns()
    tested = parallel.map_columns(lambda item: column_checks(item[0], item[1], table, config), profiled.items(),
                                  table.rows)
    result = drift.decide({name: found for name, (found, _) in zip(profiled, tested)}, config)
    healths = {name: found for name, (_, found) in zip(profiled, tested)}
    report = chunk_report(index, table.rows, result, healths)
    if multivariate is not None:
        report["drift"]["multivariate"] = multivariate.run(table, config.sentinels, seed=index)
    if reference.performance is not None or truth is not None:
        if slots is None:
            slots = {name: name for name in OUTPUTS if name in table.columns}
        outputs = model_outputs(table, slots)
        loss_estimate = None
        if loss is not None and outputs.value is not None:
            from agent.ml import estimates
            loss_estimate = estimates.estimate_loss(loss, table.columns, outputs.value)
        performance = performance_report(reference.performance, outputs, truth, sigma, watched, loss_estimate)
        if performance is not None:
            report["performance"] = performance
    return report


def column_checks(name: str, reference: ColumnProfile, table: Table,
                  config: DriftConfig) -> tuple[ColumnDrift, ColumnHealth]:
    """One column's drift statistics and health, from one view of it (they share its masks and sorted
    values, as the live processor's do). One task per column: the view's copies of the column go
    when its task ends, so a chunk's columns are not all held at once."""
    column = table.columns[name] if name in table.columns else RawColumn.missing(table.rows)
    view = ColumnView(column, config.sentinels)
    return drift.test_column(reference, view, config), health.column_health(reference, view)


def chunk_report(index: int, rows: int, result: DriftResult, healths: dict[str, ColumnHealth]) -> dict[str, Any]:
    features = {}
    for name, column in result.columns.items():
        # Every statistic of the column's kind is a key, null where it was not computed.
        shown = {key: None for key in statistics.of_kind(column.kind)}
        shown.update(column.statistics)
        features[name] = {"type": column.kind, "drifted": bool(column.drifted),
                          "p_value": number(column.p_adjusted),
                          "statistics": {key: number(value) for key, value in shown.items()}}
    return {"index": index, "rows": int(rows),
            "drift": {"detected": bool(result.detected), "share": number(result.share),
                      "drifted_features": list(result.drifted_columns), "features": features},
            "health": {name: {key: number(value) for key, value in h.as_dict().items()}
                       for name, h in healths.items()}}


def performance_report(perf: PerformanceProfile | None, outputs: performances.Outputs, truth: RawColumn | None,
                       sigma: float = 3.0, watched: Sequence[str] = DEFAULT_WATCHED,
                       loss_estimate: dict[str, float] | None = None) -> dict[str, Any] | None:
    """The `performance` object of a chunk: estimated and realised metrics, bounds, the verdict.

    Classification: `estimated_<m>` and `realized_<m>` for accuracy, precision, recall, f1 and roc_auc
    (precision/recall/f1 of the positive class for a binary model, macro averages otherwise), the
    realised per-class metrics under `classes`. Regression: `realized_mae`, `_rmse`, `_mape`, and
    `estimated_mae`, `_rmse` from `loss_estimate` (direct loss estimation; no bound). A metric
    that cannot be had is null. `bounds` holds, per metric, the value past which it counts as degraded
    (from the reference's spread, when the reference had labels); `degraded` is true when a watched
    metric went past its bound, `degraded_metrics` names them. None when there is nothing to report.
    """
    estimate = performances.estimate(perf, outputs) if perf is not None else {}
    realized: Any = None
    if truth is not None and (~truth.is_missing).any():
        realized = performances.evaluate_labels(perf, truth, outputs)
    if not estimate and realized is None and not loss_estimate:
        return None
    regression = (perf is not None and perf.problem == performances.REGRESSION) or \
        (perf is None and isinstance(realized, dict))
    if perf is not None:
        problem = perf.problem
    elif regression:
        problem = performances.REGRESSION
    else:
        problem = performances.BINARY if realized.positive is not None else performances.MULTICLASS
    report: dict[str, Any] = {"problem": problem, "rows": int(outputs.rows)}
    summary: dict[str, float] = {}
    if isinstance(realized, performances.Classification):
        summary = realized.summary()
        report["labeled_rows"] = realized.rows
    elif isinstance(realized, dict):
        summary = {k: v for k, v in realized.items() if k != "rows"}
        report["labeled_rows"] = int(realized.get("rows", 0))
    else:
        report["labeled_rows"] = 0
    if regression:
        for name in REGRESSION_METRICS:
            report[f"realized_{name}"] = number(summary.get(name))
        if loss_estimate is not None:
            for name in ("mae", "rmse"):
                report[f"estimated_{name}"] = number(loss_estimate.get(name))
    else:
        for name in CLASSIFICATION_METRICS:
            report[f"estimated_{name}"] = number(estimate.get(name))
            report[f"realized_{name}"] = number(summary.get(name))
    if isinstance(realized, performances.Classification):
        report["macro"] = {m: number(realized.macro(m)) for m in ("precision", "recall", "f1")}
        report["classes"] = {c: {"precision": number(realized.precision[i]), "recall": number(realized.recall[i]),
                                 "f1": number(realized.f1[i]), "support": int(realized.support[i])}
                             for i, c in enumerate(realized.classes)}
    bounds: dict[str, float] = {}
    degraded: list[str] = []
    if perf is not None:
        for source, metrics, rows, is_realized in (("estimated", estimate, int(estimate.get("rows", 0)), False),
                                                   ("realized", summary, report["labeled_rows"], True)):
            if not metrics:
                continue
            bad, found = performances.degraded(perf, metrics, rows, sigma, list(watched), realized_=is_realized)
            for name, bound in found.items():
                bounds[f"{source}_{name}"] = bound
                worse = metrics[name] > bound if name in REGRESSION_METRICS else metrics[name] < bound
                if worse:
                    degraded.append(f"{source}_{name}")
    report["bounds"] = {k: number(v) for k, v in bounds.items()}
    report["degraded"] = bool(degraded)
    report["degraded_metrics"] = degraded
    return report


def number(value: Any) -> float | None:
    """A finite float, or None (JSON null) for NaN, infinities and absent values."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
