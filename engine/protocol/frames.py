"""Request framing: the size prefix, the request header, and a cursor for the
few message bodies decoded by hand (Produce, whose record data must stay a
slice of the request rather than a copy).

A Kafka request is ``int32 size`` followed by ``size`` bytes: the request
header (api key, api version, correlation id, client id, and in flexible
versions a tagged-field section) and then the body. The client id is always
a legacy nullable string (int16 length), even in flexible headers.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from engine.protocol.errors import MalformedRequest

_HEADER = struct.Struct(">hhih")
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_INT64 = struct.Struct(">q")

SIZE_PREFIX = 4

_new = tuple.__new__


class RequestHeader(NamedTuple):
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body_offset: int
    """Where the header ends, for a header without its tagged-field section."""


def parse_header(frame: memoryview | bytes | bytearray) -> RequestHeader:
    """The header's fixed part; tagged fields (flexible versions) are skipped
    by :func:`skip_tagged_fields` once the version is known to be flexible."""
    if len(frame) < _HEADER.size:
        raise MalformedRequest(f"a request of {len(frame)} bytes is shorter than its header")
    api_key, api_version, correlation_id, client_id_size = _HEADER.unpack_from(frame, 0)
    offset = _HEADER.size
    client_id = None
    if client_id_size >= 0:
        end = offset + client_id_size
        if end > len(frame):
            raise MalformedRequest("the client id runs past the end of the request")
        try:
            client_id = bytes(frame[offset:end]).decode()
        except UnicodeDecodeError as error:
            raise MalformedRequest("the client id is not UTF-8") from error
        offset = end
    elif client_id_size != -1:
        raise MalformedRequest(f"the client id has length {client_id_size}")
    # tuple.__new__ itself: a NamedTuple's own __new__ is a Python call, once a request.
    return _new(RequestHeader, (api_key, api_version, correlation_id, client_id, offset))


class Cursor:
    """Reads Kafka's primitive types from a frame, raising MalformedRequest
    (never IndexError or struct.error) when the data runs out."""

    __slots__ = ("data", "offset")

    def __init__(self, data: memoryview, offset: int = 0) -> None:
        self.data = data
        self.offset = offset

    def _take(self, size: int) -> int:
        start = self.offset
        end = start + size
        if size < 0 or end > len(self.data):
            raise MalformedRequest(f"the request ends before byte {end} (it has {len(self.data)})")
        self.offset = end
        return start

    def int16(self) -> int:
        value: int = _INT16.unpack_from(self.data, self._take(2))[0]
        return value

    def int32(self) -> int:
        value: int = _INT32.unpack_from(self.data, self._take(4))[0]
        return value

    def int64(self) -> int:
        value: int = _INT64.unpack_from(self.data, self._take(8))[0]
        return value

    def uvarint(self) -> int:
        value = 0
        shift = 0
        while True:
            byte = self.data[self._take(1)]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 28:
                raise MalformedRequest("an unsigned varint is longer than 5 bytes")

    def length(self, flexible: bool, wide: bool = True) -> int:
        """An array, string or bytes length; -1 for null."""
        if flexible:
            return self.uvarint() - 1
        return self.int32() if wide else self.int16()

    def slice(self, size: int) -> memoryview:
        start = self._take(size)
        return self.data[start : start + size]

    def string(self, flexible: bool) -> str | None:
        size = self.length(flexible, wide=False)
        if size < 0:
            return None
        try:
            return bytes(self.slice(size)).decode()
        except UnicodeDecodeError as error:
            raise MalformedRequest("a string is not UTF-8") from error

    def uuid(self) -> bytes:
        return bytes(self.slice(16))

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self._take(self.uvarint())


def skip_tagged_fields(frame: memoryview, offset: int) -> int:
    """The offset after a tagged-field section that starts at ``offset``."""
    cursor = Cursor(frame, offset)
    cursor.skip_tagged_fields()
    return cursor.offset


def size_prefix(size: int) -> bytes:
    return _INT32.pack(size)


def read_size(data: bytes | bytearray | memoryview, offset: int = 0) -> int:
    value: int = _INT32.unpack_from(data, offset)[0]
    return value
