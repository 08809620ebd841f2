"""The group coordinator through its Python API, no sockets: membership
(join, sync, heartbeat, leave, generations, KIP-394, static membership,
sessions, rebalance timeouts, protocol selection), committed offsets,
retention, durability across restarts and on a fresh machine, and
offsets committed in transactions."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from kio.schema.consumer_protocol_subscription.v1 import ConsumerProtocolSubscription
from kio.serial import entity_writer

import engine
from engine.clock import SYSTEM, Clock, ManualClock
from engine.errors import (
    EngineClosed,
    GroupCoordinatorClosed,
    GroupIdNotFound,
    InvalidGroupId,
    NonEmptyGroup,
    NotCoordinator,
)
from engine.groups import GroupCoordinator, JoinResult, SyncResult
from engine.groups.records import read_state
from engine.protocol.kafka_code import KafkaCode
from engine.types import OffsetAndMetadata, TopicPartition
from tests.engine.conftest import EngineFactory
from tests.engine.held_answers import deletions_never_written, never_answered

E = KafkaCode
TIMEOUT = 30.0
"""How long a test waits for an answer that must come (a hang fails)."""

FAST_GROUPS: dict[str, Any] = {
    "group_min_session_timeout_ms": 10,
    "group_initial_rebalance_delay_ms": 0,
}
RANGE = [("range", b"range-metadata")]


@pytest.fixture
def open_engine(engine_factory: EngineFactory) -> Callable[..., engine.Engine]:
    """An engine with fast group settings (overridable: GroupConfig's fields),
    on ``clock``, and a topic "t" of 4 partitions."""

    def make(clock: Clock = SYSTEM, **settings: Any) -> engine.Engine:
        opened = engine_factory(
            clock=clock, groups=engine.GroupConfig(**{**FAST_GROUPS, **settings})
        )
        if "t" not in opened.list_topics():
            opened.create_topic("t", 4)
        return opened

    return make


def subscription(*topics: str) -> bytes:
    """A consumer's JoinGroup metadata (ConsumerProtocolSubscription v1)."""
    out = io.BytesIO()
    out.write((1).to_bytes(2, "big"))
    entity = ConsumerProtocolSubscription(topics=topics, user_data=None, owned_partitions=())
    entity_writer(ConsumerProtocolSubscription)(out, entity)
    return out.getvalue()


def join(
    groups: GroupCoordinator,
    member_id: str = "",
    *,
    group: str = "g",
    protocols: Sequence[tuple[str, bytes]] = RANGE,
    protocol_type: str = "consumer",
    session_ms: int = 10_000,
    rebalance_ms: int = 5_000,
    instance: str | None = None,
    require_known: bool = False,
) -> Future[JoinResult]:
    return groups.join_group(
        group,
        member_id,
        instance,
        protocol_type,
        protocols,
        session_ms,
        rebalance_ms,
        client_id="client",
        client_host="/127.0.0.1",
        require_known_member_id=require_known,
    )


def join_together(
    groups: GroupCoordinator, options: Sequence[dict[str, Any]]
) -> list[Future[JoinResult]]:
    """Joins that all reach the group before its next generation starts,
    with no initial delay: the coordinator's timers need its lock, held
    here while the joins are made."""
    with groups._locked():
        return [join(groups, **option) for option in options]


def joined(future: Future[JoinResult]) -> JoinResult:
    result = future.result(TIMEOUT)
    assert result.error == E["NONE"], result
    return result


def sync(
    groups: GroupCoordinator,
    result: JoinResult,
    assignments: dict[str, bytes] | None = None,
    *,
    group: str = "g",
    instance: str | None = None,
) -> Future[SyncResult]:
    return groups.sync_group(
        group,
        result.generation_id,
        result.member_id,
        instance,
        result.protocol_type,
        result.protocol_name,
        assignments or {},
    )


def stable_group(
    groups: GroupCoordinator, count: int, **options: Any
) -> tuple[list[JoinResult], dict[str, bytes]]:
    """``count`` members joined at once and synced: their join results
    (the leader first) and the assignment each got."""
    futures = join_together(groups, [options] * count)
    results = [joined(f) for f in futures]
    assert len({r.generation_id for r in results}) == 1
    leader = next(r for r in results if r.member_id == r.leader)
    followers = [r for r in results if r is not leader]
    assignments = {m.member_id: f"assigned-{m.member_id}".encode() for m in leader.members}
    pending = [sync(groups, r, group=options.get("group", "g")) for r in followers]
    leader_sync = sync(groups, leader, assignments, group=options.get("group", "g"))
    for future in [leader_sync, *pending]:
        assert future.result(TIMEOUT).error == E["NONE"]
    return [leader, *followers], assignments


def wait_for(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.005)


def advance_until(clock: ManualClock, condition: Callable[[], bool], step_s: float = 0.05) -> None:
    """Moves virtual time on in steps until ``condition`` holds; the timer
    thread reacts to each step on its own, so real time passes only for that."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        clock.advance(step_s)
        time.sleep(0.001)


def commit(
    groups: GroupCoordinator,
    offsets: dict[TopicPartition, int],
    *,
    group: str = "g",
    generation: int = -1,
    member: str = "",
    instance: str | None = None,
    retention_ms: int = -1,
) -> dict[TopicPartition, int]:
    future = groups.commit_offsets(
        group,
        generation,
        member,
        instance,
        {tp: OffsetAndMetadata(offset, 3, f"m{offset}") for tp, offset in offsets.items()},
        retention_ms,
    )
    return future.result(TIMEOUT)


def committed(groups: GroupCoordinator, group: str = "g") -> dict[TopicPartition, int]:
    return {
        tp: found.offset
        for tp, (found, error) in groups.fetch_offsets(group, None).items()
        if found is not None and error == E["NONE"]
    }


TP0, TP1, TP2, TP3 = (TopicPartition("t", i) for i in range(4))


# -- membership ----------------------------------------------------------------------------


def test_a_member_joins_syncs_heartbeats_and_leaves(open_engine: Callable[..., Any]) -> None:
    groups = open_engine().groups
    first = join(groups, require_known=True).result(TIMEOUT)
    assert first.error == E["MEMBER_ID_REQUIRED"]  # KIP-394
    assert first.member_id.startswith("client-")
    assert groups.list_groups()[0].state == "Empty"  # a pending member is not a member yet

    result = joined(join(groups, first.member_id, require_known=True))
    assert result.member_id == first.member_id == result.leader
    assert result.generation_id == 1
    assert (result.protocol_type, result.protocol_name) == ("consumer", "range")
    assert [(m.member_id, m.metadata) for m in result.members] == [
        (first.member_id, b"range-metadata")
    ]
    assert groups.describe_groups(["g"])[0].state == "CompletingRebalance"

    synced = sync(groups, result, {result.member_id: b"mine", "stranger": b"x"}).result(TIMEOUT)
    assert synced == SyncResult(E["NONE"], "consumer", "range", b"mine")
    described = groups.describe_groups(["g"])[0]
    assert described.state == "Stable"
    assert described.protocol_name == "range"
    assert [(m.member_id, m.metadata, m.assignment) for m in described.members] == [
        (result.member_id, b"range-metadata", b"mine")
    ]
    assert groups.heartbeat("g", 1, result.member_id, None) == E["NONE"]
    assert groups.heartbeat("g", 0, result.member_id, None) == E["ILLEGAL_GENERATION"]
    assert groups.heartbeat("g", 1, "nobody", None) == E["UNKNOWN_MEMBER_ID"]
    assert groups.heartbeat("nope", 1, result.member_id, None) == E["UNKNOWN_MEMBER_ID"]

    left = groups.leave_group("g", [(result.member_id, None), ("nobody", None)]).result(10)
    assert left.members == [
        E["NONE"],
        E["UNKNOWN_MEMBER_ID"],
    ]
    described = groups.describe_groups(["g"])[0]
    assert (described.state, described.members) == ("Empty", [])
    assert groups.heartbeat("g", 1, result.member_id, None) == E["UNKNOWN_MEMBER_ID"]
    # The next generation starts where the empty one left off.
    assert joined(join(groups)).generation_id == 3


def test_a_second_member_rebalances_the_group(open_engine: Callable[..., Any]) -> None:
    groups = open_engine().groups
    (first,), _ = stable_group(groups, 1)
    second_join = join(groups, protocols=[("range", b"second")])
    assert not second_join.done()  # it waits for the first member to rejoin
    assert groups.heartbeat("g", 1, first.member_id, None) == E["REBALANCE_IN_PROGRESS"]
    # Committing for the generation being replaced is still allowed.
    assert commit(groups, {TP0: 5}, generation=1, member=first.member_id) == {TP0: E["NONE"]}

    rejoin = joined(join(groups, first.member_id))
    second = joined(second_join)
    assert rejoin.generation_id == second.generation_id == 2
    assert rejoin.leader == second.leader == first.member_id
    assert {m.member_id: m.metadata for m in rejoin.members} == {
        first.member_id: b"range-metadata",
        second.member_id: b"second",
    }
    assert second.members == []

    follower_sync = sync(groups, second)
    assert not follower_sync.done()  # waits for the leader's assignment
    # In CompletingRebalance a member's commit is refused until it has its assignment.
    assert commit(groups, {TP0: 6}, generation=2, member=second.member_id) == {
        TP0: E["REBALANCE_IN_PROGRESS"]
    }
    leader_sync = sync(groups, rejoin, {first.member_id: b"a", second.member_id: b"b"})
    assert leader_sync.result(TIMEOUT).assignment == b"a"
    assert follower_sync.result(TIMEOUT).assignment == b"b"
    assert sync(groups, rejoin).result(TIMEOUT).assignment == b"a"  # stable: the same again
    assert groups.heartbeat("g", 1, first.member_id, None) == E["ILLEGAL_GENERATION"]
    assert commit(groups, {TP0: 7}, generation=1, member=first.member_id) == {
        TP0: E["ILLEGAL_GENERATION"]
    }


def test_the_initial_delay_collects_members_into_one_generation(
    open_engine: Callable[..., Any],
) -> None:
    clock = ManualClock()
    start = clock.monotonic()
    groups = open_engine(group_initial_rebalance_delay_ms=300, clock=clock).groups
    first = join(groups, rebalance_ms=10_000)
    clock.advance(0.2)
    second = join(groups, rebalance_ms=10_000)  # extends the delay
    clock.advance(0.2)  # past the first delay, not the extended one
    assert not first.done()
    advance_until(clock, first.done)
    assert clock.monotonic() - start < 10  # done by the delays, not the rebalance timeout
    results = [joined(first), joined(second)]
    assert [r.generation_id for r in results] == [1, 1]
    assert len(next(r for r in results if r.members).members) == 2


def test_members_that_do_not_rejoin_in_the_rebalance_timeout_are_removed(
    open_engine: Callable[..., Any],
) -> None:
    groups = open_engine().groups
    (leader, follower), _ = stable_group(groups, 2, rebalance_ms=200)
    newcomer = join(groups, rebalance_ms=200)
    rejoined = join(groups, leader.member_id, rebalance_ms=200)
    results = [joined(newcomer), joined(rejoined)]  # the follower never rejoins
    assert {r.generation_id for r in results} == {2}
    members = {m.member_id for m in next(r for r in results if r.members).members}
    assert members == {leader.member_id, results[0].member_id}
    assert groups.heartbeat("g", 2, follower.member_id, None) == E["UNKNOWN_MEMBER_ID"]


def test_a_pending_member_that_never_joins_expires(open_engine: Callable[..., Any]) -> None:
    groups = open_engine().groups
    (member,), _ = stable_group(groups, 1, rebalance_ms=200)
    pending = join(groups, require_known=True, session_ms=50).result(TIMEOUT)
    assert pending.error == E["MEMBER_ID_REQUIRED"]
    # The leader rejoins; the rebalance waits for the pending member until
    # its session ends, then completes without it.
    result = joined(join(groups, member.member_id, rebalance_ms=200))
    assert result.generation_id == 2
    assert [m.member_id for m in result.members] == [member.member_id]
    late = join(groups, pending.member_id, require_known=True).result(TIMEOUT)
    assert late.error == E["UNKNOWN_MEMBER_ID"]


def test_a_member_whose_session_expires_is_removed(open_engine: Callable[..., Any]) -> None:
    clock = ManualClock()
    groups = open_engine(clock=clock).groups
    (leader, follower), _ = stable_group(groups, 2, session_ms=150)
    # The leader heartbeats, the follower is gone.
    clock.advance(0.1)
    assert groups.heartbeat("g", 1, leader.member_id, None) == E["NONE"]
    assert len(groups.describe_groups(["g"])[0].members) == 2  # both within their sessions
    clock.advance(0.1)  # past the follower's session, within the leader's renewed one
    wait_for(lambda: len(groups.describe_groups(["g"])[0].members) == 1)
    assert groups.heartbeat("g", 1, leader.member_id, None) == E["REBALANCE_IN_PROGRESS"]
    result = joined(join(groups, leader.member_id, session_ms=150))
    assert result.generation_id == 2
    assert [m.member_id for m in result.members] == [leader.member_id]
    assert groups.heartbeat("g", 2, follower.member_id, None) == E["UNKNOWN_MEMBER_ID"]


def test_a_member_that_never_syncs_is_removed(open_engine: Callable[..., Any]) -> None:
    # Virtual time: on the system clock a loaded machine could let the
    # 150 ms run out before the leader's own sync arrived.
    clock = ManualClock()
    groups = open_engine(clock=clock).groups
    futures = join_together(groups, [{"rebalance_ms": 150}] * 2)
    results = [joined(f) for f in futures]
    leader = next(r for r in results if r.members)
    follower = next(r for r in results if not r.members)
    assert sync(groups, leader, {}).result(TIMEOUT).error == E["NONE"]
    assert len(groups.describe_groups(["g"])[0].members) == 2
    # The follower never syncs: after the rebalance timeout it is out.
    advance_until(clock, lambda: len(groups.describe_groups(["g"])[0].members) == 1, 0.02)
    assert groups.heartbeat("g", 1, follower.member_id, None) == E["UNKNOWN_MEMBER_ID"]


def test_the_protocol_is_the_one_most_members_prefer(open_engine: Callable[..., Any]) -> None:
    groups = open_engine().groups
    options = [
        [("range", b"1"), ("roundrobin", b"1")],
        [("range", b"2"), ("roundrobin", b"2")],
        [("roundrobin", b"3"), ("range", b"3")],
    ]
    results = [joined(f) for f in join_together(groups, [{"protocols": p} for p in options])]
    assert {r.protocol_name for r in results} == {"range"}
    leader = next(r for r in results if r.members)
    assert sorted(m.metadata for m in leader.members) == [b"1", b"2", b"3"]

    other = [[("a", b""), ("b", b"")], [("b", b""), ("c", b"")]]
    together = join_together(groups, [{"group": "h", "protocols": p} for p in other])
    results = [joined(f) for f in together]
    assert {r.protocol_name for r in results} == {"b"}  # the only one both support


def test_inconsistent_protocols_and_bad_requests_are_refused(
    open_engine: Callable[..., Any],
) -> None:
    groups = open_engine().groups
    stable_group(groups, 1)
    assert (
        join(groups, protocols=[("sticky", b"")]).result(TIMEOUT).error
        == (E["INCONSISTENT_GROUP_PROTOCOL"])
    )
    assert (
        join(groups, protocol_type="connect").result(TIMEOUT).error
        == (E["INCONSISTENT_GROUP_PROTOCOL"])
    )
    assert (
        join(groups, group="new", protocols=[]).result(TIMEOUT).error
        == (E["INCONSISTENT_GROUP_PROTOCOL"])
    )
    assert (
        join(groups, group="new", session_ms=5).result(TIMEOUT).error
        == (E["INVALID_SESSION_TIMEOUT"])
    )
    assert (
        join(groups, group="new", session_ms=1_800_001).result(TIMEOUT).error
        == (E["INVALID_SESSION_TIMEOUT"])
    )
    assert join(groups, group="").result(TIMEOUT).error == E["INVALID_GROUP_ID"]
    assert join(groups, "made-up", group="new").result(TIMEOUT).error == E["UNKNOWN_MEMBER_ID"]
    assert [listing.group_id for listing in groups.list_groups()] == ["g"]  # none of these stay
    with pytest.raises(InvalidGroupId):
        groups.leave_group("", [("m", None)])


def test_a_full_group_refuses_new_members(open_engine: Callable[..., Any]) -> None:
    groups = open_engine(group_max_size=2).groups
    stable_group(groups, 2)
    refused = join(groups).result(TIMEOUT)
    assert refused.error == E["GROUP_MAX_SIZE_REACHED"]
    assert len(groups.describe_groups(["g"])[0].members) == 2


def test_concurrent_joins_from_threads_form_one_generation(
    open_engine: Callable[..., Any],
) -> None:
    groups = open_engine(group_initial_rebalance_delay_ms=400).groups
    results: list[JoinResult] = []
    barrier = threading.Barrier(8)

    def member() -> None:
        barrier.wait()
        results.append(joined(join(groups, rebalance_ms=10_000)))

    threads = [threading.Thread(target=member) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert len(results) == 8
    assert {r.generation_id for r in results} == {1}
    assert len({r.member_id for r in results}) == 8
    assert sum(1 for r in results if r.members) == 1


# -- static membership ----------------------------------------------------------------------


def test_a_static_member_rejoins_without_a_rebalance(open_engine: Callable[..., Any]) -> None:
    groups = open_engine().groups
    # Static members need no KIP-394 round.
    static_join, dynamic_join = join_together(groups, [{"instance": "i-1"}, {}])
    static, dynamic = joined(static_join), joined(dynamic_join)
    gen = static.generation_id
    leader, follower = (static, dynamic) if static.members else (dynamic, static)
    instances = {static.member_id: "i-1", dynamic.member_id: None}
    follower_sync = sync(groups, follower, instance=instances[follower.member_id])
    assignments = {static.member_id: b"static-part", dynamic.member_id: b"dynamic-part"}
    sync(groups, leader, assignments, instance=instances[leader.member_id]).result(TIMEOUT)
    follower_sync.result(TIMEOUT)

    # The static member restarts: a new member id for the same instance id.
    again = joined(join(groups, instance="i-1"))
    assert again.member_id != static.member_id
    assert again.generation_id == gen
    assert again.leader == leader.member_id  # the old leader id: it does not assign
    assert again.members == []
    assert groups.describe_groups(["g"])[0].state == "Stable"
    assert groups.heartbeat("g", gen, dynamic.member_id, None) == E["NONE"]  # no rebalance
    got = groups.sync_group("g", gen, again.member_id, "i-1", None, None, {}).result(TIMEOUT)
    assert got.assignment == b"static-part"
    # The old member id is fenced.
    assert groups.heartbeat("g", gen, static.member_id, "i-1") == E["FENCED_INSTANCE_ID"]
    old_join = join(groups, static.member_id, instance="i-1").result(TIMEOUT)
    assert old_join.error == E["FENCED_INSTANCE_ID"]
    fenced = commit(groups, {TP0: 1}, generation=gen, member=static.member_id, instance="i-1")
    assert fenced == {TP0: E["FENCED_INSTANCE_ID"]}
    assert groups.leave_group("g", [(static.member_id, "i-1")]).result(10).members == [
        E["FENCED_INSTANCE_ID"]
    ]
    # An administrator removes it by instance id alone.
    assert groups.leave_group("g", [("", "i-1")]).result(10).members == [E["NONE"]]
    assert groups.heartbeat("g", gen, dynamic.member_id, None) == E["REBALANCE_IN_PROGRESS"]


def test_a_static_member_with_new_protocols_rebalances(open_engine: Callable[..., Any]) -> None:
    groups = open_engine().groups
    first = joined(join(groups, instance="i-1", protocols=[("range", b""), ("rr", b"")]))
    sync(groups, first, {first.member_id: b"x"}, instance="i-1").result(TIMEOUT)
    again = joined(join(groups, instance="i-1", protocols=[("rr", b"")]))
    assert again.generation_id == 2
    assert again.protocol_name == "rr"


# -- offsets --------------------------------------------------------------------------------


def test_offsets_are_committed_fetched_and_deleted(open_engine: Callable[..., Any]) -> None:
    groups = open_engine(offset_metadata_max_bytes=8).groups
    results = commit(groups, {TP0: 10, TP1: 20, TopicPartition("t", 9): 1})
    assert results == {
        TP0: E["NONE"],
        TP1: E["NONE"],
        TopicPartition("t", 9): E["UNKNOWN_TOPIC_OR_PARTITION"],
    }
    assert commit(groups, {TopicPartition("nope", 0): 1}) == {
        TopicPartition("nope", 0): E["UNKNOWN_TOPIC_OR_PARTITION"]
    }
    fetched = groups.fetch_offsets("g", [TP0, TP2])
    assert fetched[TP2] == (None, E["NONE"])
    found, error = fetched[TP0]
    assert error == E["NONE"]
    assert found is not None
    assert (found.offset, found.leader_epoch, found.metadata) == (10, 3, "m10")
    assert found.commit_timestamp > 0
    assert committed(groups) == {TP0: 10, TP1: 20}
    too_long = groups.commit_offsets("g", -1, "", None, {TP2: OffsetAndMetadata(1, -1, "x" * 9)})
    assert too_long.result(TIMEOUT) == {TP2: E["OFFSET_METADATA_TOO_LARGE"]}
    listing = groups.list_groups()
    assert [(g.group_id, g.state, g.protocol_type) for g in listing] == [("g", "Empty", "")]

    deleted = groups.delete_offsets("g", [TP0, TopicPartition("nope", 0)]).result(TIMEOUT)
    assert deleted == {TP0: E["NONE"], TopicPartition("nope", 0): E["UNKNOWN_TOPIC_OR_PARTITION"]}
    assert committed(groups) == {TP1: 20}
    with pytest.raises(GroupIdNotFound):
        groups.delete_offsets("other", [TP0])
    assert committed(groups, "other") == {}
    assert groups.fetch_offsets("other", [TP0]) == {TP0: (None, E["NONE"])}


def test_a_simple_group_whose_last_offsets_are_deleted_is_gone_as_after_a_restart(
    open_engine: Callable[..., Any],
) -> None:
    """A group made only by commits without a generation holds nothing once
    its offsets are deleted, or its transaction's aborted: it is not
    listed, as a restart does not load it; a group that once had a
    generation is kept, as its stored record is."""
    opened = open_engine()
    groups = opened.groups
    producer_id, epoch = opened.transactions.init_producer_id("txn", 600_000).result(TIMEOUT)
    opened.transactions.add_offsets("txn", producer_id, epoch, "aborted").result(TIMEOUT)
    pending = groups.commit_transactional_offsets(
        "aborted", producer_id, epoch, "", -1, None, {TP0: OffsetAndMetadata(5)}
    )
    assert pending.result(TIMEOUT) == {TP0: E["NONE"]}
    assert "aborted" in {g.group_id for g in groups.list_groups()}
    groups.complete_transaction(producer_id, False).result(TIMEOUT)
    commit(groups, {TP0: 1, TP1: 2})
    commit(groups, {TP0: 1}, group="formed")
    (member,), _ = stable_group(groups, 1, group="formed")
    assert groups.leave_group("formed", [(member.member_id, None)]).result(10).members == [
        E["NONE"]
    ]
    assert groups.delete_offsets("g", [TP0]).result(TIMEOUT) == {TP0: E["NONE"]}
    assert sorted(g.group_id for g in groups.list_groups()) == ["formed", "g"]
    assert groups.delete_offsets("g", [TP1]).result(TIMEOUT) == {TP1: E["NONE"]}
    assert groups.delete_offsets("formed", [TP0]).result(TIMEOUT) == {TP0: E["NONE"]}
    served = [(g.group_id, g.state) for g in groups.list_groups()]
    assert served == [("formed", "Empty")]
    assert groups.describe_groups(["g"])[0].state == "Dead"
    with pytest.raises(GroupIdNotFound):
        groups.delete_offsets("g", [TP0])
    opened.close()
    loaded = open_engine().groups
    assert [(g.group_id, g.state) for g in loaded.list_groups()] == served


def test_a_group_made_only_by_a_transactional_commit_its_abort_voided_is_gone(
    open_engine: Callable[..., Any],
) -> None:
    """A TxnOffsetCommit that made its group, voided by its transaction's
    abort while it was written, leaves the group nothing: it is not
    listed, as a restart (whose log holds no offsets of it) does not
    list it."""
    opened = open_engine()
    groups = opened.groups
    with groups._locked():  # the abort before the commit's write is durable
        late = groups.commit_transactional_offsets(
            "void", 7, 0, "", -1, None, {TP0: OffsetAndMetadata(10)}
        )
        aborted = groups.complete_transaction(7, committed=False)
    aborted.result(TIMEOUT)
    assert late.result(TIMEOUT) == {TP0: E["INVALID_TXN_STATE"]}
    served = [g.group_id for g in groups.list_groups()]
    opened.close()
    assert [g.group_id for g in open_engine().groups.list_groups()] == served == []


def test_a_commit_outside_any_generation_is_a_simple_consumers_while_the_group_is_empty(
    open_engine: Callable[..., Any],
) -> None:
    """Generation -1 with a member id (a consumer that assigns its partitions
    itself, as a KIP-848 one does, names its member id): accepted while the
    group does not exist or is empty, refused once it has members."""
    groups = open_engine().groups
    assert commit(groups, {TP0: 1}, group="new", member="assigner") == {TP0: E["NONE"]}
    assert committed(groups, "new") == {TP0: 1}
    (member,), _ = stable_group(groups, 1, protocols=[("range", subscription("t"))])
    assert commit(groups, {TP0: 2}, member="assigner") == {TP0: E["UNKNOWN_MEMBER_ID"]}
    assert groups.leave_group("g", [(member.member_id, None)]).result(10).members == [E["NONE"]]
    assert commit(groups, {TP0: 3}, member="assigner") == {TP0: E["NONE"]}
    assert committed(groups) == {TP0: 3}


def test_members_commit_for_their_generation(open_engine: Callable[..., Any]) -> None:
    groups = open_engine().groups
    (member,), _ = stable_group(groups, 1, protocols=[("range", subscription("t"))])
    gen, member_id = member.generation_id, member.member_id
    assert commit(groups, {TP0: 1}, generation=gen, member=member_id) == {TP0: E["NONE"]}
    assert commit(groups, {TP0: 2}, generation=gen + 1, member=member_id) == {
        TP0: E["ILLEGAL_GENERATION"]
    }
    assert commit(groups, {TP0: 2}, generation=gen, member="x") == {TP0: E["UNKNOWN_MEMBER_ID"]}
    # From outside the group while it has members: refused.
    assert commit(groups, {TP0: 2}) == {TP0: E["UNKNOWN_MEMBER_ID"]}
    # A generation of a group that does not exist (as OffsetCommit v9+).
    assert commit(groups, {TP0: 2}, group="gone", generation=3, member="m") == {
        TP0: E["GROUP_ID_NOT_FOUND"]
    }
    assert committed(groups) == {TP0: 1}
    # Offsets of a topic the members consume cannot be deleted under them.
    results = groups.delete_offsets("g", [TP0]).result(TIMEOUT)
    assert results == {TP0: E["GROUP_SUBSCRIBED_TO_TOPIC"]}
    assert committed(groups) == {TP0: 1}


def test_offsets_of_topics_nobody_consumes_can_be_deleted(
    open_engine: Callable[..., Any],
) -> None:
    opened = open_engine()
    opened.create_topic("u", 1)
    groups = opened.groups
    (member,), _ = stable_group(groups, 1, protocols=[("range", subscription("t"))])
    u0 = TopicPartition("u", 0)
    commit(groups, {TP0: 1, u0: 2}, generation=1, member=member.member_id)
    assert groups.delete_offsets("g", [u0]).result(TIMEOUT) == {u0: E["NONE"]}
    assert committed(groups) == {TP0: 1}
    # A group of another protocol type with members: refused as a whole.
    joined(join(groups, group="connect", protocol_type="connect"))
    with pytest.raises(NonEmptyGroup):
        groups.delete_offsets("connect", [TP0])


def test_offsets_expire_after_the_retention(open_engine: Callable[..., Any]) -> None:
    # Kafka's least offsets.retention.minutes: 1, the clock's 60 s.
    clock = ManualClock()
    groups = open_engine(offsets_retention_minutes=1, clock=clock).groups
    commit(groups, {TP0: 1}, group="standalone")
    commit(groups, {TP1: 1}, group="explicit", retention_ms=0)  # OffsetCommit v2-4
    (member,), _ = stable_group(groups, 1, group="consumers")
    commit(groups, {TP2: 1}, group="consumers", generation=1, member=member.member_id)

    assert groups.expire_offsets() == 1  # the explicit retention is over at once
    assert committed(groups, "explicit") == {}
    assert "explicit" not in {g.group_id for g in groups.list_groups()}

    clock.advance(59)
    assert groups.expire_offsets() == 0  # not yet
    clock.advance(2)
    assert groups.expire_offsets() == 1  # the standalone commit; the group's members keep theirs
    assert committed(groups, "standalone") == {}
    assert committed(groups, "consumers") == {TP2: 1}

    groups.leave_group("consumers", [(member.member_id, None)]).result(10)
    assert groups.expire_offsets() == 0  # the retention starts when the group is empty
    clock.advance(61)
    assert groups.expire_offsets() == 1
    assert groups.list_groups() == []


def test_stable_groups_expire_offsets_of_topics_they_no_longer_consume(
    open_engine: Callable[..., Any],
) -> None:
    clock = ManualClock()
    opened = open_engine(offsets_retention_minutes=1, clock=clock)
    opened.create_topic("u", 1)
    groups = opened.groups
    (member,), _ = stable_group(groups, 1, protocols=[("range", subscription("t"))])
    commit(groups, {TP0: 1, TopicPartition("u", 0): 1}, generation=1, member=member.member_id)
    clock.advance(61)
    assert groups.expire_offsets() == 1
    assert committed(groups) == {TP0: 1}


def test_the_periodic_check_expires_offsets(open_engine: Callable[..., Any]) -> None:
    clock = ManualClock()
    groups = open_engine(offsets_retention_minutes=1, clock=clock).groups
    commit(groups, {TP0: 1})
    clock.advance(61)  # past the retention (60 s), not yet at the check (600 s)
    assert groups.list_groups() != []
    clock.advance(600)
    wait_for(lambda: groups.list_groups() == [])
    assert committed(groups) == {}


def test_deleting_a_topic_drops_its_offsets(open_engine: Callable[..., Any]) -> None:
    opened = open_engine()
    opened.create_topic("u", 2)
    groups = opened.groups
    commit(groups, {TP0: 1, TopicPartition("u", 1): 2})
    commit(groups, {TopicPartition("u", 0): 3}, group="only-u")
    opened.delete_topic("u")
    assert committed(groups) == {TP0: 1}
    assert [g.group_id for g in groups.list_groups()] == ["g"]
    opened.create_topic("u", 2)  # a new topic of the same name starts with nothing committed
    assert committed(groups, "only-u") == {}


def test_groups_are_listed_described_and_deleted(open_engine: Callable[..., Any]) -> None:
    groups = open_engine().groups
    stable_group(groups, 1, group="busy")
    commit(groups, {TP0: 4}, group="idle")
    listed = {g.group_id: (g.state, g.protocol_type) for g in groups.list_groups()}
    assert listed == {"busy": ("Stable", "consumer"), "idle": ("Empty", "")}
    assert [g.group_id for g in groups.list_groups(states=["stable"])] == ["busy"]
    assert [g.group_id for g in groups.list_groups(states=["Empty", "Dead"])] == ["idle"]
    assert len(groups.list_groups(types=["classic"])) == 2
    assert groups.list_groups(types=["consumer"]) == []
    missing = groups.describe_groups(["missing"])[0]
    assert (missing.error, missing.state, missing.members) == (E["GROUP_ID_NOT_FOUND"], "Dead", [])

    results = groups.delete_groups(["busy", "idle", "missing"]).result(TIMEOUT)
    assert results == {
        "busy": E["NON_EMPTY_GROUP"],
        "idle": E["NONE"],
        "missing": E["GROUP_ID_NOT_FOUND"],
    }
    assert [g.group_id for g in groups.list_groups()] == ["busy"]
    assert committed(groups, "idle") == {}


def test_consumer_lag(open_engine: Callable[..., Any]) -> None:
    opened = open_engine()
    opened.create_topic("u", 1)
    with opened.producer() as producer:
        for _ in range(5):
            producer.send("t", b"v", partition=0)
            producer.send("u", b"v", partition=0)
        producer.flush()
    groups = opened.groups
    (member,), _ = stable_group(groups, 1, protocols=[("range", subscription("t"))])
    commit(groups, {TP0: 2, TopicPartition("u", 0): 5}, generation=1, member=member.member_id)
    lag = opened.consumer_lag("g")
    assert lag[TP0] == (2, 5, 3)
    assert lag[TP1] == (None, 0, None)
    assert lag[TopicPartition("u", 0)] == (5, 5, 0)
    assert set(lag) == {*(TopicPartition("t", i) for i in range(4)), TopicPartition("u", 0)}
    with pytest.raises(GroupIdNotFound):
        opened.consumer_lag("missing")


# -- transactions ---------------------------------------------------------------------------


def txn_commit(
    groups: GroupCoordinator, producer_id: int, offsets: dict[TopicPartition, int], group: str = "g"
) -> dict[TopicPartition, int]:
    return groups.commit_transactional_offsets(
        group,
        producer_id,
        0,
        "",
        -1,
        None,
        {tp: OffsetAndMetadata(offset) for tp, offset in offsets.items()},
    ).result(TIMEOUT)


def open_transaction(opened: engine.Engine, transactional_id: str, group: str = "g") -> int:
    """The producer id of a transaction open with offsets of ``group``."""
    producer_id, epoch = opened.transactions.init_producer_id(transactional_id, 600_000).result(
        TIMEOUT
    )
    opened.transactions.add_offsets(transactional_id, producer_id, epoch, group).result(TIMEOUT)
    return producer_id


def test_transactional_offsets_are_pending_until_the_transaction_commits(
    open_engine: Callable[..., Any],
) -> None:
    groups = open_engine().groups
    commit(groups, {TP0: 1})
    assert txn_commit(groups, 7, {TP0: 10, TP1: 11}) == {TP0: E["NONE"], TP1: E["NONE"]}
    assert txn_commit(groups, 8, {TP2: 12}, group="h") == {TP2: E["NONE"]}
    assert committed(groups) == {TP0: 1}
    stable = groups.fetch_offsets("g", [TP0, TP1, TP2], require_stable=True)
    assert stable == {
        TP0: (None, E["UNSTABLE_OFFSET_COMMIT"]),
        TP1: (None, E["UNSTABLE_OFFSET_COMMIT"]),
        TP2: (None, E["NONE"]),
    }
    groups.complete_transaction(7, committed=True).result(TIMEOUT)
    assert committed(groups) == {TP0: 10, TP1: 11}
    assert groups.fetch_offsets("g", [TP0], require_stable=True)[TP0][1] == E["NONE"]
    groups.complete_transaction(7, committed=True).result(TIMEOUT)  # again: nothing to do
    assert committed(groups) == {TP0: 10, TP1: 11}

    groups.complete_transaction(8, committed=False).result(TIMEOUT)
    assert committed(groups, "h") == {}
    assert groups.fetch_offsets("h", [TP2], require_stable=True)[TP2] == (None, E["NONE"])


def test_a_later_commit_wins_over_an_earlier_transactional_one(
    open_engine: Callable[..., Any],
) -> None:
    groups = open_engine().groups
    txn_commit(groups, 7, {TP0: 10})
    commit(groups, {TP0: 20})
    groups.complete_transaction(7, committed=True).result(TIMEOUT)
    assert committed(groups) == {TP0: 20}


def test_transactional_commits_check_the_member(open_engine: Callable[..., Any]) -> None:
    groups = open_engine().groups
    (member,), _ = stable_group(groups, 1)
    offsets = {TP0: OffsetAndMetadata(1)}
    stale = groups.commit_transactional_offsets("g", 7, 0, member.member_id, 0, None, offsets)
    assert stale.result(TIMEOUT) == {TP0: E["ILLEGAL_GENERATION"]}
    ok = groups.commit_transactional_offsets("g", 7, 0, member.member_id, 1, None, offsets)
    assert ok.result(TIMEOUT) == {TP0: E["NONE"]}
    # Without member and generation (older producers): accepted even with members.
    assert txn_commit(groups, 8, {TP1: 1}) == {TP1: E["NONE"]}
    # A generation of a group that does not exist: Kafka's
    # validateTransactionalOffsetCommit answers ILLEGAL_GENERATION, whatever the version.
    gone = groups.commit_transactional_offsets("gone", 9, 0, "m", 3, None, offsets)
    assert gone.result(TIMEOUT) == {TP0: E["ILLEGAL_GENERATION"]}


# -- durability -----------------------------------------------------------------------------


def test_offsets_and_groups_survive_a_restart(
    engine_factory: EngineFactory, tmp_path: Path
) -> None:
    settings = {"groups": engine.GroupConfig(**FAST_GROUPS)}
    first = engine_factory(**settings)
    first.create_topic("t", 4)
    groups = first.groups
    (leader, follower), assignments = stable_group(groups, 2, session_ms=1000)
    commit(groups, {TP0: 5, TP1: 6}, generation=1, member=leader.member_id)
    commit(groups, {TP2: 7}, group="standalone")
    # Pending offsets outlive a restart while their transactions are open.
    committing, aborting = (open_transaction(first, name) for name in ("committing", "aborting"))
    txn_commit(groups, committing, {TP0: 50})
    txn_commit(groups, aborting, {TP3: 60})
    first.close()

    second = engine_factory(**settings)
    groups = second.groups
    assert committed(groups) == {TP0: 5, TP1: 6}
    assert committed(groups, "standalone") == {TP2: 7}
    described = groups.describe_groups(["g"])[0]
    assert described.state == "Stable"
    assert {m.member_id: m.assignment for m in described.members} == assignments
    # Members that come back carry on in their generation, no rebalance.
    assert groups.heartbeat("g", 1, leader.member_id, None) == E["NONE"]
    got = sync(groups, follower).result(TIMEOUT)
    assert got.assignment == assignments[follower.member_id]
    # Pending transactional offsets are still pending, and complete now.
    assert (
        groups.fetch_offsets("g", [TP0], require_stable=True)[TP0][1]
        == (E["UNSTABLE_OFFSET_COMMIT"])
    )
    groups.complete_transaction(committing, committed=True).result(TIMEOUT)
    groups.complete_transaction(aborting, committed=False).result(TIMEOUT)
    assert committed(groups) == {TP0: 50, TP1: 6}
    second.close()

    third = engine_factory(**settings)
    groups = third.groups
    assert committed(groups) == {TP0: 50, TP1: 6}
    assert groups.fetch_offsets("g", [TP3], require_stable=True)[TP3] == (None, E["NONE"])
    # Nobody heartbeats now: the loaded members expire and the group empties.
    wait_for(lambda: groups.describe_groups(["g"])[0].state == "Empty")
    assert committed(groups) == {TP0: 50, TP1: 6}
    assert joined(join(groups)).generation_id == 3


def test_a_fresh_machine_with_only_the_bucket_has_the_offsets(
    engine_factory: EngineFactory, tmp_path: Path
) -> None:
    bucket = f"file://{tmp_path / 'bucket'}"
    first = engine_factory(tmp_path / "a", bucket, groups=engine.GroupConfig(**FAST_GROUPS))
    first.create_topic("t", 4)
    commit(first.groups, {TP0: 11, TP1: 12})
    (member,), _ = stable_group(first.groups, 1, group="members")
    first.close()  # uploads everything

    second = engine_factory(tmp_path / "b", bucket, groups=engine.GroupConfig(**FAST_GROUPS))
    assert committed(second.groups) == {TP0: 11, TP1: 12}
    described = second.groups.describe_groups(["members"])[0]
    assert [m.member_id for m in described.members] == [member.member_id]


def test_a_closed_coordinator_answers_coordinator_not_available(
    open_engine: Callable[..., Any],
) -> None:
    opened = open_engine()
    groups = opened.groups
    (member,), _ = stable_group(groups, 1)
    waiting = join(groups)  # a rebalance: the member's rejoin is awaited
    opened.close()
    # Those waiting are answered as Kafka's coordinator answers at its
    # unload; what is asked after, as its inactive GroupCoordinatorService.
    assert waiting.result(TIMEOUT).error == E["NOT_COORDINATOR"]
    assert groups.heartbeat("g", 1, member.member_id, None) == E["COORDINATOR_NOT_AVAILABLE"]
    assert commit(groups, {TP0: 1}) == {TP0: E["COORDINATOR_NOT_AVAILABLE"]}
    assert join(groups).result(TIMEOUT).error == E["COORDINATOR_NOT_AVAILABLE"]
    with pytest.raises(GroupCoordinatorClosed) as raised:
        groups.leave_group("g", [(member.member_id, None)])
    assert isinstance(raised.value, EngineClosed)  # an embedded caller does not retry
    assert raised.value.code == E["COORDINATOR_NOT_AVAILABLE"]


def test_a_transactional_commit_written_while_its_transaction_ends_is_not_kept(
    open_engine: Callable[..., Any],
) -> None:
    """A TxnOffsetCommit passes its check while the transaction is open, but
    its write is durable only after the transaction ended (a timeout abort
    completing meanwhile): it must not stay pending, or the producer's next
    transaction would commit the aborted one's offsets."""
    opened = open_engine()
    groups = opened.groups
    with groups._locked():  # both before the commit's write is durable
        late = groups.commit_transactional_offsets(
            "g", 7, 0, "", -1, None, {TP0: OffsetAndMetadata(10)}
        )
        aborted = groups.complete_transaction(7, committed=False)
    aborted.result(TIMEOUT)
    assert late.result(TIMEOUT) == {TP0: E["INVALID_TXN_STATE"]}
    assert groups.fetch_offsets("g", [TP0], require_stable=True)[TP0] == (None, E["NONE"])
    opened.close()  # nor does a restart bring it back
    groups = open_engine().groups
    assert groups.fetch_offsets("g", [TP0], require_stable=True)[TP0] == (None, E["NONE"])
    # The producer's next transaction commits its own offsets only.
    assert txn_commit(groups, 7, {TP1: 11}) == {TP1: E["NONE"]}
    groups.complete_transaction(7, committed=True).result(TIMEOUT)
    assert committed(groups) == {TP1: 11}


def stored_pending(groups: GroupCoordinator) -> list[tuple[int, str, TopicPartition]]:
    """The pending offsets the "groups" state log holds, as a start loads them."""
    state = read_state(groups._run.state_log.items())
    return [(producer_id, group_id, tp) for producer_id, group_id, tp, _ in state.pending]


def test_a_transactional_commit_written_while_its_group_is_deleted_is_not_kept(
    open_engine: Callable[..., Any],
) -> None:
    """A TxnOffsetCommit whose group is deleted (DeleteGroups) before its
    write is durable does not become pending, and its record is deleted:
    a start would load it as pending offsets of a group that is gone."""
    opened = open_engine()
    groups = opened.groups
    assert commit(groups, {TP1: 3}) == {TP1: E["NONE"]}  # a group to delete
    with groups._locked():  # the deletion before the commit's write is durable
        late = groups.commit_transactional_offsets(
            "g", 7, 0, "", -1, None, {TP0: OffsetAndMetadata(10)}
        )
        deleted = groups.delete_groups(["g"])
    assert deleted.result(TIMEOUT) == {"g": E["NONE"]}
    late.result(TIMEOUT)
    commit(groups, {TP1: 4}, group="other")  # written after the record's deletion
    assert stored_pending(groups) == []
    assert groups.fetch_offsets("g", [TP0], require_stable=True)[TP0] == (None, E["NONE"])
    groups.complete_transaction(7, committed=True).result(TIMEOUT)
    assert groups.fetch_offsets("g", [TP0], require_stable=True)[TP0] == (None, E["NONE"])


def test_a_void_transactional_commit_is_refused_only_once_its_voiding_is_durable(
    open_engine: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TxnOffsetCommit made void by its transaction's completion (an
    abort here) is answered INVALID_TXN_STATE only once the completion's
    record, which deletes its record, is durable: answered before, a crash
    would leave the record for a retried completion to commit."""
    groups = open_engine().groups
    held = never_answered(groups, "txn", monkeypatch, deletions=True)
    late = groups.commit_transactional_offsets(
        "g", 7, 0, "", -1, None, {TP0: OffsetAndMetadata(10)}
    )
    aborted = groups.complete_transaction(7, committed=False)
    wait_for(lambda: len(held) >= 1)  # the write is durable (before the completion's record)
    with groups._locked():
        held[0]()
    assert not late.done()
    wait_for(lambda: len(held) == 2)
    with groups._locked():
        held[1]()
    aborted.result(TIMEOUT)
    assert late.result(TIMEOUT) == {TP0: E["INVALID_TXN_STATE"]}
    assert stored_pending(groups) == []


@pytest.mark.parametrize("durable_first", [True, False])
def test_a_void_transactional_commit_whose_voiding_fails_is_answered_not_coordinator(
    open_engine: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, durable_first: bool
) -> None:
    """The completion that voids a TxnOffsetCommit fails to write its
    record, after or before the commit's write is durable: the commit's
    outcome is unknown (its record stays until the completion is run
    again, which may commit it), and it is answered so, not as refused."""
    groups = open_engine().groups
    held = never_answered(groups, "txn", monkeypatch, deletions=True)
    late = groups.commit_transactional_offsets(
        "g", 7, 0, "", -1, None, {TP0: OffsetAndMetadata(10)}
    )
    aborted = groups.complete_transaction(7, committed=False)
    wait_for(lambda: len(held) == 2)
    written, voiding_failed = held[0], partial(held[1].func, KafkaCode.NOT_COORDINATOR)
    for answer in [written, voiding_failed] if durable_first else [voiding_failed, written]:
        with groups._locked():
            answer()
    with pytest.raises(NotCoordinator):
        aborted.result(TIMEOUT)
    assert late.result(TIMEOUT) == {TP0: E["NOT_COORDINATOR"]}


def test_a_retried_completion_deletes_the_void_commits_its_failed_attempt_voided(
    open_engine: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction's completion voids a TxnOffsetCommit being written and
    fails to write its record; the completion, run again, must still end
    the void commit's record: left stored, a start would load it as
    pending offsets of the producer's next transaction (docs/design/0053)."""
    groups = open_engine().groups
    held = never_answered(groups, "txn", monkeypatch)
    late = groups.commit_transactional_offsets(
        "g", 7, 0, "", -1, None, {TP0: OffsetAndMetadata(10)}
    )
    wait_for(lambda: len(held) == 1)
    state_log = groups._run.state_log
    update = state_log.update

    def refusing(puts: Any = None, deletes: Any = None) -> Any:
        raise OSError("the WAL's disk is full")

    monkeypatch.setattr(state_log, "update", refusing)
    aborted = groups.complete_transaction(7, committed=False)
    monkeypatch.setattr(state_log, "update", update)
    with pytest.raises(NotCoordinator):
        aborted.result(TIMEOUT)
    with groups._locked():
        held[0]()
    assert late.result(TIMEOUT) == {TP0: E["NOT_COORDINATOR"]}
    assert stored_pending(groups) == [(7, "g", TP0)]
    groups.complete_transaction(7, committed=False).result(TIMEOUT)
    assert stored_pending(groups) == []


def test_pending_offsets_of_a_topic_deleted_before_a_crash_are_not_loaded(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A topic is deleted while an open transaction holds pending offsets
    of it, and the engine stops before the "groups" record deleting them is
    durable: the start must drop them, as the deletion would have, or the
    transaction, still open after the start and then committed (a wire
    client carries on), makes them the offsets of a topic made again under
    the name, and the group they alone held comes back."""
    opened = engine_factory(groups=engine.GroupConfig(**FAST_GROUPS))
    opened.create_topic("t", 4)
    producer = opened.producer(transactional_id="tx")
    producer.init_transactions(TIMEOUT)
    producer.begin_transaction()
    producer.send_offsets_to_transaction({TP0: 10}, "g", TIMEOUT)
    pid, epoch = producer.producer_id, producer.producer_epoch
    assert stored_pending(opened.groups) == [(pid, "g", TP0)]
    lost = deletions_never_written(opened.groups, "txn", monkeypatch)
    opened.delete_topic("t")
    assert lost, "the topic's deletion wrote no record deleting its pending offsets"
    opened.close(flush=False)
    reopened = engine_factory(groups=engine.GroupConfig(**FAST_GROUPS))
    groups = reopened.groups
    assert reopened.transactions.describe("tx").state.value == "Ongoing"
    assert stored_pending(groups) == []
    assert groups.list_groups() == []
    reopened.create_topic("t", 4)
    reopened.transactions.end_transaction("tx", pid, epoch, commit=True).result(TIMEOUT)
    assert committed(groups) == {}


def test_an_offset_commit_whose_group_is_deleted_while_written_is_gone_after_a_crash(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DeleteGroups while an OffsetCommit to the group is being written,
    then a crash before the write's answer: the restart must not load the
    commit's record and bring the deleted group back."""
    opened = engine_factory(groups=engine.GroupConfig(**FAST_GROUPS))
    opened.create_topic("t", 4)
    assert commit(opened.groups, {TP1: 3}) == {TP1: E["NONE"]}
    held = never_answered(opened.groups, "offset", monkeypatch)
    opened.groups.commit_offsets("g", -1, "", None, {TP0: OffsetAndMetadata(10)})
    assert opened.groups.delete_groups(["g"]).result(TIMEOUT) == {"g": E["NONE"]}
    assert len(held) == 1
    opened.close(flush=False)
    groups = engine_factory(groups=engine.GroupConfig(**FAST_GROUPS)).groups
    assert groups.list_groups() == []
    assert committed(groups) == {}


def test_a_transactional_commit_whose_topic_is_deleted_while_written_is_gone_after_a_crash(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A topic deleted while a TxnOffsetCommit of it is being written, then
    a crash before the write's answer: the restart must not load the
    record as pending offsets (of a group it would make again)."""
    opened = engine_factory(groups=engine.GroupConfig(**FAST_GROUPS))
    opened.create_topic("t", 4)
    held = never_answered(opened.groups, "txn", monkeypatch)
    opened.groups.commit_transactional_offsets(
        "g", 7, 0, "", -1, None, {TP0: OffsetAndMetadata(10)}
    )
    wait_for(lambda: len(held) == 1)
    opened.delete_topic("t")
    opened.close(flush=False)
    groups = engine_factory(groups=engine.GroupConfig(**FAST_GROUPS)).groups
    assert stored_pending(groups) == []
    assert groups.list_groups() == []


@pytest.mark.parametrize("deleted", ["group", "topic"])
def test_offsets_a_transaction_commits_while_their_group_or_topic_is_deleted_stay_gone(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch, deleted: str
) -> None:
    """A transaction's commit, whose record puts its offsets, is being
    written when the offsets' group is deleted (or their topic, made again
    under its name): the deletion's record must delete those offsets too,
    or a start brings them back (and the deleted group with them)."""
    opened = engine_factory(groups=engine.GroupConfig(**FAST_GROUPS))
    opened.create_topic("t", 4)
    groups = opened.groups
    pending = groups.commit_transactional_offsets(
        "g", 7, 0, "", -1, None, {TP0: OffsetAndMetadata(10)}
    )
    assert pending.result(TIMEOUT) == {TP0: E["NONE"]}
    held = never_answered(groups, "offset", monkeypatch)
    groups.complete_transaction(7, committed=True)
    wait_for(lambda: len(held) == 1)
    if deleted == "group":
        assert groups.delete_groups(["g"]).result(TIMEOUT) == {"g": E["NONE"]}
    else:
        opened.delete_topic("t")
        opened.create_topic("t", 4)
    opened.close(flush=False)
    groups = engine_factory(groups=engine.GroupConfig(**FAST_GROUPS)).groups
    assert committed(groups) == {}
    assert groups.list_groups() == []


@pytest.mark.parametrize("transactional", [False, True])
def test_a_commit_whose_topic_is_deleted_and_made_again_while_written_stays_gone(
    engine_factory: EngineFactory, monkeypatch: pytest.MonkeyPatch, transactional: bool
) -> None:
    """A topic deleted, and created again under its name, while a commit of
    it is being written: the deletion's record deleted the commit's, so the
    commit must not become visible (or pending) once durable either, or the
    offsets served would be gone after a restart."""
    opened = engine_factory(groups=engine.GroupConfig(**FAST_GROUPS))
    opened.create_topic("t", 4)
    groups = opened.groups
    held = never_answered(groups, "txn" if transactional else "offset", monkeypatch)
    offsets = {TP0: OffsetAndMetadata(10)}
    if transactional:
        answer = groups.commit_transactional_offsets("g", 7, 0, "", -1, None, offsets)
    else:
        answer = groups.commit_offsets("g", -1, "", None, offsets)
    wait_for(lambda: len(held) == 1)
    opened.delete_topic("t")
    opened.create_topic("t", 4)
    with groups._locked():
        held[0]()
    assert answer.result(TIMEOUT) == {TP0: E["NONE"]}
    groups.complete_transaction(7, committed=True).result(TIMEOUT)
    assert committed(groups) == {}
    monkeypatch.undo()
    opened.close()
    assert committed(engine_factory(groups=engine.GroupConfig(**FAST_GROUPS)).groups) == {}


def test_an_offset_delete_deletes_a_transactional_commit_being_written(
    open_engine: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OffsetDelete while a TxnOffsetCommit of the partition is being
    written, its producer having one pending there already: the deletion's
    record deletes the partition's pending record, so the commit must not
    become pending once durable, or the offset served pending would be gone
    at a start (Kafka's tombstone removes the open transactions' pending
    offsets of the partition, their records before it included)."""
    groups = open_engine().groups
    first = groups.commit_transactional_offsets(
        "g", 7, 0, "", -1, None, {TP0: OffsetAndMetadata(5)}
    )
    assert first.result(TIMEOUT) == {TP0: E["NONE"]}
    held = never_answered(groups, "txn", monkeypatch)
    late = groups.commit_transactional_offsets(
        "g", 7, 0, "", -1, None, {TP0: OffsetAndMetadata(10)}
    )
    wait_for(lambda: len(held) == 1)
    assert groups.delete_offsets("g", [TP0]).result(TIMEOUT) == {TP0: E["NONE"]}
    with groups._locked():
        held[0]()
    assert late.result(TIMEOUT) == {TP0: E["NONE"]}
    assert stored_pending(groups) == []
    assert groups.fetch_offsets("g", [TP0], require_stable=True)[TP0] == (None, E["NONE"])


def test_a_commit_of_a_deleted_group_keeps_a_later_commit_under_its_key(
    open_engine: Callable[..., Any],
) -> None:
    """The deletion of a late TxnOffsetCommit's record (its group deleted
    meanwhile) is written after a later commit of the producer under the
    same key, to the group made again: it must not remove that one."""
    groups = open_engine().groups
    assert commit(groups, {TP1: 3}) == {TP1: E["NONE"]}
    with groups._locked():  # the three writes in flight together, in this order
        late = groups.commit_transactional_offsets(
            "g", 7, 0, "", -1, None, {TP0: OffsetAndMetadata(10)}
        )
        deleted = groups.delete_groups(["g"])
        again = groups.commit_transactional_offsets(
            "g", 7, 0, "", -1, None, {TP0: OffsetAndMetadata(12)}
        )
    assert deleted.result(TIMEOUT) == {"g": E["NONE"]}
    late.result(TIMEOUT)
    assert again.result(TIMEOUT) == {TP0: E["NONE"]}
    commit(groups, {TP1: 4}, group="other")  # written after any deletion
    assert stored_pending(groups) == [(7, "g", TP0)]
    groups.complete_transaction(7, committed=True).result(TIMEOUT)
    assert committed(groups) == {TP0: 12}
