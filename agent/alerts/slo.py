"""Service level objectives, made into the SRE workbook's multi-window, multi-burn-rate alert rules.

An objective (`target` over `window`) allows a share of bad events, its error budget. Each row of
BURN_RATE_ALERTS that fits the window becomes a rule firing while both of its windows spend the budget
faster than the row's burn rate. The rules come out as rule-file entries (`rule_specs`) for the rule
loader to read, so this module needs nothing of `rules`. What users see: docs/user-guide.md, "Error budgets".
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails

from agent.alerts.matchers import Matcher
from agent.configmodel import StrictModel, parse_duration
from agent.ml import vocabulary as v

# (long window, short window, share of the budget spent over the long window, severity): the workbook's table.
BURN_RATE_ALERTS = (
    (3600.0, 300.0, 0.02, "critical"),
    (21600.0, 1800.0, 0.05, "critical"),
    (86400.0, 7200.0, 0.10, "warning"),
    (259200.0, 21600.0, 0.10, "warning"),
)
# The shortest objective window over which some row burns at 1× or more (50h: the 1h row).
MIN_WINDOW = min(long / spent for long, _, spent, _ in BURN_RATE_ALERTS)
Indicator = Literal["error_ratio", "latency", "ttft"]
# What each indicator reads by default: (bad events or the histogram, all events).
DEFAULT_METRICS: dict[str, tuple[str, str | None]] = {
    "error_ratio": (v.METRIC_PREDICTION_ERRORS, v.METRIC_PREDICTIONS),
    "latency": (v.METRIC_PREDICTION_DURATION, None),
    "ttft": (v.GENAI_SERVER_TIME_TO_FIRST_TOKEN, None),
}
_DAYS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dw])\s*$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_:.\-]*")


def _window(value: Any) -> float:
    """A duration that may also be in days or weeks (`30d`, `4w`), as Prometheus's durations may."""
    if isinstance(value, str):
        found = _DAYS.match(value)
        if found:
            return float(found.group(1)) * (86400.0 if found.group(2) == "d" else 604800.0)
    return parse_duration(value)


def _target(value: Any) -> float:
    """`99.5%`, `99.5` or `0.995`, as a fraction."""
    text = value.strip() if isinstance(value, str) else value
    percent = isinstance(text, str) and text.endswith("%")
    try:
        if isinstance(text, bool):
            raise ValueError
        number = float(text[:-1] if percent else text)
    except (TypeError, ValueError):
        raise ValueError(f"invalid target {value!r}: write a percentage like 99.5%") from None
    if percent or number >= 1:  # 99.5 means 99.5% too
        number /= 100
    if not 0 < number < 1:
        raise ValueError(f"target {value!r} must be above 0% and below 100%")
    return number


def _text(seconds: float) -> str:
    """`1h`, `5m`, `30d`: a window as people write it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _seconds(seconds: float) -> str:
    return f"{seconds:.12g}s"  # as a Duration reads it


class SloConfig(StrictModel):
    name: str
    indicator: Indicator
    target: Annotated[float, BeforeValidator(_target)]
    window: Annotated[float, BeforeValidator(_window)] = 30 * 86400.0
    # Which events count: a model (ml.model.name), a server (service.name), and any matchers besides.
    model: str = ""
    server: str = ""
    matchers: list[str] = []
    threshold_seconds: float | None = Field(None, gt=0)  # latency and ttft: slower than this is bad
    # The metrics read, when not the indicator's defaults: `metric` the bad events (error_ratio) or the
    # histogram (latency, ttft); `total_metric` all events (error_ratio).
    metric: str = ""
    total_metric: str = ""
    group_by: list[str] = [v.SERVICE_NAME, v.MODEL_NAME]  # one budget per service and model
    labels: dict[str, str] = {}

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(f"invalid objective name {value!r}: use letters, digits, _ : . -")
        return value

    @field_validator("matchers")
    @classmethod
    def _check_matchers(cls, value: list[str]) -> list[str]:
        for text in value:
            Matcher.parse(text)
        return value

    @model_validator(mode="after")
    def _check(self) -> SloConfig:
        if self.indicator == "error_ratio" and self.threshold_seconds is not None:
            raise ValueError("threshold_seconds applies to indicators latency and ttft")
        if self.indicator != "error_ratio":
            if self.threshold_seconds is None:
                raise ValueError(f"indicator {self.indicator} needs threshold_seconds (slower than it is bad)")
            if self.total_metric:
                raise ValueError("total_metric applies to indicator error_ratio (a histogram counts its own)")
        rows = self.burn_rates()
        if not rows:
            raise _field_error("window", self.window, (
                f"{_text(self.window)} leaves no burn-rate alert that fires only when the budget is being "
                f"overspent (each row of the table is longer or burns below 1x); use {_text(MIN_WINDOW)} or more "
                f"(30d is usual)"))
        if all(_threshold(row[-1], self.budget) >= 1 for row in rows):
            raise _field_error("target", self.target, (
                f"{self.target * 100:.6g}% leaves no burn-rate alert that can fire over {_text(self.window)}: "
                f"{rows[-1][-1]:g}x a budget of {self.budget:.3g} is more than every event being bad; raise the "
                f"target or lengthen the window"))
        reserved = {"alertname", "severity", "slo"} & set(self.labels)
        if reserved:
            raise ValueError(f"labels: {', '.join(sorted(reserved))} is set by the objective itself")
        return self

    @property
    def budget(self) -> float:
        return 1.0 - self.target

    def selectors(self) -> tuple[Matcher, ...]:
        out = [Matcher.parse(m) for m in self.matchers]
        if self.model:
            out.insert(0, Matcher(v.MODEL_NAME, "=", self.model))
        if self.server:
            out.insert(0, Matcher(v.SERVICE_NAME, "=", self.server))
        return tuple(out)

    def burn_rates(self) -> list[tuple[float, float, float, str, float]]:
        """The rows of BURN_RATE_ALERTS that fit the objective's window, each with its burn rate.

        A row alerts when `spent` of the budget goes within its long window, a burn rate of spent × window
        / long (the workbook's). Below 1× that is slower than the budget allows, so the row would fire on
        traffic that meets the objective: such rows are left out, as are rows longer than the window."""
        rows = []
        for long, short, spent, severity in BURN_RATE_ALERTS:
            burn = round(spent * self.window / long, 12)  # 0.1 x 30d / 3d is 1.0, not 0.9999999999999999
            if long <= self.window and burn >= 1:
                rows.append((long, short, spent, severity, burn))
        return rows

    def rule_specs(self) -> list[dict[str, Any]]:
        """The objective's burn-rate rules, one per row of BURN_RATE_ALERTS that applies, as the `rules:`
        entries a rule file would hold (`agent.alerts.rules.RuleConfig` reads them)."""
        bad, total = DEFAULT_METRICS[self.indicator]
        bad, total = self.metric or bad, self.total_metric or total
        matchers = self.selectors()
        target = f"{self.target * 100:.6g}%"
        what = ("of events failed" if self.indicator == "error_ratio"
                else f"of events slower than {self.threshold_seconds:g}s")
        out: list[dict[str, Any]] = []
        for long, short, spent, severity, burn in self.burn_rates():
            threshold = _threshold(burn, self.budget)
            if threshold >= 1:
                continue
            query: dict[str, Any] = {"metric": bad, "matchers": matchers, "window": _seconds(long)}
            if self.indicator == "error_ratio":
                query.update(aggregation="increase",
                             denominator={"metric": total, "matchers": matchers, "aggregation": "increase",
                                          "window": _seconds(long)})
            else:
                query.update(aggregation="fraction_over", over=self.threshold_seconds)
            out.append({
                **query,
                "name": f"{self.name}:burn:{_text(long)}",
                "windows": [_seconds(short)],
                "group_by": self.group_by,
                "op": ">",
                "threshold": threshold,
                "severity": severity,
                "labels": {**self.labels, "slo": self.name, "slo.windows": f"{_text(long)},{_text(short)}",
                           "slo.burn_rate": f"{burn:g}"},
                "summary": f"SLO {self.name} ({{model}} on {{service}}): at least {{value:.2%}} {what} over "
                           f"both {_text(long)} and {_text(short)}, burning the error budget at {burn:g}x",
                "description": f"The objective is {target} good over {_text(self.window)}, a budget of "
                               f"{self.budget:.3g} bad. At {burn:g}x, {spent:.0%} of it goes in {_text(long)} and "
                               f"all of it in {_text(self.window / burn)}.",
            })
        return out


def _threshold(burn: float, budget: float) -> float:
    return round(burn * budget, 12)  # 1 - 0.995 is 0.0050000000000000044


def _field_error(field: str, value: Any, message: str) -> ValidationError:
    """An error on one field, so that its path names the field to change (`slos[0].window: ...`)."""
    return ValidationError.from_exception_data("SloConfig", [InitErrorDetails(
        type="value_error", loc=(field,), input=value, ctx={"error": ValueError(message)})])
