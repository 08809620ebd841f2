"""DescribeLogDirs: the data directory is the broker's one log dir, with
each partition's stored bytes (the batches waiting in the WAL by their
size, uploaded ones by their committed range), offset lag 0 and no future
logs, and from v4 the volume's total and usable bytes. Partitions that do
not exist are left out, and so are topics left with none, as Kafka does.
Through kafka-python's admin client, and raw requests for v1 and the
request kafka-python does not send."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient

import engine
import native
from engine.protocol.apis import ApiKey, request_schema
from native import RecordSpec
from tests.server.in_process import InProcessServer, served_without_uploads
from tests.server.wire import Wire, build

TIMEOUT = 30.0


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[engine.Engine, InProcessServer]]:
    with served_without_uploads(tmp_path / "node") as both:
        yield both


def batch(*values: bytes) -> bytes:
    return native.encode_batch([RecordSpec(1_700_000_000_000, None, v, ()) for v in values])


def sizes(results: Any) -> dict[tuple[str, int], int]:
    return {
        (topic.name, p.partition_index): p.partition_size
        for topic in results.topics
        for p in topic.partitions
    }


def test_kafka_python_sees_the_data_dir_and_each_partitions_stored_bytes(
    served: tuple[engine.Engine, InProcessServer],
) -> None:
    opened, server = served
    opened.create_topic("orders", 2)
    opened.create_topic("empty", 1)
    first, second = batch(b"one", b"two"), batch(b"three" * 100)
    opened.produce("orders", 0, first)
    opened.produce("orders", 0, second)
    admin = KafkaAdminClient(bootstrap_servers=server.bootstrap, request_timeout_ms=30_000)
    try:
        (answer,) = admin.describe_log_dirs()
        (log_dir,) = answer["log_dirs"]
    finally:
        admin.close()
    data_dir = os.path.abspath(opened.store.data_dir)
    assert log_dir["log_dir"] == data_dir
    assert log_dir["error_code"] == 0
    partitions = {
        (topic["name"], p["partition_index"]): p
        for topic in log_dir["topics"]
        for p in topic["partitions"]
    }
    assert {tp: p["partition_size"] for tp, p in partitions.items()} == {
        ("orders", 0): len(first) + len(second),  # in the WAL, not uploaded yet
        ("orders", 1): 0,
        ("empty", 0): 0,
    }
    assert all(p["offset_lag"] == 0 and not p["is_future_key"] for p in partitions.values())
    volume = shutil.disk_usage(data_dir)
    assert log_dir["total_bytes"] == volume.total
    assert 0 < log_dir["usable_bytes"] <= volume.total


def test_raw_requests_get_only_the_partitions_that_exist_in_every_version(
    served: tuple[engine.Engine, InProcessServer],
) -> None:
    opened, server = served
    opened.create_topic("orders", 2)
    written = batch(b"kept")
    opened.produce("orders", 1, written)
    wanted = [
        {"topic": "orders", "partitions": [1, 7]},  # 7 does not exist
        {"topic": "missing", "partitions": [0]},
    ]
    with Wire(server.bootstrap, timeout=TIMEOUT) as wire:
        for version in range(1, 5):
            schema = request_schema(ApiKey.DESCRIBE_LOG_DIRS, version)
            response = wire.request(build(schema, topics=wanted))
            (result,) = response.results
            assert result.log_dir == os.path.abspath(opened.store.data_dir)
            assert sizes(result) == {("orders", 1): len(written)}, version
            if version >= 3:
                assert response.error_code == 0
            if version >= 4:
                assert result.total_bytes > 0 and result.usable_bytes > 0
        assert opened.flush(TIMEOUT)
        response = wire.request(build(schema, topics=None))  # null: every partition
        uploaded = sizes(response.results[0])
    assert uploaded[("orders", 0)] == 0
    assert uploaded[("orders", 1)] >= len(written)  # the committed range: batch and index
