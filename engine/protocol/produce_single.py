"""The common Produce request, one topic with one partition's batch and no
tagged fields, decoded in a few struct reads; anything else (and anything
malformed) is left to the general decoder (produce.py), which answers it
or names what is wrong with it.

librdkafka sends one partition's batch per Produce request to a topic of
thousands of partitions, so the server decodes a request per record or
two, and the general decoder's cursor (a method call per field, bounds
checked one by one) cost as much as the rest of the request's framing.
Here the bounds are checked once per length read, and a request this
decoder accepts is one the general decoder decodes to the same values: it
never refuses anything itself (tests/server/test_produce_single.py holds it
to that, for well-formed requests and for damaged ones).
"""

from __future__ import annotations

import struct

from engine.protocol.produce import (
    FIRST_FLEXIBLE_VERSION,
    PartitionData,
    ProduceRequest,
    TopicData,
)

_INT16 = struct.Struct(">h")
_ACKS_TIMEOUT_COUNT = struct.Struct(">hii")
_ACKS_TIMEOUT_BYTE = struct.Struct(">hiB")
_BYTE_INT32 = struct.Struct(">Bi")
_COUNT_INDEX_SIZE = struct.Struct(">iii")
_MAX_VARINT_BYTES = 5
_new = tuple.__new__


def decode_single_partition(frame: memoryview, offset: int, version: int) -> ProduceRequest | None:
    """The request, if it is one topic with one partition's (non-null)
    batch and carries no tagged fields; None for anything else."""
    try:
        if version >= FIRST_FLEXIBLE_VERSION:
            return _flexible(frame, offset)
        return _legacy(frame, offset)
    except (struct.error, IndexError, UnicodeDecodeError, NotDecodedHere):
        return None  # the general decoder says what is wrong


def _legacy(frame: memoryview, at: int) -> ProduceRequest | None:
    end = len(frame)
    (size,) = _INT16.unpack_from(frame, at)
    at += 2
    transactional_id = None
    if size >= 0:
        if at + size > end:
            return None
        transactional_id = bytes(frame[at : at + size]).decode()
        at += size
    acks, timeout_ms, topics = _ACKS_TIMEOUT_COUNT.unpack_from(frame, at)
    at += _ACKS_TIMEOUT_COUNT.size
    if topics != 1:
        return None
    (size,) = _INT16.unpack_from(frame, at)
    at += 2
    if size < 0 or at + size > end:
        return None
    name = bytes(frame[at : at + size]).decode()
    at += size
    partitions, index, size = _COUNT_INDEX_SIZE.unpack_from(frame, at)
    at += _COUNT_INDEX_SIZE.size
    if partitions != 1 or size < 0 or at + size > end:
        return None
    records = frame[at : at + size]
    # tuple.__new__ itself: each NamedTuple's own __new__ is a Python call.
    topic = _new(TopicData, (name, [_new(PartitionData, (index, records))]))
    return _new(ProduceRequest, (transactional_id, acks, timeout_ms, [topic]))


def _flexible(frame: memoryview, at: int) -> ProduceRequest | None:
    # Each varint read inline when it is one byte (below 0x80: every count,
    # name length and small batch's length here), by read_uvarint otherwise: a
    # call per varint was a fifth of this decoder's cost.
    end = len(frame)
    size = frame[at]
    if size < 0x80:
        at += 1
    else:
        size, at = read_uvarint(frame, at)
    transactional_id = None
    if size > 0:  # a compact string's length + 1; 0 is null
        if at + size - 1 > end:
            return None
        transactional_id = bytes(frame[at : at + size - 1]).decode()
        at += size - 1
    acks, timeout_ms, topics = _ACKS_TIMEOUT_BYTE.unpack_from(frame, at)
    at += _ACKS_TIMEOUT_BYTE.size
    if topics != 2:  # one topic (a compact array's length + 1, one byte)
        return None
    size = frame[at]
    if size < 0x80:
        at += 1
    else:
        size, at = read_uvarint(frame, at)
    if size < 1 or at + size - 1 > end:
        return None
    # Decoded from the frame's bytes: a bytes copy first was a call of
    # its type and an object more, once a request.
    name = str(frame[at : at + size - 1], "utf-8")
    at += size - 1
    partitions, index = _BYTE_INT32.unpack_from(frame, at)
    if partitions != 2:  # one partition
        return None
    at += _BYTE_INT32.size
    # The batch's length: two bytes for a batch of 127 to 16,383 bytes
    # (one small record's is about 170), read inline too.
    size = frame[at]
    if size < 0x80:
        at += 1
    elif frame[at + 1] < 0x80:
        size = (size & 0x7F) | frame[at + 1] << 7
        at += 2
    else:
        size, at = read_uvarint(frame, at)
    if size < 1 or at + size - 1 > end:
        return None
    records = frame[at : at + size - 1]
    at += size - 1
    # No tagged fields on the partition, the topic or the request.
    # Byte by byte, where a slice and its bytes copy were two objects a request.
    if end - at < 3 or frame[at] or frame[at + 1] or frame[at + 2]:
        return None
    # tuple.__new__ itself: each NamedTuple's own __new__ is a Python call.
    topic = _new(TopicData, (name, [_new(PartitionData, (index, records))]))
    return _new(ProduceRequest, (transactional_id, acks, timeout_ms, [topic]))


class NotDecodedHere(Exception):
    """A request left to the general decoder (the hand decoders' own)."""


def read_uvarint(frame: memoryview, at: int) -> tuple[int, int]:
    """An unsigned varint at ``at`` and the offset after it (IndexError past
    the end; one longer than five bytes is the general decoder's to refuse)."""
    value = 0
    for shift in range(0, 7 * _MAX_VARINT_BYTES, 7):
        byte = frame[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
    raise NotDecodedHere
