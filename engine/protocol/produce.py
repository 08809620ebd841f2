"""Produce requests, decoded by hand so that each partition's record data is
a writable slice of the request frame: the partition leader rewrites the
batch headers in place (offsets, leader epoch) and stores those very bytes.

Produce v3-v8 (legacy encodings) and v9-v11 (flexible)::

    transactional_id  nullable string
    acks              int16
    timeout_ms        int32
    topic_data        array of
        name              string
        partition_data    array of
            index             int32
            records           nullable bytes
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from engine.protocol.errors import MalformedRequest
from engine.protocol.frames import Cursor
from native.records import MAX_MAGIC, MIN_FRAMED_LENGTH

FIRST_FLEXIBLE_VERSION = 9


class PartitionData(NamedTuple):
    partition: int
    records: memoryview | None


class TopicData(NamedTuple):
    name: str
    partitions: list[PartitionData]


class ProduceRequest(NamedTuple):
    transactional_id: str | None
    acks: int
    timeout_ms: int
    topics: list[TopicData]


def decode_produce(frame: memoryview, offset: int, version: int) -> ProduceRequest:
    """Decodes a Produce body that starts at ``offset`` of ``frame``."""
    flexible = version >= FIRST_FLEXIBLE_VERSION
    cursor = Cursor(frame, offset)
    transactional_id = cursor.string(flexible)
    acks = cursor.int16()
    timeout_ms = cursor.int32()
    topics = []
    for _ in range(_count(cursor, flexible)):
        name = cursor.string(flexible)
        if name is None:
            raise MalformedRequest("a produce request names a null topic")
        partitions = []
        for _ in range(_count(cursor, flexible)):
            partition = cursor.int32()
            size = cursor.length(flexible)
            records = cursor.slice(size) if size >= 0 else None
            if flexible:
                cursor.skip_tagged_fields()
            partitions.append(PartitionData(partition, records))
        if flexible:
            cursor.skip_tagged_fields()
        topics.append(TopicData(name, partitions))
    if flexible:
        cursor.skip_tagged_fields()
    return ProduceRequest(transactional_id, acks, timeout_ms, topics)


def _count(cursor: Cursor, flexible: bool) -> int:
    count = cursor.length(flexible)
    if count < 0:
        raise MalformedRequest("a produce request has a null array")
    # Each element takes at least one byte: a count beyond the bytes left is a lie.
    if count > len(cursor.data) - cursor.offset:
        raise MalformedRequest(f"an array of {count} elements in a shorter request")
    return count


_LOG_OVERHEAD = 12
"""A batch's base offset and length, before the bytes its length counts."""
_BATCH_LENGTH = struct.Struct(">xxxxxxxxi")
"""A batch's length, after its base offset (read in one call: this runs
for every partition of every Produce)."""
_MAGIC = struct.Struct(">16xb")
"""A batch's magic byte."""


def holds_a_second_batch(records: memoryview) -> bool:
    """Whether a partition's record data holds a whole batch after its
    first, as Kafka's MemoryRecords iterator frames them (each batch is
    base offset, length, then that many bytes; a shorter tail is not a
    batch, nor is a frame that iterator refuses as corrupt, a length below
    MIN_FRAMED_LENGTH or a magic outside 0 to MAX_MAGIC: those are left for
    validation to refuse). Produce v3 and later may carry exactly one batch
    per partition (Kafka's ProduceRequest.validateRecords)."""
    first = _batch_size(records, 0)
    if first is None:
        return False
    return _batch_size(records, first) is not None


def _batch_size(records: memoryview, at: int) -> int | None:
    """The size of the whole batch at ``at``, or None if none is there."""
    left = len(records) - at
    if left < _LOG_OVERHEAD:
        return None
    (length,) = _BATCH_LENGTH.unpack_from(records, at)
    size = _LOG_OVERHEAD + length
    if length < MIN_FRAMED_LENGTH or size > left:
        return None
    (magic,) = _MAGIC.unpack_from(records, at)  # in bounds: size >= 26
    return size if 0 <= magic <= MAX_MAGIC else None
