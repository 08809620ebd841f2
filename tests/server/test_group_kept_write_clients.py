"""Real clients through a refused write that Kafka's coordinator does not
undo (docs/design/0109): a classic consumer (kafka-python, librdkafka)
closing as its group's last member, whose Empty record is refused; and a
librdkafka consumer of the consumer protocol taking over a classic group
in a rebalance, whose takeover is refused. The group is kept as memory
holds it, and a restart loads it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer
from kafka import KafkaConsumer

import engine
from engine.engine import Engine
from engine.groups.consumer_heartbeat import Heartbeat, HeartbeatResult
from engine.groups.records import classic_group_key, consumer_group_key, read_state
from engine.protocol.consumer_protocol import Subscription, encode_subscription
from engine.protocol.kafka_code import KafkaCode
from s3stream import StoreFailed
from tests.engine.classic_members import stable_member
from tests.engine.conftest import FAST_STORE
from tests.engine.helpers_records import batch
from tests.server.conftest import quiet_librdkafka
from tests.server.in_process import InProcessServer

TIMEOUT = 60.0
TOPIC = "t"
GROUPS = engine.GroupConfig(group_initial_rebalance_delay_ms=0, group_min_session_timeout_ms=10)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Callable[[], tuple[Engine, InProcessServer]]]:
    """Opens the engine and its server on the same WAL and bucket each
    time (stopping the ones before)."""
    opened: list[tuple[Engine, InProcessServer]] = []

    def open_node() -> tuple[Engine, InProcessServer]:
        if opened:
            opened[-1][1].stop()
            opened[-1][0].close()
        config = engine.EngineConfig(store=FAST_STORE, cleaner_interval_s=3600, groups=GROUPS)
        e = engine.open(tmp_path / "data", f"file://{tmp_path / 'objects'}", config)
        if TOPIC not in e.list_topics():
            e.create_topic(TOPIC, 2)
            for p in range(2):
                e.produce(TOPIC, p, batch([b"r"]))
        opened.append((e, InProcessServer(e)))
        return opened[-1]

    yield open_node
    opened[-1][1].stop()
    opened[-1][0].close()


def _refuse_next_write_of(monkeypatch: pytest.MonkeyPatch, e: Engine, key: Any) -> list[int]:
    """The groups state log refuses the next write putting ``key`` (the
    store writes on); returns the list it counts refusals in."""
    state_log = e.groups._run.state_log
    update = state_log.update
    refused: list[int] = []

    def refusing(puts: Any = None, deletes: Any = None) -> Future[int]:
        if not refused and puts and key in puts:
            refused.append(1)
            raise StoreFailed(OSError(5, "the object store is down"))
        return update(puts=puts, deletes=deletes)

    monkeypatch.setattr(state_log, "update", refusing)
    return refused


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.02)


def _members(e: Engine, group_id: str) -> tuple[str, list[str]]:
    (described,) = e.groups.describe_groups([group_id])
    return described.state, [m.member_id for m in described.members]


def _stored_members(e: Engine, group_id: str) -> list[str] | None:
    stored = read_state(e.groups._run.state_log.items()).classic_groups.get(group_id)
    return None if stored is None else [m.member_id for m in stored.members]


def _kafka_python(bootstrap: str) -> tuple[Callable[[], bool], Callable[[], None]]:
    c = KafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id="g",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=200,
    )
    return (lambda: bool(c.poll(200)) or bool(c.assignment())), c.close


def _librdkafka(bootstrap: str, **conf: Any) -> Consumer:
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "g",
            "auto.offset.reset": "earliest",
            **quiet_librdkafka(),
            **conf,
        }
    )
    c.subscribe([TOPIC])
    return c


def _librdkafka_classic(bootstrap: str) -> tuple[Callable[[], bool], Callable[[], None]]:
    c = _librdkafka(
        bootstrap,
        **{
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 200,
            "partition.assignment.strategy": "range",
        },
    )
    return (lambda: c.poll(0.2) is not None or bool(c.assignment())), c.close


@pytest.mark.parametrize("client", [_kafka_python, _librdkafka_classic])
def test_a_last_consumer_whose_leave_is_refused_leaves_its_group_empty(
    node: Callable[[], tuple[Engine, InProcessServer]],
    monkeypatch: pytest.MonkeyPatch,
    client: Callable[[str], tuple[Callable[[], bool], Callable[[], None]]],
) -> None:
    """The group's only consumer closes (LeaveGroup); the Empty record is
    refused and the leave answered NOT_COORDINATOR, which the client only
    logs. The group stays Empty, as Kafka's; its record is written again
    and a restart loads it Empty (it loaded the consumer that had left,
    Stable, as the group was rebuilt in memory)."""
    e, server = node()
    poll, close = client(server.bootstrap)

    def stable() -> bool:
        poll()  # the client's calls drive its membership
        return _members(e, "g")[0] == "Stable"

    _wait_for(stable)
    (member,) = _members(e, "g")[1]
    _wait_for(lambda: _stored_members(e, "g") == [member])
    with monkeypatch.context() as faults:
        refused = _refuse_next_write_of(faults, e, classic_group_key("g"))
        close()
        assert refused == [1]
    assert _members(e, "g") == ("Empty", [])
    _wait_for(lambda: _stored_members(e, "g") == [])
    restarted, _ = node()
    assert _members(restarted, "g") == ("Empty", [])


def test_a_refused_takeover_keeps_the_rebalance_a_librdkafka_member_waits_in(
    node: Callable[[], tuple[Engine, InProcessServer]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A classic group's leader (a raw member that does not rejoin) holds a
    rebalance open; a librdkafka classic consumer waits in it; a librdkafka
    consumer of the consumer protocol takes the group over and that write
    is refused. Right after the refusal the classic group is still in its
    rebalance with the waiting consumer (a rebuild from the state log
    dropped it, answering it NOT_COORDINATOR); the consumer-protocol
    consumer retries, takes the group over, and both end in the consumer
    group, as a restart loads it."""
    e, server = node()
    metadata = encode_subscription(Subscription([TOPIC], None, []), 1)
    leader = stable_member(
        e, "g", metadata, b"", session_timeout_ms=30_000, rebalance_timeout_ms=30_000,
        timeout=TIMEOUT,
    )  # fmt: skip
    classic = _librdkafka(
        server.bootstrap,
        **{"partition.assignment.strategy": "range", "session.timeout.ms": 30_000},
    )
    modern = None
    try:
        _wait_for(lambda: classic.poll(0.05) is None and len(_members(e, "g")[1]) == 2)
        assert _members(e, "g")[0] == "PreparingRebalance"
        seen: list[tuple[str, list[str]]] = []
        heartbeat = e.groups.consumer_group_heartbeat

        def watched(request: Heartbeat, *args: Any, **kwargs: Any) -> Future[HeartbeatResult]:
            answer = heartbeat(request, *args, **kwargs)
            if not seen:  # the refused takeover is answered at once
                seen.append(_members(e, "g"))
            return answer

        with monkeypatch.context() as faults:
            refused = _refuse_next_write_of(faults, e, consumer_group_key("g"))
            faults.setattr(e.groups, "consumer_group_heartbeat", watched)
            modern = _librdkafka(server.bootstrap, **{"group.protocol": "consumer"})
            _wait_for(lambda: modern.poll(0.05) is None and bool(seen))  # type: ignore[union-attr]
            assert refused == [1]
        state, members = seen[0]
        assert state == "PreparingRebalance" and len(members) == 2
        assert leader.member_id in members

        def both_in_the_consumer_group() -> bool:
            classic.poll(0.05)
            modern.poll(0.05)  # type: ignore[union-attr]
            (described,) = e.groups.consumer_group_describe(["g"])
            return described.error == KafkaCode.NONE and len(described.members) >= 2

        _wait_for(both_in_the_consumer_group)
    finally:
        classic.close()
        if modern is not None:
            modern.close()
