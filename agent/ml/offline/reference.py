"""The reference of an offline analysis: which column is what (`Roles`), a profile built from a table,
and the view of a profile that analysis takes, keyed by the current data's column names.

A profile keeps a model's outputs under the names the live processor sees on prediction spans
(`--prediction` as `ml.prediction.label` when categorical, else `ml.prediction.value`;
`--score`, `--confidence`); reports name them by the data's own columns. README.md
("Offline analysis") describes the options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from agent.ml import multivariate as mv, parallel, performance as performances, profile as profiles
from agent.ml.columns import RawColumn
from agent.ml.offline.errors import OfflineError, listing, unknown
from agent.ml.performance import Outputs
from agent.ml.profile import CATEGORICAL, NUMERIC, ColumnProfile, Profile
from agent.ml.tables import Table
from agent.ml.vocabulary import PREDICTION_CONFIDENCE, PREDICTION_LABEL, PREDICTION_SCORE, PREDICTION_VALUE

# The option that names the data column of each stored output.
OUTPUT_OPTIONS = {PREDICTION_LABEL: "--prediction", PREDICTION_VALUE: "--prediction", PREDICTION_SCORE: "--score",
                  PREDICTION_CONFIDENCE: "--confidence"}


@dataclass
class Roles:
    """The columns that are not features."""
    prediction: str | None = None
    score: str | None = None
    confidence: str | None = None
    label: str | None = None
    id_column: str | None = None
    timestamp_column: str | None = None
    embedding: str | None = None  # a column of vectors, for the multivariate methods only

    def named(self) -> dict[str, str]:
        """option → column, for the options given."""
        options = {"--prediction": self.prediction, "--score": self.score, "--confidence": self.confidence,
                   "--label": self.label, "--id-column": self.id_column,
                   "--timestamp-column": self.timestamp_column, "--embedding": self.embedding}
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
                  positive_class: str | None = None, window_rows: int | None = None,
                  multivariate: Sequence[str] = (), multivariate_sample: int | None = None) -> Profile:
    """A profile of `table`: one column per feature, one per prediction output (see the module doc).

    `columns` is the file's column order (default: the table's); `features` default to every
    column that has no role. With a `--label` column and a prediction output, the profile also
    keeps the model's performance on the reference (`calibration`: isotonic or binned;
    `positive_class`: the class a binary score is the probability of, inferred when None;
    `window_rows`: the window size the bounds' spread is measured on). `multivariate` names the
    methods (`agent.ml.multivariate`) to fit on the `roles.embedding` column (read as
    `table.vectors`), else on the numeric features jointly.
    """
    roles = roles or Roles()
    roles.check_distinct()
    names = list(columns if columns is not None else table.columns)
    where = source or "the data"
    for option, column in roles.named().items():
        if column not in names:
            raise OfflineError(f"{unknown([column])} in {option}: {where} has columns {listing(names)}")
    chosen = _features(names, features, roles, where)
    outputs = roles.outputs()
    analysed = set(chosen) | set(outputs.values())
    kinds = _kind_overrides(categorical, numeric, analysed)
    bins = profiles.DEFAULT_BINS if bins is None else bins
    reservoir = profiles.DEFAULT_RESERVOIR if reservoir is None else reservoir

    def build(name: str, column: str, kind: str | None):
        return profiles.build_column(name, table.columns[column], kind=kind, bins=bins,
                                     reservoir_size=reservoir, seed=seed, sentinels=sentinels)

    feature_profiles = dict(zip(chosen, parallel.map_columns(lambda name: build(name, name, kinds.get(name)),
                                                              chosen, table.rows)))
    predictions = {}
    slots = {}
    for option, column in outputs.items():
        kind = kinds.get(column) or profiles.infer_kind(table.columns[column])
        predictions[output_name(option, kind)] = build(output_name(option, kind), column, kind)
        slots[output_name(option, kind)] = column
    clash = sorted(set(feature_profiles) & set(predictions))
    if clash:
        raise OfflineError(f"feature {listing(clash)} has the name of a prediction output; rename the column")
    performance = None
    if roles.label and outputs:
        performance = performances.build(
            table.columns[roles.label], model_outputs(table, slots), positive_class=positive_class,
            method=calibration, window_rows=window_rows or performances.DEFAULT_WINDOW_ROWS, seed=seed)
    fits = []
    if multivariate:
        fits.append(fit_multivariate(table, feature_profiles, roles.embedding, multivariate, sentinels, where,
                                     multivariate_sample or mv.DEFAULT_SAMPLE, seed))
    return profiles.Profile(model, version, table.rows, feature_profiles, predictions, source=source,
                            performance=performance, multivariate=fits)


def fit_multivariate(table: Table, features: dict[str, ColumnProfile], embedding: str | None,
                     methods: Sequence[str], sentinels: Sequence[float | str], where: str, sample: int,
                     seed: int = 0) -> mv.MultivariateReference:
    """The multivariate methods fitted on the embedding column, else on the numeric features."""
    if embedding:
        rows = table.vectors[embedding]
        rows = rows[~np.isnan(rows).all(axis=1)] if rows.size else rows
        if rows.shape[0] < 2 or rows.shape[1] < 1:
            raise OfflineError(f"--embedding {embedding}: {where} has {rows.shape[0]} rows with an embedding; "
                               "the multivariate methods need at least 2")
        return mv.fit(rows, tuple(methods), embedding=embedding, sample=sample, seed=seed)
    numeric = [name for name, c in features.items() if c.kind == NUMERIC]
    if len(numeric) < 2:
        raise OfflineError(f"--multivariate: {where} has {len(numeric)} numeric feature"
                           f"{'' if len(numeric) == 1 else 's'} ({listing(numeric)}); features are taken "
                           "jointly from 2 or more (or give an --embedding column)")
    rows = mv.feature_rows([table.columns[name] for name in numeric], list(sentinels))
    return mv.fit(rows, tuple(methods), columns=numeric, sample=sample, seed=seed)


def model_outputs(table: Table, slots: dict[str, str]) -> Outputs:
    """The model's outputs in `table`, by stored name (`ml.prediction.label`, …) → column."""
    return Outputs.from_columns({slot: table.columns.get(column, RawColumn.missing(table.rows))
                                 for slot, column in slots.items()})


def output_name(option: str, kind: str) -> str:
    """The stored name of the prediction output given with `option` ("--prediction", …)."""
    if option == "--prediction":
        return PREDICTION_LABEL if kind == CATEGORICAL else PREDICTION_VALUE
    return {"--score": PREDICTION_SCORE, "--confidence": PREDICTION_CONFIDENCE}[option]


def _features(names: Sequence[str], features: Sequence[str] | None, roles: Roles, where: str) -> list[str]:
    reserved = {column: option for option, column in roles.named().items()}
    if not features:
        return [n for n in names if n not in reserved]
    for name in features:
        if name not in names:
            raise OfflineError(f"{unknown([name])} in --features: {where} has columns {listing(names)}")
        if name in reserved:
            raise OfflineError(f"column {name!r} is the {reserved[name]} column; it cannot also be a feature")
    return list(dict.fromkeys(features))


def _kind_overrides(categorical: Sequence[str], numeric: Sequence[str], analysed: set[str]) -> dict[str, str]:
    both = sorted(set(categorical) & set(numeric))
    if both:
        raise OfflineError(f"column {listing(both)} is given to both --categorical and --numeric")
    kinds = {**{n: CATEGORICAL for n in categorical}, **{n: NUMERIC for n in numeric}}
    unknown_ = [n for n in kinds if n not in analysed]
    if unknown_:
        raise OfflineError(f"{unknown(unknown_)} in --categorical/--numeric: not a feature "
                           f"or prediction column (analysed: {listing(sorted(analysed))})")
    return kinds


# --- the reference as analysis sees it --------------------------------------------

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
    """The columns of `profile` to analyse, keyed by the current data's column names.

    A stored output is fed by the column its option names, else by a current column under its
    stored name, else left out with a warning."""
    roles = roles or Roles()
    roles.check_distinct()
    warnings: list[str] = []
    if features:
        unknown_ = [n for n in features if n not in profile.features]
        if unknown_:
            raise OfflineError(f"{unknown(unknown_)} in --features: {where} has features "
                               f"{listing(profile.features)}")
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
    for slot in (PREDICTION_SCORE, PREDICTION_CONFIDENCE):
        if wanted[slot] and slot not in profile.predictions:
            raise OfflineError(f"{OUTPUT_OPTIONS[slot]} {wanted[slot]}: {where} has no {slot} output")
    outputs: dict[str, ColumnProfile] = {}
    slots: dict[str, str] = {}
    for slot, column_profile in profile.predictions.items():
        column = wanted.get(slot)
        if not column:
            if slot in current_columns:
                column = slot
            else:
                option = OUTPUT_OPTIONS.get(slot, "")
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
        raise OfflineError(f"{unknown(missing)}: {current} lacks what the reference has "
                           f"(it has {listing(current_columns)}; --features picks the columns to analyse)")
    view = profiles.Profile(profile.model_name, profile.model_version, profile.rows, chosen, outputs,
                            profile.source, profile.created_time_unix_nano, profile.performance,
                            profile.multivariate)
    return Reference(view, warnings, slots)
