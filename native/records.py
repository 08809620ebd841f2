"""The data types both implementations return: batch headers and records."""

from __future__ import annotations

from enum import IntEnum
from typing import Any, NamedTuple

HEADER_SIZE = 61
"""Bytes of a v2 batch before its first record."""

LENGTH_PREFIX = 12
"""baseOffset (8) + batchLength (4): the bytes batchLength does not count."""

MAGIC_OFFSET = 16
"""Where a batch's magic byte is (batch.h's TL_MAGIC_OFFSET)."""

MAX_MAGIC = 2
"""The highest magic Kafka's MemoryRecords iterator frames (its
RecordBatch.CURRENT_MAGIC_VALUE); above it, or below 0, it throws
CorruptRecordException (CORRUPT_MESSAGE)."""

MIN_FRAMED_LENGTH = 14
"""The least batchLength Kafka's MemoryRecords iterator frames as a batch
(LegacyRecord.RECORD_OVERHEAD_V0); below it the iterator throws
CorruptRecordException (CORRUPT_MESSAGE) instead."""

CRC_START = 21
CRC_COMBINE_MIN_BYTES = 4096
"""From this many bytes on, a CRC32C is cheaper combined from a known CRC
(crc32c_combine, about 100 ns in C) than read (crc32c_batches reads the
batches that cover fewer; callers that hold a smaller payload read it)."""
"""The CRC32C covers from the attributes field to the end of the batch."""

MAX_INFLATED = 32 * 1024 * 1024
"""The most a compressed batch may inflate to when the caller names no limit
(the engine names its topic's: docs/record-batch.md, "Inflation limit")."""

NO_TIMESTAMP = -1
"""A record timestamp of -1: none given (Kafka's RecordBatch.NO_TIMESTAMP)."""

MAX_RECORD_ERRORS = 1000
"""The refused records a batch's RejectedRecords names one by one (the rest
are counted): a batch can refuse millions of tiny records, and each name
costs far more than the record's bytes (batch.h's TL_MAX_RECORD_ERRORS)."""

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_BIT = 0x08
TRANSACTIONAL_BIT = 0x10
CONTROL_BIT = 0x20


class Compression(IntEnum):
    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class TimestampType(IntEnum):
    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


class BatchHeader(NamedTuple):
    """The 61-byte header of one v2 record batch, and where the batch starts."""

    position: int
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size(self) -> int:
        return LENGTH_PREFIX + self.batch_length

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def timestamp_type(self) -> int:
        return 1 if self.attributes & TIMESTAMP_TYPE_BIT else 0

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_BIT)

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta


Header = tuple[str, bytes | None]


class Record(NamedTuple):
    """One decoded record, with its absolute offset and timestamp."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()


class RecordSpec(NamedTuple):
    """One record to encode; its offset delta is its index in the batch unless
    ``encode_batch`` is given ``offset_deltas``."""

    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()


class BinaryColumn(NamedTuple):
    """A column of byte strings as Apache Arrow lays out a binary array."""

    offsets: bytes
    """Little-endian int64, one more than the entries, from 0: entry i is
    ``data[offsets[i]:offsets[i + 1]]`` (empty for a null)."""
    data: bytes
    validity: bytes
    """A bitmap, least significant bit first: bit i is 0 for a null."""
    nulls: int


class RecordColumns(NamedTuple):
    """The records of decode_columns, one column each field (``records`` of them)."""

    records: int
    offsets: bytes
    """Little-endian int64 per record."""
    timestamps: bytes
    """Little-endian int64 per record (-1: none)."""
    timestamp_types: bytes
    """One byte per record: its batch's timestamp type (0 CreateTime, 1 LogAppendTime)."""
    keys: BinaryColumn
    values: BinaryColumn
    header_ends: bytes
    """Little-endian int64, records + 1 from 0: record i's headers are entries
    ``header_ends[i]`` to ``header_ends[i + 1]`` of the two header columns."""
    header_keys: BinaryColumn
    """UTF-8 names (never null)."""
    header_values: BinaryColumn

    @classmethod
    def from_raw(cls, raw: tuple[Any, ...]) -> RecordColumns:
        """The columns of an implementation's ``decode_columns`` tuple (C or
        pure: each binary column as its (data, ends, nulls) buffers)."""
        count, offsets, timestamps, types, keys, values, ends, header_keys, header_values = raw
        return cls(
            count,
            offsets,
            timestamps,
            types,
            BinaryColumn(*keys),
            BinaryColumn(*values),
            ends,
            BinaryColumn(*header_keys),
            BinaryColumn(*header_values),
        )
