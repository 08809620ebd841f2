"""Kafka's internal topic names are reserved: Metadata lists
``__consumer_offsets`` and ``__transaction_state`` as internal (and asking
for one never creates an ordinary topic), CreateTopics answers
TOPIC_ALREADY_EXISTS, Produce INVALID_TOPIC_EXCEPTION, and a pattern
subscription that includes internal topics reads an empty partition
without error. Real clients against ``tidelog serve``."""

from __future__ import annotations

import asyncio
import re

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import KafkaError, KafkaException, Producer, TopicCollection
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer

import engine
from engine.errors import InvalidTopic, TopicExists
from tests.server.conftest import ServerProcess, quiet_librdkafka

TIMEOUT = 30.0
INTERNAL = ["__consumer_offsets", "__transaction_state"]


def admin(server: ServerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})


def test_metadata_lists_the_internal_topics_as_internal(kafka_server: ServerProcess) -> None:
    client = admin(kafka_server)  # kept: a collected client fails its futures
    described = client.describe_topics(TopicCollection(INTERNAL), request_timeout=TIMEOUT)
    for name in INTERNAL:
        description = described[name].result(TIMEOUT)
        assert description.is_internal, name
        assert len(description.partitions) == 1


def test_kafka_python_leaves_them_out_unless_asked(kafka_server: ServerProcess) -> None:
    consumer = KafkaConsumer(bootstrap_servers=kafka_server.bootstrap)
    try:
        topics = consumer.topics()
        assert not set(INTERNAL) & topics
        assert set(INTERNAL) <= consumer._client.cluster.topics(exclude_internal_topics=False)
    finally:
        consumer.close()


def test_creating_one_is_refused_as_existing(kafka_server: ServerProcess) -> None:
    client = admin(kafka_server)
    futures = client.create_topics(
        [NewTopic(name, 3) for name in INTERNAL], request_timeout=TIMEOUT
    )
    for name in INTERNAL:
        with pytest.raises(KafkaException) as caught:
            futures[name].result(TIMEOUT)
        assert caught.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS


def test_producing_to_one_is_refused_and_creates_nothing(kafka_server: ServerProcess) -> None:
    reports: list[KafkaError | None] = []
    producer = Producer(
        {
            "bootstrap.servers": kafka_server.bootstrap,
            "message.timeout.ms": 10000,
            **quiet_librdkafka(),
        }
    )
    producer.produce(
        "__consumer_offsets", b"forged", partition=0, on_delivery=lambda e, _: reports.append(e)
    )
    assert producer.flush(TIMEOUT) == 0
    [error] = reports
    assert error is not None and error.code() == KafkaError.TOPIC_EXCEPTION, error
    client = admin(kafka_server)
    described = client.describe_topics(
        TopicCollection(["__consumer_offsets"]), request_timeout=TIMEOUT
    )
    description = described["__consumer_offsets"].result(TIMEOUT)
    assert description.is_internal and len(description.partitions) == 1


def test_a_pattern_subscription_with_internal_topics_reads_them_empty(
    kafka_server: ServerProcess, topic: str
) -> None:
    """aiokafka, no group: with exclude_internal_topics=False the pattern
    takes __consumer_offsets in, fetches it without error and reads the
    ordinary topic's record; by default the pattern leaves it out."""

    async def run() -> None:
        pattern = f"^(__consumer_offsets|{re.escape(topic)})$"
        producer = Producer({"bootstrap.servers": kafka_server.bootstrap, **quiet_librdkafka()})
        producer.produce(topic, b"one")
        assert producer.flush(TIMEOUT) == 0
        for exclude in (False, True):
            consumer = AIOKafkaConsumer(
                bootstrap_servers=kafka_server.bootstrap,
                exclude_internal_topics=exclude,
                auto_offset_reset="earliest",
                metadata_max_age_ms=500,
            )
            await consumer.start()
            try:
                consumer.subscribe(pattern=pattern)
                record = await asyncio.wait_for(consumer.getone(), TIMEOUT)
                assert (record.topic, record.value) == (topic, b"one")
                internal = TopicPartition("__consumer_offsets", 0)
                assert (internal in consumer.assignment()) is not exclude
                if not exclude:
                    assert await consumer.position(internal) == 0
                    assert await consumer.getmany(internal, timeout_ms=300) == {}
            finally:
                await consumer.stop()

    asyncio.run(run())


def test_the_embedded_api_reserves_the_names_too(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    with engine.open(tmp_path / "node", "file://" + str(tmp_path / "bucket")) as opened:
        for name in INTERNAL:
            with pytest.raises(TopicExists):
                opened.create_topic(name, 1)
            with opened.producer() as producer, pytest.raises(InvalidTopic, match="internal"):
                producer.send(name, b"v")
        assert opened.list_topics() == []
