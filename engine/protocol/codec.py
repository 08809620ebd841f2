"""Decoding requests and encoding responses, for any supported version.

Requests are decoded with ``kio``'s native readers (types generated from
Kafka's message schemas), except Produce, decoded by hand in
:mod:`engine.protocol.produce` so that record data stays a slice of the
request. Responses are written by :mod:`engine.protocol.encoder` from plain
dicts, with record data attached by reference.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Mapping
from functools import cache
from types import NoneType, UnionType
from typing import Any, NamedTuple, Union, get_args, get_origin

from kio.serial import entity_reader

from engine.protocol.apis import (
    is_flexible,
    request_schema,
    response_header_is_flexible,
    response_schema,
)
from engine.protocol.encoder import Sink, encoder_for
from engine.protocol.errors import MalformedRequest
from engine.protocol.frames import Cursor, RequestHeader, skip_tagged_fields

_INT32 = struct.Struct(">i")

Parts = list[bytes | bytearray | memoryview]


@cache
def _reader(api_key: int, api_version: int) -> Any:
    return entity_reader(request_schema(api_key, api_version))


def body_offset(header: RequestHeader, frame: memoryview) -> int:
    """Where the body starts: after the header's tagged fields if flexible."""
    if is_flexible(header.api_key, header.api_version):
        return skip_tagged_fields(frame, header.body_offset)
    return header.body_offset


def decode_request(header: RequestHeader, frame: memoryview) -> Any:
    """The request body as a kio entity of the header's API and version."""
    offset = body_offset(header, frame)
    walk = _Walk(frame, offset)
    _shape_check(request_schema(header.api_key, header.api_version))(walk)
    # kio's native readers take read-only buffers only.
    readable = frame.toreadonly() if not walk.beyond else _saturated(frame, walk.beyond)
    try:
        entity, _size = _reader(header.api_key, header.api_version)(readable, offset)
    except MalformedRequest:
        raise
    except Exception as error:  # kio raises DecodeError, ValueError and friends
        raise MalformedRequest(
            f"API key {header.api_key} v{header.api_version} does not decode: {error}"
        ) from error
    return entity


# -- shape check ----------------------------------------------------------------------
#
# kio's native reader reserves room for an array from its count before it
# reads the elements, and a failed allocation aborts the process: a request
# of a few bytes claiming 2^31 elements would take the server down. So a
# body is first walked, without building anything, to prove that each array
# count, length and tagged field fits in the bytes that are there. The walk
# also refuses null for fields the schema does not let be null, as Kafka's
# own readers do (kio would hand the handler a None).


class _Walk(Cursor):
    """The shape check's cursor: also where the body holds a duration kio
    cannot read (``beyond``)."""

    __slots__ = ("beyond",)

    def __init__(self, data: memoryview, offset: int = 0, beyond: list[int] | None = None) -> None:
        super().__init__(data, offset)
        self.beyond: list[int] = [] if beyond is None else beyond


_Check = Callable[[_Walk], None]

DURATION_LIMIT_MS = 9_223_372_036_854_775
"""The longest int64 duration (ms) kio reads, either sign: a timedelta of
2**63 - 1 microseconds, some 292,000 years. Kafka reads any int64 in such
a field (CreateDelegationToken's max_lifetime_ms, Renew's and Expire's
periods, OffsetCommit's retention_time_ms) and caps it or takes its sign;
one beyond this limit is read as the limit, which keeps both, rather than
refused as a request that does not decode."""
_INT64 = struct.Struct(">q")


def _duration_check(cursor: _Walk) -> None:
    start = cursor.offset
    _skip(cursor, 8)
    (value,) = _INT64.unpack_from(cursor.data, start)
    if abs(value) > DURATION_LIMIT_MS:
        cursor.beyond.append(start)


def _saturated(frame: memoryview, offsets: list[int]) -> memoryview:
    """A read-only copy of ``frame`` whose int64 durations at ``offsets`` are
    brought within DURATION_LIMIT_MS, their sign kept."""
    copy = bytearray(frame)
    for at in offsets:
        (value,) = _INT64.unpack_from(copy, at)
        _INT64.pack_into(copy, at, DURATION_LIMIT_MS if value > 0 else -DURATION_LIMIT_MS)
    return memoryview(bytes(copy))


_FIXED_SIZES = {
    "int8": 1,
    "bool": 1,
    "int16": 2,
    "uint16": 2,
    "error_code": 2,
    "int32": 4,
    "uint32": 4,
    "timedelta_i32": 4,
    "int64": 8,
    "timedelta_i64": 8,
    "datetime_i64": 8,
    "float64": 8,
    "uuid": 16,
}


def _skip(cursor: Cursor, size: int) -> None:
    end = cursor.offset + size
    if size < 0 or end > len(cursor.data):
        raise MalformedRequest(f"the request ends before byte {end} (it has {len(cursor.data)})")
    cursor.offset = end


def _fixed_check(size: int) -> _Check:
    return lambda cursor: _skip(cursor, size)


def _null(nullable: bool) -> None:
    if not nullable:
        raise MalformedRequest("a non-nullable field is null")


def _sized_check(flexible: bool, wide: bool, nullable: bool) -> _Check:
    def check(cursor: _Walk) -> None:
        size = cursor.length(flexible, wide)
        if size > 0:
            _skip(cursor, size)
        elif size < 0:
            _null(nullable)

    return check


def _array_check(item: _Check, flexible: bool, nullable: bool) -> _Check:
    def check(cursor: _Walk) -> None:
        count = cursor.length(flexible)
        if count < 0:
            _null(nullable)
        # Every element takes at least a byte: a count beyond the bytes left is a lie.
        if count > len(cursor.data) - cursor.offset:
            raise MalformedRequest(f"an array of {count} elements in a shorter request")
        for _ in range(count):
            item(cursor)

    return check


def _nullable_struct_check(struct_check: _Check) -> _Check:
    def check(cursor: _Walk) -> None:
        _skip(cursor, 1)
        if cursor.data[cursor.offset - 1] < 0x80:  # -1 (null) or 1
            struct_check(cursor)

    return check


def _field_check(field: dataclasses.Field[Any], flexible: bool) -> _Check:
    field_type, nullable = field.type, False
    if get_origin(field_type) in (UnionType, Union):
        args = [arg for arg in get_args(field_type) if arg is not NoneType]
        field_type, nullable = args[0], len(args) < len(get_args(field_type))
    is_array = get_origin(field_type) is tuple
    if is_array:
        field_type = get_args(field_type)[0]
    if dataclasses.is_dataclass(field_type):
        item = _shape_check(field_type)  # type: ignore[arg-type]
        if nullable and not is_array and field.metadata.get("tag") is None:
            item = _nullable_struct_check(item)
    else:
        kafka_type = field.metadata["kafka_type"]
        size = _FIXED_SIZES.get(kafka_type)
        if kafka_type == "timedelta_i64":
            item = _duration_check
        elif size is not None:
            item = _fixed_check(size)
        elif kafka_type in ("string", "bytes", "records"):
            item = _sized_check(flexible, kafka_type != "string", nullable and not is_array)
        else:
            raise NotImplementedError(f"no shape check for Kafka type {kafka_type!r}")
    return _array_check(item, flexible, nullable) if is_array else item


@cache
def _shape_check(schema: type) -> _Check:
    """A function that walks a body of ``schema`` and raises MalformedRequest
    unless every count and length in it fits the bytes there are."""
    flexible = bool(getattr(schema, "__flexible__", False))
    plain: list[_Check] = []
    tagged: dict[int, _Check] = {}
    for field in dataclasses.fields(schema):
        field_check = _field_check(field, flexible)
        tag = field.metadata.get("tag")
        if tag is None:
            plain.append(field_check)
        else:
            tagged[int(tag)] = field_check

    def check(cursor: _Walk) -> None:
        for walk in plain:
            walk(cursor)
        if not flexible:
            return
        for _ in range(cursor.uvarint()):
            known = tagged.get(cursor.uvarint())
            size = cursor.uvarint()
            start = cursor.offset
            _skip(cursor, size)
            if known is not None:
                known(_Walk(cursor.data[: cursor.offset], start, cursor.beyond))

    return check


class Encoded(NamedTuple):
    """A response frame encoded ahead (by encode_response, off the event
    loop: a response about thousands of topics takes a while to encode, or
    from a template)."""

    parts: Parts
    throttle_at: int | None = None
    """Where the frame (its parts joined) holds its throttle_time_ms, for
    a response whose body does not start with it (Produce's ends with it);
    None: first in the body, or not there."""


def with_throttle_time(header: RequestHeader, encoded: Encoded, throttle_ms: int) -> Parts:
    """A response encoded ahead, carrying ``throttle_ms`` as its
    throttle_time_ms where it carries less: a quota's throttle is known
    only once the answer is made. The field is where ``throttle_at`` says,
    else first in the body; a version without it is left as it is."""
    at = encoded.throttle_at
    if at is None:
        if not _throttle_time_first(header.api_key, header.api_version):
            return encoded.parts
        # after the size and the correlation id, and the flexible header's tagged fields (none)
        at = 8 + (1 if response_header_is_flexible(header.api_key, header.api_version) else 0)
    frame = bytearray(b"".join(encoded.parts))
    (carried,) = _INT32.unpack_from(frame, at)
    if carried < throttle_ms:
        _INT32.pack_into(frame, at, throttle_ms)
    return [frame]


@cache
def _throttle_time_first(api_key: int, api_version: int) -> bool:
    fields = dataclasses.fields(response_schema(api_key, api_version))
    return bool(fields) and fields[0].name == "throttle_time"


def encode_response(header: RequestHeader, body: Mapping[str, Any] | Encoded) -> Parts:
    """The whole response frame (size prefix, response header, body), as
    parts to be written in order."""
    if isinstance(body, Encoded):
        return body.parts
    sink = Sink()
    out = sink.buffer
    out += b"\0\0\0\0"  # the size, filled in below
    out += _INT32.pack(header.correlation_id)
    if response_header_is_flexible(header.api_key, header.api_version):
        out.append(0)  # no tagged fields
    encoder_for(response_schema(header.api_key, header.api_version))(sink, body)
    parts = sink.finish()
    size = sum(map(len, parts)) - 4
    first = parts[0]
    assert isinstance(first, bytearray)
    first[0:4] = _INT32.pack(size)
    return parts
