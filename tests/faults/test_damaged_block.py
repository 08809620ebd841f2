"""A damaged data block in object storage: the read that meets it gets a
typed error naming topic, partition and offset (CorruptStoredData, Kafka's
CORRUPT_MESSAGE), the server logs the object's key and offsets once per
object, and every other partition, even one in the same object, goes on
being served. A consumer meets an error, never an endless silent retry:
CORRUPT_MESSAGE is an error librdkafka hands to the application and
kafka-python raises, where KAFKA_STORAGE_ERROR makes both retry quietly."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError
from confluent_kafka import TopicPartition as KafkaPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaPythonPartition
from kafka.errors import CorruptRecordError

import engine
from engine import TopicPartition
from tests.engine.conftest import QUIET_STORE
from tests.faults.damage import damage_marker
from tests.server.conftest import ServerProcess
from tests.server.test_confluent import make_consumer

CONFIG = engine.EngineConfig(store=QUIET_STORE, cleaner_interval_s=3600)
TOPIC = "memory"
MARKER = b"damaged-record-marker"


def write_and_damage(data: Path) -> str:
    """Partition 0 gets 10 records, the 6th holding MARKER; partition 1 gets
    10 plain ones; both are uploaded into one object, whose block of
    partition 0 is then damaged. Returns the object's key."""
    with engine.open(data, None, CONFIG) as e:
        e.create_topic(TOPIC, partitions=2)
        with e.producer(linger_ms=0) as producer:
            for i in range(10):
                value = MARKER if i == 5 else f"p0-{i}".encode()
                producer.send(TOPIC, value, partition=0).result(30)
                producer.send(TOPIC, f"p1-{i}".encode(), partition=1).result(30)
    [key] = damage_marker(data / "objects", MARKER)
    return key


def test_embedded_consumer_gets_a_typed_error_naming_the_partition_and_offset(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = write_and_damage(tmp_path)
    caplog.set_level(logging.ERROR)
    with engine.open(tmp_path, None, CONFIG) as e:
        damaged = e.consumer(auto_offset_reset="earliest")
        damaged.assign([TopicPartition(TOPIC, 0)])
        for _ in range(3):  # every poll reports it; none hands out records or loops
            with pytest.raises(engine.CorruptStoredData) as raised:
                damaged.poll(timeout=5)
            error = raised.value
            assert (error.topic, error.partition, error.offset) == (TOPIC, 0, 0)
            assert error.key == key
            assert error.error_code == 2  # CORRUPT_MESSAGE
            assert key in str(error) and f"{TOPIC}-0" in str(error)
        with pytest.raises(engine.CorruptStoredData):
            asyncio.run(damaged.poll_async(timeout=5))
        # The other partition of the same object is read as usual.
        healthy = e.consumer(auto_offset_reset="earliest")
        healthy.assign([TopicPartition(TOPIC, 1)])
        values = [r.value for r in healthy.poll(timeout=5)]
        assert values == [f"p1-{i}".encode() for i in range(10)]
        with pytest.raises(engine.CorruptStoredData):
            e.fetch(TOPIC, 0, 0)
    logged = [r for r in caplog.records if key in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert "offsets [0, 10)" in logged[0].getMessage()


# -- over the wire -------------------------------------------------------------------------

CLIENT_TIMEOUT_S = 30


@pytest.fixture
def damaged_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    """A server on a data directory whose partition 0 block is damaged."""
    data = tmp_path / "data"
    key = write_and_damage(data)
    server = ServerProcess(data).start()
    yield server, key
    if server.running:
        assert server.stop() == 0, server.log()


def test_confluent_consumer_gets_an_error_and_other_partitions_are_served(
    damaged_server: tuple[ServerProcess, str],
) -> None:
    server, key = damaged_server
    consumer = make_consumer(server.bootstrap)
    consumer.assign([KafkaPartition(TOPIC, 0, OFFSET_BEGINNING), KafkaPartition(TOPIC, 1, 0)])
    errors: list[KafkaError] = []
    healthy: list[bytes] = []
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    try:
        while not (errors and len(healthy) == 10):
            assert time.monotonic() < deadline, f"errors {errors}, {len(healthy)} records"
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                errors.append(message.error())
                continue
            assert message.partition() == 1, "a record of the damaged block was handed out"
            healthy.append(message.value())
    finally:
        consumer.close()
    assert errors[0].code() == KafkaError.INVALID_MSG  # CORRUPT_MESSAGE
    assert healthy == [f"p1-{i}".encode() for i in range(10)]
    server_log = server.log()
    assert server_log.count(f"object {key} is damaged") == 1, server_log
    assert "stream" in server_log and "offsets [0, 10)" in server_log


def test_kafka_python_consumer_raises_and_other_partitions_are_served(
    damaged_server: tuple[ServerProcess, str],
) -> None:
    server, _ = damaged_server
    damaged = KafkaConsumer(
        bootstrap_servers=server.bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    healthy = KafkaConsumer(
        bootstrap_servers=server.bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    try:
        damaged.assign([KafkaPythonPartition(TOPIC, 0)])
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        with pytest.raises(CorruptRecordError):
            while time.monotonic() < deadline:
                assert not damaged.poll(timeout_ms=500), "a record of the damaged block"
        healthy.assign([KafkaPythonPartition(TOPIC, 1)])
        values: list[bytes] = []
        while len(values) < 10:
            assert time.monotonic() < deadline, values
            for records in healthy.poll(timeout_ms=500).values():
                values += [r.value for r in records]
        assert values == [f"p1-{i}".encode() for i in range(10)]
    finally:
        damaged.close()
        healthy.close()


def test_an_object_gone_from_under_a_running_engine_is_refused_as_damage(tmp_path: Path) -> None:
    """The manifest names it and the bucket lost it: a read of what it held
    is CorruptStoredData naming it, as for a damaged block, not a raw store
    error; what other objects hold is read as usual."""
    config = engine.EngineConfig(
        store=replace(QUIET_STORE, log_cache_bytes=0), cleaner_interval_s=3600
    )
    with engine.open(tmp_path, None, config) as e:
        e.create_topic(TOPIC, partitions=1)
        with e.producer(linger_ms=0) as producer:
            for round_ in range(2):
                for i in range(5):
                    producer.send(TOPIC, f"r{round_}-{i}".encode(), partition=0).result(30)
                assert e.flush(30)
        newest = max((tmp_path / "objects" / "objects").rglob("*.sso"))
        newest.unlink()
        key = newest.relative_to(tmp_path / "objects").as_posix()
        assert e.fetch(TOPIC, 0, 0).next_offset == 5  # the first round's object
        with pytest.raises(engine.CorruptStoredData) as raised:
            e.fetch(TOPIC, 0, 5)
        assert (raised.value.partition, raised.value.offset, raised.value.key) == (0, 5, key)
        assert "the object store does not have it" in str(raised.value)
