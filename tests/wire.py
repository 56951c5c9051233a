"""Protobuf wire bytes by hand, for requests protobuf's own serializer never writes (a value given twice,
a field of another wire type, damaged text)."""

from __future__ import annotations


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes, wire_type: int = 2) -> bytes:
    """One field: `payload` is the content of a length-delimited field, else the encoded value."""
    tag = varint(number << 3 | wire_type)
    return tag + (varint(len(payload)) + payload if wire_type == 2 else payload)
