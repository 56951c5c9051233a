"""The compiled OTLP/JSON writer (agent/_otlpjson.c): its functions and what they take.

The plans it walks by are agent/exporters/json_wire.py's, built there from the protobuf descriptors.
"""

# One field of a message type: (tag, number, kind, '"jsonName":' as bytes, repeated, has presence,
# the index of a message field's type in the table or -1, its oneof's index or -1); kinds as json_wire
# numbers them, PACKED (100) + a kind for a packed run.
Field = tuple[int, int, int, bytes, bool, bool, int, int]


def table(types: list[list[Field]]) -> object:
    """A table of message types (types[i] the fields of type i); ValueError for one it cannot hold."""


def message(table: object, type: int, wire: bytes, start: int, end: int) -> str | None:
    """The OTLP/JSON of the message of `type` in wire[start:end]; None for a layout left to protobuf."""


def messages(table: object, type: int, wire: bytes, start: int, end: int) -> str | None:
    """The OTLP/JSON of the message of `type` in each length-delimited field of wire[start:end],
    comma-separated; None for a layout left to protobuf."""
