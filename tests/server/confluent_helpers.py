"""What the group tests share across clients: topics, numbered records and
committed offsets, made and read with confluent-kafka whichever client the
test is about; the waits; and the check that no record comes again after
its commit."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.server.conftest import quiet_librdkafka

TIMEOUT = 30.0


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, **quiet_librdkafka()})
    admin.create_topics([NewTopic(topic, partitions)])[topic].result(TIMEOUT)


def produce(
    bootstrap: str, topic: str, partitions: int, per_partition: int, first: int = 0
) -> None:
    """``per_partition`` records to each partition, valued "partition:i"."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **quiet_librdkafka()})
    for i in range(first, first + per_partition):
        for partition in range(partitions):
            producer.produce(topic, f"{partition}:{i}".encode(), partition=partition)
    assert producer.flush(TIMEOUT) == 0


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets by partition, as the AdminClient lists them."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **quiet_librdkafka()})
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p) for p in range(partitions)]
    )
    result = admin.list_consumer_group_offsets([request])[group].result(TIMEOUT)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


class Polled(Protocol):
    def poll(self) -> None: ...


def consume_values(settings: dict[str, object], topic: str, count: int) -> list[bytes]:
    """The values of the topic's first ``count`` records, read by a consumer
    of a group of its own from the earliest offset, each within TIMEOUT."""
    consumer = Consumer({**settings, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    fetched: list[bytes] = []
    try:
        while len(fetched) < count:
            message = consumer.poll(TIMEOUT)
            assert message is not None, "no record within the timeout"
            assert message.error() is None, message.error()
            fetched.append(message.value())
    finally:
        consumer.close()
    return fetched


def poll_until(members: Sequence[Polled], condition: Callable[[], bool], what: str) -> None:
    """Polls every member in turn (a librdkafka consumer only takes part in its
    group while polled) until ``condition`` holds."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not in {TIMEOUT} s"
        for member in members:
            member.poll()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Waits for ``condition``, made true by clients running on their own."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not in {TIMEOUT} s"
        time.sleep(0.05)


def assert_nothing_again_after_its_commit(events: Iterable[tuple[str, int, int]]) -> None:
    """No record is delivered after an offset past it was committed: ``events``
    are ("deliver" | "commit", partition, offset) in the order they happened."""
    position: dict[int, int] = {}
    for kind, partition, offset in events:
        if kind == "commit":
            position[partition] = max(position.get(partition, 0), offset)
        else:
            assert offset >= position.get(partition, 0), (
                f"partition {partition}: offset {offset} delivered again after "
                f"{position[partition]} was committed"
            )


def start_member_child(
    script: str, topic: str, arguments: Sequence[str]
) -> tuple[subprocess.Popen[str], threading.Thread]:
    """Runs ``script`` (a group member that prints a line once it is
    assigned partitions) in a child process, to be killed by the test;
    returns the child and a thread that ends when that line comes."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, topic, *arguments],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assigned = threading.Thread(target=lambda: child.stdout and child.stdout.readline())
    assigned.start()
    return child, assigned
