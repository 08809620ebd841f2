"""Kafka's internal topic names are reserved: Metadata lists
``__consumer_offsets`` and ``__transaction_state`` as internal (and asking
for one never creates an ordinary topic), CreateTopics answers
TOPIC_ALREADY_EXISTS, Produce INVALID_TOPIC_EXCEPTION, and a pattern
subscription that includes internal topics reads an empty partition
without error. Real clients against ``tidelog serve``."""

from __future__ import annotations

import asyncio
import datetime
import re
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import KafkaError, KafkaException, Producer, TopicCollection
from confluent_kafka import TopicPartition as ConfluentTopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic, ResourceType
from kafka import KafkaConsumer

import engine
from engine.errors import InvalidTopic, TopicExists
from engine.protocol.apis import request_schema
from engine.protocol.kafka_code import KafkaCode
from tests.server.conftest import ServerProcess, quiet_librdkafka
from tests.server.test_long_poll import event_loop_cpu_seconds
from tests.server.wire import Wire, build

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


@pytest.mark.parametrize("version", [12, 13])
def test_a_fetch_of_an_internal_topic_alone_waits_asleep_and_answers_empty(
    kafka_server: ServerProcess, version: int
) -> None:
    """Nothing ever arrives in an internal topic here: a long poll on it
    alone waits out max_wait without spinning, then answers an empty
    partition, by name (v12) or by the id Metadata gave (v13)."""
    with Wire(kafka_server.bootstrap, timeout=10) as wire:
        metadata = wire.request(
            build(request_schema(3, 12), topics=[{"name": "__consumer_offsets"}])
        )
        [described] = metadata.topics
        assert described.is_internal and described.topic_id is not None
        request = build(
            request_schema(1, version),
            replica_id=-1,
            max_wait=datetime.timedelta(milliseconds=1000),
            min_bytes=1,
            max_bytes=1024 * 1024,
            session_epoch=-1,
            topics=[
                {
                    "topic": "__consumer_offsets",
                    "topic_id": described.topic_id,
                    "partitions": [
                        {
                            "partition": 0,
                            "current_leader_epoch": -1,
                            "fetch_offset": 0,
                            "last_fetched_epoch": -1,
                            "log_start_offset": -1,
                            "partition_max_bytes": 1024 * 1024,
                        }
                    ],
                }
            ],
        )
        before = event_loop_cpu_seconds(kafka_server)
        started = time.monotonic()
        response = wire.request(request)
        waited = time.monotonic() - started
        used = event_loop_cpu_seconds(kafka_server) - before
    [topic_response] = response.responses
    [partition] = topic_response.partitions
    assert (partition.error_code, partition.high_watermark, partition.log_start_offset) == (0, 0, 0)
    assert not partition.records
    assert waited >= 0.9, "the Fetch returned before max_wait with nothing"
    # Asleep, the wait costs the event loop next to no CPU (0.02-0.03 s;
    # the whole process, with its background threads' own work, up to 0.16 s);
    # re-reading the empty partition in a loop cost a fifth of the wait and
    # more.
    assert used < 0.15 * waited, f"the event loop used {used:.2f} s of CPU in a {waited:.2f} s wait"


def test_deleting_their_records_is_refused_as_kafka_refuses_it(
    kafka_server: ServerProcess,
) -> None:
    """Kafka's ReplicaManager: INVALID_TOPIC_EXCEPTION for an internal
    topic's partition; a partition it does not have stays unknown."""
    client = admin(kafka_server)
    for name in INTERNAL:
        futures = client.delete_records(
            [ConfluentTopicPartition(name, 0, 0)], request_timeout=TIMEOUT
        )
        [future] = futures.values()
        with pytest.raises(KafkaException) as caught:
            future.result(TIMEOUT)
        assert caught.value.args[0].code() == KafkaError.TOPIC_EXCEPTION, caught.value
    with Wire(kafka_server.bootstrap, timeout=10) as wire:
        body = wire.request(
            build(
                request_schema(21, 2),
                timeout=datetime.timedelta(seconds=10),
                topics=[
                    {
                        "name": "__consumer_offsets",
                        "partitions": [
                            {"partition_index": 0, "offset": -1},
                            {"partition_index": 7, "offset": -1},
                        ],
                    }
                ],
            )
        )
    codes = {int(p.partition_index): int(p.error_code) for p in body.topics[0].partitions}
    assert codes == {0: KafkaCode.INVALID_TOPIC_EXCEPTION, 7: KafkaCode.UNKNOWN_TOPIC_OR_PARTITION}


def test_the_embedded_api_refuses_deleting_their_records(tmp_path: Path) -> None:
    with engine.open(tmp_path / "node", "file://" + str(tmp_path / "bucket")) as opened:
        for name in INTERNAL:
            with pytest.raises(InvalidTopic, match="Cannot delete records of internal topic"):
                opened.delete_records(name, 0, 0)


def test_describe_configs_shows_the_overrides_kafka_creates_them_with(
    kafka_server: ServerProcess,
) -> None:
    """Kafka's coordinators create the internal topics compacted, with
    their own compression and segment size: DescribeConfigs lists those as
    the topic's own configs, the rest as defaults."""
    client = admin(kafka_server)
    expected = {
        "__consumer_offsets": {
            "cleanup.policy": "compact",
            "compression.type": "producer",
            "segment.bytes": "104857600",
        },
        "__transaction_state": {
            "cleanup.policy": "compact",
            "compression.type": "uncompressed",
            "min.insync.replicas": "1",
            "segment.bytes": "104857600",
            "unclean.leader.election.enable": "false",
        },
    }
    for name, overrides in expected.items():
        resource = ConfigResource(ResourceType.TOPIC, name)
        [future] = client.describe_configs([resource], request_timeout=TIMEOUT).values()
        configs = future.result(TIMEOUT)
        own = {
            key: entry.value
            for key, entry in configs.items()
            if entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
        }
        assert own == overrides, name
        assert configs["retention.ms"].is_default
