"""The `filter` processor: drops spans, span events, metrics, data points and log records by OTTL condition.

Contrib's filterprocessor, key for key (docs/collector-compatibility.md lists them): an item any of
whose conditions is true is dropped, with what lies under it; `processors/ottl.py` compiles the
conditions. `error_mode` decides what a condition that fails on an item does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, model_validator

from agent.component import Consumer, Factory, Kind, Settings
from agent.configmodel import StrictModel
from agent.errors import InvalidDataError
from agent.processors import ottl
from agent.signals import Batch, Signal


def _condition(context: str):
    def check(text: str) -> str:
        ottl.parse(text, context)
        return text

    return Annotated[str, AfterValidator(check)]


ResourceCondition = _condition("resource")
SpanCondition = _condition("span")
SpanEventCondition = _condition("spanevent")
MetricCondition = _condition("metric")
DataPointCondition = _condition("datapoint")
LogCondition = _condition("log")


class TraceConditions(StrictModel):
    resource: list[ResourceCondition] = []
    span: list[SpanCondition] = []
    spanevent: list[SpanEventCondition] = []


class MetricConditions(StrictModel):
    resource: list[ResourceCondition] = []
    metric: list[MetricCondition] = []
    datapoint: list[DataPointCondition] = []


class LogConditions(StrictModel):
    resource: list[ResourceCondition] = []
    log_record: list[LogCondition] = []


# The context blocks of each signal, named in the refusal of the deprecated match form.
_CONTEXT_HELP = {"traces": "span, spanevent", "metrics": "metric, datapoint", "logs": "log_record"}


_ErrorMode = Literal["ignore", "silent", "propagate"]


class ContextConditions(StrictModel):
    """The Collector's advanced form of `trace_conditions` (...): conditions with their own error_mode, in
    the context named or, without one, the one inferred from all the group's paths."""

    context: str | None = None
    conditions: list[str]
    error_mode: _ErrorMode | None = None


def _group_context(group: ContextConditions, signal: str) -> str:
    """The context named, or else the lowest any of the conditions' paths names: as the Collector's
    ParseConditions, one context for the whole group."""
    contexts = ottl.SIGNAL_CONTEXTS[signal]
    if group.context is not None:
        context = group.context.lower()
        if context not in contexts:
            raise ValueError(f"context {group.context!r}: not one of {', '.join(contexts)}")
        return context
    if not group.conditions:
        raise ValueError("conditions: name at least one, or the context")
    inferred = []
    for i, text in enumerate(group.conditions):
        try:
            inferred.append(contexts.index(ottl.infer_context(text, signal)))
        except ValueError as exc:
            raise ValueError(f"conditions[{i}]: {exc}") from None
    return contexts[min(inferred)]


def _grouped(signal: str):
    """`trace_conditions` (...): a list of conditions whose context is inferred from their paths, or of
    {context, conditions, error_mode}, not both (as in the Collector). Each checked, by its index."""

    def check(item: Any) -> Any:
        if isinstance(item, str):
            ottl.parse(item, ottl.infer_context(item, signal))
            return item
        group = ContextConditions.model_validate(item)
        context = _group_context(group, signal)
        for i, text in enumerate(group.conditions):
            try:
                ottl.parse(text, context)
            except ValueError as exc:
                raise ValueError(f"conditions[{i}]: {exc}") from None
        return group.model_copy(update={"context": context})

    def one_style(items: list) -> list:
        if len({isinstance(item, str) for item in items}) > 1:
            raise ValueError("conditions and {context, conditions} groups in one list: use one form or the other")
        return items

    return Annotated[list[Annotated[Any, AfterValidator(check)]], AfterValidator(one_style)]


class FilterProcessorConfig(StrictModel):
    # The Collector's default: a condition that fails refuses the batch.
    error_mode: _ErrorMode = "propagate"
    traces: TraceConditions = TraceConditions()
    metrics: MetricConditions = MetricConditions()
    logs: LogConditions = LogConditions()
    # The Collector's newer form: one list per signal, each condition's context inferred from its paths.
    trace_conditions: _grouped("traces") = []
    metric_conditions: _grouped("metrics") = []
    log_conditions: _grouped("logs") = []

    @model_validator(mode="before")
    @classmethod
    def _refuse_other_forms(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if "spans" in data:
                raise ValueError("spans: the Collector's deprecated include/exclude form is not supported; "
                                 "write OTTL conditions under traces: {span, spanevent}")
            if "profile_conditions" in data or "profiles" in data:
                raise ValueError("profiles: Vigil has no profiles signal")
            for section, contexts in _CONTEXT_HELP.items():
                conditions = data.get(section)
                old = [k for k in ("include", "exclude", "regexp") if isinstance(conditions, dict) and k in conditions]
                if old:
                    raise ValueError(f"{section}.{old[0]}: the Collector's deprecated match form is not supported; "
                                     f"write OTTL conditions under {section}: {{{contexts}}}")
        return data

    def conditions(self, signal: str) -> dict[str, list[tuple[str, str]]]:
        """Per context of `signal`, its conditions with the error mode each runs under, from both forms."""
        out: dict[str, list[tuple[str, str]]] = {c: [] for c in ottl.SIGNAL_CONTEXTS[signal]}
        section = getattr(self, signal)
        for context in out:
            field = "log_record" if context == "log" else context
            out[context] += [(text, self.error_mode) for text in getattr(section, field)]
        for item in getattr(self, {"traces": "trace_conditions", "metrics": "metric_conditions",
                                   "logs": "log_conditions"}[signal]):
            if isinstance(item, str):
                out[ottl.infer_context(item, signal)].append((item, self.error_mode))
            else:
                out[item.context] += [(text, item.error_mode or self.error_mode) for text in item.conditions]
        return out


class _Conditions:
    """One context's conditions, compiled, each with the error mode it runs under."""

    def __init__(self, entries: list[tuple[str, str]], context: str, settings: Settings) -> None:
        self._conditions = [(text, ottl.parse(text, context), mode) for text, mode in entries]
        self._log = settings.logger

    def __bool__(self) -> bool:
        return bool(self._conditions)

    def drop(self, item: ottl.Item) -> bool:
        for text, condition, mode in self._conditions:
            try:
                if condition(item):
                    return True
            except ottl.OttlError as exc:
                if mode == "propagate":
                    raise InvalidDataError(f"filter condition {text!r} failed: {exc}") from None
                if mode == "ignore":
                    self._log.warning("filter condition %r failed, counted as false: %s", text, exc)
        return False


class FilterProcessor:
    mutates_data = True

    def __init__(self, config: FilterProcessorConfig, settings: Settings, signal: Signal, next: Consumer) -> None:
        by_context = config.conditions(signal.value)
        contexts = ottl.SIGNAL_CONTEXTS[signal.value]  # the lowest level first, resource last
        self._signal = signal
        self._next = next
        self._removed = 0
        self._resource = _Conditions(by_context["resource"], "resource", settings)
        # From the items down: (span, spanevent), (metric, datapoint), (log,).
        self._levels = tuple(_Conditions(by_context[c], c, settings) for c in reversed(contexts[:-1]))

    async def start(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def consume(self, batch: Batch) -> None:
        if not self._resource and not any(self._levels):
            await self._next.consume(batch)
            return
        # Read on the parsed message; only a batch that lost something is edited, so one that lost
        # nothing goes on as the bytes it came with.
        self._removed = 0
        resources = batch.resources()
        self._keep(resources, self._keep_resource)
        if self._removed:
            batch.edit()
        if resources:
            await self._next.consume(batch)

    def _keep(self, repeated, keep) -> None:
        """Remove, in place and in order, the elements of a repeated message field for which `keep` is false."""
        gone = [i for i, element in enumerate(repeated) if not keep(element)]
        for i in reversed(gone):
            del repeated[i]
        self._removed += len(gone)

    def _keep_resource(self, resource_items) -> bool:
        resource = resource_items.resource
        if self._resource and self._resource.drop(ottl.Item(resource=resource)):
            return False
        scopes = getattr(resource_items, _SCOPES[self._signal])
        for scope_items in scopes:
            item = ottl.Item(resource=resource, scope=scope_items.scope)
            if self._signal is Signal.TRACES:
                self._keep(scope_items.spans, lambda span: self._keep_span(item, span))
            elif self._signal is Signal.METRICS:
                self._keep(scope_items.metrics, lambda metric: self._keep_metric(item, metric))
            else:
                records = self._levels[0]
                self._keep(scope_items.log_records,
                      lambda log: not records.drop(ottl.Item(resource, item.scope, log=log)))
        self._keep(scopes, lambda scope_items: len(getattr(scope_items, _ITEMS[self._signal])) > 0)
        return len(scopes) > 0

    def _keep_span(self, item: ottl.Item, span) -> bool:
        spans, events = self._levels
        if spans and spans.drop(ottl.Item(item.resource, item.scope, span=span)):
            return False
        if events:
            self._keep(span.events, lambda event: not events.drop(ottl.Item(item.resource, item.scope, span=span,
                                                                       event=event)))
        return True

    def _keep_metric(self, item: ottl.Item, metric) -> bool:
        metrics, points = self._levels
        if metrics and metrics.drop(ottl.Item(item.resource, item.scope, metric=metric)):
            return False
        kind = metric.WhichOneof("data")
        if points and kind is not None:
            data_points = getattr(metric, kind).data_points
            self._keep(data_points, lambda point: not points.drop(ottl.Item(item.resource, item.scope, metric=metric,
                                                                       datapoint=point)))
            return len(data_points) > 0
        return True


_SCOPES = {Signal.TRACES: "scope_spans", Signal.METRICS: "scope_metrics", Signal.LOGS: "scope_logs"}
_ITEMS = {Signal.TRACES: "spans", Signal.METRICS: "metrics", Signal.LOGS: "log_records"}


def _create(config: FilterProcessorConfig, settings: Settings, signal: Signal, next: Consumer):
    return FilterProcessor(config, settings, signal, next)


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type="filter",
    config_model=FilterProcessorConfig,
    create=_create,
    signals=frozenset(Signal),
    description="drop spans, span events, metrics, data points and log records by OTTL condition",
)
