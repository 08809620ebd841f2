"""Over the Kafka protocol, a Fetch of a partition whose batches were
appended together (one stored entry) answers whole batches up to the
partition's max_bytes, the first whole even if larger, as a Kafka broker
does; and a real client reading with a small fetch size gets every
record once, in order."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

import engine
import native
from tests.engine.appended_together import appended_as_one, batches_of, split
from tests.engine.conftest import QUIET_STORE
from tests.server.conftest import quiet_librdkafka
from tests.server.in_process import InProcessServer
from tests.server.wire import Wire, fetch_from_start

TIMEOUT = 30.0
BATCHES = [5] * 20
"""Records per batch of the one append."""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[engine.Engine, str]]:
    with engine.open(tmp_path / "node", config=engine.EngineConfig(store=QUIET_STORE)) as e:
        server = InProcessServer(e)
        try:
            yield e, server.bootstrap
        finally:
            server.stop()


def _records(response: Any) -> bytes:
    (topic,) = response.responses
    (partition,) = topic.partitions
    assert partition.error_code == 0
    return bytes(partition.records or b"")


def test_a_fetch_with_a_small_max_bytes_gets_the_first_batch_only(
    served: tuple[engine.Engine, str],
) -> None:
    opened, bootstrap = served
    stored = appended_as_one(opened, "together", batches_of(BATCHES))
    with Wire(bootstrap) as wire:
        one = _records(wire.request(fetch_from_start("together", max_bytes=1)))
        three = len(stored[0]) + len(stored[1]) + len(stored[2])
        fitting = _records(wire.request(fetch_from_start("together", max_bytes=three + 10)))
    assert split([one]) == stored[:1]
    assert split([fitting]) == stored[:3]


def test_a_consumer_with_a_small_fetch_size_reads_every_record_once_in_order(
    served: tuple[engine.Engine, str],
) -> None:
    opened, bootstrap = served
    stored = appended_as_one(opened, "together", batches_of(BATCHES))
    wanted = [r.value for b in stored for r in native.decode_records(b)]
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            # librdkafka's least message.max.bytes: fetch.max.bytes may not be below it
            "message.max.bytes": 1000,
            "fetch.max.bytes": 1000,
            "max.partition.fetch.bytes": 1,
            **quiet_librdkafka(),
        }
    )
    try:
        consumer.assign([TopicPartition("together", 0, 0)])
        got: list[tuple[int, bytes | None]] = []
        while len(got) < len(wanted):
            message = consumer.poll(TIMEOUT)
            assert message is not None, f"{len(got)} of {len(wanted)} records read"
            assert message.error() is None, message.error()
            got.append((int(message.offset() or 0), message.value()))
    finally:
        consumer.close()
    assert got == list(enumerate(wanted))
