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

from typing import NamedTuple

from engine.protocol.errors import MalformedRequest
from engine.protocol.frames import Cursor

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
