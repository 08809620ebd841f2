"""The embedded producer's named partitioners pick the partition the Kafka
client configured the same way picks: both produce the same keys to one
topic over the same engine, and the partitions are compared record by record.
confluent-kafka (librdkafka) for every hashing partitioner by its name,
kafka-python's default for murmur2_random."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Message, Producer
from kafka import KafkaProducer

import engine
from engine.client.partitioner import DEFAULT_PARTITIONER, PARTITIONERS
from tests.server.conftest import quiet_librdkafka
from tests.server.in_process import InProcessServer

PARTITIONS = 7
KEYS: list[bytes | None] = [
    None,
    b"",
    b"a",
    b"ab",
    b"abc",
    b"abcd",
    b"\x00\xff\x80",
    *(f"agent-{i}".encode() for i in range(150)),
    *(os.urandom(1 + i % 40) for i in range(150)),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[engine.Engine, str]]:
    root: Path = tmp_path_factory.mktemp("partitioners")
    opened = engine.open(root / "node", "file://" + str(root / "bucket"))
    server = InProcessServer(opened)
    try:
        yield opened, server.bootstrap
    finally:
        server.stop()
        opened.close()


def _embedded(opened: engine.Engine, topic: str, name: str) -> list[int]:
    with opened.producer(partitioner=name) as producer:
        futures = [producer.send(topic, b"v", key=key) for key in KEYS]
        return [future.result(30).partition for future in futures]


def _confluent(bootstrap: str, topic: str, name: str) -> list[int]:
    placed: dict[int, int] = {}

    def report(error: KafkaError | None, message: Message) -> None:
        assert error is None, error
        value = message.value()
        assert value is not None
        placed[int(value)] = message.partition()  # type: ignore[assignment]

    producer = Producer(
        {"bootstrap.servers": bootstrap, "partitioner": name, "linger.ms": 5, **quiet_librdkafka()}
    )
    for index, key in enumerate(KEYS):
        producer.produce(topic, str(index).encode(), key=key, on_delivery=report)
    assert producer.flush(30) == 0
    return [placed[index] for index in range(len(KEYS))]


def _hashed(name: str) -> list[int]:
    """The indexes of KEYS the partitioner places by hash (not at random)."""
    partitioner = PARTITIONERS[name]
    return [i for i, key in enumerate(KEYS) if partitioner.partition(key, PARTITIONS) is not None]


@pytest.mark.parametrize("name", sorted(set(PARTITIONERS) - {"random"}))
def test_each_named_partitioner_picks_librdkafkas_partition(
    served: tuple[engine.Engine, str], name: str
) -> None:
    opened, bootstrap = served
    topic = f"by-{name}"
    opened.create_topic(topic, PARTITIONS)
    client = _confluent(bootstrap, topic, name)
    ours = _embedded(opened, topic, name)
    hashed = _hashed(name)
    assert len(hashed) >= len(KEYS) - 2
    assert [ours[i] for i in hashed] == [client[i] for i in hashed]
    assert len({client[i] for i in hashed}) == PARTITIONS  # the keys spread


def test_the_default_picks_kafka_pythons_partition(served: tuple[engine.Engine, str]) -> None:
    opened, bootstrap = served
    opened.create_topic("by-default", PARTITIONS)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        futures = [producer.send("by-default", b"v", key=key) for key in KEYS if key is not None]
        client = [future.get(30).partition for future in futures]
    finally:
        producer.close(10)
    with opened.producer() as embedded:
        assert embedded.partitioner.name == DEFAULT_PARTITIONER == "murmur2_random"
        sent = [embedded.send("by-default", b"v", key=k) for k in KEYS if k is not None]
        ours = [future.result(30).partition for future in sent]
    assert ours == client


def test_keyless_records_follow_each_partitioners_rule() -> None:
    """The *_random partitioners and random leave a null key to the sticky
    partition; murmur2, consistent and fnv1a hash it as the empty key;
    consistent_random leaves an empty key to the sticky partition too."""
    unhashed_null = {n for n, p in PARTITIONERS.items() if p.partition(None, PARTITIONS) is None}
    assert unhashed_null == {"murmur2_random", "consistent_random", "fnv1a_random", "random"}
    unhashed_empty = {n for n, p in PARTITIONERS.items() if p.partition(b"", PARTITIONS) is None}
    assert unhashed_empty == {"consistent_random", "random"}
    assert PARTITIONERS["random"].partition(b"key", PARTITIONS) is None


def test_an_unknown_partitioner_is_refused_with_the_choices(tmp_path: Path) -> None:
    with (
        engine.open(tmp_path / "node", "file://" + str(tmp_path / "bucket")) as opened,
        pytest.raises(ValueError, match="unknown partitioner 'crc'; one of consistent"),
    ):
        opened.producer(partitioner="crc")
