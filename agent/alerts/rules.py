"""Alert rules: what a rule says, checked when the config is loaded.

    - name: FeatureDrift
      metric: ml.feature.drifted
      matchers: ['ml.feature.name!~"ml\\.prediction\\..*"']
      aggregation: max                      # max|min|avg|sum|count|rate|increase|quantile
      group_by: [ml.model.name, ml.model.version, ml.feature.name]
      op: ">"
      threshold: 0
      for: 10m
      keep_firing_for: 15m
      severity: warning                     # critical (P0) | warning (P1) | info (P2)
      labels: {team: ml}
      summary: "Feature {feature} of {model} {version} drifted"

A rule selects the series of `metric` whose labels (the resource's attributes
and the point's, the point's winning) pass every matcher, splits them by the
values of `group_by` (each split is one alert), aggregates each split to one
number and compares it with `threshold`. With a `denominator` the value is the
ratio of the two aggregations (an error rate: errors over requests). A rule
file may also hold `slos:`, objectives that become burn-rate rules (`slo`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from agent.alerts import templates
from agent.alerts.matchers import Matcher
from agent.alerts.slo import SloConfig
from agent.configmodel import Duration, StrictModel, format_validation_error

Aggregation = Literal["max", "min", "avg", "sum", "count", "last", "rate", "increase", "quantile", "fraction_over"]
WINDOWED = ("rate", "increase")
HISTOGRAM_AGGREGATIONS = ("quantile", "fraction_over")
Op = Literal[">", ">=", "<", "<=", "==", "!="]
Severity = Literal["critical", "warning", "info"]
# What each severity means to the people it reaches.
PRIORITY = {"critical": "P0", "warning": "P1", "info": "P2"}
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_:.\-]*")


def _matchers(value: Any) -> tuple[Matcher, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValueError("matchers is a list of strings like 'name=\"value\"'")
    return tuple(v if isinstance(v, Matcher) else Matcher.parse(v) for v in value)


Matchers = Annotated[tuple[Matcher, ...], BeforeValidator(_matchers)]


class QueryConfig(StrictModel):
    """One metric, the series of it that count, and how they become one number per alert."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    metric: str = Field(min_length=1)
    matchers: Matchers = ()
    aggregation: Aggregation = "max"
    # rate and increase: over this window (a counter's increase within it); quantile: the histogram's
    # counts within it (absent: the latest point's counts, a cumulative histogram's since its start).
    window: Duration | None = None
    quantile: float | None = Field(None, gt=0, lt=1)
    # fraction_over: the share of a histogram's observations (within the window) above this bound, e.g. the
    # share of predictions slower than 0.5 s; interpolated within the bucket it falls in, as quantile is.
    over: float | None = None

    @model_validator(mode="after")
    def _check_query(self) -> QueryConfig:
        if self.aggregation in WINDOWED and not self.window:
            raise ValueError(f"aggregation {self.aggregation} needs a window (e.g. window: 5m)")
        if self.window is not None and self.window <= 0:
            raise ValueError("window must be > 0")
        if self.aggregation == "quantile" and self.quantile is None:
            raise ValueError("aggregation quantile needs quantile (e.g. quantile: 0.95)")
        if self.aggregation != "quantile" and self.quantile is not None:
            raise ValueError("quantile applies to aggregation quantile only")
        if self.aggregation == "fraction_over" and self.over is None:
            raise ValueError("aggregation fraction_over needs over (e.g. over: 0.5, in the histogram's unit)")
        if self.aggregation != "fraction_over" and self.over is not None:
            raise ValueError("over applies to aggregation fraction_over only")
        return self


class RuleConfig(QueryConfig):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, populate_by_name=True)

    name: str
    group_by: list[str] = []
    op: Op = ">"
    threshold: float
    # Hysteresis: once firing, the alert stays firing until the value is back past this
    # (below it for > and >=, above it for < and <=).
    clear_threshold: float | None = None
    for_: Duration = Field(0.0, alias="for")
    keep_firing_for: Duration = 0.0
    severity: Severity = "warning"
    labels: dict[str, str] = {}
    summary: str = ""
    description: str = ""
    annotations: dict[str, str] = {}
    denominator: QueryConfig | None = None
    # An alert whose series stop coming resolves after this long without data (the processor's
    # stale_after when unset).
    stale_after: Duration | None = None
    # Also over these windows (the numerator's and the denominator's): the value is the one least past the
    # threshold, so the rule holds only while every window is past it (multi-window burn-rate alerts).
    windows: list[Duration] = []

    @model_validator(mode="after")
    def _check_rule(self) -> RuleConfig:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"invalid rule name {self.name!r}: use letters, digits, _ : . -")
        if self.clear_threshold is not None:
            if self.op in ("==", "!="):
                raise ValueError("clear_threshold needs op >, >=, < or <=")
            if self.op in (">", ">=") and self.clear_threshold > self.threshold:
                raise ValueError(f"clear_threshold must not exceed threshold for op {self.op} "
                                 f"(the alert clears once the value falls back below it)")
            if self.op in ("<", "<=") and self.clear_threshold < self.threshold:
                raise ValueError(f"clear_threshold must not be below threshold for op {self.op} "
                                 f"(the alert clears once the value rises back above it)")
        if self.for_ < 0 or self.keep_firing_for < 0:
            raise ValueError("for and keep_firing_for must be >= 0")
        reserved = {"alertname", "severity"} & set(self.labels)
        if reserved:
            raise ValueError(f"labels: {', '.join(sorted(reserved))} is set by the rule itself")
        for text in (self.summary, self.description, *self.annotations.values()):
            templates.check(text)
        if self.windows:
            if not self.window:
                raise ValueError("windows needs window: the rule's first window")
            if self.op not in (">", ">=", "<", "<="):
                raise ValueError("windows needs op >, >=, < or <=")
            if any(w <= 0 for w in self.windows):
                raise ValueError("windows must be > 0")
        return self

    def variants(self) -> list[RuleConfig]:
        """The rule once per window it reads: itself, then one for each of `windows`."""
        out = [self]
        for window in self.windows:
            denominator = self.denominator.model_copy(update={"window": window}) if self.denominator else None
            out.append(self.model_copy(update={"window": window, "windows": [], "denominator": denominator}))
        return out

    def exceeds(self, value: float) -> bool:
        """The firing condition."""
        return _compare(value, self.op, self.threshold)

    def holds(self, value: float) -> bool:
        """Whether a firing alert stays firing: the clear threshold when there is one."""
        if self.clear_threshold is None:
            return self.exceeds(value)
        return _compare(value, self.op, self.clear_threshold)


def _compare(value: float, op: str, threshold: float) -> bool:
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    if op == "<=":
        return value <= threshold
    if op == "==":
        return value == threshold
    return value != threshold


class RuleFile(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    rules: list[RuleConfig] = []
    slos: list[SloConfig] = []  # objectives, each made into burn-rate rules (agent/alerts/slo.py)

    def all_rules(self) -> list[RuleConfig]:
        return [*self.rules, *(RuleConfig.model_validate(spec) for slo in self.slos for spec in slo.rule_specs())]


def load_rule_file(path: str) -> list[RuleConfig]:
    """The rules of a rule file (`rules: [...]`); ValueError naming the file and field when invalid."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    try:
        return RuleFile.model_validate(raw or {}).all_rules()
    except ValidationError as exc:
        raise ValueError("; ".join(f"{path}: {p}" for p in format_validation_error(exc, ""))) from None
