"""A confluent-kafka (librdkafka) consumer through server restarts.

Every open of the engine is a takeover with a new leader epoch, so after a
restart librdkafka validates its position with OffsetForLeaderEpoch (the
epoch of the last record it read) before it fetches again. The consumer
here reads a few records at a time (small fetches, a small queue), commits
on its own (enable.auto.commit) and must never reset (auto.offset.reset
"error" turns a reset into an error) nor see truncation: it reads every
record once, in order, across two restarts with records written in each
epoch.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from tests.server.confluent_helpers import create_topic
from tests.server.conftest import ServerProcess, quiet_librdkafka

TIMEOUT = 30.0
"""Seconds the consumer may take to read what it waits for."""
VALUE_BYTES = 400


def _consumer(bootstrap: str, group: str, topic: str) -> Consumer:
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 100,
        "auto.offset.reset": "error",
        # Longer than a restart on a loaded machine: librdkafka ends a
        # session it cannot heartbeat in on its own, and the rejoin would
        # hand out again what was read since the last auto commit.
        "session.timeout.ms": 45000,
        "heartbeat.interval.ms": 200,
        "topic.metadata.refresh.interval.ms": 500,
        # A few records a fetch, and few queued: the fetch position stays
        # in the middle of the log when the server restarts.
        "fetch.max.bytes": 1024,
        "max.partition.fetch.bytes": 1024,
        "message.max.bytes": 1000,
        "queued.max.messages.kbytes": 1,
        "queued.min.messages": 1,
        "fetch.queue.backoff.ms": 10,  # a full queue is read soon
        **quiet_librdkafka(),
    }
    consumer = Consumer(conf)
    consumer.subscribe([topic])
    return consumer


def _value(i: int) -> bytes:
    return f"{i}:".encode().ljust(VALUE_BYTES, b".")


def _produce(bootstrap: str, topic: str, first: int, count: int) -> None:
    """Records ``first`` to ``first + count`` (their values name them), a
    couple a batch: a fetch of 1 KiB gets one batch."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "batch.size": 1000, **quiet_librdkafka()}
    )
    for i in range(first, first + count):
        producer.produce(topic, _value(i), partition=0)
    assert producer.flush(TIMEOUT) == 0


def _commit_the_start(bootstrap: str, group: str, topic: str) -> None:
    """Offset 0 committed for the group: the consumer starts there with no reset."""
    committer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, **quiet_librdkafka()})
    try:
        committer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    finally:
        committer.close()


def _read(consumer: Consumer, count: int, seen: list[Message], errors: list[KafkaError]) -> None:
    """Polls until ``count`` records are read in all; errors are kept, not raised."""
    deadline = time.monotonic() + TIMEOUT
    while len(seen) < count:
        assert time.monotonic() < deadline, f"{len(seen)} of {count} records read: {errors}"
        message = consumer.poll(0.1)
        if message is None:
            continue
        if message.error() is not None:
            errors.append(message.error())
            continue
        seen.append(message)


def test_a_consumer_reads_on_through_restarts_without_reset_or_truncation(
    own_group_server: ServerProcess, topic: str
) -> None:
    server = own_group_server
    create_topic(server.bootstrap, topic, 1)
    _produce(server.bootstrap, topic, 0, 60)
    group = f"epochs-{topic}"
    _commit_the_start(server.bootstrap, group, topic)
    consumer = _consumer(server.bootstrap, group, topic)
    seen: list[Message] = []
    errors: list[KafkaError] = []
    try:
        _read(consumer, 20, seen, errors)
        server.restart()  # epoch 2: nothing written in it yet
        _read(consumer, 40, seen, errors)
        _produce(server.bootstrap, topic, 60, 40)
        server.restart()  # epoch 3, the consumer's last record in epoch 1
        _produce(server.bootstrap, topic, 100, 20)
        _read(consumer, 120, seen, errors)
    finally:
        consumer.close()
    assert [m.offset() for m in seen] == list(range(120))
    assert [m.value() for m in seen] == [_value(i) for i in range(120)]
    first = seen[0].leader_epoch()
    epochs = [m.leader_epoch() - first for m in seen][::20]  # offsets 0, 20, ... 100
    assert epochs == [0, 0, 0, 1, 1, 2]
    assert errors == []
