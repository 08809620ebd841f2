"""Records of data the engine's API hands out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from engine.config import ConfigEntry
from engine.protocol.topic_partition import TopicPartition as TopicPartition  # noqa: PLC0414 - re-exported

Header = tuple[str, bytes | None]


class RecordMetadata(NamedTuple):
    """Where a produced record was written; a send's future resolves to it."""

    partition: int
    offset: int


class SentBatch(NamedTuple):
    """Where one batch of a ``send_many`` was written: its ``record_count``
    records have the offsets ``base_offset`` to ``base_offset + record_count - 1``."""

    partition: int
    base_offset: int
    record_count: int


class ConsumerRecord(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()
    timestamp_type: int = 0
    """0: CreateTime (set by the producer), 1: LogAppendTime (set by the engine)."""


class PartitionInfo(NamedTuple):
    partition: int
    log_start_offset: int
    high_watermark: int
    leader_epoch: int


class NewTopic(NamedTuple):
    """A topic to create (see Engine.create_topics)."""

    name: str
    partitions: int | None = None
    """None or -1: the engine's default_partitions."""
    configs: Mapping[str, object] | None = None
    replication_factor: int = 1


class TopicDescription(NamedTuple):
    name: str
    topic_id: bytes
    partitions: list[PartitionInfo]
    configs: list[ConfigEntry]


class OffsetAndMetadata(NamedTuple):
    """A consumer group's committed position in one partition."""

    offset: int
    leader_epoch: int = -1
    """The leader epoch of the record before ``offset``, -1 if unknown (KIP-320)."""
    metadata: str = ""
    commit_timestamp: int = -1
    """When it was committed (ms since the epoch), set by the coordinator."""
