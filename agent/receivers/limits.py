"""Attribute limits a receiver applies to what it takes in, as the OpenTelemetry SDKs do.

Per attribute list (of a resource, a scope, a span, an event, a link, a log
record, a data point, an exemplar): at most `max_attributes` attributes (the
rest are dropped and added to the item's `dropped_attributes_count`, where it
has one); strings and bytes cut to `max_attribute_value_length`; arrays and
key-value lists cut to `max_array_length` entries, also inside nested values.
Each limit is 0 (off) by default: a request nothing exceeds is forwarded as
the bytes it came in, and with every limit off nothing is even looked at.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from agent.configmodel import StrictModel
from agent.signals import Batch, Signal


class AttributeLimitsConfig(StrictModel):
    max_attributes: int = Field(0, ge=0)
    max_attribute_value_length: int = Field(0, ge=0)
    max_array_length: int = Field(0, ge=0)


class AttributeLimits:
    def __init__(self, config: AttributeLimitsConfig) -> None:
        self._max_attributes = config.max_attributes
        self._max_length = config.max_attribute_value_length
        self._max_array = config.max_array_length
        self.enabled = bool(self._max_attributes or self._max_length or self._max_array)

    def apply(self, batch: Batch) -> tuple[int, int]:
        """Enforce the limits on `batch` in place; (attributes dropped, values cut)."""
        if not self.enabled:
            return 0, 0
        self._dropped = self._cut = 0
        self._batch = batch
        for holder, attributes in _attribute_lists(batch.signal, batch.message):
            self._attributes(holder, attributes)
        self._batch = None
        return self._dropped, self._cut

    def _edit(self) -> None:
        # The first change drops the request's cached wire bytes; the same message is edited.
        self._batch.edit(same_items=True)

    def _attributes(self, holder: Any, attributes: Any) -> None:
        if self._max_attributes and len(attributes) > self._max_attributes:
            extra = len(attributes) - self._max_attributes
            self._edit()
            del attributes[self._max_attributes:]
            self._dropped += extra
            if holder is not None:
                holder.dropped_attributes_count += extra
        if self._max_length or self._max_array:
            for attribute in attributes:
                self._value(attribute.value)

    def _value(self, value: Any) -> None:
        kind = value.WhichOneof("value")
        if kind == "string_value":
            if self._max_length and len(value.string_value) > self._max_length:
                self._edit()
                value.string_value = value.string_value[: self._max_length]
                self._cut += 1
        elif kind == "bytes_value":
            if self._max_length and len(value.bytes_value) > self._max_length:
                self._edit()
                value.bytes_value = value.bytes_value[: self._max_length]
                self._cut += 1
        elif kind in ("array_value", "kvlist_value"):
            entries = value.array_value.values if kind == "array_value" else value.kvlist_value.values
            if self._max_array and len(entries) > self._max_array:
                self._edit()
                del entries[self._max_array:]
                self._cut += 1
            for entry in entries:
                self._value(entry if kind == "array_value" else entry.value)


_POINT_KINDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")


def _attribute_lists(signal: Signal, message: Any):
    """(holder with dropped_attributes_count or None, repeated KeyValue) for every list in `message`."""
    if signal is Signal.TRACES:
        top, middle, bottom = "resource_spans", "scope_spans", "spans"
    elif signal is Signal.METRICS:
        top, middle, bottom = "resource_metrics", "scope_metrics", "metrics"
    else:
        top, middle, bottom = "resource_logs", "scope_logs", "log_records"
    for resource in getattr(message, top):
        yield resource.resource, resource.resource.attributes
        for scope in getattr(resource, middle):
            yield scope.scope, scope.scope.attributes
            for item in getattr(scope, bottom):
                if signal is Signal.TRACES:
                    yield item, item.attributes
                    for event in item.events:
                        yield event, event.attributes
                    for link in item.links:
                        yield link, link.attributes
                elif signal is Signal.LOGS:
                    yield item, item.attributes
                else:
                    kind = item.WhichOneof("data")
                    if kind in _POINT_KINDS:
                        for point in getattr(item, kind).data_points:
                            yield None, point.attributes
                            for exemplar in getattr(point, "exemplars", ()):
                                yield None, exemplar.filtered_attributes
