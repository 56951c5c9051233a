"""The `attributes` processor: insert, update, upsert, delete, hash, extract or convert item attributes.

Contrib's attributesprocessor, key for key (docs/collector-compatibility.md lists them): its actions,
in order, on every span, data point or log record that `include` selects and `exclude` does not.
"""

from __future__ import annotations

import hashlib
import math
import struct
from typing import Any, Literal

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from pydantic import field_validator, model_validator

from agent import attributes
from agent.component import Consumer, Factory, Kind, Settings
from agent.configmodel import StrictModel
from agent.regex import compile_user_regex
from agent.signals import Batch, Signal

# --- config ---------------------------------------------------------------------------------------

_VALUE_SOURCES = ("value", "from_attribute", "from_context")


class AttributeAction(StrictModel):
    key: str | None = None
    action: Literal["insert", "update", "upsert", "delete", "hash", "extract", "convert"]
    value: Any = None
    from_attribute: str | None = None
    from_context: str | None = None
    default_value: Any = None
    pattern: str | None = None
    converted_type: Literal["int", "double", "string"] | None = None

    @field_validator("action", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value  # the Collector reads it case-blind

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            compile_user_regex(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> AttributeAction:
        action = self.action
        sources = [name for name in _VALUE_SOURCES if getattr(self, name) is not None]
        if action in ("delete", "hash"):
            if self.key is None and self.pattern is None:
                raise ValueError(f"{action} needs a key, a pattern or both")
        elif self.key is None:
            raise ValueError(f"{action} needs a key")
        if action in ("insert", "update", "upsert"):
            if not sources and self.default_value is None:
                raise ValueError(f"{action} needs one of value, from_attribute or default_value")
            if len(sources) > 1:
                raise ValueError(f"{action}: set one of value and from_attribute, not both")
        elif sources or self.default_value is not None:
            raise ValueError(f"{action} takes no value, from_attribute or default_value")
        if action in ("insert", "update", "upsert", "convert") and self.pattern is not None:
            raise ValueError(f"{action} takes no pattern")
        if action == "extract":
            if self.pattern is None:
                raise ValueError("extract needs a pattern with named groups")
            regex = compile_user_regex(self.pattern)
            if regex.groups == 0:
                raise ValueError("extract: the pattern has no named groups, (?P<name>...)")
            if len(regex.groupindex) != regex.groups:
                raise ValueError("extract: every group of the pattern must be named, (?P<name>...)")
        if (action == "convert") != (self.converted_type is not None):
            raise ValueError("convert needs converted_type (int, double or string)" if action == "convert"
                             else f"{action} takes no converted_type")
        if self.value is not None:
            try:
                attributes.set_any_value(AnyValue(), self.value)
            except TypeError as exc:
                raise ValueError(str(exc)) from None
        return self


class KeyValueMatch(StrictModel):
    key: str
    value: Any = None  # absent: the key's presence is enough


class LibraryMatch(StrictModel):
    name: str
    version: str | None = None  # absent: any version


class SeverityNumberMatch(StrictModel):
    min: int = 0
    match_undefined: bool = False


class RegexpOptions(StrictModel):
    # The Collector's LRU cache of regex results: each pattern is compiled once, when the processor is made.
    cacheenabled: bool = False
    cachemaxnumentries: int = 0


class MatchProperties(StrictModel):
    match_type: Literal["strict", "regexp"]
    regexp: RegexpOptions | None = None
    services: list[str] = []
    span_names: list[str] = []
    span_kinds: list[str] = []
    metric_names: list[str] = []
    log_bodies: list[str] = []
    log_severity_texts: list[str] = []
    log_severity_number: SeverityNumberMatch | None = None
    attributes: list[KeyValueMatch] = []
    resources: list[KeyValueMatch] = []
    libraries: list[LibraryMatch] = []

    @model_validator(mode="after")
    def _check(self) -> MatchProperties:
        if self.match_type == "regexp":
            for field, text in self._patterns():
                compile_user_regex(text, field)
            for kv in [*self.attributes, *self.resources]:
                if kv.value is not None and not isinstance(kv.value, str):
                    raise ValueError(f"{kv.key}: match_type regexp needs a string value to match with")
        return self

    def _patterns(self):
        """(field, pattern) for each text that match_type regexp reads as a regex."""
        for name in ("services", "span_names", "span_kinds", "metric_names", "log_bodies", "log_severity_texts"):
            for i, text in enumerate(getattr(self, name)):
                yield f"{name}[{i}]", text
        for i, lib in enumerate(self.libraries):
            yield f"libraries[{i}].name", lib.name
            if lib.version is not None:
                yield f"libraries[{i}].version", lib.version
        for name in ("attributes", "resources"):
            for i, kv in enumerate(getattr(self, name)):
                if isinstance(kv.value, str):
                    yield f"{name}[{i}].value", kv.value


# Which match fields each signal has (the Collector refuses the others when the processor is made).
_FIELDS = {
    Signal.TRACES: {"services", "span_names", "span_kinds", "attributes", "resources", "libraries"},
    Signal.LOGS: {"log_bodies", "log_severity_texts", "log_severity_number", "attributes", "resources",
                  "libraries"},
    Signal.METRICS: {"metric_names", "resources"},
}
_ALL_FIELDS = set().union(*_FIELDS.values())


class AttributesProcessorConfig(StrictModel):
    actions: list[AttributeAction]
    include: MatchProperties | None = None
    exclude: MatchProperties | None = None

    @model_validator(mode="after")
    def _check(self) -> AttributesProcessorConfig:
        if not self.actions:
            raise ValueError("actions: at least one action is needed")
        for name in ("include", "exclude"):
            properties = getattr(self, name)
            if properties is not None and not any(getattr(properties, f) for f in _ALL_FIELDS):
                raise ValueError(f"{name}: name at least one of {', '.join(sorted(_ALL_FIELDS))}")
        return self

    def signal_problem(self, signal: Signal) -> str | None:
        """The match fields that do not apply to `signal`'s items, which the Collector refuses."""
        wrong = [f"{name}.{f}" for name in ("include", "exclude") for f in sorted(_ALL_FIELDS - _FIELDS[signal])
                 if getattr(self, name) is not None and getattr(getattr(self, name), f)]
        return f"{', '.join(wrong)}: not for {signal.value}" if wrong else None

    def warnings(self) -> list[str]:
        out = [f"actions[{i}].from_context: Vigil's receivers keep no client metadata or auth, so it never "
               "finds a value" + (" and default_value applies" if a.default_value is not None else
                                  " and the action does nothing")
               for i, a in enumerate(self.actions) if a.from_context is not None]
        out += [f"{name}.regexp: accepted and ignored (each pattern is compiled once, when the processor is made)"
                for name in ("include", "exclude")
                if getattr(self, name) is not None and getattr(self, name).regexp is not None]
        return out


# --- matching --------------------------------------------------------------------------------------

_SPAN_KINDS = {0: "SPAN_KIND_UNSPECIFIED", 1: "SPAN_KIND_INTERNAL", 2: "SPAN_KIND_SERVER", 3: "SPAN_KIND_CLIENT",
               4: "SPAN_KIND_PRODUCER", 5: "SPAN_KIND_CONSUMER"}


class _Strings:
    """Matches a string against a list: equal to one (strict) or searched by one regex (regexp)."""

    def __init__(self, texts: list[str], regexp: bool) -> None:
        self._texts = set(texts)
        self._regexes = [compile_user_regex(t) for t in texts] if regexp else None

    def __call__(self, text: str) -> bool:
        if self._regexes is None:
            return text in self._texts
        return any(r.found(text) for r in self._regexes)


class _Matcher:
    """One include or exclude block: every field it names must match the item."""

    def __init__(self, p: MatchProperties) -> None:
        regexp = p.match_type == "regexp"

        def strings(texts):
            return _Strings(texts, regexp) if texts else None

        self._regexp = regexp
        self._services = strings(p.services)
        self._span_names = strings(p.span_names)
        self._span_kinds = strings(p.span_kinds)
        self._metric_names = strings(p.metric_names)
        self._log_bodies = strings(p.log_bodies)
        self._severity_texts = strings(p.log_severity_texts)
        self._severity = p.log_severity_number
        self._attributes = self._pairs(p.attributes)
        self._resources = self._pairs(p.resources)
        self._libraries = [(strings([lib.name]), strings([lib.version]) if lib.version is not None else None)
                           for lib in p.libraries]

    def _pairs(self, pairs: list[KeyValueMatch]):
        return [(kv.key, None if kv.value is None else (compile_user_regex(kv.value) if self._regexp else kv.value))
                for kv in pairs]

    def _pairs_match(self, pairs, kvs) -> bool:
        if not pairs:
            return True
        present = attributes.as_dict(kvs)
        for key, want in pairs:
            if key not in present:
                return False
            if want is None:
                continue
            have = present[key]
            if self._regexp:
                if not want.found(attributes.as_string(have)):
                    return False
            elif type(have) is not type(want) or have != want:  # strict: the same type and value
                return False
        return True

    def resource_matches(self, resource, scope) -> bool:
        """The checks that depend only on the resource and the scope (done once per scope)."""
        if self._services is not None:
            service = attributes.find(resource.attributes, "service.name")
            if service is None or not self._services(attributes.as_string(attributes.any_value(service.value))):
                return False
        if not self._pairs_match(self._resources, resource.attributes):
            return False
        if self._libraries:
            if not any(name(scope.name) and (version is None or version(scope.version))
                       for name, version in self._libraries):
                return False
        return True

    def item_matches(self, signal: Signal, item, metric=None) -> bool:
        if signal is Signal.TRACES:
            if self._span_names is not None and not self._span_names(item.name):
                return False
            if self._span_kinds is not None and not self._span_kinds(_SPAN_KINDS.get(item.kind, "")):
                return False
            return self._pairs_match(self._attributes, item.attributes)
        if signal is Signal.METRICS:
            return self._metric_names is None or self._metric_names(metric.name)
        if self._log_bodies is not None:  # any body, as its AsString text (as contrib matches it)
            if not self._log_bodies(attributes.as_string(attributes.any_value(item.body))):
                return False
        if self._severity_texts is not None and not self._severity_texts(item.severity_text):
            return False
        if self._severity is not None:
            number = item.severity_number
            if number == 0 and not self._severity.match_undefined:
                return False
            if number != 0 and number < self._severity.min:
                return False
        return self._pairs_match(self._attributes, item.attributes)


# --- actions ---------------------------------------------------------------------------------------


def _hash_bytes(value) -> bytes | None:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value.encode()
    if kind == "bool_value":
        return b"\x01" if value.bool_value else b"\x00"
    if kind == "int_value":
        return struct.pack("<q", value.int_value)
    if kind == "double_value":
        return struct.pack("<d", value.double_value)
    return None


def _hash(value) -> None:
    data = _hash_bytes(value)
    value.string_value = hashlib.sha256(data).hexdigest() if data is not None else ""


def _convert(value, to: str) -> bool:
    """Convert `value` in place as the Collector does; whether that changed it."""
    kind = value.WhichOneof("value")
    current = attributes.any_value(value)
    if to == "string":
        if kind == "string_value":
            return False
        value.string_value = attributes.as_string(current)
        return True
    if kind == "string_value":
        try:
            number = int(current, 10) if to == "int" else float(current)
        except ValueError:
            return False  # as the Collector: a string that is not a number stays as it is
        if to == "int" and not -2**63 <= number < 2**63:
            return False
    elif kind in ("int_value", "double_value", "bool_value"):
        number = current
    else:
        return False
    if to == "int":
        if isinstance(number, float):
            if math.isnan(number) or math.isinf(number):
                return False
            number = int(number)  # truncates toward zero, as Go's int64(x)
        if kind == "int_value" and current == number:
            return False
        value.int_value = int(number)
    else:
        if kind == "double_value":
            return False
        value.double_value = float(number)
    return True


def _any(value: Any) -> AnyValue | None:
    """A config value as an AnyValue, made once (None stays None)."""
    if value is None:
        return None
    out = AnyValue()
    attributes.set_any_value(out, value)
    return out


class _Actions:
    def __init__(self, actions: list[AttributeAction]) -> None:
        self._actions = []
        for a in actions:
            regex = compile_user_regex(a.pattern) if a.pattern is not None else None
            self._actions.append((a, _any(a.value), _any(a.default_value), regex))

    def apply(self, kvs) -> bool:
        """Run the actions on one item's attributes; whether any of them changed something."""
        changed = False
        for a, constant, default, regex in self._actions:
            action = a.action
            if action == "delete":
                for kv in [kv for kv in kvs if kv.key == a.key or (regex is not None and regex.found(kv.key))]:
                    kvs.remove(kv)
                    changed = True
            elif action == "hash":
                for kv in kvs:
                    if kv.key == a.key or (regex is not None and regex.found(kv.key)):
                        _hash(kv.value)
                        changed = True
            elif action == "extract":
                source = attributes.find(kvs, a.key)
                if source is None or source.value.WhichOneof("value") != "string_value":
                    continue
                found = regex.search(source.value.string_value)
                if found is None:
                    continue
                for name, text in found.groupdict(default="").items():
                    target = attributes.find(kvs, name)
                    if target is not None and target.value.WhichOneof("value") == "string_value" \
                            and target.value.string_value == text:
                        continue
                    target = target or kvs.add(key=name)
                    target.value.Clear()
                    target.value.string_value = text
                    changed = True
            elif action == "convert":
                target = attributes.find(kvs, a.key)
                if target is not None and _convert(target.value, a.converted_type):
                    changed = True
            else:
                if constant is not None:
                    source = constant
                else:
                    # from_context finds nothing: no client metadata reaches the pipelines
                    found = attributes.find(kvs, a.from_attribute) if a.from_attribute is not None else None
                    if found is not None and a.from_attribute == a.key:
                        continue  # a key copied onto itself changes nothing
                    source = found.value if found is not None else default
                if source is None:
                    continue
                existing = attributes.find(kvs, a.key)
                if (action == "insert" and existing is not None) or (action == "update" and existing is None):
                    continue
                if existing is not None and existing.value == source:
                    continue  # the value it has already
                value = AnyValue()
                value.CopyFrom(source)  # before adding: the source may be another of these attributes
                if existing is None:
                    existing = kvs.add(key=a.key)
                existing.value.CopyFrom(value)
                changed = True
        return changed


class AttributesProcessor:
    mutates_data = True

    def __init__(self, config: AttributesProcessorConfig, signal: Signal, next: Consumer) -> None:
        self._signal = signal
        self._next = next
        self._actions = _Actions(config.actions)
        self._include = _Matcher(config.include) if config.include is not None else None
        self._exclude = _Matcher(config.exclude) if config.exclude is not None else None

    async def start(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    def _selected(self, resource, scope, item, metric=None) -> bool:
        if self._include is not None and not (self._include.resource_matches(resource, scope)
                                              and self._include.item_matches(self._signal, item, metric)):
            return False
        if self._exclude is not None and (self._exclude.resource_matches(resource, scope)
                                          and self._exclude.item_matches(self._signal, item, metric)):
            return False
        return True

    async def consume(self, batch: Batch) -> None:
        # Read on the parsed message; only a batch an action changed is edited, so one no action touches
        # goes on as the bytes it came with.
        changed = False
        signal = self._signal
        for resource_items in batch.resources():
            resource = resource_items.resource
            for scope_items in getattr(resource_items, _SCOPES[signal]):
                scope = scope_items.scope
                if signal is Signal.METRICS:
                    for metric in scope_items.metrics:
                        if not self._selected(resource, scope, None, metric):
                            continue
                        kind = metric.WhichOneof("data")
                        for point in (getattr(metric, kind).data_points if kind else ()):
                            changed |= self._actions.apply(point.attributes)
                else:
                    for item in getattr(scope_items, _ITEMS[signal]):
                        if self._selected(resource, scope, item):
                            changed |= self._actions.apply(item.attributes)
        if changed:
            batch.edit(same_items=True)
        await self._next.consume(batch)


_SCOPES = {Signal.TRACES: "scope_spans", Signal.METRICS: "scope_metrics", Signal.LOGS: "scope_logs"}
_ITEMS = {Signal.TRACES: "spans", Signal.LOGS: "log_records"}


def _create(config: AttributesProcessorConfig, settings: Settings, signal: Signal, next: Consumer):
    return AttributesProcessor(config, signal, next)


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type="attributes",
    config_model=AttributesProcessorConfig,
    create=_create,
    signals=frozenset(Signal),
    description="insert, update, upsert, delete, hash, extract or convert span, data point and log attributes",
)
