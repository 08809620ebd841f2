"""Kafka's consumer protocol codec: the subscription a member of a
"consumer" group sends as its JoinGroup metadata, and the assignment its
group's leader hands out with SyncGroup.

The encodings are Kafka's ConsumerProtocolSubscription and
ConsumerProtocolAssignment, versions 0-3 (non-flexible, big-endian), byte
for byte as the Java client and librdkafka write them:

    Subscription: version int16, topics [string], user_data nullable bytes,
                  owned_partitions [topic string, partitions [int32]] (v1+),
                  generation_id int32 (v2+), rack_id nullable string (v3+)
    Assignment:   version int16, assigned_partitions [topic string,
                  partitions [int32]], user_data nullable bytes (every version)

A reader takes a version above 3 for version 3 and ignores trailing bytes,
as Kafka's does (later versions only append fields).

Read by hand, with every length and count checked against the bytes
there, rather than with kio's reader: the bytes are whatever another
client sent, and that reader trusts a count before checking the bytes are
there. The embedded clients (their assignors and group member) and the
group coordinator (which reads the topics members subscribe to) both use
this module.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Iterable
from typing import NamedTuple

from engine.protocol.topic_partition import TopicPartition

CONSUMER_PROTOCOL_TYPE = "consumer"
"""The protocol type of a group whose members speak this protocol."""

SUBSCRIPTION_VERSION = 3
ASSIGNMENT_VERSION = 3

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")


class Subscription(NamedTuple):
    """What a member of a consumer group sends with JoinGroup."""

    topics: list[str]
    user_data: bytes | None = None
    owned_partitions: list[TopicPartition] = []  # noqa: RUF012 - never mutated
    """The partitions the member holds now (cooperative members; v1+)."""
    generation_id: int = -1
    """The generation those partitions are from (v2+)."""
    rack_id: str | None = None


class Assignment(NamedTuple):
    """What the leader hands a member with SyncGroup."""

    partitions: list[TopicPartition]
    user_data: bytes | None = None


class ConsumerProtocolError(ValueError):
    """Bytes that are not a consumer-protocol subscription or assignment."""


# -- encoding ---------------------------------------------------------------------------


class _Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def int16(self, value: int) -> None:
        self.parts.append(_INT16.pack(value))

    def int32(self, value: int) -> None:
        self.parts.append(_INT32.pack(value))

    def string(self, value: str | None) -> None:
        if value is None:
            self.int16(-1)
            return
        data = value.encode()
        self.int16(len(data))
        self.parts.append(data)

    def blob(self, value: bytes | None) -> None:
        if value is None:
            self.int32(-1)
            return
        self.int32(len(value))
        self.parts.append(bytes(value))

    def partitions(self, partitions: Iterable[TopicPartition]) -> None:
        by_topic = _by_topic(partitions)
        self.int32(len(by_topic))
        for topic, numbers in by_topic.items():
            self.string(topic)
            self.int32(len(numbers))
            for number in numbers:
                self.int32(number)

    def value(self) -> bytes:
        return b"".join(self.parts)


def encode_subscription(subscription: Subscription, version: int = SUBSCRIPTION_VERSION) -> bytes:
    writer = _Writer()
    writer.int16(version)
    writer.int32(len(subscription.topics))
    for topic in subscription.topics:
        writer.string(topic)
    writer.blob(subscription.user_data)
    if version >= 1:
        writer.partitions(subscription.owned_partitions)
    if version >= 2:
        writer.int32(subscription.generation_id)
    if version >= 3:
        writer.string(subscription.rack_id)
    return writer.value()


def encode_assignment(assignment: Assignment, version: int = ASSIGNMENT_VERSION) -> bytes:
    writer = _Writer()
    writer.int16(version)
    writer.partitions(assignment.partitions)
    writer.blob(assignment.user_data)
    return writer.value()


def _by_topic(partitions: Iterable[TopicPartition]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = defaultdict(list)
    for tp in sorted(set(partitions)):
        grouped[tp.topic].append(tp.partition)
    return dict(grouped)


# -- decoding ---------------------------------------------------------------------------


class _Reader:
    """Bounds-checked: the bytes are whatever another client sent."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.position = 0

    def _take(self, size: int) -> memoryview:
        end = self.position + size
        if size < 0 or end > len(self.data):
            raise ConsumerProtocolError(f"truncated at byte {self.position} (wanted {size} more)")
        chunk = self.data[self.position : end]
        self.position = end
        return chunk

    def int16(self) -> int:
        value: int = _INT16.unpack(self._take(2))[0]
        return value

    def int32(self) -> int:
        value: int = _INT32.unpack(self._take(4))[0]
        return value

    def count(self, nullable: bool = True) -> int:
        """An array's item count; a null array (-1) is empty if ``nullable``."""
        count = self.int32()
        # Every item takes at least two bytes: a count beyond them is a lie.
        if count < (-1 if nullable else 0) or count > (len(self.data) - self.position) // 2:
            raise ConsumerProtocolError(f"array of {count} items in {len(self.data)} bytes")
        return max(count, 0)

    def string(self) -> str | None:
        length = self.int16()
        if length == -1:
            return None
        try:
            return str(self._take(length), "utf-8")
        except UnicodeDecodeError as error:
            raise ConsumerProtocolError(f"a string that is not UTF-8: {error}") from None

    def name(self) -> str:
        value = self.string()
        if value is None:
            raise ConsumerProtocolError("a null topic name")
        return value

    def blob(self) -> bytes | None:
        length = self.int32()
        if length == -1:
            return None
        return bytes(self._take(length))

    def partitions(self) -> list[TopicPartition]:
        out = []
        for _ in range(self.count()):
            topic = self.name()
            out += [TopicPartition(topic, self.int32()) for _ in range(self.count())]
        return out

    def at_end(self) -> bool:
        return self.position >= len(self.data)

    def version(self, highest: int) -> int:
        version = self.int16()
        if version < 0:
            raise ConsumerProtocolError(f"version {version}")
        return min(version, highest)


def decode_subscription(data: bytes) -> Subscription:
    """A subscription; raises ConsumerProtocolError."""
    reader = _Reader(data)
    version = reader.version(SUBSCRIPTION_VERSION)
    topics = [reader.name() for _ in range(reader.count())]
    user_data = reader.blob()
    owned = reader.partitions() if version >= 1 else []
    # A field missing at the end reads as its default rather than failing
    # the whole group's assignment over one member's metadata.
    generation = reader.int32() if version >= 2 and not reader.at_end() else -1
    rack = reader.string() if version >= 3 and not reader.at_end() else None
    return Subscription(topics, user_data, owned, generation, rack)


def decode_subscribed_topics(data: bytes) -> set[str]:
    """Only the topics of a subscription, which every version puts first:
    what the coordinator needs, and all it trusts (a member's later fields
    are for its group's leader). Raises ConsumerProtocolError, also for a
    null topic array."""
    reader = _Reader(data)
    reader.version(SUBSCRIPTION_VERSION)
    return {reader.name() for _ in range(reader.count(nullable=False))}


def assignment_version(subscription: bytes) -> int:
    """The version to encode a member's assignment in: the one of its
    subscription, at most ours (Kafka's ConsumerProtocol.deserializeVersion,
    as the coordinator uses it when it assigns for classic members)."""
    if len(subscription) < 2:
        return 0
    version: int = _INT16.unpack_from(subscription)[0]
    return max(0, min(version, ASSIGNMENT_VERSION))


def decode_assignment(data: bytes) -> Assignment:
    """An assignment; empty bytes (a leader that assigned a member nothing
    at all) are an empty assignment, as Kafka reads them. Raises
    ConsumerProtocolError."""
    if not data:
        return Assignment([])
    reader = _Reader(data)
    reader.version(ASSIGNMENT_VERSION)
    partitions = reader.partitions()
    user_data = reader.blob() if not reader.at_end() else None
    return Assignment(partitions, user_data)
