"""Real clients (librdkafka classic and consumer protocols, kafka-python,
aiokafka, kafkajs) through a refused write of their group's
assignment (docs/design/0102): a second member joins and the group's
write of the new generation (the leader's SyncGroup; the consumer
protocol's heartbeat) is refused; the members are answered
NOT_COORDINATOR, find the coordinator again, rejoin, and between them
read every record, committing as they go, nothing read again after its
commit."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Consumer
from kafka import KafkaConsumer

import engine
from engine.engine import Engine
from engine.groups.records import classic_group_key, consumer_group_key
from s3stream import StoreFailed
from tests.engine.conftest import FAST_STORE
from tests.engine.helpers_records import batch
from tests.server.conftest import quiet_librdkafka
from tests.server.in_process import InProcessServer
from tests.server.test_groups_kafkajs import KafkajsMember

TIMEOUT = 60.0
TOPIC = "t"
PARTITIONS = 4
RECORDS = 40
GROUPS = engine.GroupConfig(group_initial_rebalance_delay_ms=0, group_min_session_timeout_ms=10)


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[tuple[Engine, InProcessServer]]:
    config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600, groups=GROUPS)
    e = engine.open(tmp_path / "data", f"file://{tmp_path / 'objects'}", config)
    e.create_topic(TOPIC, PARTITIONS)
    server = InProcessServer(e)
    try:
        yield e, server
    finally:
        server.stop()
        e.close()


def _refuse_the_next_assignment(
    monkeypatch: pytest.MonkeyPatch, e: Engine, group: str
) -> list[int]:
    """The groups state log refuses the next write of ``group``'s classic
    record (the store writes on); returns the list it counts refusals in."""
    state_log = e.groups._run.state_log
    update = state_log.update
    refused: list[int] = []

    def refusing(puts: Any = None, deletes: Any = None) -> Future[int]:
        held = (classic_group_key(group), consumer_group_key(group))
        if not refused and puts and any(key in puts for key in held):
            refused.append(1)
            raise StoreFailed(OSError(5, "the object store is down"))
        return update(puts=puts, deletes=deletes)

    monkeypatch.setattr(state_log, "update", refusing)
    return refused


class _Member:
    """A consumer on its own thread: polls and commits what it read
    synchronously; ``read`` holds what it committed, ``uncommitted`` what
    a refused commit left to be read again after a rebalance (or not)."""

    def __init__(self, poll: Callable[[], list[tuple[int, int]]], commit: Callable[[], None]):
        self.read: list[tuple[int, int]] = []
        self.uncommitted: list[tuple[int, int]] = []
        self._poll, self._commit = poll, commit
        self._stop = threading.Event()
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            got = self._poll()
            if not got:
                continue
            try:
                self._commit()
            except Exception as error:  # refused while rebalancing
                self.errors.append(error)
                self.uncommitted.extend(got)
            else:
                self.read.extend(got)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)


_Client = tuple[Callable[[], list[tuple[int, int]]], Callable[[], None], Callable[[], None]]
"""A consumer's poll, commit and close."""


def _confluent(bootstrap: str, **conf: Any) -> _Client:
    settings = {
        "bootstrap.servers": bootstrap,
        "group.id": "g",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 200,
        "partition.assignment.strategy": "range",
        **quiet_librdkafka(),
    } | conf
    # The consumer protocol's session and assignor are the coordinator's.
    c = Consumer({key: value for key, value in settings.items() if value is not None})
    c.subscribe([TOPIC])

    def poll() -> list[tuple[int, int]]:
        m = c.poll(0.2)
        if m is None or m.error() is not None:
            return []
        return [(m.partition(), m.offset())]

    def commit() -> None:
        c.commit(asynchronous=False)

    return poll, commit, c.close


def _kafka_python(bootstrap: str) -> _Client:
    c = KafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id="g",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=200,
    )

    def poll() -> list[tuple[int, int]]:
        polled = c.poll(200)
        return [(r.partition, r.offset) for rs in polled.values() for r in rs]

    def commit() -> None:
        c.commit()

    return poll, commit, c.close


def _confluent_consumer_protocol(bootstrap: str) -> _Client:
    return _confluent(
        bootstrap,
        **{
            "group.protocol": "consumer",
            "session.timeout.ms": None,
            "heartbeat.interval.ms": None,
            "partition.assignment.strategy": None,
        },
    )


def _aiokafka(bootstrap: str) -> _Client:
    """An AIOKafkaConsumer on a loop of its own thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(TIMEOUT)

    async def make() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            TOPIC,
            bootstrap_servers=bootstrap,
            group_id="g",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=200,
        )

    c: AIOKafkaConsumer = run(make())
    run(c.start())

    def poll() -> list[tuple[int, int]]:
        polled = run(c.getmany(timeout_ms=200))
        return [(r.partition, r.offset) for rs in polled.values() for r in rs]

    def commit() -> None:
        run(c.commit())

    def close() -> None:
        run(c.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)

    return poll, commit, close


def _stable_with(e: Engine, members: int) -> bool:
    """Whether group "g", classic or consumer, is Stable with ``members``."""
    (classic,) = e.groups.describe_groups(["g"])
    if classic.state != "Dead":
        return classic.state == "Stable" and len(classic.members) == members
    (consumer,) = e.groups.consumer_group_describe(["g"])
    return consumer.state == "Stable" and len(consumer.members) == members


CLIENTS = {
    "librdkafka": _confluent,
    "librdkafka consumer protocol": _confluent_consumer_protocol,
    "kafka-python": _kafka_python,
    "aiokafka": _aiokafka,
}


@pytest.mark.parametrize("client", CLIENTS)
def test_classic_clients_recover_from_a_refused_assignment_and_read_everything_once(
    opened: tuple[Engine, InProcessServer], monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    e, server = opened
    for p in range(PARTITIONS):
        e.produce(TOPIC, p, batch([b"%d" % i for i in range(RECORDS // PARTITIONS)]))
    first_poll, first_commit, first_close = CLIENTS[client](server.bootstrap)
    first = _Member(first_poll, first_commit)
    deadline = time.monotonic() + TIMEOUT
    while not _stable_with(e, 1):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    refused = _refuse_the_next_assignment(monkeypatch, e, "g")
    second_poll, second_commit, second_close = CLIENTS[client](server.bootstrap)
    second = _Member(second_poll, second_commit)
    try:
        while not (
            refused
            and _stable_with(e, 2)
            and len(set(first.read + second.read + first.uncommitted + second.uncommitted))
            == RECORDS
        ):
            assert time.monotonic() < deadline, refused
            time.sleep(0.1)
    finally:
        first.stop()
        second.stop()
        first_close()
        second_close()
    read = first.read + second.read
    assert len(read) == len(set(read))  # nothing read again after its commit
    assert refused


def test_kafkajs_members_recover_from_a_refused_assignment(
    opened: tuple[Engine, InProcessServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """kafkajs (its own JoinGroup and SyncGroup handling, in node): the
    second member's generation is refused its assignment; both rejoin,
    the group is Stable with both, and every record is read."""
    e, server = opened
    for p in range(PARTITIONS):
        e.produce(TOPIC, p, batch([b"%d" % i for i in range(RECORDS // PARTITIONS)]))
    first = KafkajsMember(server.bootstrap, "g", TOPIC)
    second: KafkajsMember | None = None
    deadline = time.monotonic() + TIMEOUT
    try:
        while not _stable_with(e, 1):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        refused = _refuse_the_next_assignment(monkeypatch, e, "g")
        second = KafkajsMember(server.bootstrap, "g", TOPIC)
        members = [first, second]
        while not (
            refused
            and _stable_with(e, 2)
            and len({(p, o) for m in members for p, o, _ in m.records}) == RECORDS
            and all(m.assignment for m in members)
        ):
            assert time.monotonic() < deadline, refused
            time.sleep(0.1)
    finally:
        first.stop()
        if second is not None:
            second.stop()
