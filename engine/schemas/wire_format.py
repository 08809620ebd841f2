"""Confluent's wire format for a schema-registry payload: a magic byte 0,
the schema's id as a 4-byte big-endian integer, then the serialized data
(for Protobuf, message indexes come before the data)."""

from __future__ import annotations

import struct

MAGIC_BYTE = 0
PREFIX_SIZE = 5
"""The magic byte and the schema id."""

_PREFIX = struct.Struct(">BI")


class NotFramed(ValueError):
    """A payload that does not start with the magic byte and a schema id."""


def frame(schema_id: int, body: bytes) -> bytes:
    """``body`` as a serializer sends it for schema ``schema_id``."""
    return _PREFIX.pack(MAGIC_BYTE, schema_id) + body


def unframe(payload: bytes) -> tuple[int, memoryview]:
    """The schema id a payload names, and the bytes after the prefix."""
    if len(payload) < PREFIX_SIZE or payload[0] != MAGIC_BYTE:
        raise NotFramed(
            "does not start with the schema registry's magic byte 0 and a 4-byte schema id"
        )
    _, schema_id = _PREFIX.unpack_from(payload)
    return schema_id, memoryview(payload)[PREFIX_SIZE:]
