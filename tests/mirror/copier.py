"""A small mirror for the tests: copies committed records of a source
cluster to a target, partition by partition, and writes offset syncs as
engine/mirror/offset_sync.py says (one for the first record of every run,
whenever target offset minus source offset changes). It reads and writes
with plain confluent-kafka clients, not with the code under test.

``change`` lets a test damage the copy on its way over: it takes one
partition's records in source order and returns what is written, so a test
can alter a value, drop a record or swap two (each item keeps the source
offset it stands for, so the syncs follow what was written).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from engine.mirror.offset_sync import OFFSET_SYNCS_TOPIC, OffsetSync
from engine.types import TopicPartition
from tests.server.conftest import quiet_librdkafka

TIMEOUT = 30.0


@dataclass(frozen=True)
class Copied:
    offset: int
    """Where it was read; on its way to the target, the source offset it stands for."""
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp: int


Change = Callable[[TopicPartition, list[Copied]], list[Copied]]


def committed_records(
    bootstrap: str, partitions: list[TopicPartition]
) -> dict[TopicPartition, list[Copied]]:
    """Each partition's committed records from its log start, in order (one
    consumer reads them all)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"copier-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 20,
            **quiet_librdkafka(),
        }
    )
    records: dict[TopicPartition, list[Copied]] = {tp: [] for tp in partitions}
    try:
        # OFFSET_BEGINNING: each partition from its log start.
        consumer.assign([KafkaTopicPartition(tp.topic, tp.partition, -2) for tp in partitions])
        ended: set[TopicPartition] = set()
        while len(ended) < len(partitions):
            message = consumer.poll(TIMEOUT)
            assert message is not None, f"nothing in {TIMEOUT} s; ended: {ended}"
            tp = TopicPartition(message.topic(), message.partition())
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                ended.add(tp)
                continue
            records[tp].append(
                Copied(
                    message.offset(),
                    message.key(),
                    message.value(),
                    tuple(message.headers() or ()),
                    message.timestamp()[1],
                )
            )
        return records
    finally:
        consumer.close()


def syncs_for(tp: TopicPartition, written: list[tuple[int, int]]) -> list[OffsetSync]:
    """One sync per run of (source offset, target offset) pairs sharing a delta."""
    syncs: list[OffsetSync] = []
    delta: int | None = None
    for source, target in written:
        if target - source != delta:
            syncs.append(OffsetSync(tp, source, target))
            delta = target - source
    return syncs


def copy_topics(
    source: str,
    target: str,
    topics: dict[str, int],
    *,
    create: bool = True,
    change: Change | None = None,
    write_syncs: bool = True,
) -> dict[TopicPartition, list[tuple[int, int]]]:
    """Copies ``topics`` (name -> partitions to copy); returns, per
    partition, the (source offset, target offset) of every record written."""
    if create:
        admin = AdminClient({"bootstrap.servers": target, **quiet_librdkafka()})
        wanted = [NewTopic(name, count) for name, count in topics.items()]
        if write_syncs:
            wanted.append(NewTopic(OFFSET_SYNCS_TOPIC, 1))
        for future in admin.create_topics(wanted).values():
            future.result(TIMEOUT)
    producer = Producer(
        {
            "bootstrap.servers": target,
            "enable.idempotence": True,
            "linger.ms": 5,
            **quiet_librdkafka(),
        }
    )
    written: dict[TopicPartition, list[tuple[int, int]]] = {}
    wanted_partitions = [TopicPartition(t, p) for t, count in topics.items() for p in range(count)]
    read = committed_records(source, wanted_partitions)
    for topic, partitions in topics.items():
        for partition in range(partitions):
            tp = TopicPartition(topic, partition)
            records = read[tp]
            if change is not None:
                records = change(tp, records)
            offsets: list[int] = []

            def delivered(error: object, message: object, into: list[int] = offsets) -> None:
                assert error is None, error
                into.append(message.offset())  # type: ignore[attr-defined]

            for record in records:
                producer.produce(
                    topic,
                    record.value,
                    record.key,
                    partition=partition,
                    timestamp=record.timestamp,
                    headers=list(record.headers),
                    on_delivery=delivered,
                )
            assert producer.flush(TIMEOUT) == 0
            written[tp] = [(r.offset, t) for r, t in zip(records, offsets, strict=True)]
            if write_syncs:
                for sync in syncs_for(tp, written[tp]):
                    producer.produce(OFFSET_SYNCS_TOPIC, sync.value(), sync.key(), partition=0)
                assert producer.flush(TIMEOUT) == 0
    return written


def with_value(offset: int, value: bytes) -> Change:
    """The record at source ``offset`` arrives with another value."""

    def change(tp: TopicPartition, records: list[Copied]) -> list[Copied]:
        return [replace(r, value=value) if r.offset == offset else r for r in records]

    return change


def dropping(offset: int) -> Change:
    """The record at source ``offset`` is not copied."""

    def change(tp: TopicPartition, records: list[Copied]) -> list[Copied]:
        return [r for r in records if r.offset != offset]

    return change


def swapping(offset: int) -> Change:
    """The records at source ``offset`` and the next one arrive in each
    other's place."""

    def change(tp: TopicPartition, records: list[Copied]) -> list[Copied]:
        out = list(records)
        at = next(i for i, r in enumerate(out) if r.offset == offset)
        first, second = out[at], out[at + 1]
        out[at] = replace(second, offset=first.offset)
        out[at + 1] = replace(first, offset=second.offset)
        return out

    return change


def only(tp_wanted: TopicPartition, change: Change) -> Change:
    """``change`` on one partition, the rest copied as they are."""

    def on(tp: TopicPartition, records: list[Copied]) -> list[Copied]:
        return change(tp, records) if tp == tp_wanted else records

    return on
