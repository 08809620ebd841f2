"""The mirror tests' fixtures: the two sides of a migration built once
(for verification and translation), librdkafka's mock cluster of three
brokers on loopback sockets, ``tidelog serve`` children, and reading a
partition's committed records back.

The built source is a tidelog broker (engine and wire server in this
process) whose partitions hold what makes target offsets differ: committed
and aborted transactions (markers, aborted records), a trailing transaction
marker, DeleteRecords, and a compacted topic the cleaner has cleaned. The
built targets are a second tidelog (``python -m engine serve`` in a child
process) and librdkafka's mock cluster, each filled by
tests/mirror/copier.py.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from engine.engine import Engine
from engine.testing import brokers
from engine.types import TopicPartition
from tests.mirror.copier import Copied, committed_records, copy_topics
from tests.server.conftest import (
    TRANSACTION_SERVER_CONFIG,
    ServerProcess,
    quiet_librdkafka,
    start_transaction_server,
)
from tests.server.prewarmed import PrewarmedServer

FULL = os.environ.get("TIDELOG_MIRROR") == "full"
"""Longer campaigns (TIDELOG_MIRROR=full)."""


class MockCluster:
    """librdkafka's mock cluster: three brokers on real loopback sockets,
    alive as long as the client that started it."""

    def __init__(self) -> None:
        self._owner = Producer({"test.mock.num.brokers": 3, **quiet_librdkafka()})
        brokers = self._owner.list_topics(timeout=10).brokers.values()
        self.bootstrap = ",".join(f"{b.host}:{b.port}" for b in brokers)


@pytest.fixture
def mock_cluster() -> Iterator[MockCluster]:
    cluster = MockCluster()
    yield cluster
    del cluster


@pytest.fixture(scope="package")
def source_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A source server for the mirror's tests; each uses topics of its own."""
    server = start_transaction_server(tmp_path_factory.mktemp("source"))
    yield server
    server.kill()


@pytest.fixture(scope="package")
def target_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A target server for the mirror's tests; each uses topics of its own."""
    server = start_transaction_server(tmp_path_factory.mktemp("target"))
    yield server
    server.kill()


@pytest.fixture
def silent_target() -> Iterator[str]:
    """A loopback listener that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for connection in accepted:
        connection.close()
    listener.close()


def outcome_within(call: Callable[[], object], guard_s: float) -> BaseException | None:
    """What ``call`` raised (None if it returned), run on a thread of its
    own; fails the test if it has not finished within ``guard_s``."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as error:  # the outcome under test, whatever it is
            outcome.append(error)
        else:
            outcome.append(None)

    running = threading.Thread(target=run, daemon=True)
    running.start()
    running.join(guard_s)
    assert not running.is_alive(), f"still waiting after {guard_s:g} s"
    return outcome[0]


@pytest.fixture
def own_target_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A target server for one test, which it may kill and start again."""
    (tmp_path / "target").mkdir()
    server = start_transaction_server(tmp_path / "target")
    yield server
    server.kill()


@pytest.fixture
def restarted_target_server(tmp_path: Path) -> Iterator[PrewarmedServer]:
    """A target server for one test that kills it and starts it again, each
    start after the first in a process that has done its imports."""
    root = tmp_path / "target"
    root.mkdir()
    config = root / "tidelog.toml"
    config.write_text(TRANSACTION_SERVER_CONFIG)
    server = PrewarmedServer(root / "data", args=["--config", str(config)]).start()
    yield server
    server.close()


def read_topic(
    bootstrap: str, topic: str, partitions: int, timeout: float = 30.0
) -> list[list[Any]]:
    """Every committed record of each partition, to its end now."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "tests.mirror.reader",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
            **quiet_librdkafka(),
        }
    )
    consumer.assign([KafkaTopicPartition(topic, p, 0) for p in range(partitions)])
    records: list[list[Any]] = [[] for _ in range(partitions)]
    ended: set[int] = set()
    try:
        for _ in range(int(timeout / 0.1)):
            for message in consumer.consume(1000, 0.1):
                if message.error() is None:
                    records[message.partition()].append(message)
                elif message.error().code() == KafkaError._PARTITION_EOF:
                    ended.add(message.partition())
                else:
                    raise AssertionError(message.error())
            if len(ended) == partitions:
                return records
        raise AssertionError(f"{topic}: partitions {sorted(ended)} ended in {timeout} s")
    finally:
        consumer.close()


def read_partition(bootstrap: str, topic: str, partition: int) -> list[Any]:
    """Every committed record of one partition (of a topic of at least
    ``partition + 1`` partitions), to its end now."""
    return read_topic(bootstrap, topic, partition + 1)[partition]


def group_consumer(bootstrap: str, group: str, **config: Any) -> Consumer:
    """A consumer of ``group`` that reads committed records from the start
    and commits only when told."""
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            **quiet_librdkafka(),
            **config,
        }
    )


def read_some(consumer: Consumer, count: int, seconds: float = 40.0) -> list[Any]:
    """The next ``count`` records the consumer reads (within ``seconds``)."""
    records: list[Any] = []
    for _ in range(int(seconds / 0.2)):
        batch = consumer.consume(count - len(records), 0.2)
        records.extend(message for message in batch if message.error() is None)
        if len(records) >= count:
            return records
    raise AssertionError(f"read {len(records)} of {count}")


def facts(record: Any) -> tuple[Any, ...]:
    """What a mirrored record must keep: key, value, headers, timestamp."""
    return (record.key(), record.value(), record.headers() or [], record.timestamp()[1])


def producer(bootstrap: str, **config: Any) -> Producer:
    return Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 1, **quiet_librdkafka(), **config}
    )


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
                # written, so the abort leaves it aborted (unsent, it would fail)
                txn.flush(30)
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
def mock_bootstrap() -> Iterator[str]:
    """librdkafka's mock cluster of three brokers; its bootstrap servers."""
    cluster = MockCluster()
    try:
        yield cluster.bootstrap
    finally:
        del cluster


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
    with mock_bootstrap() as bootstrap:
        yield copied_target("mock", source.bootstrap, bootstrap, PARTITIONS, create=False)


@pytest.fixture(params=["serve", "mock"])
def target(request: pytest.FixtureRequest) -> Target:
    found: Target = request.getfixturevalue(f"{request.param}_target")
    return found
