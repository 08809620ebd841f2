"""Decoding requests and encoding responses, for any supported version.

Requests are decoded with ``kio``'s native readers (types generated from
Kafka's message schemas), except Produce, decoded by hand in
:mod:`engine.protocol.produce` so that record data stays a slice of the
request. Responses are written by :mod:`engine.protocol.encoder` from plain
dicts, with record data attached by reference.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from functools import cache
from typing import Any

from kio.serial import entity_reader

from engine.protocol.apis import (
    is_flexible,
    request_schema,
    response_header_is_flexible,
    response_schema,
)
from engine.protocol.encoder import Sink, encoder_for
from engine.protocol.errors import MalformedRequest
from engine.protocol.frames import RequestHeader, skip_tagged_fields

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
    try:
        # kio's native readers take read-only buffers only.
        entity, _size = _reader(header.api_key, header.api_version)(frame.toreadonly(), offset)
    except MalformedRequest:
        raise
    except Exception as error:  # kio raises DecodeError, ValueError and friends
        raise MalformedRequest(
            f"API key {header.api_key} v{header.api_version} does not decode: {error}"
        ) from error
    return entity


def encode_response(header: RequestHeader, body: Mapping[str, Any]) -> Parts:
    """The whole response frame (size prefix, response header, body), as
    parts to be written in order."""
    sink = Sink()
    out = sink.buffer
    out += b"\0\0\0\0"  # the size, filled in below
    out += _INT32.pack(header.correlation_id)
    if response_header_is_flexible(header.api_key, header.api_version):
        out.append(0)  # no tagged fields
    encoder_for(response_schema(header.api_key, header.api_version))(sink, body)
    parts = sink.finish()
    size = sum(len(part) for part in parts) - 4
    first = parts[0]
    assert isinstance(first, bytearray)
    first[0:4] = _INT32.pack(size)
    return parts
