"""kafka-python, the installed client that uses fetch sessions (KIP-227),
consuming a topic of many partitions over a real socket: every record
arrives, and after the first fetch its fetches are incremental. With the
cache's slots at 0 the same consumer gets no session and falls back to
full fetches, and still gets every record.

librdkafka, aiokafka and kafkajs send sessionless fetches (epoch -1), which
their own tests cover."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

import engine
from engine.server.config import ServerConfig
from tests.engine.conftest import FAST_STORE
from tests.server.in_process import InProcessServer

PARTITIONS = 200
TIMEOUT_MS = 15_000
ROUNDS = 4


@pytest.fixture(params=[1000, 0], ids=["sessions", "no-slots"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessServer]:
    opened = engine.open(tmp_path / "node", config=engine.EngineConfig(store=FAST_STORE))
    config = ServerConfig(max_incremental_fetch_session_cache_slots=request.param)
    server = InProcessServer(opened, config=config)
    try:
        opened.create_topic("many", PARTITIONS)
        yield server
    finally:
        server.stop()
        opened.close()


def produce_round(bootstrap: str, partitions: range, value: bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, max_block_ms=TIMEOUT_MS)
    try:
        for partition in partitions:
            producer.send("many", value, partition=partition)
        producer.flush(TIMEOUT_MS / 1000)
    finally:
        producer.close()


def consume(consumer: KafkaConsumer, count: int) -> list[tuple[int, bytes]]:
    got: list[tuple[int, bytes]] = []
    for _ in range(200):
        for records in consumer.poll(timeout_ms=500).values():
            got.extend((r.partition, r.value) for r in records)
        if len(got) >= count:
            break
    return got


def test_a_many_partition_consumer_fetches_incrementally(served: InProcessServer) -> None:
    sessions = served.server.state.fetch_sessions
    produce_round(served.bootstrap, range(PARTITIONS), b"first")
    consumer = KafkaConsumer(
        bootstrap_servers=served.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        request_timeout_ms=TIMEOUT_MS,
    )
    try:
        consumer.assign([TopicPartition("many", p) for p in range(PARTITIONS)])
        first = consume(consumer, PARTITIONS)
        assert sorted(first) == [(p, b"first") for p in range(PARTITIONS)]
        for round_ in range(ROUNDS):
            some = range(round_, PARTITIONS, 10)
            produce_round(served.bootstrap, some, b"more")
            assert sorted(consume(consumer, len(some))) == [(p, b"more") for p in some]
        stats = sessions.stats
        if sessions.slots:
            # One full fetch opened the session; every later one was incremental.
            assert (stats.full, stats.created, stats.session_errors) == (1, 1, 0), stats
            assert stats.incremental >= ROUNDS, stats
            [session] = sessions.sessions.values()
            assert len(session.partitions) == PARTITIONS
        else:
            assert (stats.created, stats.incremental) == (0, 0), stats
            assert stats.full >= ROUNDS + 1, stats
    finally:
        consumer.close()
