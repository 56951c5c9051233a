"""The `redaction` processor: removes attributes not allowed, masks values and keys that are blocked.

Contrib's redactionprocessor, key for key (docs/collector-compatibility.md lists them), on resource,
span, span event, data point and log record attributes and log bodies; `_attributes` holds the order
of its rules per value.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from pydantic import AfterValidator, field_validator, model_validator

from agent import attributes
from agent.component import Consumer, Factory, Kind, Settings
from agent.configmodel import StrictModel
from agent.regex import UserRegex, compile_user_regex
from agent.signals import Batch, Signal

MASK = "****"


def _regex(pattern: str) -> str:
    compile_user_regex(pattern)  # the config path names the field and its index
    return pattern


Regex = Annotated[str, AfterValidator(_regex)]


def _enabled(section: Any) -> bool:
    """Whether a sanitizer section (url_sanitizer, or one database of db_sanitizer) is switched on."""
    if not isinstance(section, dict):
        return False
    return section.get("enabled") is True or any(_enabled(v) for v in section.values())


class RedactionProcessorConfig(StrictModel):
    allow_all_keys: bool = False
    # Fails closed, as in the Collector: with neither this nor allow_all_keys, every attribute goes.
    allowed_keys: list[str] = []
    ignored_keys: list[str] = []
    blocked_key_patterns: list[Regex] = []
    blocked_values: list[Regex] = []
    allowed_values: list[Regex] = []
    redact_all_types: bool = False
    hash_function: Literal["md5", "sha1", "sha3", "none", ""] | None = None
    # The Collector's default (an empty summary) adds nothing.
    summary: Literal["debug", "info", "silent", ""] = "silent"

    # Switched off, the Collector's sanitizers are accepted; switched on, refused (see _refuse_sanitizers).
    url_sanitizer: dict[str, Any] | None = None
    db_sanitizer: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_sanitizers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("url_sanitizer", "db_sanitizer"):
                if _enabled(data.get(key)):
                    raise ValueError(f"{key}: not supported by Vigil; with it on, what it would sanitize "
                                     "would pass as it is (switch it off, or mask with blocked_values)")
        return data

    @field_validator("hash_function", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


# The summary attributes: (keys, count) for what was removed, masked, allowed by value, ignored.
_SUMMARY = {
    "redacted": ("redaction.redacted.keys", "redaction.redacted.count"),
    "masked": ("redaction.masked.keys", "redaction.masked.count"),
    "allowed": ("redaction.allowed.keys", "redaction.allowed.count"),
    "ignored": (None, "redaction.ignored.count"),
}
_BODY_SUMMARY = {
    "redacted": ("redaction.body.redacted.keys", "redaction.body.redacted.count"),
    "masked": ("redaction.body.masked.keys", "redaction.body.masked.count"),
    "allowed": ("redaction.body.allowed.keys", "redaction.body.allowed.count"),
    "ignored": (None, "redaction.body.ignored.count"),
}
# The summary keys pass every rule untouched, so a second redaction processor keeps what the first wrote.
_OWN_KEYS = frozenset(name for names in (_SUMMARY, _BODY_SUMMARY) for pair in names.values() for name in pair
                      if name is not None)

_HASHES = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha3": hashlib.sha3_256}


_KEYS_REMEMBERED = 10_000
# Values this long or shorter have their masked form remembered, up to this many.
_SHORT = 256
_VALUES_REMEMBERED = 10_000


def _any_of(patterns: list[str]) -> UserRegex | None:
    """One regex that finds where any of `patterns` would, to skip values none matches in one scan;
    None where the joined pattern is past RE2's memory limit (each alone is within it)."""
    try:
        return compile_user_regex("|".join(f"(?:{p})" for p in patterns)) if patterns else None
    except ValueError:
        return None


def _replace_all(regex: UserRegex, text: str, replace) -> str:
    """Every match replaced, as Go's ReplaceAllStringFunc does: an empty match right after a match is skipped."""
    parts, last, previous_end = [], 0, -1
    for match in regex.finditer(text):
        start, end = match.span()
        if start == end and start == previous_end:
            continue
        parts.append(text[last:start])
        parts.append(replace(match.group()))
        last = previous_end = end
    parts.append(text[last:])
    return "".join(parts)


class _Found:
    """What one attribute map (or body) had done to it, for the summary."""

    __slots__ = ("redacted", "masked", "allowed", "ignored")

    def __init__(self) -> None:
        self.redacted: list[str] = []
        self.masked: list[str] = []
        self.allowed: list[str] = []
        self.ignored: list[str] = []


class RedactionProcessor:
    mutates_data = True

    def __init__(self, config: RedactionProcessorConfig, next: Consumer) -> None:
        self._next = next
        self._config = config
        self._allowed = set(config.allowed_keys)
        self._ignored = set(config.ignored_keys)
        self._blocked_values = [compile_user_regex(p) for p in config.blocked_values]
        self._allowed_values = [compile_user_regex(p) for p in config.allowed_values]
        self._blocked_keys = [compile_user_regex(p) for p in config.blocked_key_patterns]
        self._any_blocked = _any_of(config.blocked_values)
        self._keys_seen: dict[str, bool] = {}  # attribute keys repeat: each key's verdict, once
        self._short_seen: dict[str, str] = {}
        hash_name = config.hash_function or "none"
        self._hash = _HASHES.get(hash_name)
        self._summary = config.summary or "silent"
        self._changed = False

    async def start(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def consume(self, batch: Batch) -> None:
        # Read on the parsed message; only a batch something was done to is edited, so one with nothing
        # to redact goes on as the bytes it came with.
        self._changed = False
        for resource_items in batch.resources():
            self._attributes(resource_items.resource.attributes)
            if batch.signal is Signal.TRACES:
                for scope in resource_items.scope_spans:
                    for span in scope.spans:
                        self._attributes(span.attributes)
                        for event in span.events:
                            self._attributes(event.attributes)
            elif batch.signal is Signal.METRICS:
                for scope in resource_items.scope_metrics:
                    for metric in scope.metrics:
                        kind = metric.WhichOneof("data")
                        for point in (getattr(metric, kind).data_points if kind else ()):
                            self._attributes(point.attributes)
            else:
                for scope in resource_items.scope_logs:
                    for record in scope.log_records:
                        self._attributes(record.attributes)
                        self._body(record)
        if self._changed:
            batch.edit(same_items=True)
        await self._next.consume(batch)

    # --- the rules, per value ------------------------------------------------------------------

    def _mask(self, text: str) -> str:
        return self._hash(text.encode()).hexdigest() if self._hash is not None else MASK

    def _text(self, value: AnyValue) -> str:
        """What the rules read of a value: a string as it is; other scalars as text with redact_all_types,
        else the empty string (as the Collector reads a non-string value's Str())."""
        kind = value.WhichOneof("value")
        if kind == "string_value":
            return value.string_value
        if self._config.redact_all_types and kind in ("int_value", "double_value", "bool_value"):
            return attributes.as_string(attributes.any_value(value))
        return ""

    def _blocked(self, text: str) -> str:
        if len(text) > _SHORT:
            return self._mask_blocked(text)
        masked = self._short_seen.get(text)
        if masked is None:  # short values repeat (model names, routes, labels): each one's result, once
            if len(self._short_seen) >= _VALUES_REMEMBERED:
                self._short_seen.clear()
            masked = self._short_seen[text] = self._mask_blocked(text)
        return masked

    def _mask_blocked(self, text: str) -> str:
        if self._any_blocked is not None and not self._any_blocked.found(text):
            return text  # the common case: one scan says no blocked value is in it
        for regex in self._blocked_values:
            if regex.found(text):
                text = _replace_all(regex, text, self._mask)
        return text

    def _value_allowed(self, text: str) -> bool:
        return any(regex.found(text) for regex in self._allowed_values)

    def _key_blocked(self, key: str) -> bool:
        blocked = self._keys_seen.get(key)
        if blocked is None:
            if len(self._keys_seen) >= _KEYS_REMEMBERED:
                self._keys_seen.clear()
            blocked = self._keys_seen[key] = any(regex.found(key) for regex in self._blocked_keys)
        return blocked

    def _attributes(self, kvs) -> None:
        found = _Found()
        for kv in kvs:
            key = kv.key
            if key in _OWN_KEYS:
                continue
            if key in self._ignored:
                found.ignored.append(key)
                continue
            if not self._config.allow_all_keys and key not in self._allowed:
                found.redacted.append(key)
                continue
            text = self._text(kv.value)
            if self._value_allowed(text):
                found.allowed.append(key)
                continue
            if self._key_blocked(key):
                found.masked.append(key)
                kv.value.string_value = self._mask(text)
                continue
            masked = self._blocked(text)
            if masked != text:
                found.masked.append(key)
                kv.value.string_value = masked
        if found.redacted:
            gone = set(found.redacted)
            for kv in [kv for kv in kvs if kv.key in gone]:
                kvs.remove(kv)
        self._add_summary(found, kvs, _SUMMARY)

    # Log bodies follow contrib's body rules, not its attribute rules: a blocked key is masked before
    # allowed_values is read, and every scalar is read as its AsString text (redact_all_types or not).
    def _body(self, record) -> None:
        if record.body.WhichOneof("value") is None:
            return
        found = _Found()
        self._body_value(record.body, None, found)
        self._add_summary(found, record.attributes, _BODY_SUMMARY)

    def _body_map(self, kvs, path: str | None, found: _Found) -> None:
        gone = []
        for kv in kvs:
            where = kv.key if path is None else f"{path}.{kv.key}"
            if kv.key in self._ignored:
                found.ignored.append(where)
                continue
            if not self._config.allow_all_keys and kv.key not in self._allowed:
                gone.append(kv)
                continue
            if self._key_blocked(kv.key):
                found.masked.append(where)
                kv.value.string_value = self._mask(kv.value.string_value
                                                   if kv.value.WhichOneof("value") == "string_value" else "")
                continue
            self._body_value(kv.value, where, found)
        for kv in gone:
            found.redacted.append(kv.key if path is None else f"{path}.{kv.key}")
            kvs.remove(kv)

    def _body_value(self, value: AnyValue, where: str | None, found: _Found) -> None:
        """A body or a part of one at `where` (None: the body itself, a scalar one reported as `body`)."""
        kind = value.WhichOneof("value")
        if kind == "kvlist_value":
            self._body_map(value.kvlist_value.values, where, found)
        elif kind == "array_value":
            for i, item in enumerate(value.array_value.values):
                self._body_value(item, f"[{i}]" if where is None else f"{where}.[{i}]", found)
        else:
            where = where or "body"
            text = attributes.as_string(attributes.any_value(value))
            if self._value_allowed(text):
                found.allowed.append(where)
                return
            masked = self._blocked(text)
            if masked != text:
                found.masked.append(where)
                value.string_value = masked

    def _add_summary(self, found: _Found, kvs, names: dict[str, tuple[str | None, str]]) -> None:
        if found.redacted or found.masked:
            self._changed = True
        if self._summary == "silent":
            return
        for what, (keys_name, count_name) in names.items():
            done = getattr(found, what)
            if not done:
                continue
            self._changed = True
            if self._summary == "debug" and keys_name is not None:
                existing = attributes.find(kvs, keys_name)
                listed = list(done)
                if existing is not None and existing.value.string_value:
                    listed += existing.value.string_value.split(",")
                target = existing or kvs.add(key=keys_name)
                target.value.string_value = ",".join(sorted(listed))
            existing = attributes.find(kvs, count_name)
            count = len(done) + (existing.value.int_value if existing is not None else 0)
            target = existing or kvs.add(key=count_name)
            target.value.int_value = count


def _create(config: RedactionProcessorConfig, settings: Settings, signal: Signal, next: Consumer):
    return RedactionProcessor(config, next)


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type="redaction",
    config_model=RedactionProcessorConfig,
    create=_create,
    signals=frozenset(Signal),
    description="remove attributes not allowed; mask blocked values and keys (or hash them)",
)
