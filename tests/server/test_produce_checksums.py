"""Produce data is read once on its way to the WAL: the batches' CRCs are
checked on arrival, and the WAL's checksum of each append is combined from
those CRCs (native.crc32c_batches) instead of reading every byte again.
A real client over a real socket; then a copy of the data directory taken
while the engine runs (what kill -9 leaves) opens with every record: the
WAL's replay checks each combined checksum against the bytes on disk."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

import engine
import wal.log
from native.buffers import BytesLike
from native.records import TimestampType
from tests.engine.helpers_records import consume_all
from tests.server.conftest import quiet_librdkafka
from tests.server.in_process import InProcessServer, served_without_uploads

TIMEOUT = 30.0
RECORDS = 2048
VALUE_BYTES = 1024


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[engine.Engine, InProcessServer]]:
    with served_without_uploads(tmp_path / "node") as both:
        yield both


@pytest.mark.parametrize(
    "configs",
    [
        pytest.param({}, id="CreateTime"),
        # The broker stamps each batch, and rewrite_batch recomputes its CRC.
        pytest.param({"message.timestamp.type": "LogAppendTime"}, id="LogAppendTime"),
    ],
)
def test_the_wal_reads_produce_data_only_in_batch_headers(
    served: tuple[engine.Engine, InProcessServer],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    configs: dict[str, str],
) -> None:
    opened, server = served
    opened.create_topic("checked", 1, configs)
    read: list[int] = []
    crc32c = wal.log.crc32c

    def counted(data: BytesLike, crc: int = 0) -> int:
        read.append(memoryview(data).nbytes)
        return crc32c(data, crc)

    monkeypatch.setattr(wal.log, "crc32c", counted)
    values = [os.urandom(VALUE_BYTES) for _ in range(RECORDS)]
    producer = Producer(
        {
            "bootstrap.servers": server.bootstrap,
            "acks": "all",
            "linger.ms": 50,
            "batch.size": 1_000_000,
            **quiet_librdkafka(),
        }
    )
    for value in values:
        producer.produce("checked", value, partition=0)
    assert producer.flush(TIMEOUT) == 0
    assert opened.offsets("checked", 0) == (0, RECORDS)
    produced = RECORDS * VALUE_BYTES
    # Each append's WAL prefix (its store header) and nothing of the batches:
    # before, every byte of them was read again here.
    assert 0 < sum(read) < produced // 100, (sum(read), len(read))

    # A kill -9 now: the WAL holds everything (no upload ran); its replay
    # checks every record's checksum against what it reads from disk.
    image = tmp_path / "image"
    shutil.copytree(tmp_path / "node", image)
    reopened = engine.open(image)
    try:
        recovered = consume_all(reopened, "checked")
        assert [r.value for r in recovered] == values
        if configs:
            assert {r.timestamp_type for r in recovered} == {TimestampType.LOG_APPEND_TIME}
    finally:
        reopened.close()
