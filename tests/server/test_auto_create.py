"""With auto-creation on (the server's default), Fetch and ListOffsets of an
unknown topic answer UNKNOWN_TOPIC_OR_PARTITION (UNKNOWN_TOPIC_ID for a
fetch by topic id) and create nothing, as a Kafka broker does: only
Metadata and Produce create topics. A consumer fetching while the topic is
deleted does not bring it back."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from kafka import KafkaAdminClient

from engine.protocol.apis import request_schema
from tests.server.conftest import ServerProcess
from tests.server.test_bad_input import (
    NONE,
    UNKNOWN_TOPIC_OR_PARTITION,
    all_metadata,
    batch,
    fetch,
    partition_error,
    produce,
)
from tests.server.wire import Wire, build

UNKNOWN_TOPIC_ID = 100


def list_offsets(topic: str, timestamp: int) -> Any:
    return build(
        request_schema(2, 6),
        replica_id=-1,
        isolation_level=0,
        topics=[
            {
                "name": topic,
                "partitions": [
                    {"partition_index": 0, "current_leader_epoch": -1, "timestamp": timestamp}
                ],
            }
        ],
    )


def fetch_by_id(topic_id: uuid.UUID) -> Any:
    partition = {
        "partition": 0,
        "current_leader_epoch": -1,
        "fetch_offset": 0,
        "last_fetched_epoch": -1,
        "log_start_offset": -1,
        "partition_max_bytes": 1 << 20,
    }
    return build(
        request_schema(1, 13),
        replica_id=-1,
        max_bytes=1 << 20,
        session_epoch=-1,
        topics=[{"topic_id": topic_id, "partitions": [partition]}],
    )


def topics(wire: Wire) -> set[str]:
    return {t.name for t in wire.request(all_metadata()).topics}


def test_fetch_and_list_offsets_of_an_unknown_topic_create_nothing(
    kafka_server: ServerProcess, topic: str
) -> None:
    with Wire(kafka_server.bootstrap) as wire:
        fetched = wire.request(fetch(topic, 0)).responses[0].partitions[0]
        assert fetched.error_code == UNKNOWN_TOPIC_OR_PARTITION
        for timestamp in (-2, -1, 1_700_000_000_000):
            listed = wire.request(list_offsets(topic, timestamp)).topics[0].partitions[0]
            assert listed.error_code == UNKNOWN_TOPIC_OR_PARTITION
            assert listed.offset == -1
        by_id = wire.request(fetch_by_id(uuid.uuid4())).responses[0].partitions[0]
        assert by_id.error_code == UNKNOWN_TOPIC_ID
        assert topic not in topics(wire)
        # Produce still creates it (auto-creation is on).
        assert partition_error(wire.request(produce({topic: batch()}))) == NONE
        assert topic in topics(wire)


def test_fetching_during_delete_topics_does_not_recreate_the_topic(
    kafka_server: ServerProcess, topic: str
) -> None:
    with Wire(kafka_server.bootstrap) as wire:
        assert partition_error(wire.request(produce({topic: batch()}))) == NONE
    stop = threading.Event()
    codes: list[int] = []

    def fetch_until_stopped() -> None:
        with Wire(kafka_server.bootstrap) as fetcher:
            while not stop.is_set():
                codes.append(fetcher.request(fetch(topic, 0)).responses[0].partitions[0].error_code)

    fetcher = threading.Thread(target=fetch_until_stopped)
    fetcher.start()
    try:
        admin = KafkaAdminClient(bootstrap_servers=kafka_server.bootstrap)
        try:
            admin.delete_topics([topic], timeout_ms=30_000)
        finally:
            admin.close()
        seen = len(codes)
        with Wire(kafka_server.bootstrap) as wire:
            while len(codes) < seen + 20 and fetcher.is_alive():  # fetches after the deletion
                assert topic not in topics(wire)
    finally:
        stop.set()
        fetcher.join(30)
    assert not fetcher.is_alive()
    assert codes[-1] == UNKNOWN_TOPIC_OR_PARTITION
    with Wire(kafka_server.bootstrap) as wire:
        assert topic not in topics(wire)
