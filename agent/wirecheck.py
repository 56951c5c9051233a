"""Checking an OTLP request on its bytes, as protobuf's parser would, without building the message.

The receiver must refuse a request protobuf cannot parse (400 / INVALID_ARGUMENT),
and count its items; parsing a 512-span request into Python objects only for
that costs more than everything else Vigil does with a request it forwards
untouched. `agent/_otlpscan.c` walks the bytes instead, checking what
protobuf's parser checks (lengths, varints, field numbers and wire types, UTF-8
in string fields, packed arrays) against a table of field kinds taken from the
request's own descriptors, and counts items on the way.

The check only ever says "valid" where protobuf surely agrees; where it is not
sure (groups, very deep nesting, a varint beyond 64 bits, anything malformed)
it says nothing and the caller parses with protobuf, which gives the verdict
and the error message. `tests/test_wirecheck.py` holds both to that on
generated and damaged requests.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

try:
    from agent import _otlpscan
except ImportError:  # built without a C compiler: requests are checked by parsing them
    _otlpscan = None

# Field kinds, as agent/_otlpscan.c numbers them.
VARINT, FIXED64, FIXED32, STRING, BYTES, MESSAGE = range(1, 7)
_KINDS = {
    FieldDescriptor.TYPE_STRING: STRING, FieldDescriptor.TYPE_BYTES: BYTES, FieldDescriptor.TYPE_MESSAGE: MESSAGE,
    FieldDescriptor.TYPE_DOUBLE: FIXED64, FieldDescriptor.TYPE_FIXED64: FIXED64,
    FieldDescriptor.TYPE_SFIXED64: FIXED64, FieldDescriptor.TYPE_FLOAT: FIXED32,
    FieldDescriptor.TYPE_FIXED32: FIXED32, FieldDescriptor.TYPE_SFIXED32: FIXED32,
}  # every other type (integers, bools, enums) is a varint; groups are not in OTLP


class WireCheck:
    """Checks requests of `request_type` and counts the items found along `item_path` (the repeated
    message fields from the request down to its items, e.g. resource_spans, scope_spans, spans)."""

    def __init__(self, request_type: Any, item_path: tuple[str, ...]) -> None:
        self._schema = None
        if _otlpscan is None:
            return
        types: list[list[tuple[int, int, bool, int]]] = []
        index: dict[str, int] = {}

        def add(descriptor: Descriptor) -> int:
            if descriptor.full_name in index:
                return index[descriptor.full_name]
            position = index[descriptor.full_name] = len(types)
            types.append([])
            for field in descriptor.fields:
                kind = _KINDS.get(field.type, VARINT)
                target = add(field.message_type) if kind == MESSAGE else -1
                types[position].append((field.number, kind, _is_repeated(field), target))
            return position

        root = add(request_type.DESCRIPTOR)
        holder, descriptor = root, request_type.DESCRIPTOR
        for name in item_path:
            field = descriptor.fields_by_name[name]
            holder, count_field, descriptor = index[descriptor.full_name], field.number, field.message_type
        try:
            self._schema = _otlpscan.schema(types)
        except ValueError:  # a field the table cannot hold (a number >= 64, say): parse instead
            return
        self._root, self._count_type, self._count_field = root, holder, count_field

    def items(self, wire: bytes) -> int | None:
        """The items in `wire` when it is surely a valid request; None when only parsing can tell."""
        if self._schema is None:
            return None
        try:
            return _otlpscan.check(self._schema, self._root, wire, self._count_type, self._count_field)
        except ValueError:  # Unsupported: not sure, or not valid
            return None


def _is_repeated(field: FieldDescriptor) -> bool:
    repeated = getattr(field, "is_repeated", None)  # protobuf 6+; `label` is deprecated there
    return bool(repeated) if repeated is not None else field.label == FieldDescriptor.LABEL_REPEATED
