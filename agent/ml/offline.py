"""Offline analysis: `vigil profile build|show` and `vigil analyze`.

The same engine the live `ml` processor runs (`agent.ml.profile`,
`agent.ml.drift`, `agent.ml.health`) applied to data files, so a training file
and a day of logged predictions give the numbers the agent would give.

Prediction outputs. A profile keeps a model's outputs in `predictions` under
the names the live processor sees on prediction spans:

- `--prediction COL` becomes `ml.prediction.label` when the column is
  categorical (strings, or few distinct integers, or `--categorical COL`),
  otherwise `ml.prediction.value` (a regression output);
- `--score COL` becomes `ml.prediction.score`;
- `--confidence COL` becomes `ml.prediction.confidence`.

Offline, results are reported by the data's own column names: `vigil analyze`
maps each stored output back to the column given with the same option
(`--prediction`, `--score`, `--confidence`). An output with no such option is
looked up in the current data under its stored name (a column literally named
`ml.prediction.label`), and left out with a warning when there is none. The
`--label` (ground truth), `--id-column` and `--timestamp-column` columns are
never features and are not drift-tested.

Performance. A reference built with `--label` keeps what its labels say
(`agent.ml.performance`): a calibration map for the score or confidence, the
metrics realised on it and their spread over windows of `--window-rows` rows
(for a data file given as `vigil analyze --reference`, the chunk size). `vigil
analyze` then reports per chunk a `performance` object: the label-free
estimate, and the realised metrics when the current data has labels — its own
`--label` column, or `--current-labels FILE` joined on `--id-column` — with
the bounds and whether the chunk is `degraded`.

Heavy modules (numpy, scipy, protobuf) are imported when a command runs, not
when the `vigil` parser is built.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

if TYPE_CHECKING:
    from agent.ml.columns import RawColumn
    from agent.ml.drift import DriftConfig, DriftResult
    from agent.ml.health import ColumnHealth
    from agent.ml.profile import ColumnProfile, Profile
    from agent.ml.tables import Table, TableFile

PREDICTION_LABEL = "ml.prediction.label"
PREDICTION_VALUE = "ml.prediction.value"
PREDICTION_SCORE = "ml.prediction.score"
PREDICTION_CONFIDENCE = "ml.prediction.confidence"
PREDICTION_NAMES = (PREDICTION_LABEL, PREDICTION_VALUE, PREDICTION_SCORE, PREDICTION_CONFIDENCE)

PROFILE_SUFFIXES = (".vigilprofile", ".pb")
PERFORMANCE_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION_METRICS = ("mae", "rmse", "mape")
DEFAULT_WATCHED = ("accuracy", "roc_auc", "mae")

# The statistics each column type reports, in report order (the engine computes them).
STATISTICS = {"numeric": ("ks", "psi", "wasserstein_normed", "jensen_shannon"),
              "categorical": ("chi2", "psi", "jensen_shannon")}
HEALTH = ("missing", "sentinel", "type_mismatch", "out_of_range", "unseen_category")


class OfflineError(Exception):
    """A problem with the user's input: a missing file, an unknown column, unreadable data."""


@dataclass
class Roles:
    """The columns that are not features."""
    prediction: str | None = None
    score: str | None = None
    confidence: str | None = None
    label: str | None = None
    id_column: str | None = None
    timestamp_column: str | None = None

    def named(self) -> dict[str, str]:
        """option → column, for the options given."""
        options = {"--prediction": self.prediction, "--score": self.score, "--confidence": self.confidence,
                   "--label": self.label, "--id-column": self.id_column,
                   "--timestamp-column": self.timestamp_column}
        return {option: column for option, column in options.items() if column}

    def outputs(self) -> dict[str, str]:
        """option → column, for the prediction outputs given."""
        return {o: c for o, c in self.named().items() if o in ("--prediction", "--score", "--confidence")}

    def check_distinct(self) -> None:
        seen: dict[str, str] = {}
        for option, column in self.named().items():
            if column in seen:
                raise OfflineError(f"column {column!r} is given to both {seen[column]} and {option}")
            seen[column] = option


# --- building a profile ---------------------------------------------------------

def build_profile(table: Table, *, columns: Sequence[str] | None = None, model: str = "", version: str = "",
                  features: Sequence[str] | None = None, categorical: Sequence[str] = (),
                  numeric: Sequence[str] = (), roles: Roles | None = None, bins: int | None = None,
                  reservoir: int | None = None, source: str = "", seed: int = 0,
                  sentinels: Sequence[float | str] = (-999,), calibration: str = "isotonic",
                  positive_class: str | None = None, window_rows: int | None = None) -> Profile:
    """A profile of `table`: one column per feature, one per prediction output (see the module doc).

    `columns` is the file's column order (default: the table's); `features` default to every
    column that has no role. With a `--label` column and a prediction output, the profile also
    keeps the model's performance on the reference (`calibration`: isotonic or binned;
    `positive_class`: the class a binary score is the probability of, inferred when None;
    `window_rows`: the window size the bounds' spread is measured on).
    """
    from agent.ml import profile as profiles

    roles = roles or Roles()
    roles.check_distinct()
    names = list(columns if columns is not None else table.columns)
    where = source or "the data"
    for option, column in roles.named().items():
        if column not in names:
            raise OfflineError(f"{_unknown([column])} in {option}: {where} has columns {_list(names)}")
    chosen = _features(names, features, roles, where)
    outputs = roles.outputs()
    analysed = set(chosen) | set(outputs.values())
    kinds = _kind_overrides(categorical, numeric, analysed)
    bins = profiles.DEFAULT_BINS if bins is None else bins
    reservoir = profiles.DEFAULT_RESERVOIR if reservoir is None else reservoir

    def build(name: str, column: str, kind: str | None):
        return profiles.build_column(name, table.columns[column], kind=kind, bins=bins,
                                     reservoir_size=reservoir, seed=seed, sentinels=sentinels)

    feature_profiles = {name: build(name, name, kinds.get(name)) for name in chosen}
    predictions = {}
    slots = {}
    for option, column in outputs.items():
        kind = kinds.get(column) or profiles.infer_kind(table.columns[column])
        predictions[output_name(option, kind)] = build(output_name(option, kind), column, kind)
        slots[output_name(option, kind)] = column
    clash = sorted(set(feature_profiles) & set(predictions))
    if clash:
        raise OfflineError(f"feature {_list(clash)} has the name of a prediction output; rename the column")
    performance = None
    if roles.label and outputs:
        from agent.ml import performance as performances

        performance = performances.build(
            table.columns[roles.label], model_outputs(table, slots), positive_class=positive_class,
            method=calibration, window_rows=window_rows or performances.DEFAULT_WINDOW_ROWS, seed=seed)
    return profiles.Profile(model, version, table.rows, feature_profiles, predictions, source=source,
                            performance=performance)


def model_outputs(table: Table, slots: dict[str, str]):
    """The model's outputs in `table`, by stored name (`ml.prediction.label`, …) → column."""
    from agent.ml.columns import RawColumn
    from agent.ml.performance import Outputs

    return Outputs.from_columns({slot: table.columns.get(column, RawColumn.missing(table.rows))
                                 for slot, column in slots.items()})


def output_name(option: str, kind: str) -> str:
    """The stored name of the prediction output given with `option` ("--prediction", …)."""
    if option == "--prediction":
        return PREDICTION_LABEL if kind == "categorical" else PREDICTION_VALUE
    return {"--score": PREDICTION_SCORE, "--confidence": PREDICTION_CONFIDENCE}[option]


def _features(names: Sequence[str], features: Sequence[str] | None, roles: Roles, where: str) -> list[str]:
    reserved = {column: option for option, column in roles.named().items()}
    if not features:
        return [n for n in names if n not in reserved]
    for name in features:
        if name not in names:
            raise OfflineError(f"{_unknown([name])} in --features: {where} has columns {_list(names)}")
        if name in reserved:
            raise OfflineError(f"column {name!r} is the {reserved[name]} column; it cannot also be a feature")
    return list(dict.fromkeys(features))


def _kind_overrides(categorical: Sequence[str], numeric: Sequence[str], analysed: set[str]) -> dict[str, str]:
    both = sorted(set(categorical) & set(numeric))
    if both:
        raise OfflineError(f"column {_list(both)} is given to both --categorical and --numeric")
    kinds = {**{n: "categorical" for n in categorical}, **{n: "numeric" for n in numeric}}
    unknown = [n for n in kinds if n not in analysed]
    if unknown:
        raise OfflineError(f"{_unknown(unknown)} in --categorical/--numeric: not a feature "
                           f"or prediction column (analysed: {_list(sorted(analysed))})")
    return kinds


# --- reading files --------------------------------------------------------------

def open_data(path: str | Path, progress: bool = True) -> TableFile:
    from agent.ml.tables import DataError, TableFile

    try:
        return TableFile(path, progress=progress)
    except DataError as exc:
        raise OfflineError(str(exc)) from None


def read_blocks(data: TableFile, names: Sequence[str], chunk_rows: int | None = None) -> Iterator[Table]:
    from agent.ml.tables import DataError

    try:
        yield from data.blocks(names, chunk_rows)
    except DataError as exc:
        raise OfflineError(str(exc)) from None


def load_profile(path: str | Path) -> Profile:
    """A profile file; OfflineError when it is missing or not a Vigil profile."""
    path = Path(path)
    if not path.is_file():
        raise OfflineError(f"{path}: no such file")
    profile = _parse_profile(path.read_bytes())
    if profile is None:
        raise OfflineError(f"{path}: not a Vigil profile (a vigil.v1.Profile protobuf, as "
                           "`vigil profile build` writes)")
    return profile


def _parse_profile(data: bytes) -> Profile | None:
    from google.protobuf.message import DecodeError

    from agent.ml import profile as profiles
    from agent.proto.vigil.v1 import profile_pb2

    message = profile_pb2.Profile()
    try:
        message.ParseFromString(data)
        columns = [*message.features, *message.predictions]
        # Arbitrary bytes can parse as a message of unknown fields: demand real columns.
        if not columns or any(not c.name or not c.kind for c in columns):
            return None
        return profiles.from_proto(message)
    except (DecodeError, ValueError, UnicodeDecodeError):
        return None


def is_profile_file(path: str | Path) -> bool:
    """By extension (`.vigilprofile`, `.pb` yes; `.csv`, `.parquet`, … no), else by parsing it."""
    from agent.ml.tables import DATA_SUFFIXES

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PROFILE_SUFFIXES:
        return True
    if suffix in DATA_SUFFIXES or not path.is_file():
        return False
    return _parse_profile(path.read_bytes()) is not None


# --- analysing -----------------------------------------------------------------

@dataclass
class LabelFile:
    """Ground truth from its own file (`--current-labels`), joined to the current data by id."""
    index: dict[str, int]  # id → row of its (first) label
    labels: RawColumn
    rows: int
    duplicates: int  # rows whose id came before (their label is not used)

    @classmethod
    def read(cls, path: str | Path, id_column: str, label_column: str) -> LabelFile:
        from agent.ml.performance import categories

        data = open_data(path)
        for option, column in (("--id-column", id_column), ("--label", label_column)):
            if column not in data.columns:
                raise OfflineError(f"{_unknown([column])} in {option}: {path} (--current-labels) has columns "
                                   f"{_list(data.columns)}")
        table = next(read_blocks(data, [id_column, label_column]))
        index: dict[str, int] = {}
        duplicates = 0
        for row, id_ in enumerate(categories(table.columns[id_column]).tolist()):
            if id_ is None:
                continue
            if id_ in index:
                duplicates += 1
            else:
                index[id_] = row
        return cls(index, table.columns[label_column], table.rows, duplicates)

    def join(self, ids: RawColumn) -> RawColumn:
        """The label of each id (missing where the file has none)."""
        import numpy as np

        from agent.ml.columns import RawColumn
        from agent.ml.performance import categories

        rows = np.fromiter((self.index.get(i, -1) if i is not None else -1 for i in categories(ids).tolist()),
                           dtype=np.int64, count=len(ids))
        found = rows >= 0
        numbers = np.full(rows.size, math.nan)
        strings = np.full(rows.size, None, dtype=object)
        numbers[found] = self.labels.numbers[rows[found]]
        strings[found] = self.labels.strings[rows[found]]
        return RawColumn(numbers, strings)


@dataclass
class Reference:
    """The reference as analysis sees it: every column under the current data's column name."""
    profile: Profile  # features and prediction outputs, renamed to data column names
    warnings: list[str] = field(default_factory=list)
    slots: dict[str, str] = field(default_factory=dict)  # stored output name → current data column

    @property
    def columns(self) -> list[str]:
        return list(self.profile.columns())


def reference_view(profile: Profile, current_columns: Sequence[str], *, features: Sequence[str] | None = None,
                   roles: Roles | None = None, where: str = "the reference profile",
                   current: str = "the current data") -> Reference:
    """The columns of `profile` to analyse, keyed by the current data's column names (see the module doc)."""
    from agent.ml import profile as profiles

    roles = roles or Roles()
    roles.check_distinct()
    warnings: list[str] = []
    if features:
        unknown = [n for n in features if n not in profile.features]
        if unknown:
            raise OfflineError(f"{_unknown(unknown)} in --features: {where} has features "
                               f"{_list(profile.features)}")
        chosen = {n: profile.features[n] for n in dict.fromkeys(features)}
    else:
        chosen = dict(profile.features)
    # Which data column feeds each stored output.
    wanted = {PREDICTION_SCORE: roles.score, PREDICTION_CONFIDENCE: roles.confidence}
    if roles.prediction:
        slot = next((s for s in (PREDICTION_LABEL, PREDICTION_VALUE) if s in profile.predictions), None)
        if slot is None:
            raise OfflineError(f"--prediction {roles.prediction}: {where} has no prediction output "
                               f"({PREDICTION_LABEL} or {PREDICTION_VALUE})")
        wanted[slot] = roles.prediction
    for slot, option in ((PREDICTION_SCORE, "--score"), (PREDICTION_CONFIDENCE, "--confidence")):
        if wanted[slot] and slot not in profile.predictions:
            raise OfflineError(f"{option} {wanted[slot]}: {where} has no {slot} output")
    outputs: dict[str, ColumnProfile] = {}
    slots: dict[str, str] = {}
    for slot, column_profile in profile.predictions.items():
        column = wanted.get(slot)
        if not column:
            if slot in current_columns:
                column = slot
            else:
                option = "--prediction" if slot in (PREDICTION_LABEL, PREDICTION_VALUE) else \
                    {PREDICTION_SCORE: "--score", PREDICTION_CONFIDENCE: "--confidence"}.get(slot, "")
                hint = f" (name its column with {option} COL)" if option else ""
                warnings.append(f"prediction output {slot} of {where} is not analysed: {current} has no "
                                f"column {slot}{hint}")
                continue
        if column in chosen or column in outputs:
            raise OfflineError(f"column {column!r} would be analysed twice (a feature and a prediction output)")
        outputs[column] = dataclasses.replace(column_profile, name=column)
        slots[slot] = column
    missing = [n for n in [*chosen, *outputs] if n not in current_columns]
    if missing:
        raise OfflineError(f"{_unknown(missing)}: {current} lacks what the reference has "
                           f"(it has {_list(current_columns)}; --features picks the columns to analyse)")
    view = profiles.Profile(profile.model_name, profile.model_version, profile.rows, chosen, outputs,
                            profile.source, profile.created_time_unix_nano, profile.performance)
    return Reference(view, warnings, slots)


def analyze_chunk(reference: Profile, table: Table, config: DriftConfig, index: int = 0, *,
                  slots: dict[str, str] | None = None, truth: RawColumn | None = None, sigma: float = 3.0,
                  watched: Sequence[str] = DEFAULT_WATCHED) -> dict[str, Any]:
    """One chunk's report (the JSON contract's `chunks[i]`): drift and health of every reference column,
    and `performance` when the reference carries labels or `truth` (the chunk's labels) is given.

    `slots` maps the stored outputs (`ml.prediction.score`, …) to the chunk's columns (default: the
    stored names)."""
    from agent.ml import drift, health

    # One view per column: drift and health share its masks and usable values, as the live processor does.
    views = drift.views(reference, table.columns, table.rows, config.sentinels)
    result = drift.evaluate(reference, table.columns, table.rows, config, views)
    healths = {name: health.column_health(column, views[name]) for name, column in reference.columns().items()}
    report = chunk_report(index, table.rows, result, healths)
    if reference.performance is not None or truth is not None:
        if slots is None:
            slots = {name: name for name in PREDICTION_NAMES if name in table.columns}
        performance = performance_report(reference.performance, model_outputs(table, slots), truth, sigma, watched)
        if performance is not None:
            report["performance"] = performance
    return report


def performance_report(perf, outputs, truth: RawColumn | None, sigma: float = 3.0,
                       watched: Sequence[str] = DEFAULT_WATCHED) -> dict[str, Any] | None:
    """The `performance` object of a chunk: estimated and realised metrics, bounds, the verdict.

    Classification: `estimated_<m>` and `realized_<m>` for accuracy, precision, recall, f1 and roc_auc
    (precision/recall/f1 of the positive class for a binary model, macro averages otherwise), the
    realised per-class metrics under `classes`. Regression: `realized_mae`, `_rmse`, `_mape`. A metric
    that cannot be had is null. `bounds` holds, per metric, the value past which it counts as degraded
    (from the reference's spread, when the reference had labels); `degraded` is true when a watched
    metric went past its bound, `degraded_metrics` names them. None when there is nothing to report.
    """
    from agent.ml import performance as performances

    estimate = performances.estimate(perf, outputs) if perf is not None else {}
    realized: Any = None
    if truth is not None and (~truth.is_missing).any():
        realized = performances.evaluate_labels(perf, truth, outputs)
    if not estimate and realized is None:
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
            report[f"realized_{name}"] = _number(summary.get(name))
    else:
        for name in PERFORMANCE_METRICS:
            report[f"estimated_{name}"] = _number(estimate.get(name))
            report[f"realized_{name}"] = _number(summary.get(name))
    if isinstance(realized, performances.Classification):
        report["macro"] = {m: _number(realized.macro(m)) for m in ("precision", "recall", "f1")}
        report["classes"] = {c: {"precision": _number(realized.precision[i]), "recall": _number(realized.recall[i]),
                                 "f1": _number(realized.f1[i]), "support": int(realized.support[i])}
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
    report["bounds"] = {k: _number(v) for k, v in bounds.items()}
    report["degraded"] = bool(degraded)
    report["degraded_metrics"] = degraded
    return report


def chunk_report(index: int, rows: int, result: DriftResult, healths: dict[str, ColumnHealth]) -> dict[str, Any]:
    features = {}
    for name, column in result.columns.items():
        statistics = {key: None for key in STATISTICS.get(column.kind, ())}
        statistics.update(column.statistics)
        features[name] = {"type": column.kind, "drifted": bool(column.drifted),
                          "p_value": _number(column.p_adjusted),
                          "statistics": {key: _number(value) for key, value in statistics.items()}}
    return {"index": index, "rows": int(rows),
            "drift": {"detected": bool(result.detected), "share": _number(result.share),
                      "drifted_features": list(result.drifted_columns), "features": features},
            "health": {name: {key: _number(value) for key, value in h.as_dict().items()}
                       for name, h in healths.items()}}


def analyze(reference: Profile, chunks: Iterable[Table], config: DriftConfig) -> dict[str, Any]:
    """The whole report (the JSON contract)."""
    return {"reference_rows": int(reference.rows),
            "chunks": [analyze_chunk(reference, table, config, i) for i, table in enumerate(chunks)]}


def _number(value: Any) -> float | None:
    """A finite float, or None (JSON null) for NaN, infinities and absent values."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# --- rendering -----------------------------------------------------------------

def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, allow_nan=False) + "\n"


def format_chunk(chunk: dict[str, Any], start_row: int, methods: dict[str, str] | None = None,
                 drift_share: float | None = None) -> str:
    """One chunk as an aligned table for people; drifted columns marked DRIFT.

    `methods` (column → the statistic the decision used) puts a `*` on that cell when it drifted.
    """
    drift_ = chunk["drift"]
    features = drift_["features"]
    tested = sum(f["p_value"] is not None for f in features.values())
    drifted = drift_["drifted_features"]
    verdict = "yes" if drift_["detected"] else "no"
    rows = chunk["rows"]
    span = f"rows {start_row + 1}-{start_row + rows}" if rows else "no rows"
    threshold = f", threshold {_percent(drift_share)}" if drift_share is not None else ""
    names = f": {', '.join(drifted)}" if drifted else ""
    lines = [f"chunk {chunk['index']}: {span} ({rows} rows): dataset drift: {verdict} ({len(drifted)} of "
             f"{tested} columns drifted{threshold}){names}"]
    header = ["column", "type", "drift", "p_value", "ks", "chi2", "psi", "wasserstein", "jensen_sh",
              "missing", "sentinel", "mismatch", "out_range", "unseen"]
    table = [header]
    stat_columns = {"ks": "ks", "chi2": "chi2", "psi": "psi", "wasserstein": "wasserstein_normed",
                    "jensen_sh": "jensen_shannon"}
    for name, feature in features.items():
        state = "DRIFT" if feature["drifted"] else ("ok" if feature["p_value"] is not None else "untested")
        row = [name, feature["type"], state, _p(feature["p_value"])]
        for key in stat_columns.values():
            if key not in feature["statistics"]:
                row.append("")
                continue
            cell = _stat(feature["statistics"][key])
            if feature["drifted"] and methods and methods.get(name) == key:
                cell += "*"
            row.append(cell)
        h = chunk["health"].get(name, {})
        row += [_share(h.get(key)) for key in HEALTH]
        table.append(row)
    lines += ["  " + line for line in _align(table, right_from=3)]
    if "performance" in chunk:
        lines += format_performance(chunk["performance"])
    return "\n".join(lines) + "\n"


def format_performance(p: dict[str, Any]) -> list[str]:
    """A chunk's performance for people: one row per metric, estimated and realised, with its bound."""
    verdict = "DEGRADED: " + ", ".join(p["degraded_metrics"]) if p["degraded"] else "not degraded"
    lines = [f"  performance ({p['problem']}; {p['labeled_rows']} of {p['rows']} rows labelled): {verdict}"]
    names = REGRESSION_METRICS if p["problem"] == "regression" else PERFORMANCE_METRICS
    table = [["metric", "estimated", "bound", "realized", "bound"]]
    bounds = p.get("bounds", {})
    for name in names:
        estimated, realized = p.get(f"estimated_{name}"), p.get(f"realized_{name}")
        if estimated is None and realized is None:
            continue
        cells = [name]
        for source, value in (("estimated", estimated), ("realized", realized)):
            mark = "*" if f"{source}_{name}" in p["degraded_metrics"] else ""
            cells += [_stat(value) + mark, _stat(bounds.get(f"{source}_{name}"))]
        table.append(cells)
    if len(table) > 1:
        lines += ["    " + line for line in _align(table, right_from=1)]
    return lines


def format_report(report: dict[str, Any], reference: str, current: str,
                  methods: dict[str, str] | None = None, drift_share: float | None = None) -> str:
    parts = [f"reference: {reference} ({report['reference_rows']} rows)\ncurrent:   {current}\n"]
    start = 0
    for chunk in report["chunks"]:
        parts.append("\n" + format_chunk(chunk, start, methods, drift_share))
        start += chunk["rows"]
    parts.append("\n" + TABLE_LEGEND)
    return "".join(parts)


TABLE_LEGEND = ("DRIFT: the column drifted (corrected p_value below alpha and the starred effect size at or over "
                "its threshold); untested: too few values.\np_value is corrected across the chunk's columns; "
                "health columns are shares of the chunk's rows (missing) or present values (the others).\n")


def _align(rows: list[list[str]], right_from: int, right_to: int | None = None) -> list[str]:
    """Rows of cells as aligned lines: columns [right_from, right_to) flush right (numbers), others left."""
    rows = [[_printable(cell) for cell in row] for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right_to = len(widths) if right_to is None else right_to
    out = []
    for row in rows:
        cells = [cell.rjust(w) if right_from <= i < right_to else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(row, widths))]
        out.append("  ".join(cells).rstrip())
    return out


def _printable(text: str) -> str:
    """Names and categories as one line of visible text (control characters escaped)."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2e}" if 0 < value < 1e-3 else f"{value:.4f}"


def _stat(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) >= 1000 else f"{value:.4f}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _percent(value: float) -> str:
    """50%, 33.3%: a share as people write it."""
    return f"{value:.1%}".replace(".0%", "%")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _unknown(names: Sequence[str]) -> str:
    return f"unknown column{'s' if len(names) > 1 else ''} {', '.join(map(repr, names))}"


def _list(names: Iterable[str]) -> str:
    names = list(names)
    shown = ", ".join(names[:20]) + (f", … ({len(names)} in all)" if len(names) > 20 else "")
    return shown or "(none)"


def profile_to_dict(profile: Profile) -> dict[str, Any]:
    """A profile as plain JSON-able data (what `vigil profile show --format json` prints)."""

    def column(c: ColumnProfile) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": c.name, "kind": c.kind, "value_type": c.value_type, "count": int(c.count),
                                 "missing": int(c.missing), "missing_share": _number(c.missing_share)}
        if c.kind == "numeric":
            entry["numeric"] = {"mean": _number(c.mean), "std": _number(c.std), "min": _number(c.min),
                                "max": _number(c.max), "bin_edges": [_number(e) for e in c.bin_edges],
                                "bin_counts": [int(n) for n in c.bin_counts],
                                "reservoir_size": int(c.reservoir.size)}
        else:
            entry["categorical"] = {"categories": {k: int(v) for k, v in c.categories.items()}}
        return entry

    out = {"model_name": profile.model_name, "model_version": profile.model_version, "rows": int(profile.rows),
           "source": profile.source, "created_time_unix_nano": int(profile.created_time_unix_nano),
           "features": [column(c) for c in profile.features.values()],
           "predictions": [column(c) for c in profile.predictions.values()]}
    perf = profile.performance
    if perf is not None:
        numbers = lambda d: {k: _number(v) for k, v in d.items()}  # noqa: E731
        c = perf.calibration
        out["performance"] = {
            "problem": perf.problem, "positive_class": perf.positive_class or None, "classes": list(perf.classes),
            "threshold": _number(perf.threshold), "labeled_rows": int(perf.labeled_rows),
            "window_rows": int(perf.window_rows), "reference": numbers(perf.reference),
            "estimated": numbers(perf.estimated), "estimated_std": numbers(perf.estimated_std),
            "realized_std": numbers(perf.realized_std),
            "calibration": None if c is None else {
                "method": c.method, "applied": bool(c.applied), "folds": int(c.folds),
                "brier_raw": _number(c.brier_raw), "brier_calibrated": _number(c.brier_calibrated),
                "points": int(c.x.size)}}
    return out


def format_profile(profile: Profile, top: int = 5) -> str:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(profile.created_time_unix_nano / 1e9))
    lines = [f"model:    {profile.model_name or '-'}", f"version:  {profile.model_version or '-'}",
             f"rows:     {profile.rows}", f"source:   {profile.source or '-'}", f"created:  {created}"]
    if profile.performance is not None:
        lines.append(_performance_line(profile.performance))
    for title, columns in (("features", profile.features), ("predictions", profile.predictions)):
        lines.append("")
        lines.append(f"{title} ({len(columns)})")
        if not columns:
            continue
        table = [["column", "kind", "type", "missing", "mean", "std", "min", "max", "bins", "top categories"]]
        for c in columns.values():
            row = [c.name, c.kind, c.value_type, _share(c.missing_share)]
            if c.kind == "numeric":
                stats = [f"{v:.6g}" if c.reservoir.size else "-" for v in (c.mean, c.std, c.min, c.max)]
                row += [*stats, str(c.bin_counts.size), ""]
            else:
                total = sum(c.categories.values())
                ranked = sorted(c.categories.items(), key=lambda item: (-item[1], item[0]))
                shown = ", ".join(f"{k} {v / total:.1%}" for k, v in ranked[:top])
                more = f", … (+{len(ranked) - top})" if len(ranked) > top else ""
                row += ["", "", "", "", "", shown + more]
            table.append(row)
        lines += ["  " + line for line in _align(table, right_from=3, right_to=9)]
        numeric = [c for c in columns.values() if c.kind == "numeric" and c.bin_counts.size]
        if numeric:
            lines.append("  bins (inner edges; counts per bin, below the first edge to above the last):")
            for c in numeric:
                edges = ", ".join(f"{e:.6g}" for e in c.bin_edges)
                counts = ", ".join(str(int(n)) for n in c.bin_counts)
                lines.append(f"    {_printable(c.name)}: edges [{edges}]  counts [{counts}]")
    return "\n".join(lines) + "\n"


# --- the commands --------------------------------------------------------------

def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `vigil profile build|show` and `vigil analyze` on the `vigil` parser."""
    profile = subparsers.add_parser("profile", help="build or show a model's reference profile",
                                    description="Reference profiles (vigil.v1.Profile): what a model's "
                                    "inputs and outputs looked like, for drift and data health.")
    profile.set_defaults(func=lambda _: profile.print_help() or 2)
    actions = profile.add_subparsers(dest="profile_command", metavar="ACTION")

    build = actions.add_parser("build", help="build a profile from training data (CSV or Parquet)",
                               description="Build a reference profile from a data file. " + _OUTPUTS_HELP)
    build.add_argument("data", metavar="DATA", help="CSV (.csv, .tsv) or Parquet (.parquet, needs pyarrow) file")
    build.add_argument("-o", "--output", required=True, metavar="OUT", help="profile file to write "
                       "(e.g. model.vigilprofile)")
    build.add_argument("--model", help="model name (default: the data file's name without extension)")
    build.add_argument("--version", default="", help="model version")
    _column_arguments(build)
    _profile_arguments(build)
    build.add_argument("--sentinel", action="append", metavar="VALUE",
                       help="a value that stands for missing, left out of the distributions "
                       "(repeatable; default -999)")
    build.set_defaults(func=_command(_build))

    show = actions.add_parser("show", help="print a profile")
    show.add_argument("file", metavar="FILE", help="profile file")
    show.add_argument("--format", choices=("table", "json"), default="table")
    show.set_defaults(func=_command(_show))

    analyze_ = subparsers.add_parser(
        "analyze", help="drift and data health of a data file against a reference",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_paragraphs(
            "Drift and data health of CUR against REF, per chunk of rows, with the statistics engine the ml "
            "processor runs.",
            "Exit status 0 whether or not drift is found; 1 for a missing or unreadable file or an unknown "
            "column.",
            _OUTPUTS_HELP + " With a profile as REF, --prediction/--score/--confidence name the current data's "
            "columns for the stored outputs; an output without one is looked up under its stored name."))
    analyze_.add_argument("--reference", required=True, metavar="REF",
                          help="reference: a profile (.vigilprofile, .pb) or a data file (.csv, .tsv, .parquet)")
    analyze_.add_argument("--current", required=True, metavar="CUR", help="current data (.csv, .tsv, .parquet)")
    _column_arguments(analyze_)
    analyze_.add_argument("--current-labels", metavar="FILE",
                          help="ground truth for CUR in its own file (.csv, .tsv, .parquet): its --label column, "
                          "joined to CUR on --id-column (the first label of a repeated id counts)")
    analyze_.add_argument("--chunk-size", type=_positive_int, metavar="N",
                          help="analyse CUR in chunks of N rows (the last may be smaller; default: one chunk)")
    drift_options = analyze_.add_argument_group("drift decision (DriftConfig)")
    drift_options.add_argument("--alpha", type=float, help="family significance level (default 0.05)")
    drift_options.add_argument("--correction", choices=("bonferroni", "benjamini_hochberg"),
                               help="multiple-testing correction across a chunk's columns (default bonferroni)")
    drift_options.add_argument("--drift-share", type=float, metavar="SHARE",
                               help="share of drifted columns at which the chunk counts as drifted (default 0.5)")
    drift_options.add_argument("--sentinel", action="append", metavar="VALUE",
                               help="a value that stands for missing (repeatable; default -999); "
                               "numbers match numbers, anything else matches text")
    performance_options = analyze_.add_argument_group("performance (with a reference that has labels)")
    performance_options.add_argument("--sigma", type=float, default=3.0,
                                     help="a chunk is degraded when a metric is more than SIGMA standard deviations "
                                     "of its spread on reference windows worse than on the reference (default 3)")
    reference_options = analyze_.add_argument_group("reference built from a data file (ignored for a profile)")
    _profile_arguments(reference_options)
    analyze_.add_argument("--format", choices=("table", "json"), default="table",
                          help="table for people; json: a stable contract, with p_value the corrected "
                          "p-value the decision used (null when the column was not tested) and null for "
                          "any non-finite number")
    analyze_.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    analyze_.set_defaults(func=_command(_analyze))


_OUTPUTS_HELP = ("Features are --features, or every column that is not given as a prediction, score, "
                 "confidence, label, id or timestamp column. --prediction is stored as ml.prediction.label "
                 "when categorical, else ml.prediction.value; --score as ml.prediction.score; --confidence as "
                 "ml.prediction.confidence. Reports name them by their column names.")


def _paragraphs(*texts: str) -> str:
    return "\n\n".join(textwrap.fill(text, 78) for text in texts)


def _column_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", action="append", metavar="A,B,…",
                        help="feature columns (comma-separated, repeatable; default: every column without a role)")
    parser.add_argument("--categorical", action="append", default=[], metavar="A,B,…",
                        help="treat these columns as categorical")
    parser.add_argument("--numeric", action="append", default=[], metavar="A,B,…",
                        help="treat these columns as numeric")
    parser.add_argument("--prediction", metavar="COL", help="the model's prediction (class or value)")
    outputs = parser.add_mutually_exclusive_group()
    outputs.add_argument("--score", metavar="COL", help="the model's score")
    outputs.add_argument("--confidence", metavar="COL", help="the model's top-class probability (0-1)")
    parser.add_argument("--label", metavar="COL", help="ground truth (not a feature; not drift-tested)")
    parser.add_argument("--id-column", metavar="COL", help="row id (not a feature)")
    parser.add_argument("--timestamp-column", metavar="COL", help="row time (not a feature)")


def _profile_arguments(parser) -> None:
    parser.add_argument("--bins", type=_positive_int, metavar="N", help="quantile bins per numeric column "
                        "(default 10)")
    parser.add_argument("--reservoir", type=_positive_int, metavar="N", help="sample size kept per numeric "
                        "column for the two-sample tests (default 10000)")
    parser.add_argument("--calibration", choices=("isotonic", "binned"), default="isotonic",
                        help="with --label: how the score (or confidence) is calibrated on the labels; the map is "
                        "used only when it beats the raw scores on held-out folds (default isotonic)")
    parser.add_argument("--positive-class", metavar="CLASS", help="with --label and --score: the class the score "
                        "is the probability of (default: inferred, the class with the higher scores)")
    parser.add_argument("--window-rows", type=_positive_int, metavar="N", help="with --label: the window size the "
                        "spread of the metrics (the alert bounds) is measured on (default 1000; for vigil analyze, "
                        "the chunk size)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _names(values: Sequence[str] | None) -> list[str]:
    """`--features a,b --features c` → [a, b, c]."""
    names = [name.strip() for value in values or () for name in value.split(",")]
    return list(dict.fromkeys(n for n in names if n))


def _roles(args: argparse.Namespace) -> Roles:
    return Roles(args.prediction, args.score, args.confidence, args.label, args.id_column, args.timestamp_column)


def _command(function):
    """Run a command; an OfflineError is a one-line message on stderr and exit status 1."""
    def run(args: argparse.Namespace) -> int:
        try:
            return function(args)
        except OfflineError as exc:
            print(f"vigil: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("vigil: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `vigil analyze … | head`: the reader left; leave quietly, as on SIGPIPE
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
    return run


def _build(args: argparse.Namespace) -> int:
    from agent.ml import profile as profiles

    data = open_data(args.data)
    table = next(read_blocks(data, data.columns))
    if table.rows == 0:
        raise OfflineError(f"{args.data}: no data rows")
    profile = build_profile(table, columns=data.columns, model=args.model or Path(args.data).stem,
                            version=args.version, features=_names(args.features),
                            categorical=_names(args.categorical), numeric=_names(args.numeric),
                            roles=_roles(args), bins=args.bins, reservoir=args.reservoir,
                            source=f"file:{args.data}", sentinels=_sentinels(args.sentinel),
                            calibration=args.calibration, positive_class=args.positive_class,
                            window_rows=args.window_rows)
    try:
        profiles.save(profile, args.output)
    except OSError as exc:
        raise OfflineError(f"{args.output}: cannot write ({exc.strerror or exc})") from None
    print(f"{args.output}: profile of {profile.model_name!r} from {profile.rows} rows: "
          f"{_count(len(profile.features), 'feature')}, {_count(len(profile.predictions), 'prediction output')}"
          + (f" ({', '.join(profile.predictions)})" if profile.predictions else ""), file=sys.stderr)
    if args.label and profile.performance is None:
        _warn(f"--label {args.label}: no performance kept (it needs a prediction output: --prediction, "
              "--score or --confidence, and rows with both a label and a prediction)")
    elif profile.performance is not None:
        print("  " + _performance_line(profile.performance), file=sys.stderr)
    return 0


def _performance_line(perf) -> str:
    c = perf.calibration
    calibration = "no calibration (no score or confidence)" if c is None else (
        f"{c.method} calibration {'applied' if c.applied else 'not applied'} (held-out Brier "
        f"{_stat(_number(c.brier_calibrated))} vs raw {_stat(_number(c.brier_raw))})")
    shown = ", ".join(f"{k} {v:.4f}" for k, v in perf.reference.items())
    positive = f", positive class {perf.positive_class!r}" if perf.positive_class else ""
    return (f"performance ({perf.problem}{positive}) from {perf.labeled_rows} labelled rows: {shown}; "
            f"{calibration}")


def _show(args: argparse.Namespace) -> int:
    profile = load_profile(args.file)
    if args.format == "json":
        sys.stdout.write(json.dumps(profile_to_dict(profile), indent=2, allow_nan=False) + "\n")
    else:
        sys.stdout.write(format_profile(profile))
    return 0


def drift_config(alpha: float | None = None, correction: str | None = None, drift_share: float | None = None,
                 sentinels: Sequence[str] | None = None) -> DriftConfig:
    """A DriftConfig from command-line values (None: the default)."""
    from pydantic import ValidationError

    from agent.ml.drift import DriftConfig

    values: dict[str, Any] = {"alpha": alpha, "correction": correction, "drift_share": drift_share}
    values = {k: v for k, v in values.items() if v is not None}
    if sentinels is not None:
        values["sentinels"] = [_sentinel(s) for s in sentinels]
    try:
        return DriftConfig(**values)
    except ValidationError as exc:
        problems = "; ".join(f"--{'-'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']}"
                             for e in exc.errors())
        raise OfflineError(problems) from None


def _sentinels(texts: Sequence[str] | None) -> list[float | str]:
    return [-999] if texts is None else [_sentinel(t) for t in texts]


def _sentinel(text: str) -> float | str:
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _analyze(args: argparse.Namespace) -> int:
    config = drift_config(args.alpha, args.correction, args.drift_share, args.sentinel)
    if not args.sigma > 0:
        raise OfflineError(f"--sigma: must be > 0, not {args.sigma}")
    roles = _roles(args)
    roles.check_distinct()
    current = open_data(args.current)
    features = _names(args.features)
    labels = None
    if args.current_labels:
        if not args.label or not args.id_column:
            raise OfflineError("--current-labels needs --label (its label column) and --id-column (the id both "
                               "files share)")
        if args.id_column not in current.columns:
            raise OfflineError(f"{_unknown([args.id_column])} in --id-column: {args.current} has columns "
                               f"{_list(current.columns)}")
        labels = LabelFile.read(args.current_labels, args.id_column, args.label)
    elif args.label and args.label not in current.columns:
        raise OfflineError(f"{_unknown([args.label])} in --label: {args.current} has columns "
                           f"{_list(current.columns)} (or give the labels with --current-labels FILE)")
    if is_profile_file(args.reference):
        profile = load_profile(args.reference)
        ignored = [o for o, v in (("--categorical", args.categorical), ("--numeric", args.numeric),
                                  ("--bins", args.bins), ("--reservoir", args.reservoir),
                                  ("--positive-class", args.positive_class), ("--window-rows", args.window_rows))
                   if v]
        if ignored:
            _warn(f"{', '.join(ignored)} ignored: the reference is a profile")
        where = f"profile {args.reference}"
    else:
        data = open_data(args.reference)
        table = next(read_blocks(data, data.columns))
        if table.rows == 0:
            raise OfflineError(f"{args.reference}: no data rows")
        reference_roles = roles
        if roles.label and roles.label not in data.columns:
            _warn(f"{args.reference} has no {roles.label!r} column: no performance estimate, realised metrics only")
            reference_roles = dataclasses.replace(roles, label=None)
        profile = build_profile(table, columns=data.columns, model=Path(args.reference).stem,
                                features=features, categorical=_names(args.categorical),
                                numeric=_names(args.numeric), roles=reference_roles, bins=args.bins,
                                reservoir=args.reservoir, source=f"file:{args.reference}",
                                sentinels=config.sentinels, calibration=args.calibration,
                                positive_class=args.positive_class,
                                window_rows=args.window_rows or args.chunk_size)
        del table
        where = args.reference
    reference = reference_view(profile, current.columns, features=features, roles=roles, where=where,
                               current=args.current)
    for warning in reference.warnings:
        _warn(warning)
    methods = {name: (config.numeric_method if c.kind == "numeric" else config.categorical_method)
               for name, c in reference.profile.columns().items()}
    extra = [c for c in ((args.id_column if labels else None), (args.label if not labels else None))
             if c and c not in reference.columns]
    chunks = read_blocks(current, [*reference.columns, *dict.fromkeys(extra)], args.chunk_size)
    # A table on stdout is printed chunk by chunk; JSON, and any report written to a file, at the end.
    stream_table = args.format == "table" and not args.output
    report: dict[str, Any] = {"reference_rows": int(reference.profile.rows), "chunks": []}
    start = 0
    if stream_table:
        sys.stdout.write(f"reference: {args.reference} ({report['reference_rows']} rows)\n"
                         f"current:   {args.current}\n")
    matched = 0
    for index, table in enumerate(chunks):
        truth = None
        if labels is not None:
            truth = labels.join(table.columns[args.id_column])
            matched += int((~truth.is_missing).sum())
        elif args.label:
            truth = table.columns[args.label]
        chunk = analyze_chunk(reference.profile, table, config, index, slots=reference.slots, truth=truth,
                              sigma=args.sigma)
        report["chunks"].append(chunk)
        if stream_table:
            sys.stdout.write("\n" + format_chunk(chunk, start, methods, config.drift_share))
            sys.stdout.flush()
        start += table.rows
    if labels is not None:
        report["labels"] = {"file": str(args.current_labels), "rows": labels.rows, "ids": len(labels.index),
                            "duplicates": labels.duplicates, "matched": matched}
        if stream_table:
            sys.stdout.write(f"\nlabels: {args.current_labels}: {labels.rows} rows, {matched} joined to a "
                             f"row of {args.current}" + (f", {labels.duplicates} repeated ids (the first "
                                                         "label kept)" if labels.duplicates else "") + "\n")
    if stream_table:
        sys.stdout.write("\n" + TABLE_LEGEND)
        return 0
    text = to_json(report) if args.format == "json" else format_report(report, args.reference, args.current,
                                                                        methods, config.drift_share)
    if args.output:
        _write(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _write(path: str, text: str) -> None:
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, target)
    except OSError as exc:
        raise OfflineError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _warn(message: str) -> None:
    print(f"vigil: warning: {message}", file=sys.stderr)
