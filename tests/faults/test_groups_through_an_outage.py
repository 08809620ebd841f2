"""A consumer group through an object-store outage long enough for the
unuploaded data to pass ``max_unuploaded_bytes``: producers then wait
for room (back-pressure), but the groups' state records, written to the
WAL like everything else, do not: the group coordinator writes them
under its lock, on the server's event loop, so a wait there would hold
every group and every connection until the store came back. A real
consumer (librdkafka) keeps its group, commits, and is answered while the
store is down, and carries on after it heals; a restart has its commits."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

import engine
from engine.engine import Engine
from s3stream.store import LocalStore
from tests.engine.helpers_records import batch
from tests.s3stream.faults import FaultyStore
from tests.server.conftest import quiet_librdkafka
from tests.server.in_process import InProcessServer

TIMEOUT = 30.0
BOUND = 256 * 1024
_SMALL = engine.EngineConfig.small()
CONFIG = replace(
    _SMALL,
    store=replace(
        _SMALL.store, max_unuploaded_bytes=BOUND, upload_bytes=64 * 1024, upload_interval_s=0.05
    ),
    groups=engine.GroupConfig(group_initial_rebalance_delay_ms=0, group_min_session_timeout_ms=500),
)


class Bucket:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.inner = LocalStore(root / "objects")
        self.faulty = FaultyStore(self.inner)

    def open(self) -> Engine:
        return engine.open(self.root / "node", self.faulty, CONFIG)


@pytest.fixture
def bucket(tmp_path: Path) -> Iterator[Bucket]:
    bucket = Bucket(tmp_path)
    yield bucket
    bucket.faulty.heal()


def _consumer(bootstrap: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "g",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            **quiet_librdkafka(),
        }
    )


def _consume(consumer: Consumer, count: int) -> list[int]:
    offsets: list[int] = []
    deadline = time.monotonic() + TIMEOUT
    while len(offsets) < count:
        assert time.monotonic() < deadline, f"consumed {len(offsets)} of {count}"
        message = consumer.poll(0.2)
        if message is None:
            continue
        assert message.error() is None, message.error()
        offset = message.offset()
        assert offset is not None
        offsets.append(offset)
    return offsets


def _commit(consumer: Consumer, offset: int) -> None:
    """A synchronous commit, answered in TIMEOUT (librdkafka's own wait
    would outlast a stalled server: it is waited for here on a thread)."""
    answers: list[list[TopicPartition] | None] = []
    committing = threading.Thread(
        target=lambda: answers.append(
            consumer.commit(offsets=[TopicPartition("t", 0, offset)], asynchronous=False)
        ),
        daemon=True,
    )
    committing.start()
    committing.join(TIMEOUT)
    assert answers, f"the commit of offset {offset} was not answered in {TIMEOUT:g} s"
    (committed,) = answers[0] or []
    assert committed.error is None and committed.offset == offset


def test_a_consumer_group_commits_through_an_outage_past_the_unuploaded_bound(
    bucket: Bucket,
) -> None:
    e = bucket.open()
    server = InProcessServer(e)
    filling: threading.Thread | None = None
    try:
        e.create_topic("t", 1)
        for _ in range(4):
            e.produce("t", 0, batch([b"before"]))
        consumer = _consumer(server.bootstrap)
        consumer.subscribe(["t"])
        assert _consume(consumer, 4) == [0, 1, 2, 3]
        _commit(consumer, 4)

        bucket.faulty.fail("put")  # nothing is uploaded from now on
        # A producer fills the log cache past the bound and then waits for
        # room (in its own thread: the embedded produce blocks).
        filling = threading.Thread(
            target=lambda: [e.produce("t", 0, batch([b"x" * 16384])) for _ in range(32)],
            daemon=True,
        )
        filling.start()
        deadline = time.monotonic() + TIMEOUT
        while e.store.log_cache_usage().unuploaded_bytes <= BOUND:
            assert time.monotonic() < deadline, "the producer never passed the bound"
            time.sleep(0.01)

        # The consumer reads what was acknowledged and commits it, the
        # store still down: answered, as Kafka's coordinator answers a
        # commit its log took.
        consumed = _consume(consumer, 3)
        assert consumed == [4, 5, 6]
        _commit(consumer, 7)
        assert bucket.faulty.failing  # still down

        bucket.faulty.heal()
        filling.join(TIMEOUT)
        assert not filling.is_alive()
        assert _consume(consumer, 2) == [7, 8]
        _commit(consumer, 9)
        consumer.close()
    finally:
        bucket.faulty.heal()
        server.stop()
        e.close()
    with bucket.open() as reopened:
        committed = reopened.groups.fetch_offsets("g", None)
        assert {tp.partition: om.offset for tp, (om, _) in committed.items() if om} == {0: 9}
