"""Online migration between classic and consumer groups through the
embedded coordinator (engine/groups/migration.py, classic_members.py),
on virtual time: the classic members' join and sync timeouts inside a
consumer group, their commits in their generation, and the migration
policy. tests/server/test_groups_migration.py runs the same over the wire
with real clients."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.clock import Clock, ManualClock
from engine.groups import GroupCoordinator, JoinResult
from engine.groups.consumer_heartbeat import Heartbeat
from engine.protocol.consumer_protocol import (
    Assignment,
    Subscription,
    decode_assignment,
    encode_assignment,
    encode_subscription,
)
from engine.protocol.kafka_code import KafkaCode
from engine.types import OffsetAndMetadata, TopicPartition
from tests.engine.conftest import EngineFactory

E = KafkaCode
TIMEOUT = 30.0
REBALANCE_MS = 2_000
SESSION_MS = 60_000
TOPIC = "t"


@pytest.fixture
def open_engine(engine_factory: EngineFactory) -> Callable[..., engine.Engine]:
    """An engine on a clock that stands unless the test moves it: a classic
    member told to join again has REBALANCE_MS to join and sync, which a
    loaded machine can spend between two calls on the system clock."""

    def make(clock: Clock | None = None, **settings: Any) -> engine.Engine:
        if clock is None:
            clock = ManualClock()
        groups = engine.GroupConfig(
            **{
                "group_initial_rebalance_delay_ms": 0,
                "group_min_session_timeout_ms": 10,
                **settings,
            }
        )
        opened = engine_factory(clock=clock, groups=groups)
        if TOPIC not in opened.list_topics():
            opened.create_topic(TOPIC, 4)
        return opened

    return make


def _metadata(owned: tuple[int, ...] = ()) -> bytes:
    return encode_subscription(
        Subscription([TOPIC], None, [TopicPartition(TOPIC, p) for p in owned]), 1
    )


def _joining(
    groups: GroupCoordinator,
    member_id: str = "",
    owned: tuple[int, ...] = (),
    instance_id: str | None = None,
    require_known_member_id: bool = True,
) -> Future[JoinResult]:
    """A classic consumer member's JoinGroup of "g", its range protocol
    owning ``owned`` of the topic's partitions."""
    return groups.join_group(
        "g",
        member_id,
        instance_id,
        "consumer",
        [("range", _metadata(owned))],
        SESSION_MS,
        REBALANCE_MS,
        require_known_member_id=require_known_member_id,
    )


def _join(groups: GroupCoordinator, member_id: str, owned: tuple[int, ...] = ()) -> Any:
    return _joining(groups, member_id, owned, require_known_member_id=False).result(TIMEOUT)


def _sync(groups: GroupCoordinator, member_id: str, generation: int, leader: bool = False) -> Any:
    everything = encode_assignment(Assignment([TopicPartition(TOPIC, p) for p in range(4)]))
    assignments = {member_id: everything} if leader else {}
    return groups.sync_group(
        "g", generation, member_id, None, "consumer", "range", assignments
    ).result(TIMEOUT)


def _taken_over(groups: GroupCoordinator) -> tuple[str, int]:
    """A classic member holding every partition, then a consumer-protocol
    member joining: the classic member's id and generation."""
    classic = _join(groups, "")
    assert classic.error == E.NONE
    assert _sync(groups, classic.member_id, classic.generation_id, leader=True).error == E.NONE
    joined = groups.consumer_group_heartbeat(
        Heartbeat(
            "g",
            "new-member",
            0,
            rebalance_timeout_ms=REBALANCE_MS,
            subscribed_topic_names=[TOPIC],
            owned_partitions={},
        )
    ).result(TIMEOUT)
    assert joined.error == E.NONE, joined.error_message
    return classic.member_id, classic.generation_id


def _members(groups: GroupCoordinator) -> set[str]:
    (described,) = groups.consumer_group_describe(["g"])
    return {m.member_id for m in described.members}


def _advance_until(clock: ManualClock, condition: Callable[[], bool], within_s: float) -> None:
    """Moves virtual time on in 0.1 s steps, ``within_s`` at most, until
    ``condition`` holds. The timer thread acts on each step on its own, and
    on a loaded machine late: past ``within_s`` the clock stands and the
    wait is in real time, so a late thread is not taken for a late deadline."""
    steps = round(within_s / 0.1)
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"not within {within_s} s"
        if steps > 0:
            clock.advance(0.1)
            steps -= 1
        time.sleep(0.001)


def test_a_classic_member_that_does_not_sync_in_its_rebalance_timeout_is_removed(
    open_engine: Callable[..., engine.Engine],
) -> None:
    clock = ManualClock()
    groups = open_engine(clock=clock).groups
    classic, generation = _taken_over(groups)
    assert groups.heartbeat("g", generation, classic, None) == E.REBALANCE_IN_PROGRESS
    # It joins having given up everything (as an eager client does), so no
    # revocation is awaited from it: only its SyncGroup is.
    assert _join(groups, classic).error == E.NONE
    clock.advance(REBALANCE_MS / 1000 - 0.5)
    assert _members(groups) == {classic, "new-member"}
    # Its session is far longer: the sync deadline removes it.
    _advance_until(clock, lambda: _members(groups) == {"new-member"}, 1.0)
    assert groups.heartbeat("g", generation, classic, None) == E.UNKNOWN_MEMBER_ID


def test_a_classic_member_told_to_rejoin_that_does_not_is_removed(
    open_engine: Callable[..., engine.Engine],
) -> None:
    clock = ManualClock()
    groups = open_engine(clock=clock).groups
    classic, generation = _taken_over(groups)
    assert groups.heartbeat("g", generation, classic, None) == E.REBALANCE_IN_PROGRESS
    # Heartbeats do not put the deadline off: only a JoinGroup meets it.
    clock.advance(REBALANCE_MS / 1000 / 2)
    assert groups.heartbeat("g", generation, classic, None) == E.REBALANCE_IN_PROGRESS
    _advance_until(clock, lambda: _members(groups) == {"new-member"}, REBALANCE_MS / 1000)


def test_a_classic_member_commits_in_its_generation(
    open_engine: Callable[..., engine.Engine],
) -> None:
    groups = open_engine().groups
    classic, generation = _taken_over(groups)
    offsets = {TopicPartition(TOPIC, 0): OffsetAndMetadata(3)}
    done = groups.commit_offsets("g", generation, classic, None, offsets).result(TIMEOUT)
    assert done == {TopicPartition(TOPIC, 0): E.NONE}
    refused = groups.commit_offsets("g", generation + 1, classic, None, offsets).result(TIMEOUT)
    assert refused == {TopicPartition(TOPIC, 0): E.ILLEGAL_GENERATION}
    fetched = groups.fetch_offsets("g", [TopicPartition(TOPIC, 0)])
    assert fetched[TopicPartition(TOPIC, 0)][0] is not None
    assert fetched[TopicPartition(TOPIC, 0)][0].offset == 3


def test_an_offset_commit_without_member_epochs_is_refused_to_consumer_protocol_members(
    open_engine: Callable[..., engine.Engine],
) -> None:
    """Kafka's ConsumerGroup.validateOffsetCommit: a member of the consumer
    protocol commits with OffsetCommit v9+ (``member_epochs``), an older
    version is UNSUPPORTED_VERSION; a classic member of the same group, a
    TxnOffsetCommit, and an unknown or simple (empty member id, -1)
    commit to a group with members are answered as before."""
    groups = open_engine().groups
    classic, generation = _taken_over(groups)
    (described,) = groups.consumer_group_describe(["g"])
    epoch = next(m.member_epoch for m in described.members if m.member_id == "new-member")
    tp = TopicPartition(TOPIC, 0)
    offsets = {tp: OffsetAndMetadata(3)}

    def commit(member_id: str, member_epoch: int, member_epochs: bool) -> KafkaCode:
        answer = groups.commit_offsets(
            "g", member_epoch, member_id, None, offsets, member_epochs=member_epochs
        ).result(TIMEOUT)
        return answer[tp]

    assert commit("new-member", epoch, member_epochs=False) == E.UNSUPPORTED_VERSION
    assert commit("new-member", -1, member_epochs=False) == E.UNSUPPORTED_VERSION
    assert groups.fetch_offsets("g", [tp])[tp][0] is None  # nothing was committed
    assert commit("new-member", epoch, member_epochs=True) == E.NONE
    assert commit(classic, generation, member_epochs=False) == E.NONE
    assert commit("", -1, member_epochs=False) == E.UNKNOWN_MEMBER_ID
    assert commit("stranger", epoch, member_epochs=False) == E.UNKNOWN_MEMBER_ID
    pending = groups.commit_transactional_offsets(
        "g", 7, 0, "new-member", epoch, None, offsets
    ).result(TIMEOUT)
    assert pending == {tp: E.NONE}


def test_an_upgrade_only_policy_keeps_the_consumer_group_when_its_last_consumer_member_leaves(
    open_engine: Callable[..., engine.Engine],
) -> None:
    groups = open_engine(group_consumer_migration_policy="UPGRADE").groups
    classic, generation = _taken_over(groups)
    left = groups.consumer_group_heartbeat(Heartbeat("g", "new-member", -1)).result(TIMEOUT)
    assert left.error == E.NONE
    assert _members(groups) == {classic}
    # Still a consumer group serving its classic member.
    assert groups.heartbeat("g", generation, classic, None) == E.REBALANCE_IN_PROGRESS
    rejoined = _join(groups, classic, (0, 1, 2, 3))
    assert (rejoined.error, rejoined.leader, rejoined.members) == (E.NONE, "", [])
    synced = _sync(groups, classic, rejoined.generation_id)
    assert {tp.partition for tp in decode_assignment(synced.assignment).partitions} == {0, 1, 2, 3}


def test_a_downgrade_only_policy_refuses_the_upgrade(
    open_engine: Callable[..., engine.Engine],
) -> None:
    groups = open_engine(group_consumer_migration_policy="downgrade").groups
    classic = _join(groups, "")
    _sync(groups, classic.member_id, classic.generation_id, leader=True)
    refused = groups.consumer_group_heartbeat(
        Heartbeat(
            "g",
            "new-member",
            0,
            rebalance_timeout_ms=REBALANCE_MS,
            subscribed_topic_names=[TOPIC],
            owned_partitions={},
        )
    ).result(TIMEOUT)
    assert refused.error == E.GROUP_ID_NOT_FOUND
    assert refused.error_message == (
        "Cannot upgrade classic group g to consumer group because the online upgrade is disabled."
    )
    assert groups.heartbeat("g", classic.generation_id, classic.member_id, None) == E.NONE


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="group_consumer_migration_policy"):
        engine.GroupConfig(group_consumer_migration_policy="sideways")


def test_a_classic_static_member_replacing_the_last_consumer_member_turns_the_group_classic(
    open_engine: Callable[..., engine.Engine],
) -> None:
    opened = open_engine()
    groups = opened.groups
    classic = _join(groups, "")
    _sync(groups, classic.member_id, classic.generation_id, leader=True)
    joined = groups.consumer_group_heartbeat(
        Heartbeat(
            "g",
            "new-member",
            0,
            instance_id="host-x",
            rebalance_timeout_ms=REBALANCE_MS,
            subscribed_topic_names=[TOPIC],
            owned_partitions={},
        )
    ).result(TIMEOUT)
    assert joined.error == E.NONE
    # The classic member gives up half; the static consumer member takes it.
    assert _join(groups, classic.member_id, (0, 1, 2, 3)).error == E.NONE
    kept = decode_assignment(_sync(groups, classic.member_id, classic.generation_id).assignment)
    kept_partitions = tuple(tp.partition for tp in kept.partitions)
    assert _join(groups, classic.member_id, kept_partitions).error == E.NONE
    epoch = joined.member_epoch
    topic_id = opened.topic_id(TOPIC)
    taken = groups.consumer_group_heartbeat(
        Heartbeat("g", "new-member", epoch, instance_id="host-x")
    ).result(TIMEOUT)
    assert taken.assignment is not None
    moved = set(taken.assignment[topic_id])
    assert moved == {0, 1, 2, 3} - set(kept_partitions)
    left = groups.consumer_group_heartbeat(
        Heartbeat("g", "new-member", -2, instance_id="host-x")
    ).result(TIMEOUT)
    assert left.error == E.NONE

    # A classic process with its instance id takes its place: every member
    # is classic, and a classic group takes over without a rebalance.
    replacing = _joining(groups, instance_id="host-x").result(TIMEOUT)
    assert replacing.error == E.NONE
    (described,) = groups.describe_groups(["g"])
    assert (described.error, described.state) == (E.NONE, "Stable")
    assert {m.member_id for m in described.members} == {classic.member_id, replacing.member_id}
    assert groups.consumer_group_describe(["g"])[0].error == E.GROUP_ID_NOT_FOUND
    synced = _sync(groups, replacing.member_id, replacing.generation_id)
    assert synced.error == E.NONE
    assert {tp.partition for tp in decode_assignment(synced.assignment).partitions} == moved


def _committed(groups: GroupCoordinator) -> dict[TopicPartition, int]:
    return {
        tp: found.offset
        for tp, (found, _) in groups.fetch_offsets("g", None).items()
        if found is not None
    }


def _kind_and_members(groups: GroupCoordinator) -> tuple[str, set[str]]:
    (listed,) = groups.list_groups()
    if listed.group_type == "consumer":
        return "consumer", _members(groups)
    (described,) = groups.describe_groups(["g"])
    return "classic", {m.member_id for m in described.members}


@pytest.mark.parametrize("direction", ["upgrade", "downgrade"])
def test_a_conversion_with_a_commit_in_flight_serves_what_a_restart_loads(
    engine_factory: EngineFactory, tmp_path: Path, direction: str
) -> None:
    """A member's commit being written while the group converts is the
    group's once durable, and the group a restart loads is the kind, with
    the members, that was served."""
    settings = engine.GroupConfig(
        group_initial_rebalance_delay_ms=0, group_min_session_timeout_ms=10
    )
    data = tmp_path / "node"
    opened = engine_factory(data_dir=data, groups=settings)
    opened.create_topic(TOPIC, 4)
    groups = opened.groups
    classic = _join(groups, "")
    _sync(groups, classic.member_id, classic.generation_id, leader=True)
    join = Heartbeat(
        "g",
        "new-member",
        0,
        rebalance_timeout_ms=REBALANCE_MS,
        subscribed_topic_names=[TOPIC],
        owned_partitions={},
    )
    offsets = {TopicPartition(TOPIC, 0): OffsetAndMetadata(10)}
    if direction == "downgrade":
        assert groups.consumer_group_heartbeat(join).result(TIMEOUT).error == E.NONE
        change = Heartbeat("g", "new-member", -1)
    else:
        change = join
    with groups._locked():  # the conversion before the commit's write is durable
        commit = groups.commit_offsets("g", classic.generation_id, classic.member_id, None, offsets)
        changed = groups.consumer_group_heartbeat(change)
    assert commit.result(TIMEOUT) == {TopicPartition(TOPIC, 0): E.NONE}
    assert changed.result(TIMEOUT).error == E.NONE
    served = (_committed(groups), _kind_and_members(groups))
    expected_kind = "consumer" if direction == "upgrade" else "classic"
    assert served[1][0] == expected_kind
    opened.close()
    loaded_groups = engine_factory(data_dir=data, groups=settings).groups
    assert (_committed(loaded_groups), _kind_and_members(loaded_groups)) == served
    assert served[0] == {TopicPartition(TOPIC, 0): 10}


def test_an_empty_classic_group_with_a_member_id_handed_out_is_replaced(
    open_engine: Callable[..., engine.Engine],
) -> None:
    """As Kafka: an Empty classic group is replaced by the consumer group
    whatever ids it handed out with MEMBER_ID_REQUIRED; such a member then
    joins the consumer group."""
    groups = open_engine().groups
    pending = _joining(groups).result(TIMEOUT)
    assert pending.error == E.MEMBER_ID_REQUIRED
    joined = groups.consumer_group_heartbeat(
        Heartbeat(
            "g",
            "new-member",
            0,
            rebalance_timeout_ms=REBALANCE_MS,
            subscribed_topic_names=[TOPIC],
            owned_partitions={},
        )
    ).result(TIMEOUT)
    assert joined.error == E.NONE
    late = _join(groups, pending.member_id)
    assert (late.error, late.member_id) == (E.NONE, pending.member_id)
    assert _members(groups) == {"new-member", pending.member_id}


def test_a_refused_join_leaves_the_classic_group_as_it_was(
    engine_factory: EngineFactory, tmp_path: Path
) -> None:
    """As Kafka, whose refused heartbeat writes nothing: a consumer-protocol
    member refused the group it would take over (it is full at
    group_consumer_max_size) converts nothing, in memory or in the state
    log."""
    settings = engine.GroupConfig(
        group_initial_rebalance_delay_ms=0,
        group_min_session_timeout_ms=10,
        group_consumer_max_size=1,
    )
    data = tmp_path / "node"
    opened = engine_factory(data_dir=data, groups=settings)
    opened.create_topic(TOPIC, 4)
    groups = opened.groups
    classic = _join(groups, "")
    assert classic.error == E.NONE
    _sync(groups, classic.member_id, classic.generation_id, leader=True)
    refused = groups.consumer_group_heartbeat(
        Heartbeat(
            "g",
            "new-member",
            0,
            rebalance_timeout_ms=REBALANCE_MS,
            subscribed_topic_names=[TOPIC],
            owned_partitions={},
        )
    ).result(TIMEOUT)
    assert refused.error == E.GROUP_MAX_SIZE_REACHED
    assert _kind_and_members(groups) == ("classic", {classic.member_id})
    assert groups.heartbeat("g", classic.generation_id, classic.member_id, None) == E.NONE
    opened.close()
    loaded = engine_factory(data_dir=data, groups=settings).groups
    assert _kind_and_members(loaded) == ("classic", {classic.member_id})


def test_a_full_consumer_group_refuses_a_classic_member_before_giving_it_an_id(
    open_engine: Callable[..., engine.Engine],
) -> None:
    """As Kafka's classicGroupJoinToConsumerGroup, which checks the size
    (throwIfConsumerGroupIsFull) before the protocols and before KIP-394's
    MEMBER_ID_REQUIRED: a new classic member of a full consumer group is
    refused at its first JoinGroup, a static one's new process too (a new
    member id), and a member already in the group joins again."""
    groups = open_engine(group_consumer_max_size=2).groups
    classic_id, _ = _taken_over(groups)  # a classic and a consumer-protocol member
    for instance_id in (None, "instance-a"):
        refused = _joining(groups, instance_id=instance_id).result(TIMEOUT)
        assert refused.error == E.GROUP_MAX_SIZE_REACHED, instance_id
        assert refused.member_id == ""
    assert _members(groups) == {classic_id, "new-member"}
    assert _join(groups, classic_id).error == E.NONE


def test_a_consumer_static_member_takes_the_place_of_a_classic_one_with_its_instance_id(
    open_engine: Callable[..., engine.Engine],
) -> None:
    """As Kafka (getOrMaybeSubscribeStaticConsumerGroupMember): a static
    member's process restarted with the consumer protocol replaces its
    classic predecessor, which sent no LeaveGroup (a static member does
    not), at once and with what it held; UNRELEASED_INSTANCE_ID is for two
    consumer-protocol processes only."""
    opened = open_engine()
    groups = opened.groups
    classic = _joining(groups, instance_id="host-x").result(TIMEOUT)
    assert classic.error == E.NONE
    _sync(groups, classic.member_id, classic.generation_id, leader=True)
    joined = groups.consumer_group_heartbeat(
        Heartbeat(
            "g",
            "new-member",
            0,
            instance_id="host-x",
            rebalance_timeout_ms=REBALANCE_MS,
            subscribed_topic_names=[TOPIC],
            owned_partitions={},
        )
    ).result(TIMEOUT)
    assert joined.error == E.NONE, joined.error_message
    assert joined.assignment is not None
    assert set(joined.assignment[opened.topic_id(TOPIC)]) == {0, 1, 2, 3}
    (described,) = groups.consumer_group_describe(["g"])
    assert [(m.member_id, m.classic) for m in described.members] == [("new-member", False)]
    answer = groups.heartbeat("g", classic.generation_id, classic.member_id, "host-x")
    assert answer == E.FENCED_INSTANCE_ID


def test_a_leave_group_removes_a_consumer_protocol_member_and_the_last_one_downgrades(
    open_engine: Callable[..., engine.Engine],
) -> None:
    """As Kafka 4.0 (KAFKA-18188, KAFKA-18150): LeaveGroup, an
    administrator's removal, removes a consumer-protocol member by member
    id too, and the last one's going hands the group to a classic group."""
    groups = open_engine().groups
    classic, _ = _taken_over(groups)
    assert groups.leave_group("g", [("new-member", None)]).result(TIMEOUT).members == [E.NONE]
    assert _kind_and_members(groups) == ("classic", {classic})


def test_a_classic_member_heartbeating_with_the_consumer_protocol_is_no_longer_classic(
    open_engine: Callable[..., engine.Engine],
) -> None:
    """As Kafka (its ConsumerGroupHeartbeat sets no classic metadata): a
    member that joins again with the consumer protocol is a member of it,
    answered no longer through JoinGroup, SyncGroup or Heartbeat."""
    groups = open_engine().groups
    classic, _ = _taken_over(groups)
    rejoined = groups.consumer_group_heartbeat(
        Heartbeat(
            "g",
            classic,
            0,
            rebalance_timeout_ms=REBALANCE_MS,
            subscribed_topic_names=[TOPIC],
            owned_partitions={},
        )
    ).result(TIMEOUT)
    assert rejoined.error == E.NONE
    (described,) = groups.consumer_group_describe(["g"])
    assert {m.member_id: m.classic for m in described.members} == {
        classic: False,
        "new-member": False,
    }
    assert groups.heartbeat("g", rejoined.member_epoch, classic, None) == E.UNKNOWN_MEMBER_ID


@pytest.mark.parametrize("restart", [False, True])
def test_a_static_replacement_does_not_hand_out_partitions_a_classic_member_still_holds(
    engine_factory: EngineFactory, tmp_path: Path, restart: bool
) -> None:
    """The classic static member replacing the last consumer-protocol one
    takes its predecessor's target. While another member still holds part
    of that target (it has not joined again since the epoch moved), the
    classic group rebalances first, and what it stores (a restart does not
    replay the rebalance) leaves out what another member holds: no
    SyncGroup gives a partition to one member while another consumes it."""
    settings = engine.GroupConfig(
        group_initial_rebalance_delay_ms=0, group_min_session_timeout_ms=10
    )
    data = tmp_path / "node"
    opened = engine_factory(data_dir=data, groups=settings)
    opened.create_topic(TOPIC, 4)
    groups = opened.groups
    classic = _join(groups, "")
    _sync(groups, classic.member_id, classic.generation_id, leader=True)
    joined = groups.consumer_group_heartbeat(
        Heartbeat(
            "g",
            "new-member",
            0,
            instance_id="host-x",
            rebalance_timeout_ms=REBALANCE_MS,
            subscribed_topic_names=[TOPIC],
            owned_partitions={},
        )
    ).result(TIMEOUT)
    assert joined.error == E.NONE
    # The classic member holds all four partitions and has not joined again.
    left = groups.consumer_group_heartbeat(
        Heartbeat("g", "new-member", -2, instance_id="host-x")
    ).result(TIMEOUT)
    assert left.error == E.NONE
    replacing = _joining(groups, instance_id="host-x").result(TIMEOUT)
    assert replacing.error == E.NONE
    assert _kind_and_members(groups) == ("classic", {classic.member_id, replacing.member_id})
    if restart:
        opened.close()
        groups = engine_factory(data_dir=data, groups=settings).groups
    synced = _sync(groups, replacing.member_id, replacing.generation_id)
    if synced.error == E.NONE:
        handed = {tp.partition for tp in decode_assignment(synced.assignment).partitions}
        assert not handed & {0, 1, 2, 3}, f"{handed} are still the classic member's"
    else:
        assert synced.error == E.REBALANCE_IN_PROGRESS
    assert groups.heartbeat("g", classic.generation_id, classic.member_id, None) in (
        E.ILLEGAL_GENERATION,
        E.REBALANCE_IN_PROGRESS,
    )


def test_a_takeover_mid_rebalance_counts_the_partitions_a_classic_member_says_it_owns(
    open_engine: Callable[..., engine.Engine],
) -> None:
    """A classic group that prepares a rebalance from CompletingRebalance
    has reset its members' assignments (as Kafka's does), while a
    cooperative member keeps consuming what it owns and says so in its
    JoinGroup. A consumer-protocol member taking such a group over gets
    none of those partitions until their owner gives them up."""
    opened = open_engine()
    groups = opened.groups
    first = _join(groups, "")
    _sync(groups, first.member_id, first.generation_id, leader=True)
    second = _joining(groups, require_known_member_id=False)
    rejoined = _join(groups, first.member_id, (0, 1, 2, 3))
    assert rejoined.error == E.NONE
    assert second.result(TIMEOUT).error == E.NONE
    # The second member leaves before the leader syncs: the assignments reset.
    left = groups.leave_group("g", [(second.result().member_id, None)]).result(TIMEOUT)
    assert left.members == [E.NONE]
    (described,) = groups.describe_groups(["g"])
    assert described.state == "PreparingRebalance"
    joined = groups.consumer_group_heartbeat(
        Heartbeat(
            "g",
            "new-member",
            0,
            rebalance_timeout_ms=REBALANCE_MS,
            subscribed_topic_names=[TOPIC],
            owned_partitions={},
        )
    ).result(TIMEOUT)
    assert joined.error == E.NONE, joined.error_message
    topic_id = opened.topic_id(TOPIC)
    again = groups.consumer_group_heartbeat(
        Heartbeat("g", "new-member", joined.member_epoch, owned_partitions={})
    ).result(TIMEOUT)
    given = set((joined.assignment or {}).get(topic_id, ())) | set(
        (again.assignment or {}).get(topic_id, ())
    )
    assert not given, f"{given} are still consumed by the classic member"
    # The classic member gives up what moves; then they are the new member's.
    kept = _join(groups, first.member_id, (0, 1, 2, 3))
    assert kept.error == E.NONE
    synced = _sync(groups, first.member_id, kept.generation_id)
    still = tuple(tp.partition for tp in decode_assignment(synced.assignment).partitions)
    assert _join(groups, first.member_id, still).error == E.NONE
    moved = groups.consumer_group_heartbeat(
        Heartbeat("g", "new-member", again.member_epoch, owned_partitions={})
    ).result(TIMEOUT)
    assert set((moved.assignment or {}).get(topic_id, ())) == {0, 1, 2, 3} - set(still)
