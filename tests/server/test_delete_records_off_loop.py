"""DeleteRecords is answered on the admin thread, not the event loop: each
partition's new log start waits for a checkpoint of its producer table (in
parts past one WAL record, docs/design/0112) and a trim to be durable, and
the loop serves the other connections meanwhile."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.protocol.apis import ApiKey, request_schema
from engine.protocol.kafka_code import KafkaCode
from tests.server.in_process import InProcessServer, served
from tests.server.test_admin_describes_off_loop import (
    _answered_only_once_the_admin_thread_is_free as answered_only_once_the_admin_thread_is_free,
)
from tests.server.wire import build


@pytest.fixture
def server(tmp_path: Path) -> Iterator[InProcessServer]:
    with served(tmp_path / "node") as running:
        yield running


def test_delete_records_is_answered_off_the_event_loop(server: InProcessServer) -> None:
    opened = server.server.engine
    opened.create_topic("t", 1)
    producer = opened.producer()
    for i in range(10):
        producer.send("t", b"v%d" % i, partition=0)
    assert producer.flush(30)
    delete = build(
        request_schema(ApiKey.DELETE_RECORDS, 2),
        topics=[{"name": "t", "partitions": [{"partition_index": 0, "offset": 4}]}],
        timeout=datetime.timedelta(seconds=5),
    )
    answer = answered_only_once_the_admin_thread_is_free(server, delete)
    (partition,) = answer.topics[0].partitions
    assert (partition.error_code, partition.low_watermark) == (KafkaCode.NONE, 4)
    assert opened.list_offset("t", 0, -2).offset == 4
