"""Embedded consumers as members of consumer groups: partitions split
between members and move when members come and go, records are delivered
once across the group with commits, auto-commit, close, the poll timeout,
static membership, the cooperative protocol, committed offsets across a
restart, and consumer lag."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.client.consumer import Consumer
from engine.clock import ManualClock
from engine.errors import FencedInstanceId, IllegalGeneration, UnknownMemberId
from engine.groups import ConsumerLag
from engine.types import ConsumerRecord, OffsetAndMetadata, TopicPartition
from tests.engine.conftest import EngineFactory

TIMEOUT = 20.0
"""How long a test waits for the group to get somewhere it must get (a hang fails)."""

FAST_GROUPS = engine.GroupConfig(
    group_min_session_timeout_ms=10, group_initial_rebalance_delay_ms=0
)
MEMBER: dict[str, Any] = {
    "auto_offset_reset": "earliest",
    "session_timeout_ms": 3000,
    "heartbeat_interval_ms": 50,
    "max_poll_interval_ms": 5000,
}


@pytest.fixture
def opened(engine_factory: EngineFactory) -> engine.Engine:
    return engine_factory(groups=FAST_GROUPS)


@pytest.fixture
def consumers() -> Iterator[list[Consumer]]:
    """Consumers a test makes: closed after it (those it did not close)."""
    made: list[Consumer] = []
    yield made
    for consumer in made:
        consumer.close()


def member(
    e: engine.Engine, made: list[Consumer], *topics: str, group: str = "g", **options: Any
) -> Consumer:
    consumer = e.consumer(*topics, group_id=group, **{**MEMBER, **options})
    made.append(consumer)
    return consumer


def produce(e: engine.Engine, topic: str, count: int, start: int = 0) -> list[bytes]:
    """``count`` records spread over the topic's partitions; their values."""
    partitions = e.partition_count(topic)
    values = [b"v%d" % i for i in range(start, start + count)]
    with e.producer() as producer:
        futures = [producer.send(topic, v, partition=i % partitions) for i, v in enumerate(values)]
        for future in futures:
            future.result(TIMEOUT)
    return values


class Group:
    """Polls its consumers in turn, as one thread serving each would, and
    keeps what each received."""

    def __init__(
        self,
        e: engine.Engine,
        consumers: dict[str, Consumer],
        group: str = "g",
        poll_timeout: float = 0.01,
    ) -> None:
        self.engine = e
        self.consumers = consumers
        self.group = group
        self.poll_timeout = poll_timeout
        """0 on a ManualClock, whose polls wait until the clock moves."""
        self.received: dict[str, list[ConsumerRecord]] = {name: [] for name in consumers}

    def poll_until(self, condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for name, consumer in self.consumers.items():
                self.received.setdefault(name, []).extend(consumer.poll(self.poll_timeout))
            if condition():
                return
            assert time.monotonic() < deadline, f"not reached in {timeout} s: {self.describe()}"

    def describe(self) -> str:
        state = self.engine.groups.describe_groups([self.group])[0]
        return f"{state.state}, " + ", ".join(
            f"{name}: {sorted(c.assignment())}" for name, c in self.consumers.items()
        )

    def is_split(self, partitions: set[TopicPartition]) -> bool:
        """Every consumer has a share, the shares are disjoint and cover
        ``partitions``, and the group is stable with exactly these members."""
        state = self.engine.groups.describe_groups([self.group])[0]
        shares = [c.assignment() for c in self.consumers.values()]
        return (
            state.state == "Stable"
            and len(state.members) == len(self.consumers)
            and all(shares)
            and sum(len(s) for s in shares) == len(partitions)
            and set().union(*shares) == partitions
        )

    def values(self) -> list[bytes]:
        return [r.value for records in self.received.values() for r in records if r.value]


def all_partitions(topic: str, count: int) -> set[TopicPartition]:
    return {TopicPartition(topic, p) for p in range(count)}


def test_two_members_split_the_partitions_and_read_each_record_once(
    opened: engine.Engine, consumers: list[Consumer]
) -> None:
    opened.create_topic("t", 4)
    sent = produce(opened, "t", 40)
    group = Group(
        opened, {"a": member(opened, consumers, "t"), "b": member(opened, consumers, "t")}
    )
    group.poll_until(lambda: group.is_split(all_partitions("t", 4)))
    assert {len(c.assignment()) for c in group.consumers.values()} == {2}
    sent += produce(opened, "t", 40, start=40)
    group.poll_until(lambda: len(group.values()) >= len(sent))
    assert Counter(group.values()) == Counter(sent)
    # Records after the split went to the partitions' owners only.
    for name, consumer in group.consumers.items():
        late = [r for r in group.received[name] if int(r.value[1:]) >= 40]  # type: ignore[index]
        assert {TopicPartition(r.topic, r.partition) for r in late} <= consumer.assignment()


def test_three_members_then_one_leaves_and_the_others_take_its_partitions(
    opened: engine.Engine, consumers: list[Consumer]
) -> None:
    opened.create_topic("t", 6)
    sent = produce(opened, "t", 60)
    group = Group(opened, {n: member(opened, consumers, "t") for n in "abc"})
    group.poll_until(lambda: group.is_split(all_partitions("t", 6)))
    assert [len(c.assignment()) for c in group.consumers.values()] == [2, 2, 2]
    group.poll_until(lambda: len(group.values()) >= len(sent))
    leaving = group.consumers.pop("c")
    left_with = leaving.assignment()
    leaving.close()  # commits what it read, then leaves: no session to wait out
    assert opened.groups.describe_groups(["g"])[0].state == "PreparingRebalance"
    group.poll_until(lambda: group.is_split(all_partitions("t", 6)), timeout=5.0)
    assert left_with <= group.consumers["a"].assignment() | group.consumers["b"].assignment()
    sent += produce(opened, "t", 60, start=60)
    group.poll_until(lambda: len(group.values()) >= len(sent))
    assert Counter(group.values()) == Counter(sent)


def test_close_commits_the_consumed_positions_and_leaves(
    opened: engine.Engine, consumers: list[Consumer]
) -> None:
    opened.create_topic("t", 2)
    produce(opened, "t", 20)
    first = member(opened, consumers, "t", auto_commit_interval_ms=60_000)
    group = Group(opened, {"first": first})
    group.poll_until(lambda: len(group.values()) == 20)
    assert first.committed(all_partitions("t", 2)) == dict.fromkeys(all_partitions("t", 2))
    first.close()
    committed = opened.groups.fetch_offsets("g", None)
    assert {tp: om.offset for tp, (om, _) in committed.items() if om} == {
        TopicPartition("t", 0): 10,
        TopicPartition("t", 1): 10,
    }
    assert opened.groups.describe_groups(["g"])[0].state == "Empty"
    sent = produce(opened, "t", 6, start=20)
    second = Group(opened, {"second": member(opened, consumers, "t")})
    second.poll_until(lambda: len(second.values()) >= 6)
    assert sorted(second.values()) == sorted(sent)


def test_close_without_auto_commit_commits_nothing(
    opened: engine.Engine, consumers: list[Consumer]
) -> None:
    opened.create_topic("t", 1)
    produce(opened, "t", 5)
    consumer = member(opened, consumers, "t", enable_auto_commit=False)
    group = Group(opened, {"c": consumer})
    group.poll_until(lambda: len(group.values()) == 5)
    consumer.close()
    assert opened.groups.fetch_offsets("g", None) == {}


def wait_committed(consumer: Consumer, tp: TopicPartition, offset: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while (found := consumer.committed([tp])[tp]) is None or found.offset != offset:
        assert time.monotonic() < deadline, f"committed {found}, not {offset}"
        time.sleep(0.01)


def test_auto_commit_commits_at_the_next_poll_what_poll_handed_out(
    engine_factory: EngineFactory, consumers: list[Consumer]
) -> None:
    clock = ManualClock()  # the auto-commit interval runs on the engine's clock
    opened = engine_factory(groups=FAST_GROUPS, clock=clock)
    opened.create_topic("t", 1)
    produce(opened, "t", 10)
    tp = TopicPartition("t", 0)
    consumer = member(opened, consumers, "t", auto_commit_interval_ms=60_000)
    deadline = time.monotonic() + TIMEOUT
    handed_out: list[ConsumerRecord] = []
    while not handed_out:
        handed_out = consumer.poll(0, max_records=4)
        assert time.monotonic() < deadline
    assert [r.offset for r in handed_out] == [0, 1, 2, 3]
    assert consumer.committed([tp])[tp] is None
    clock.advance(60)
    # This poll commits the four handed out before it, not the one it hands out.
    assert [r.offset for r in consumer.poll(0, max_records=1)] == [4]
    wait_committed(consumer, tp, 4)
    consumer.poll(0, max_records=1)  # within the interval: no commit
    clock.advance(60)
    consumer.poll(0, max_records=1)
    wait_committed(consumer, tp, 6)


def test_no_auto_commit_before_its_interval(
    opened: engine.Engine, consumers: list[Consumer]
) -> None:
    opened.create_topic("t", 1)
    produce(opened, "t", 3)
    consumer = member(opened, consumers, "t", auto_commit_interval_ms=60_000)
    group = Group(opened, {"c": consumer})
    group.poll_until(lambda: len(group.values()) == 3)
    consumer.poll(0)
    assert consumer.committed([("t", 0)]) == {TopicPartition("t", 0): None}


class Calls:
    """Records a consumer's rebalance callbacks."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[TopicPartition]]] = []

    def options(self) -> dict[str, Any]:
        return {
            "on_assign": lambda c, parts: self.calls.append(("assign", parts)),
            "on_revoke": lambda c, parts: self.calls.append(("revoke", parts)),
            "on_lost": lambda c, parts: self.calls.append(("lost", parts)),
        }

    def of(self, kind: str) -> list[list[TopicPartition]]:
        return [parts for name, parts in self.calls if name == kind]


def test_a_member_that_stops_polling_loses_its_partitions(
    opened: engine.Engine, consumers: list[Consumer]
) -> None:
    opened.create_topic("t", 4)
    calls = Calls()
    slow = member(opened, consumers, "t", max_poll_interval_ms=500, **calls.options())
    busy = member(opened, consumers, "t", max_poll_interval_ms=500)
    group = Group(opened, {"slow": slow, "busy": busy})
    group.poll_until(lambda: group.is_split(all_partitions("t", 4)))
    held = slow.assignment()
    calls.calls.clear()
    # Only "busy" polls now: "slow" leaves the group once 500 ms pass.
    only_busy = Group(opened, {"busy": busy})
    only_busy.poll_until(lambda: busy.assignment() == all_partitions("t", 4), timeout=5.0)
    assert calls.of("lost") == [] and slow.assignment() == held
    # Its next poll learns the partitions are lost (not revoked), and it rejoins.
    group.poll_until(lambda: group.is_split(all_partitions("t", 4)))
    assert calls.of("lost") == [sorted(held)]
    assert calls.of("revoke") == []


def test_a_static_member_comes_back_without_a_rebalance(
    opened: engine.Engine, consumers: list[Consumer]
) -> None:
    opened.create_topic("t", 4)
    stays_calls = Calls()
    first = member(opened, consumers, "t", group_instance_id="first")
    stays = member(opened, consumers, "t", group_instance_id="stays", **stays_calls.options())
    group = Group(opened, {"first": first, "stays": stays})
    group.poll_until(lambda: group.is_split(all_partitions("t", 4)))
    generation = stays.group_metadata().generation_id
    held = first.assignment()
    before = list(stays_calls.calls)
    first.close()  # a static member does not leave: its session holds its place
    after_close = opened.groups.describe_groups(["g"])[0]
    assert after_close.state == "Stable" and len(after_close.members) == 2
    back = member(opened, consumers, "t", group_instance_id="first")
    group = Group(opened, {"back": back, "stays": stays})
    group.poll_until(lambda: back.assignment() == held)
    described = opened.groups.describe_groups(["g"])[0]
    assert described.state == "Stable"
    assert {m.group_instance_id for m in described.members} == {"first", "stays"}
    assert stays_calls.calls == before  # "stays" saw no rebalance
    assert stays.group_metadata().generation_id == generation
    assert back.group_metadata().generation_id == generation


def test_a_second_member_with_the_same_instance_id_fences_the_first(
    opened: engine.Engine, consumers: list[Consumer]
) -> None:
    opened.create_topic("t", 2)
    first = member(opened, consumers, "t", group_instance_id="same")
    Group(opened, {"first": first}).poll_until(lambda: len(first.assignment()) == 2)
    second = member(opened, consumers, "t", group_instance_id="same")
    Group(opened, {"second": second}).poll_until(lambda: len(second.assignment()) == 2)
    deadline = time.monotonic() + TIMEOUT
    with pytest.raises(FencedInstanceId):
        while time.monotonic() < deadline:  # its next heartbeat learns it
            first.poll(0.05)


def test_a_member_removed_from_the_group_loses_its_partitions_and_rejoins(
    opened: engine.Engine, consumers: list[Consumer]
) -> None:
    opened.create_topic("t", 2)
    calls = Calls()
    consumer = member(opened, consumers, "t", group_instance_id="x", **calls.options())
    group = Group(opened, {"x": consumer})
    group.poll_until(lambda: group.is_split(all_partitions("t", 2)))
    removed = consumer.group_metadata()
    calls.calls.clear()
    # An administrator removes the static member (KIP-345): its next
    # heartbeat is answered UNKNOWN_MEMBER_ID.
    assert opened.groups.leave_group("g", [("", "x")], "removed by an administrator").result(
        10
    ).members == [0]
    group.poll_until(lambda: calls.of("lost") != [] and group.is_split(all_partitions("t", 2)))
    assert calls.of("lost") == [sorted(all_partitions("t", 2))]
    assert calls.of("revoke") == []
    rejoined = consumer.group_metadata()
    assert rejoined.member_id != removed.member_id
    assert rejoined.generation_id > removed.generation_id


def test_cooperative_sticky_revokes_only_the_partitions_that_move(
    opened: engine.Engine, consumers: list[Consumer]
) -> None:
    opened.create_topic("t", 6)
    sent = produce(opened, "t", 60)
    calls = {name: Calls() for name in "abc"}
    options = {"partition_assignment_strategy": ["cooperative-sticky"]}
    a = member(opened, consumers, "t", **options, **calls["a"].options())
    b = member(opened, consumers, "t", **options, **calls["b"].options())
    group = Group(opened, {"a": a, "b": b})
    group.poll_until(lambda: group.is_split(all_partitions("t", 6)))
    before = {"a": a.assignment(), "b": b.assignment()}
    assert [len(p) for p in before.values()] == [3, 3]
    for name in "ab":
        calls[name].calls.clear()
    c = member(opened, consumers, "t", **options, **calls["c"].options())
    group.consumers["c"] = c
    group.poll_until(lambda: group.is_split(all_partitions("t", 6)))
    for name in "ab":
        revoked = [tp for parts in calls[name].of("revoke") for tp in parts]
        kept = group.consumers[name].assignment()
        assert len(revoked) == 1 and len(kept) == 2
        assert set(revoked) | kept == before[name]  # only the moving one was revoked
        assert all(parts == [] for parts in calls[name].of("assign"))
    assert sorted(tp for parts in calls["c"].of("assign") for tp in parts) == sorted(c.assignment())
    sent += produce(opened, "t", 60, start=60)
    group.poll_until(lambda: len(group.values()) >= len(sent))
    assert Counter(group.values()) == Counter(sent)


def test_the_leader_rebalances_when_a_topic_grows(
    opened: engine.Engine, consumers: list[Consumer]
) -> None:
    opened.create_topic("t", 2)
    group = Group(opened, {n: member(opened, consumers, "t") for n in "ab"})
    group.poll_until(lambda: group.is_split(all_partitions("t", 2)))
    opened.create_partitions("t", 4)
    group.poll_until(lambda: group.is_split(all_partitions("t", 4)))


def test_a_subscription_change_rejoins_with_the_new_topics(
    opened: engine.Engine, consumers: list[Consumer]
) -> None:
    opened.create_topic("t", 2)
    opened.create_topic("u", 2)
    consumer = member(opened, consumers, "t")
    group = Group(opened, {"c": consumer})
    group.poll_until(lambda: consumer.assignment() == all_partitions("t", 2))
    consumer.subscribe(["u"])
    group.poll_until(lambda: consumer.assignment() == all_partitions("u", 2))
    assert opened.groups.subscribed_topics("g") == {"u"}


def test_committed_offsets_survive_a_restart_and_members_resume_from_them(
    engine_factory: EngineFactory, tmp_path: Path
) -> None:
    first = engine_factory(tmp_path / "node", groups=FAST_GROUPS)
    first.create_topic("t", 2)
    produce(first, "t", 20)
    consumer = first.consumer("t", group_id="g", enable_auto_commit=False, **MEMBER)
    group = Group(first, {"c": consumer})
    group.poll_until(lambda: len(group.values()) == 20)
    committed = consumer.commit({("t", 0): 4, ("t", 1): OffsetAndMetadata(7, metadata="at 7")})
    assert committed[TopicPartition("t", 1)].metadata == "at 7"
    consumer.close()
    first.close()

    second = engine_factory(tmp_path / "node", groups=FAST_GROUPS)
    again = second.consumer("t", group_id="g", enable_auto_commit=False, **MEMBER)
    try:
        found = again.committed([("t", 0), ("t", 1)])
        assert {tp: (om.offset, om.metadata) for tp, om in found.items() if om} == {
            TopicPartition("t", 0): (4, ""),
            TopicPartition("t", 1): (7, "at 7"),
        }
        resumed = Group(second, {"again": again})
        resumed.poll_until(lambda: len(resumed.values()) == (10 - 4) + (10 - 7))
        offsets = sorted((r.partition, r.offset) for r in resumed.received["again"])
        assert offsets == [(0, o) for o in range(4, 10)] + [(1, o) for o in range(7, 10)]
    finally:
        again.close()


def test_consumer_lag_before_and_after_commits(
    opened: engine.Engine, consumers: list[Consumer]
) -> None:
    opened.create_topic("t", 3)
    produce(opened, "t", 30)
    consumer = member(opened, consumers, "t", enable_auto_commit=False)
    group = Group(opened, {"c": consumer})
    group.poll_until(lambda: consumer.assignment() == all_partitions("t", 3))
    tps = sorted(all_partitions("t", 3))
    assert opened.consumer_lag("g") == dict.fromkeys(tps, ConsumerLag(None, 10, None))
    consumer.commit({tps[0]: 10, tps[1]: 3})
    assert opened.consumer_lag("g") == {
        tps[0]: ConsumerLag(10, 10, 0),
        tps[1]: ConsumerLag(3, 10, 7),
        tps[2]: ConsumerLag(None, 10, None),
    }
    produce(opened, "t", 3, start=30)  # one more record in each partition
    group.poll_until(lambda: len(group.values()) == 33)
    consumer.commit()
    assert opened.consumer_lag("g") == dict.fromkeys(tps, ConsumerLag(11, 11, 0))


def test_commit_after_the_group_moved_on_is_refused(
    engine_factory: EngineFactory, consumers: list[Consumer]
) -> None:
    clock = ManualClock()  # the member's poll timeout runs on the engine's clock
    opened = engine_factory(groups=FAST_GROUPS, clock=clock)
    opened.create_topic("t", 2)
    slow = member(
        opened,
        consumers,
        "t",
        max_poll_interval_ms=60_000,
        session_timeout_ms=600_000,  # the session outlives the poll timeout
        enable_auto_commit=False,
    )
    group = Group(opened, {"slow": slow}, poll_timeout=0)
    group.poll_until(lambda: len(slow.assignment()) == 2)
    clock.advance(61)  # past the poll timeout: the member leaves the group
    deadline = time.monotonic() + TIMEOUT
    while slow.group_metadata().generation_id >= 0:
        assert time.monotonic() < deadline, "the member never left"
        time.sleep(0.01)
    with pytest.raises((UnknownMemberId, IllegalGeneration)):
        slow.commit({("t", 0): 1})
    assert slow.committed([("t", 0)]) == {TopicPartition("t", 0): None}


def test_a_poll_timeout_runs_on_the_engine_clock(
    engine_factory: EngineFactory, consumers: list[Consumer]
) -> None:
    clock = ManualClock()
    opened = engine_factory(clock=clock)
    opened.create_topic("t", 1)
    consumer = opened.consumer(auto_offset_reset="earliest")
    consumers.append(consumer)
    consumer.assign([("t", 0)])
    polled: list[list[ConsumerRecord]] = []
    poller = threading.Thread(target=lambda: polled.append(consumer.poll(timeout=3600)))
    poller.start()
    deadline = time.monotonic() + TIMEOUT
    while not opened._waiters.sync_waiters:
        assert time.monotonic() < deadline, "the poll never waited"
        time.sleep(0.01)
    clock.advance(3600)
    poller.join(TIMEOUT)
    assert not poller.is_alive(), "an hour passed on the clock, and the poll still waits"
    assert polled == [[]]


def test_linger_and_delivery_timeouts_run_on_the_engine_clock(
    engine_factory: EngineFactory,
) -> None:
    clock = ManualClock()
    opened = engine_factory(clock=clock)
    opened.create_topic("t", 1)
    with opened.producer(linger_ms=3_600_000) as producer:
        future = producer.send("t", b"v")
        waited: list[BaseException] = []

        def wait_briefly() -> None:
            try:
                future.result(timeout=1)
            except TimeoutError as error:
                waited.append(error)

        waiter = threading.Thread(target=wait_briefly)
        waiter.start()
        deadline = time.monotonic() + TIMEOUT
        while waiter.is_alive():  # a second at a time, however soon the wait began
            assert time.monotonic() < deadline, "the delivery wait never timed out"
            clock.advance(1)
            waiter.join(0.05)
        assert len(waited) == 1  # the wait timed out, the batch still lingers
        assert opened.offsets("t", 0) == (0, 0)
        clock.advance(3600)  # linger.ms is over: the batch goes
        assert future.result(timeout=TIMEOUT) == (0, 0)


def test_a_manually_assigned_consumer_commits_from_outside_the_group(
    opened: engine.Engine, consumers: list[Consumer]
) -> None:
    opened.create_topic("t", 1)
    produce(opened, "t", 5)
    manual = opened.consumer(group_id="g", **MEMBER)
    consumers.append(manual)
    manual.assign([("t", 0)])
    got = Group(opened, {"manual": manual})
    got.poll_until(lambda: len(got.values()) == 5)
    manual.commit()
    manual.close()
    # A new consumer of the group starts from that commit.
    produce(opened, "t", 2, start=5)
    later = opened.consumer(group_id="g", **MEMBER)
    consumers.append(later)
    later.assign([("t", 0)])
    rest = Group(opened, {"later": later})
    rest.poll_until(lambda: len(rest.values()) == 2)
    assert [r.offset for r in rest.received["later"]] == [5, 6]


def test_members_poll_and_commit_with_asyncio(
    opened: engine.Engine, consumers: list[Consumer]
) -> None:
    opened.create_topic("t", 4)
    sent = produce(opened, "t", 40)
    a = member(opened, consumers, "t", enable_auto_commit=False)
    b = member(opened, consumers, "t", enable_auto_commit=False)

    async def run(consumer: Consumer, seen: list[bytes], stop: asyncio.Event) -> None:
        while not stop.is_set():
            records = await consumer.poll_async(0.05)
            seen += [r.value for r in records if r.value]
            if records:
                await consumer.commit_async()

    async def main() -> tuple[list[bytes], list[bytes]]:
        seen_a: list[bytes] = []
        seen_b: list[bytes] = []
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(run(a, seen_a, stop)),
            asyncio.create_task(run(b, seen_b, stop)),
        ]
        deadline = time.monotonic() + TIMEOUT
        while not (a.assignment() and b.assignment() and len(seen_a) + len(seen_b) >= 40):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.gather(*tasks)
        return seen_a, seen_b

    seen_a, seen_b = asyncio.run(main())
    assert Counter(seen_a + seen_b) == Counter(sent)
    assert a.assignment().isdisjoint(b.assignment())
    lag = opened.consumer_lag("g")
    assert all(entry.lag == 0 for entry in lag.values()), lag


def test_the_documented_group_example_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "engine.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    source = next(block for block in blocks if "def audit(" in block)
    namespace: dict[str, Any] = {"__name__": "example"}
    exec(compile(source, str(doc), "exec"), namespace)
    lag = namespace["audit"](str(tmp_path / "data"))
    assert sum(entry.high_watermark for entry in lag.values()) == 100
    assert all(entry.lag == 0 for entry in lag.values()), lag
    printed = capsys.readouterr().out
    assert "now reading" in printed and "OffsetAndMetadata(offset=" in printed
