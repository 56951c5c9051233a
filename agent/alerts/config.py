"""The `alerts` processor's config: rules, notifiers, routes, delivery and limits."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails

from agent.alerts import notifiers as notifier_types
from agent.alerts.rules import Matchers, RuleConfig, load_rule_file
from agent.alerts.slo import SloConfig
from agent.component import ComponentId
from agent.configmodel import Duration, StrictModel


class RouteConfig(StrictModel):
    """Alerts whose labels pass `matchers` go to `notifiers`; unset timings come from the top route."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, populate_by_name=True)

    matchers: Matchers = ()
    notifiers: list[str] = []
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    # Go on to the next routes after this one matched (else the first match takes the alert).
    continue_: bool = Field(False, alias="continue")


class TopRoute(StrictModel):
    """The default route (what no other route takes) and the timings the others inherit."""

    notifiers: list[str] = []
    # Alerts with the same values of these labels go out together, in one notification.
    # `...` groups by every label (each alert alone).
    group_by: list[str] = ["alertname"]
    group_wait: Duration = 30.0  # how long a new group waits for more alerts before its first notification
    group_interval: Duration = 300.0  # how long a group waits before notifying of changes
    repeat_interval: Duration = 14400.0  # how long before a group still firing is notified again
    routes: list[RouteConfig] = []


class RetryConfig(StrictModel):
    initial_interval: Duration = 1.0
    max_interval: Duration = 30.0
    max_elapsed_time: Duration = 300.0


class DeliveryConfig(StrictModel):
    timeout: Duration = 10.0  # one attempt
    queue_size: int = Field(100, ge=1)  # notifications waiting per notifier; beyond, they are dropped
    retry_on_failure: RetryConfig = RetryConfig()


class LimitsConfig(StrictModel):
    max_series: int = Field(10_000, ge=1)
    max_samples: int = Field(1_000, ge=2)  # per series read over a window
    # Samples held in all (a histogram's count one per bucket): a series over it forgets its oldest.
    max_stored_samples: int = Field(200_000, ge=1)
    max_buckets: int = Field(256, ge=1)  # histograms with more are not read (SDKs' defaults have 16)
    max_alerts: int = Field(1_000, ge=1)  # pending and firing
    max_silences: int = Field(1_000, ge=1)


class AlertsConfig(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    evaluation_interval: Duration = 15.0
    # Series not seen for this long stop counting, and their alerts resolve (a rule may say otherwise).
    stale_after: Duration = 900.0
    rules: list[RuleConfig] = []
    # Objectives (`target: 99.5%`, `window: 30d`), each made into multi-window burn-rate rules.
    slos: list[SloConfig] = []
    # YAML files with `rules: [...]` (such as config/alerts/inference-rules.yaml), read when the config
    # is loaded; relative paths are taken from the working directory.
    rule_files: list[str] = []
    notifiers: dict[str, Any] = {}
    route: TopRoute = TopRoute()
    delivery: DeliveryConfig = DeliveryConfig()
    limits: LimitsConfig = LimitsConfig()
    # Where people look at alerts (the webhook body's externalURL, links in Slack and PagerDuty).
    external_url: str = ""

    _file_rules: list[RuleConfig] = PrivateAttr(default_factory=list)

    @field_validator("notifiers", mode="before")
    @classmethod
    def _notifiers(cls, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValueError("notifiers is a mapping of notifier id (type or type/name) to its settings")
        out: dict[str, Any] = {}
        errors: list[InitErrorDetails] = []
        for key, body in value.items():
            try:
                nid = ComponentId.parse(str(key))
            except ValueError as exc:
                errors.append(_error((key,), str(exc), key))
                continue
            model = notifier_types.config_model(nid.type)
            if model is None:
                errors.append(_error((key,), f"unknown notifier type {nid.type!r} (available: "
                                             f"{', '.join(sorted(notifier_types.TYPES))})", key))
                continue
            try:
                out[str(nid)] = model.model_validate(body or {})
            except ValidationError as exc:
                for err in exc.errors():
                    errors.append(InitErrorDetails(type=err["type"], loc=(key, *err["loc"]), input=err.get("input"),
                                                   ctx=err.get("ctx", {})))
        if errors:
            raise ValidationError.from_exception_data("notifiers", errors)
        return out

    @model_validator(mode="after")
    def _check(self) -> AlertsConfig:
        if self.evaluation_interval <= 0:
            raise ValueError("evaluation_interval must be > 0")
        loaded: list[RuleConfig] = []
        problems: list[str] = []
        for path in self.rule_files:
            try:
                loaded += load_rule_file(path)
            except ValueError as exc:
                problems.append(f"rule_files: {exc}")
        names: set[str] = set()
        loaded += [RuleConfig.model_validate(spec) for slo in self.slos for spec in slo.rule_specs()]
        for rule in [*self.rules, *loaded]:
            if rule.name in names:
                problems.append(f"rules: rule {rule.name!r} is defined twice")
            names.add(rule.name)
        for where, route in [("route", self.route), *((f"route.routes[{i}]", r)
                                                     for i, r in enumerate(self.route.routes))]:
            for name in route.notifiers:
                if name not in self.notifiers:
                    problems.append(f"{where}.notifiers: notifier {name!r} is not defined in notifiers")
        if problems:
            raise ValueError("; ".join(problems))
        self._file_rules = loaded
        return self

    def all_rules(self) -> list[RuleConfig]:
        return [*self.rules, *self._file_rules]


def _error(loc: tuple, message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(type="value_error", loc=loc, input=value, ctx={"error": ValueError(message)})
