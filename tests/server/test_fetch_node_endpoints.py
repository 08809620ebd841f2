"""Fetch v16 (KIP-951) and v17 (KIP-853) over a real socket, answered as
Kafka 4.0's handleFetchRequest answers them: a partition refused
FENCED_LEADER_EPOCH names this broker and its epoch as the current leader,
and the answer carries this broker's endpoint; a v17 request's replica
directory id is ignored. librdkafka (confluent-kafka) negotiates v16 and
Metadata v13, as the server's request metrics show."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition
from kio.index import load_request_schema

from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from tests.server.conftest import (
    ServerProcess,
    free_port,
    killed_if_setup_fails,
    quiet_librdkafka,
)
from tests.server.request_versions import versions_answered
from tests.server.wire import Wire, build, fetch_each

TOPIC = "endpoints"
WAIT_S = 30.0


class Served(ServerProcess):
    http: str


def _start(root: Path) -> Served:
    port = free_port()
    server = Served(root / "data", args=["--http", f"127.0.0.1:{port}"])
    server.http = f"http://127.0.0.1:{port}"
    return server.start()


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server with TOPIC and one record, restarted once so that its
    leader epoch has an older one before it."""
    server = _start(tmp_path_factory.mktemp("endpoints"))
    with killed_if_setup_fails(server):
        producer = Producer({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
        producer.produce(TOPIC, b"first", partition=0)
        assert producer.flush(WAIT_S) == 0
        server.restart()
    yield server
    server.end_at_teardown(graceful=True)


def _metadata(wire: Wire) -> Any:
    return wire.request(build(load_request_schema(ApiKey.METADATA, 12), topics=[{"name": TOPIC}]))


def _topic_id_and_epoch(wire: Wire) -> tuple[uuid.UUID, int]:
    (topic,) = _metadata(wire).topics
    return topic.topic_id, topic.partitions[0].leader_epoch


def test_a_fenced_leader_epoch_names_this_broker_as_the_current_leader(restarted: Served) -> None:
    with Wire(restarted.bootstrap) as wire:
        topic_id, epoch = _topic_id_and_epoch(wire)
        assert epoch >= 1
        broker = _metadata(wire).brokers[0]
        answer = wire.request(fetch_each(16, [(topic_id, 0, 0)], current_leader_epoch=epoch - 1))
    (partition,) = answer.responses[0].partitions
    assert partition.error_code == KafkaCode.FENCED_LEADER_EPOCH
    assert (partition.current_leader.leader_id, partition.current_leader.leader_epoch) == (
        broker.node_id,
        epoch,
    )
    (endpoint,) = answer.node_endpoints
    assert (endpoint.node_id, endpoint.host, endpoint.port, endpoint.rack) == (
        broker.node_id,
        broker.host,
        broker.port,
        None,
    )


def test_an_answer_without_a_fenced_epoch_names_no_leader(restarted: Served) -> None:
    with Wire(restarted.bootstrap) as wire:
        topic_id, epoch = _topic_id_and_epoch(wire)
        current = wire.request(fetch_each(16, [(topic_id, 0, 0)], current_leader_epoch=epoch))
        ahead = wire.request(fetch_each(16, [(topic_id, 0, 0)], current_leader_epoch=epoch + 1))
        older_version = wire.request(
            fetch_each(15, [(topic_id, 0, 0)], current_leader_epoch=epoch - 1)
        )
    assert current.responses[0].partitions[0].error_code == KafkaCode.NONE
    assert ahead.responses[0].partitions[0].error_code == KafkaCode.UNKNOWN_LEADER_EPOCH
    for answer in (current, ahead):
        assert answer.node_endpoints == ()
        assert answer.responses[0].partitions[0].current_leader.leader_id == -1
    # Before v16 the same refusal names no leader: Kafka fills it from v16.
    (partition,) = older_version.responses[0].partitions
    assert partition.error_code == KafkaCode.FENCED_LEADER_EPOCH
    assert partition.current_leader.leader_id == -1


def test_a_v17_fetch_with_a_replica_directory_id_reads_as_any_fetch(restarted: Served) -> None:
    with Wire(restarted.bootstrap) as wire:
        topic_id, epoch = _topic_id_and_epoch(wire)
        request = fetch_each(17, [(topic_id, 0, 0)], current_leader_epoch=epoch)
        (topic,) = request.topics
        (partition,) = topic.partitions
        with_directory = replace(partition, replica_directory_id=uuid.uuid4())
        answer = wire.request(
            replace(request, topics=(replace(topic, partitions=(with_directory,)),))
        )
    (read,) = answer.responses[0].partitions
    assert read.error_code == KafkaCode.NONE
    assert read.high_watermark == 1
    assert read.records is not None and b"first" in bytes(read.records)


def test_librdkafka_negotiates_fetch_v16_and_metadata_v13(tmp_path: Path) -> None:
    server = _start(tmp_path)
    try:
        producer = Producer({"bootstrap.servers": server.bootstrap, **quiet_librdkafka()})
        producer.produce(TOPIC, b"hello", partition=0)
        assert producer.flush(WAIT_S) == 0
        consumer = Consumer(
            {
                "bootstrap.servers": server.bootstrap,
                "group.id": "endpoints-group",
                "enable.auto.commit": False,
                **quiet_librdkafka(),
            }
        )
        try:
            consumer.assign([KafkaTopicPartition(TOPIC, 0, 0)])
            deadline = time.monotonic() + WAIT_S
            value = None
            while value is None and time.monotonic() < deadline:
                message = consumer.poll(1.0)
                if message is not None and message.error() is None:
                    value = message.value()
            assert value == b"hello"
        finally:
            consumer.close()
        assert max(versions_answered(server.http, "Fetch")) == 16
        assert max(versions_answered(server.http, "Metadata")) == 13
    finally:
        server.kill()
