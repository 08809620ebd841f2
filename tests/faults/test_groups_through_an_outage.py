"""A consumer group through an object-store outage long enough for the
unuploaded data to pass ``max_unuploaded_bytes``: producers then wait
for room (back-pressure), but the groups' state records, written to the
WAL like everything else, do not: the group coordinator writes them
under its lock, on the server's event loop, so a wait there would hold
every group and every connection until the store came back. A real
consumer (librdkafka, kafka-python) keeps its group, commits, and is answered while the
store is down, and carries on after it heals; a restart has its commits."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from kafka import KafkaConsumer, OffsetAndMetadata
from kafka import TopicPartition as KafkaTopicPartition

import engine
from engine.engine import Engine
from s3stream.store import LocalStore
from tests.engine.helpers_records import batch
from tests.faults.outages import filled_past
from tests.s3stream.faults import FaultyStore
from tests.server.conftest import quiet_librdkafka
from tests.server.in_process import InProcessServer

TIMEOUT = 30.0
SESSION_MS = 30_000
"""Long enough that a loaded machine does not expire the member the test expects to commit."""
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


class Member(ABC):
    """One consumer of group "g" reading partition 0 of "t" and committing
    synchronously; each commit is waited for here, on a thread, for
    TIMEOUT at most (a client's own wait would outlast a stalled server)."""

    @abstractmethod
    def consume(self, count: int) -> list[int]: ...

    @abstractmethod
    def commit_now(self, offset: int) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def commit(self, offset: int) -> None:
        done: list[bool] = []
        failures: list[BaseException] = []

        def committing() -> None:
            try:
                self.commit_now(offset)
                done.append(True)
            except BaseException as error:  # handed to the test's thread
                failures.append(error)

        thread = threading.Thread(target=committing, daemon=True)
        thread.start()
        thread.join(TIMEOUT)
        if failures:
            raise failures[0]
        assert done, f"the commit of offset {offset} was not answered in {TIMEOUT:g} s"


class Librdkafka(Member):
    def __init__(self, bootstrap: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "g",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": SESSION_MS,
                "heartbeat.interval.ms": 500,
                **quiet_librdkafka(),
            }
        )
        self.consumer.subscribe(["t"])

    def consume(self, count: int) -> list[int]:
        offsets: list[int] = []
        deadline = time.monotonic() + TIMEOUT
        while len(offsets) < count:
            assert time.monotonic() < deadline, f"consumed {len(offsets)} of {count}"
            message = self.consumer.poll(0.2)
            if message is None:
                continue
            assert message.error() is None, message.error()
            offset = message.offset()
            assert offset is not None
            offsets.append(offset)
        return offsets

    def commit_now(self, offset: int) -> None:
        (committed,) = self.consumer.commit(
            offsets=[TopicPartition("t", 0, offset)], asynchronous=False
        ) or [None]
        assert committed is not None and committed.error is None
        assert committed.offset == offset

    def close(self) -> None:
        self.consumer.close()


class KafkaPython(Member):
    def __init__(self, bootstrap: str) -> None:
        self.consumer = KafkaConsumer(
            "t",
            bootstrap_servers=bootstrap,
            group_id="g",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=SESSION_MS,
            heartbeat_interval_ms=500,
        )
        # kafka-python joins without waiting for the topic's metadata: a
        # leader without it assigns nothing and rejoins once it comes, and
        # kafka-python 3.0.12 no longer counts that rejoin as needed once it
        # has assigned again, so a poll that timed out mid-rebalance never
        # takes the SyncGroup's answer: assigned nothing, for good (as
        # tests/server/test_groups_kafka_python.py found). With the metadata
        # loaded first there is no such rejoin.
        self.consumer.partitions_for_topic("t")

    def consume(self, count: int) -> list[int]:
        offsets: list[int] = []
        deadline = time.monotonic() + TIMEOUT
        while len(offsets) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"consumed {len(offsets)} of {count}"
            # All the time left (a poll returns with the first records): a
            # rebalance stays inside the poll that started it.
            polled = self.consumer.poll(int(left * 1000), max_records=count - len(offsets))
            offsets += [record.offset for records in polled.values() for record in records]
        return offsets

    def commit_now(self, offset: int) -> None:
        self.consumer.commit({KafkaTopicPartition("t", 0): OffsetAndMetadata(offset, "", -1)})

    def close(self) -> None:
        self.consumer.close()


CLIENTS = {"librdkafka": Librdkafka, "kafka-python": KafkaPython}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_a_consumer_group_commits_through_an_outage_past_the_unuploaded_bound(
    bucket: Bucket, client: str
) -> None:
    e = bucket.open()
    server = InProcessServer(e)
    filling: threading.Thread | None = None
    try:
        e.create_topic("t", 1)
        for _ in range(4):
            e.produce("t", 0, batch([b"before"]))
        member = CLIENTS[client](server.bootstrap)
        assert member.consume(4) == [0, 1, 2, 3]
        member.commit(4)

        bucket.faulty.fail("put")  # nothing is uploaded from now on
        # A producer fills the log cache past the bound and then waits for
        # room (in its own thread: the embedded produce blocks).
        filling = filled_past(e, BOUND, TIMEOUT)

        # The consumer reads what was acknowledged and commits it, the
        # store still down: answered, as Kafka's coordinator answers a
        # commit its log took.
        assert member.consume(3) == [4, 5, 6]
        member.commit(7)
        assert bucket.faulty.failing  # still down

        bucket.faulty.heal()
        filling.join(TIMEOUT)
        assert not filling.is_alive()
        assert member.consume(2) == [7, 8]
        member.commit(9)
        member.close()
    finally:
        bucket.faulty.heal()
        server.stop()
        e.close()
    with bucket.open() as reopened:
        committed = reopened.groups.fetch_offsets("g", None)
        assert {tp.partition: om.offset for tp, (om, _) in committed.items() if om} == {0: 9}
