"""The on-disk layout of segments and records (docs/wal-format.md).

A record's CRC32C covers its payload followed by header bytes 4..44, so the
payload's share can be computed by the appender, in parallel, before the
writer knows the segment the record lands in.
"""

from __future__ import annotations

import re
import struct
from typing import NamedTuple

from native import crc32c, place_wal_record

SEGMENT_MAGIC = b"TLWALSEG"
SEGMENT_VERSION = 1
SEGMENT_HEADER = struct.Struct("<8sIIQ4xI")  # magic, version, flags, sequence, _, crc
SEGMENT_HEADER_SIZE = SEGMENT_HEADER.size  # 32

SEGMENT_MADE_AHEAD = 0x01
"""A segment header flag: the file got its final name before the segment
before it was sealed (the spare maker prepares the next segment while the
writer still fills the active one). Such a segment holding no valid record
does not vouch for its predecessor's seal: the writer had not reached it."""

# crc, length, segment, type, flags, stream, start, end
RECORD_HEADER = struct.Struct("<IIQBB2xQqq")
RECORD_HEADER_SIZE = RECORD_HEADER.size  # 44
_ADDRESS = struct.Struct("<Qqq")  # stream, start, end: the header's last 24 bytes
CRC_FIELD = struct.Struct("<I")
"""A record header's first field, its CRC32C; packing a CRC an appender
gives into it checks that it fits (``WriteAheadLog._pending``)."""

TYPE_INVALID = 0
TYPE_SEAL = 255
"""Ends every segment but the last; it is never returned by replay."""
MAX_USER_TYPE = 254
MAX_RECORD_LENGTH = 0xFFFFFFFF
"""The header's length field is 32 bits: no payload is longer, whatever
the segment size."""

FLAG_SYNCED = 0x01
"""Set on a record written only after every earlier byte of its segment (and
every earlier segment) was synced: the first record of a group committed after
a sync, and a close's seal. A valid record with this flag beyond a bad one proves
the bad one was synced, so it is damage, not a torn write."""

FLAG_PRIOR_SYNCED = 0x02
"""Set on the first record of a group written while the previous group's
sync was still running (the pipelined ``fsync`` policy): every byte before
the previous group's first record, in this segment and every earlier one,
was synced before this record was written. Every group's first record
carries one of the two flags under ``fsync``, so a valid PRIOR_SYNCED record
beyond a bad one, with another flagged record between the two, proves the
bad one was synced."""

_SEGMENT_NAME = re.compile(r"^(\d{20})\.wal$")


def segment_name(sequence: int) -> str:
    return f"{sequence:020d}.wal"


def parse_segment_name(name: str) -> int | None:
    match = _SEGMENT_NAME.match(name)
    return int(match.group(1)) if match else None


def encode_segment_header(sequence: int, flags: int = 0) -> bytes:
    body = SEGMENT_HEADER.pack(SEGMENT_MAGIC, SEGMENT_VERSION, flags, sequence, 0)
    return body[:-4] + struct.pack("<I", crc32c(body[:-4]))


def decode_segment_header(data: bytes | memoryview) -> int | None:
    """The segment sequence from a header, or None if it is not a valid header."""
    if len(data) < SEGMENT_HEADER_SIZE:
        return None
    magic, version, _, sequence, crc = SEGMENT_HEADER.unpack_from(data)
    if magic != SEGMENT_MAGIC or version != SEGMENT_VERSION:
        return None
    if crc != crc32c(memoryview(data)[: SEGMENT_HEADER_SIZE - 4]):
        return None
    return int(sequence)


def decode_segment_flags(data: bytes | memoryview) -> int:
    """The flags of a header ``decode_segment_header`` found valid."""
    _, _, flags, _, _ = SEGMENT_HEADER.unpack_from(data)
    return int(flags)


class RecordHeader(NamedTuple):
    crc: int
    length: int
    segment: int
    type: int
    flags: int
    stream_id: int
    start_offset: int
    end_offset: int


def encode_record_header(
    segment: int,
    record_type: int,
    stream_id: int,
    start_offset: int,
    end_offset: int,
    length: int,
    payload_crc: int,
    flags: int = 0,
) -> bytes:
    address = encode_record_address(stream_id, start_offset, end_offset)
    return encode_placed_record_header(address, segment, record_type, length, payload_crc, flags)


encode_record_address = _ADDRESS.pack
"""A record header's last 24 bytes: ``encode_record_address(stream_id,
start_offset, end_offset)``.

Packed by the appender, on its own thread: ``struct.error`` refuses a
field the header cannot hold before the append is queued, and the
writer uses the bytes as they are (``encode_placed_record_header``).
The struct's own method, not a function around it: an asyncio append
calls it once, and a Python frame more per append is the loop's."""


encode_placed_record_header = place_wal_record
"""A record header from its packed ``address`` and what only the writer
knows: ``encode_placed_record_header(address, segment, record_type,
length, payload_crc, flags)``. One native call (``native.place_wal_record``):
the writer makes one per single append, where two packs, a CRC call and
two joins in Python made four objects (docs/design/0104)."""


def decode_record_header(data: bytes | memoryview, offset: int) -> RecordHeader:
    return RecordHeader(*RECORD_HEADER.unpack_from(data, offset))


def record_crc(data: bytes | memoryview, offset: int, length: int) -> int:
    """The CRC a record at ``offset`` with a ``length``-byte payload should store."""
    view = memoryview(data)
    payload_start = offset + RECORD_HEADER_SIZE
    payload_crc = crc32c(view[payload_start : payload_start + length])
    return crc32c(view[offset + 4 : payload_start], payload_crc)
