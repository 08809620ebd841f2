"""What the group tests share across clients: topics and numbered records,
made with confluent-kafka whichever client the test is about."""

from __future__ import annotations

from confluent_kafka import Producer
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
