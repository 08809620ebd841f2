"""A KIP-848 consumer (confluent-kafka, ``group.protocol=consumer``) that
assigns its partitions itself (``assign()``) against ``tidelog serve``.

Such a consumer never heartbeats, yet commits and fetches with OffsetCommit
/ OffsetFetch v9 naming a member id and member epoch -1. Kafka takes that
as a simple consumer's commit while the group does not exist or has no
members (OffsetMetadataManager.validateOffsetCommit); so a second consumer
of the group resumes at the committed offset, reading nothing again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from tests.server.confluent_helpers import committed, create_topic, produce
from tests.server.conftest import ServerProcess, quiet_librdkafka

TIMEOUT = 30.0
"""Seconds any one client call may take."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root: Path = tmp_path_factory.mktemp("kip848-assign")
    started = ServerProcess(root / "data").start()
    yield started
    started.end_at_teardown(graceful=True)


def assigned_consumer(bootstrap: str, group: str, topic: str, partitions: int) -> Any:
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **quiet_librdkafka(),
    }
    consumer = Consumer(conf)
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    return consumer


def read(consumer: Any, count: int) -> list[tuple[int, int]]:
    """(partition, offset) of the next ``count`` records, each committed."""
    got: list[tuple[int, int]] = []
    for _ in range(400):
        if len(got) == count:
            return got
        message = consumer.poll(0.05)
        if message is None:
            continue
        if message.error() is not None:
            raise KafkaException(message.error())
        got.append((message.partition(), message.offset()))
        consumer.commit(message=message, asynchronous=False)
    raise AssertionError(f"read {len(got)} of {count} records")


def test_an_assigned_consumer_commits_and_the_next_resumes_there(
    server: ServerProcess, topic: str
) -> None:
    bootstrap = server.bootstrap
    group = f"assign-{topic}"
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, 2, 3)
    first = assigned_consumer(bootstrap, group, topic, 2)
    try:
        assert sorted(read(first, 6)) == [(p, o) for p in range(2) for o in range(3)]
        # OffsetFetch v9 from the same consumer (member epoch -1) sees the commits.
        fetched = first.committed([TopicPartition(topic, p) for p in range(2)], timeout=TIMEOUT)
        assert {tp.partition: tp.offset for tp in fetched} == {0: 3, 1: 3}
    finally:
        first.close()
    assert committed(bootstrap, group, topic, 2) == {0: 3, 1: 3}

    produce(bootstrap, topic, 2, 2, first=3)
    second = assigned_consumer(bootstrap, group, topic, 2)
    try:
        # It starts at the committed offsets: nothing is read twice.
        assert sorted(read(second, 4)) == [(p, o) for p in range(2) for o in (3, 4)]
        assert second.poll(0.5) is None
    finally:
        second.close()
    assert committed(bootstrap, group, topic, 2) == {0: 5, 1: 5}


def test_an_assigned_consumer_commits_to_an_empty_consumer_group(
    server: ServerProcess, topic: str
) -> None:
    """The group exists as a KIP-848 group (a subscribed member came and
    left): with no members, the assigned consumer's commits and fetches
    (member epoch -1) are a simple consumer's."""
    bootstrap = server.bootstrap
    group = f"assign-empty-{topic}"
    create_topic(bootstrap, topic, 1)
    produce(bootstrap, topic, 1, 4)
    subscribed = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.protocol": "consumer",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **quiet_librdkafka(),
        }
    )
    subscribed.subscribe([topic])
    try:
        assert read(subscribed, 2) == [(0, 0), (0, 1)]
    finally:
        subscribed.close()
    assert committed(bootstrap, group, topic, 1) == {0: 2}

    second = assigned_consumer(bootstrap, group, topic, 1)
    try:
        assert read(second, 2) == [(0, 2), (0, 3)]
        fetched = second.committed([TopicPartition(topic, 0)], timeout=TIMEOUT)
        assert [tp.offset for tp in fetched] == [4]
    finally:
        second.close()
    assert committed(bootstrap, group, topic, 1) == {0: 4}
