"""Metadata about a topic of many partitions: its partitions are encoded
once through the schema and copied with their index written in, whatever
their number, and the bytes are those of the entries encoded one by one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine.protocol.apis import ApiKey, response_schema
from engine.protocol.encoder import Sink, encoder_for
from engine.server.handlers import metadata
from engine.server.handlers.registry import SUPPORTED_VERSIONS
from tests.server.conftest import quiet_librdkafka
from tests.server.in_process import InProcessServer

LOW, HIGH = SUPPORTED_VERSIONS[ApiKey.METADATA]
INT32 = st.integers(-(2**31), 2**31 - 1)


def _response(version: int, partitions: Any) -> bytes:
    """A Metadata response about one topic with ``partitions``."""
    topic = {"error_code": 0, "name": "t", "topic_id": bytes(16), "partitions": partitions}
    body = {"brokers": [], "controller_id": 1, "topics": [topic]}
    sink = Sink()
    encoder_for(response_schema(ApiKey.METADATA, version))(sink, body)
    return b"".join(sink.finish())


@settings(max_examples=60, deadline=None)
@given(
    version=st.integers(LOW, HIGH),
    node=st.integers(0, 2**31 - 1),
    epoch=INT32,
    count=st.integers(0, 300),
)
def test_copied_entries_are_the_bytes_of_entries_encoded_one_by_one(
    version: int, node: int, epoch: int, count: int
) -> None:
    one_by_one = [metadata.partition_entry(i, node, epoch) for i in range(count)]
    copied = metadata.partitions_of(version, node, epoch, count)
    assert copied.count == count
    assert _response(version, copied) == _response(version, one_by_one)


def _described_topic_partitions(partitions: Any) -> bytes:
    """A DescribeTopicPartitions response about one topic with ``partitions``."""
    topic = {"error_code": 0, "name": "t", "topic_id": bytes(16), "partitions": partitions}
    sink = Sink()
    encoder_for(response_schema(ApiKey.DESCRIBE_TOPIC_PARTITIONS, 0))(sink, {"topics": [topic]})
    return b"".join(sink.finish())


@settings(max_examples=60, deadline=None)
@given(
    node=st.integers(0, 2**31 - 1),
    epoch=INT32,
    first=st.integers(0, 2**31 - 301),
    count=st.integers(0, 300),
)
def test_a_page_of_copied_entries_is_the_bytes_of_entries_encoded_one_by_one(
    node: int, epoch: int, first: int, count: int
) -> None:
    """DescribeTopicPartitions' partitions, from a cursor's index on, with
    their (empty) eligible leader replicas."""
    one_by_one = [metadata.partition_entry(i, node, epoch) for i in range(first, first + count)]
    copied = metadata.partitions_of(
        0, node, epoch, count, first=first, api_key=ApiKey.DESCRIBE_TOPIC_PARTITIONS
    )
    assert copied.count == count
    assert _described_topic_partitions(copied) == _described_topic_partitions(one_by_one)


def test_the_schema_is_walked_a_fixed_number_of_times_whatever_the_partitions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    walks = 0
    schema_writer = metadata.item_encoder

    def counting(*args: Any) -> Any:
        write = schema_writer(*args)

        def counted(sink: Sink, value: Any) -> None:
            nonlocal walks
            walks += 1
            write(sink, value)

        return counted

    monkeypatch.setattr(metadata, "item_encoder", counting)
    metadata._partition_template.cache_clear()
    try:
        for count in (1, 10, 10_000):
            assert metadata.partitions_of(HIGH, 3, 5, count).count == count
        assert walks == 2  # the probe and its check, once for this version, node and epoch
        metadata.partitions_of(HIGH, 3, 6, 10_000)  # a new leader epoch: once more
        assert walks == 4
    finally:
        metadata._partition_template.cache_clear()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    with engine.open(tmp_path / "data", config=engine.EngineConfig.small()) as opened:
        server = InProcessServer(opened)
        try:
            yield server.bootstrap
        finally:
            server.stop()


def test_a_client_sees_every_partition_of_a_topic_of_ten_thousand(served: str) -> None:
    admin = AdminClient({"bootstrap.servers": served, **quiet_librdkafka()})
    # Kafka's bound of 10,000 metadata records per request: two steps.
    for future in admin.create_topics([NewTopic("wide", 5000, 1)]).values():
        future.result(60)
    for future in admin.create_partitions([NewPartitions("wide", 10_000)]).values():
        future.result(60)
    listed = admin.list_topics("wide", timeout=60).topics["wide"]
    assert listed.error is None
    assert sorted(listed.partitions) == list(range(10_000))
    for index in (0, 1, 4999, 5000, 9999):
        partition = listed.partitions[index]
        assert (partition.id, partition.leader, partition.replicas, partition.isrs) == (
            index,
            1,
            [1],
            [1],
        )
