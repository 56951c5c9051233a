"""The compiled reader of OTLP wire bytes (agent/_otlpscan.c): its functions and what they return.

It reads field numbers, names and the string cut from agent/wirelayout.py when it is imported.
"""

from typing import Any, TypedDict

# Value kinds, as `ScanResult.kind` numbers them (an AnyValue's set field): the scalars first, up to DOUBLE.
STRING: int
BOOL: int
INT: int
DOUBLE: int
ARRAY: int
KVLIST: int
BYTES: int


class Unsupported(ValueError):
    """Input the scanner leaves to protobuf: malformed, or a shape it does not read as protobuf would."""


class ScanResult(TypedDict):
    """One request's matching attributes as flat records (one per attribute whose key starts with one of the
    prefixes and that has a value), and what the caller needs of each item. Byte fields are packed native
    arrays, read with numpy.frombuffer."""

    keys: list[str]  # the distinct matching keys, in the order first met; a record's `key` indexes this
    by_key: list[bytes]  # per key: int32 indices of its records, in wire order
    item: bytes  # int32 per record: the item (span or log record) it belongs to, counted over the request
    key: bytes  # int32 per record: its key's index in `keys`
    kind: bytes  # uint8 per record: its value's kind (STRING ... BYTES)
    number: bytes  # float64 per record: an INT's or DOUBLE's value, a packed ARRAY's length, NaN otherwise
    int: bytes  # int64 per record: an INT's value, a BOOL's 0 or 1, 1 for a packed ARRAY (see object), 0 otherwise
    object: list[Any]  # per record: a STRING's str, an ARRAY's list of scalars (of a vector key: its numbers as
    #                    packed float64 bytes when all are ints or doubles, else None), None otherwise
    items: int  # how many items the request holds (those in a skipped scope not counted)
    item_resource: bytes  # int32 per item: its resource's index in `services`
    start: bytes  # uint64 per item: a span's start_time_unix_nano (0 for log records)
    end: bytes  # uint64 per item: a span's end_time_unix_nano (0 for log records)
    status: bytes  # int32 per item: a span's status code (0 for log records)
    trace_id: bytes  # 16 bytes per item: its trace id (zeros when it has none or one not 16 bytes long)
    span_id: bytes  # 8 bytes per item: its span id (zeros when it has none or one not 8 bytes long)
    services: list[str]  # per resource: its `service.name`, "" when it has none or it is not a string
    exceptions: dict[int, str]  # item -> the non-empty `exception.type` of its first exception event having one
    repeated: bool  # some item gives a key more than once (the caller keeps the last)
    plain_strings: bool  # every string value is 1 to max_string_length bytes: none empty, nothing to cut


def scan(wire: bytes, logs: bool, prefixes: tuple[bytes, ...], skip_scope: bytes,
         vector_keys: tuple[bytes, ...] = ...) -> ScanResult: ...


def metric_point_count(wire: bytes) -> int: ...


def schema(types: list[list[tuple[int, int, bool, int]]]) -> object: ...


def check(schema: object, root: int, wire: bytes, count_type: int, count_field: int) -> int: ...
