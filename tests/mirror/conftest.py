"""The two sides of a migration, built once for the mirror tests.

The source is a tidelog broker (engine and wire server in this process)
whose partitions hold what makes target offsets differ: committed and
aborted transactions (markers, aborted records), a trailing transaction
marker, DeleteRecords, and a compacted topic the cleaner has cleaned. The
targets are a second tidelog (``python -m engine serve`` in a child
process) and librdkafka's mock cluster (three brokers in the holding
client's process), each filled by tests/mirror/copier.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from engine.engine import Engine
from engine.testing import brokers
from engine.types import TopicPartition
from tests.mirror.copier import Copied, committed_records, copy_topics
from tests.server.conftest import ServerProcess, quiet_librdkafka

ORDERS = "orders"
"""4 partitions: plain records, a committed and an aborted transaction,
more plain records, and a committed transaction last; partition 1 has its
first three records deleted."""
PROFILES = "profiles"
"""4 partitions, compacted and cleaned: gaps where older values were."""
EVENTS = "events"
"""6 partitions: two more than the mock cluster creates a topic with."""
PARTITIONS = {ORDERS: 4, PROFILES: 4}
"""What a faithful copy copies (the mock cluster makes every topic 4 wide)."""
T0 = 1_700_000_000_000


def _fill(engine: Engine) -> None:
    engine.create_topic(ORDERS, 4)
    engine.create_topic(
        PROFILES, 4, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0"}
    )
    engine.create_topic(EVENTS, 6)
    step = iter(range(10_000))

    def send(producer: object, topic: str, partition: int, key: bytes, tag: str) -> None:
        n = next(step)
        producer.send(  # type: ignore[attr-defined]
            topic,
            f"{tag}-{partition}-{n}".encode(),
            key,
            headers=[("n", str(n).encode()), ("empty", None)],
            partition=partition,
            timestamp=T0 + n,
        )

    with engine.producer() as plain, engine.producer(transactional_id="orders-tx") as txn:
        txn.init_transactions(30)
        for partition in range(4):
            for _ in range(6):
                send(plain, ORDERS, partition, b"plain", "a")
        plain.flush(30)
        for outcome, count in (("commit", 3), ("abort", 2)):
            txn.begin_transaction()
            for partition in range(4):
                for _ in range(count):
                    send(txn, ORDERS, partition, b"txn", outcome)
            if outcome == "commit":
                txn.commit_transaction(30)
            else:
                txn.abort_transaction(30)
        for partition in range(4):
            for _ in range(4):
                send(plain, ORDERS, partition, None, "b")
        plain.flush(30)
        txn.begin_transaction()
        for partition in range(4):
            for _ in range(2):
                send(txn, ORDERS, partition, b"last", "commit")
        txn.commit_transaction(30)
        for partition in range(4):
            for key in (b"x", b"a", b"y", b"a", b"z", b"b", b"a", b"w"):
                send(plain, PROFILES, partition, key, "p")
        for partition in range(6):
            for _ in range(3):
                send(plain, EVENTS, partition, b"e", "e")
        plain.flush(30)
    assert engine.flush(30)
    assert engine.clean() == 4
    engine.delete_records(ORDERS, 1, 3)


@pytest.fixture(scope="session")
def source() -> Iterator[brokers.TestBroker]:
    with brokers.broker(auto_create_topics=False) as broker:
        _fill(broker.engine)
        yield broker


@contextmanager
def mock_cluster() -> Iterator[str]:
    """librdkafka's mock cluster of three brokers; its bootstrap servers."""
    holder = Producer({"test.mock.num.brokers": 3, **quiet_librdkafka()})
    try:
        brokers_found = holder.list_topics(timeout=30).brokers.values()
        yield ",".join(f"{b.host}:{b.port}" for b in brokers_found)
    finally:
        holder.flush(10)
        del holder


@dataclass(frozen=True)
class Target:
    name: str
    bootstrap: str
    written: dict[TopicPartition, list[tuple[int, int]]]
    """Per partition, the (source, target) offsets of every record copied."""
    records: dict[TopicPartition, dict[int, Copied]]
    """Per partition, what the target holds by offset (read committed), as copied."""


def copied_target(
    name: str, source: str, bootstrap: str, topics: dict[str, int], **options: Any
) -> Target:
    """A target ``copy_topics`` filled, with what it then holds."""
    written = copy_topics(source, bootstrap, topics, **options)
    held = committed_records(bootstrap, list(written))
    records = {tp: {r.offset: r for r in found} for tp, found in held.items()}
    return Target(name, bootstrap, written, records)


@pytest.fixture(scope="session")
def serve_target(
    source: brokers.TestBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    server = ServerProcess(Path(tmp_path_factory.mktemp("target")) / "data").start()
    try:
        yield copied_target("serve", source.bootstrap, server.bootstrap, {**PARTITIONS, EVENTS: 6})
    finally:
        assert server.stop() == 0, server.log()


@pytest.fixture(scope="session")
def mock_target(source: brokers.TestBroker) -> Iterator[Target]:
    with mock_cluster() as bootstrap:
        yield copied_target("mock", source.bootstrap, bootstrap, PARTITIONS, create=False)


@pytest.fixture(params=["serve", "mock"])
def target(request: pytest.FixtureRequest) -> Target:
    found: Target = request.getfixturevalue(f"{request.param}_target")
    return found
