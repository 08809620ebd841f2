"""Fixtures of the mirror's tests: a librdkafka mock cluster of three
brokers on loopback sockets, ``tidelog serve`` children, and reading a
partition's committed records back."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from tests.server.conftest import ServerProcess, quiet_librdkafka, start_transaction_server

FULL = os.environ.get("TIDELOG_MIRROR") == "full"
"""Longer campaigns (TIDELOG_MIRROR=full)."""


class MockCluster:
    """librdkafka's mock cluster: three brokers on real loopback sockets,
    alive as long as the client that started it."""

    def __init__(self) -> None:
        self._owner = Producer({"test.mock.num.brokers": 3, **quiet_librdkafka()})
        brokers = self._owner.list_topics(timeout=10).brokers.values()
        self.bootstrap = ",".join(f"{b.host}:{b.port}" for b in brokers)


@pytest.fixture
def mock_cluster() -> Iterator[MockCluster]:
    cluster = MockCluster()
    yield cluster
    del cluster


@pytest.fixture(scope="package")
def source_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A source server for the mirror's tests; each uses topics of its own."""
    server = start_transaction_server(tmp_path_factory.mktemp("source"))
    yield server
    server.kill()


@pytest.fixture(scope="package")
def target_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A target server for the mirror's tests; each uses topics of its own."""
    server = start_transaction_server(tmp_path_factory.mktemp("target"))
    yield server
    server.kill()


@pytest.fixture
def own_target_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A target server for one test, which it may kill and start again."""
    (tmp_path / "target").mkdir()
    server = start_transaction_server(tmp_path / "target")
    yield server
    server.kill()


def read_topic(
    bootstrap: str, topic: str, partitions: int, timeout: float = 30.0
) -> list[list[Any]]:
    """Every committed record of each partition, to its end now."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "tests.mirror.reader",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
            **quiet_librdkafka(),
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    records: list[list[Any]] = [[] for _ in range(partitions)]
    ended: set[int] = set()
    try:
        for _ in range(int(timeout / 0.1)):
            for message in consumer.consume(1000, 0.1):
                if message.error() is None:
                    records[message.partition()].append(message)
                elif message.error().code() == KafkaError._PARTITION_EOF:
                    ended.add(message.partition())
                else:
                    raise AssertionError(message.error())
            if len(ended) == partitions:
                return records
        raise AssertionError(f"{topic}: partitions {sorted(ended)} ended in {timeout} s")
    finally:
        consumer.close()


def read_partition(bootstrap: str, topic: str, partition: int) -> list[Any]:
    """Every committed record of one partition (of a topic of at least
    ``partition + 1`` partitions), to its end now."""
    return read_topic(bootstrap, topic, partition + 1)[partition]


def facts(record: Any) -> tuple[Any, ...]:
    """What a mirrored record must keep: key, value, headers, timestamp."""
    return (record.key(), record.value(), record.headers() or [], record.timestamp()[1])


def producer(bootstrap: str, **config: Any) -> Producer:
    return Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 1, **quiet_librdkafka(), **config}
    )
