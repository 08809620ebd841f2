"""KIP-848 consumer groups (engine/groups/consumer_group.py): the heartbeat's
joins, leaves and fencing, reconciliation, sessions and rebalance timeouts,
static members, subscriptions by name and regex, topic changes; a
hypothesis state machine of clients joining, leaving, crashing, losing
answers and topics growing, against the invariant that no partition is
ever held by two members; and, through an engine, the group registry
shared with classic groups, commits and fetches in member epochs, the admin
APIs and restarts that keep the group's epochs and members."""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import engine
from engine.clock import ManualClock
from engine.errors import (
    FencedMemberEpoch,
    StaleMemberEpoch,
    UnknownMemberId,
)
from engine.groups import GroupConfig
from engine.groups.consumer_group import ConsumerGroup, ConsumerGroupState
from engine.groups.consumer_heartbeat import Heartbeat, HeartbeatResult
from engine.groups.consumer_member import ConsumerMember, ReconciliationState
from engine.groups.records import (
    StoredConsumerGroup,
    StoredConsumerMember,
    consumer_group_key,
    consumer_member_key,
)
from engine.groups.timers import Timer
from engine.groups.topic_subscriptions import TopicInfo
from engine.protocol.kafka_code import KafkaCode
from engine.types import OffsetAndMetadata, TopicPartition
from tests.engine.conftest import EngineFactory

E = KafkaCode
TIMEOUT = 10.0
SESSION_MS = 1000
REBALANCE_MS = 500


class FakeHost:
    """A coordinator stand-in: a clock the test moves, timers it fires, a
    state log applied at once."""

    def __init__(self, **config: Any) -> None:
        self.config = GroupConfig(
            **{
                "group_consumer_session_timeout_ms": SESSION_MS,
                "group_consumer_heartbeat_interval_ms": 100,
                # the bounds Kafka requires the two above to keep
                "group_consumer_min_session_timeout_ms": SESSION_MS,
                "group_consumer_min_heartbeat_interval_ms": 100,
                "group_consumer_regex_batch_refresh_interval_ms": 2000,
                "group_consumer_regex_refresh_interval_ms": 60_000,
                **config,
            }
        )
        self.clock_ms = 0
        self.timers: list[Timer] = []
        self.state: dict[Hashable, Any] = {}
        self.topic_map: dict[str, TopicInfo] = {}

    def now_ms(self) -> int:
        return self.clock_ms

    def resolve(self, future: Future[Any], value: Any) -> None:
        future.set_result(value)

    def schedule_consumer(self, group: ConsumerGroup, delay_s: float, callback: Any) -> Timer:
        timer = Timer(self.clock_ms / 1000 + delay_s, callback)
        self.timers.append(timer)
        return timer

    def write_consumer(
        self, puts: dict[Hashable, Any], deletes: list[Hashable], then: Any = None
    ) -> None:
        self.state.update(puts)
        for key in deletes:
            self.state.pop(key, None)
        if then is not None:
            then(E["NONE"])

    def topics(self) -> Mapping[str, TopicInfo]:
        return dict(self.topic_map)

    def take_over_as_classic(self, group: ConsumerGroup, leaving: ConsumerMember | None) -> bool:
        return False  # no classic members here (test_group_migration.py has them)

    def add_topic(self, name: str, partitions: int) -> bytes:
        topic_id = name.encode().ljust(16, b".")[:16]
        self.topic_map[name] = TopicInfo(topic_id, partitions)
        return topic_id

    def advance(self, ms: int) -> None:
        """Moves the clock, firing the timers that come due, in order."""
        self.clock_ms += ms
        while True:
            due = [t for t in self.timers if not t.cancelled and t.when <= self.clock_ms / 1000]
            if not due:
                break
            timer = min(due, key=lambda t: t.when)
            timer.cancelled = True
            timer.callback()
        self.timers = [t for t in self.timers if not t.cancelled]


def beat(group: ConsumerGroup, member_id: str, epoch: int, **fields: Any) -> HeartbeatResult:
    result = group.heartbeat(Heartbeat(group.group_id, member_id, epoch, **fields)).result(0)
    assert isinstance(result, HeartbeatResult)
    return result


def join(
    group: ConsumerGroup,
    member_id: str,
    topics: list[str] | None = None,
    **fields: Any,
) -> HeartbeatResult:
    fields.setdefault("rebalance_timeout_ms", REBALANCE_MS)
    fields.setdefault("owned_partitions", {})
    if "subscribed_topic_regex" not in fields:
        fields.setdefault("subscribed_topic_names", topics or [])
    return beat(group, member_id, 0, **fields)


def count(assignment: Mapping[bytes, frozenset[int]] | None) -> int:
    assert assignment is not None
    return sum(len(ps) for ps in assignment.values())


@pytest.fixture
def host() -> FakeHost:
    host = FakeHost()
    host.add_topic("orders", 4)
    return host


@pytest.fixture
def group(host: FakeHost) -> ConsumerGroup:
    return ConsumerGroup("g", host)


ORDERS = b"orders".ljust(16, b".")


# -- joining, reconciling, leaving -----------------------------------------------------


def test_a_first_member_gets_every_partition(group: ConsumerGroup) -> None:
    result = join(group, "a", ["orders"])
    assert (result.error, result.member_id, result.member_epoch) == (E["NONE"], "a", 1)
    assert result.assignment == {ORDERS: frozenset(range(4))}
    assert result.heartbeat_interval_ms == 100
    assert group.state == ConsumerGroupState.STABLE


def test_a_v0_member_without_an_id_is_given_one(group: ConsumerGroup) -> None:
    result = group.heartbeat(
        Heartbeat(
            "g",
            "",
            0,
            rebalance_timeout_ms=REBALANCE_MS,
            subscribed_topic_names=["orders"],
            owned_partitions={},
        )
    ).result(0)
    assert result.error == E["NONE"]
    assert result.member_id and result.member_id in group.members


def test_partitions_move_only_once_their_owner_revoked_them(group: ConsumerGroup) -> None:
    join(group, "a", ["orders"])
    joined = join(group, "b", ["orders"])
    # b is in the new epoch, but a still owns every partition.
    assert joined.member_epoch == 2
    assert joined.assignment == {}
    assert group.members["b"].state == ReconciliationState.UNRELEASED_PARTITIONS
    # a is asked to revoke two partitions, and stays in its epoch meanwhile.
    asked = beat(group, "a", 1, owned_partitions={ORDERS: {0, 1, 2, 3}})
    assert asked.member_epoch == 1
    assert count(asked.assignment) == 2
    assert group.members["a"].state == ReconciliationState.UNREVOKED_PARTITIONS
    assert group.state == ConsumerGroupState.RECONCILING
    # Until a reports it let them go, b gets nothing.
    assert beat(group, "b", 2).assignment is None
    assert beat(group, "a", 1).member_epoch == 1  # owned not reported: still held
    kept = asked.assignment
    assert kept is not None
    done = beat(group, "a", 1, owned_partitions=kept)
    assert done.member_epoch == 2
    given = beat(group, "b", 2)
    assert given.assignment is not None
    assert given.assignment[ORDERS] == frozenset(range(4)) - kept[ORDERS]
    assert group.state == ConsumerGroupState.STABLE


def test_a_member_that_leaves_frees_its_partitions(group: ConsumerGroup) -> None:
    join(group, "a", ["orders"])
    join(group, "b", ["orders"])
    kept = beat(group, "a", 1, owned_partitions={ORDERS: set(range(4))}).assignment
    assert kept is not None
    beat(group, "a", 1, owned_partitions=kept)
    beat(group, "b", 2)
    left = beat(group, "b", -1)
    assert (left.error, left.member_epoch) == (E["NONE"], -1)
    assert "b" not in group.members
    assert group.epoch == 3
    again = beat(group, "a", 2)
    assert again.member_epoch == 3
    assert again.assignment == {ORDERS: frozenset(range(4))}


def test_the_last_member_leaving_empties_the_group(host: FakeHost, group: ConsumerGroup) -> None:
    join(group, "a", ["orders"])
    host.clock_ms = 5000
    beat(group, "a", -1)
    assert group.state == ConsumerGroupState.EMPTY
    assert group.state_timestamp == 5000
    assert group.owners == {}


def test_fencing_by_member_epoch(group: ConsumerGroup) -> None:
    join(group, "a", ["orders"])
    assert beat(group, "a", 2).error == E["FENCED_MEMBER_EPOCH"]
    assert beat(group, "zzz", 1).error == E["UNKNOWN_MEMBER_ID"]
    join(group, "b", ["orders"])
    kept = beat(group, "a", 1, owned_partitions={ORDERS: set(range(4))}).assignment
    assert kept is not None
    beat(group, "a", 1, owned_partitions=kept)  # now in epoch 2
    # The answer that moved it on was lost: epoch 1 again, owning a subset.
    assert beat(group, "a", 1, owned_partitions=kept).error == E["NONE"]
    # Epoch 1 with a partition it no longer has, or epoch 0 twice removed: fenced.
    assert (
        beat(group, "a", 1, owned_partitions={ORDERS: {0, 1, 2, 3}}).error
        == (E["FENCED_MEMBER_EPOCH"])
    )


def test_a_fenced_member_rejoins_with_epoch_zero(group: ConsumerGroup) -> None:
    join(group, "a", ["orders"])
    assert beat(group, "a", 7).error == E["FENCED_MEMBER_EPOCH"]
    rejoined = join(group, "a", ["orders"])
    assert rejoined.error == E["NONE"]
    assert rejoined.assignment == {ORDERS: frozenset(range(4))}


# -- sessions and rebalance timeouts -----------------------------------------------------


def test_a_silent_member_expires_and_its_partitions_move(
    host: FakeHost, group: ConsumerGroup
) -> None:
    join(group, "a", ["orders"])
    join(group, "b", ["orders"])
    host.advance(SESSION_MS // 2)
    beat(group, "b", 2)
    host.advance(SESSION_MS // 2)  # a's session ends, b's goes on
    assert set(group.members) == {"b"}
    assert group.epoch == 3
    moved = beat(group, "b", 2)
    assert moved.member_epoch == 3
    assert moved.assignment == {ORDERS: frozenset(range(4))}


def test_a_member_that_does_not_revoke_in_its_rebalance_timeout_is_fenced(
    host: FakeHost, group: ConsumerGroup
) -> None:
    join(group, "a", ["orders"])
    join(group, "b", ["orders"])
    beat(group, "a", 1, owned_partitions={ORDERS: set(range(4))})
    assert group.members["a"].state == ReconciliationState.UNREVOKED_PARTITIONS
    for _ in range(3):  # heartbeats keep its session, not its revocation
        host.advance(REBALANCE_MS // 4)
        assert beat(group, "a", 1).error == E["NONE"]
        assert beat(group, "b", 2).error == E["NONE"]
    assert "a" in group.members
    host.advance(REBALANCE_MS // 4)
    assert "a" not in group.members
    assert beat(group, "a", 1).error == E["UNKNOWN_MEMBER_ID"]
    assert beat(group, "b", 2).assignment == {ORDERS: frozenset(range(4))}


# -- static members ----------------------------------------------------------------------


def test_a_static_member_comes_back_with_its_partitions(
    host: FakeHost, group: ConsumerGroup
) -> None:
    join(group, "a", ["orders"], instance_id="host-1")
    join(group, "b", ["orders"])
    kept = beat(group, "a", 1, owned_partitions={ORDERS: set(range(4))}).assignment
    assert kept is not None
    beat(group, "a", 1, owned_partitions=kept)
    beat(group, "b", 2)
    epoch = group.epoch
    left = beat(group, "a", -2, instance_id="host-1")
    assert (left.error, left.member_epoch) == (E["NONE"], -2)
    assert group.epoch == epoch  # no rebalance
    # A new process with the same instance id takes a's place and partitions.
    back = join(group, "a2", ["orders"], instance_id="host-1")
    assert back.error == E["NONE"]
    assert back.assignment == kept
    assert set(group.members) == {"a2", "b"}
    assert group.epoch == epoch


def test_a_static_member_that_did_not_leave_keeps_its_instance_id(
    group: ConsumerGroup,
) -> None:
    join(group, "a", ["orders"], instance_id="host-1")
    refused = join(group, "a2", ["orders"], instance_id="host-1")
    assert refused.error == E["UNRELEASED_INSTANCE_ID"]
    assert beat(group, "a2", -2, instance_id="host-1").error == E["FENCED_INSTANCE_ID"]
    # An instance id the group does not hold is unknown, as Kafka's
    # throwIfStaticMemberIsUnknown answers before it looks at the member id.
    assert beat(group, "a", 1, instance_id="host-2").error == E["UNKNOWN_MEMBER_ID"]


def test_a_static_member_that_stays_away_expires(host: FakeHost, group: ConsumerGroup) -> None:
    join(group, "a", ["orders"], instance_id="host-1")
    beat(group, "a", -2, instance_id="host-1")
    host.advance(SESSION_MS)
    assert group.is_empty


# -- subscriptions and topics ------------------------------------------------------------


def test_partitions_added_to_a_topic_are_assigned(host: FakeHost, group: ConsumerGroup) -> None:
    join(group, "a", ["orders"])
    host.add_topic("orders", 6)
    grown = beat(group, "a", 1)
    assert grown.member_epoch == 2
    assert grown.assignment == {ORDERS: frozenset(range(6))}


def test_a_new_regex_is_resolved_off_the_heartbeat_and_assigned_at_the_next(
    host: FakeHost, group: ConsumerGroup
) -> None:
    joined = join(group, "a", subscribed_topic_regex="ord.*")
    # Answered before the regex is resolved: none of its topics yet.
    assert joined.member_epoch == 1
    assert joined.assignment == {}
    assert group.topics == {}
    host.advance(0)  # the coordinator's timer resolves it
    assert group.epoch == 2
    assert set(group.topics) == {"orders"}
    assigned = beat(group, "a", 1)
    assert assigned.member_epoch == 2
    assert assigned.assignment == {ORDERS: frozenset(range(4))}
    # A second member with the same, resolved, regex needs no resolution.
    second = join(group, "b", subscribed_topic_regex="ord.*")
    assert second.member_epoch == 3
    assert [t for t in host.timers if t.callback == group._resolve_regexes] == []


def test_topics_created_later_are_resolved_at_most_every_batch_interval(
    host: FakeHost, group: ConsumerGroup
) -> None:
    batch_ms = host.config.group_consumer_regex_batch_refresh_interval_ms
    join(group, "a", subscribed_topic_regex="ord.*")
    host.advance(0)
    assert beat(group, "a", 1).assignment == {ORDERS: frozenset(range(4))}
    host.add_topic("ordinals", 2)
    host.add_topic("xorders", 2)  # the whole name must match
    # The heartbeat that sees the new topics has them resolved after the
    # batch interval since the last resolution; until then, nothing moves.
    assert beat(group, "a", 2).assignment is None
    step_ms = SESSION_MS // 2
    for _ in range(batch_ms // step_ms - 1):
        host.advance(step_ms)
        assert group.epoch == 2
        assert beat(group, "a", 2).assignment is None
    host.advance(step_ms)
    assert group.epoch == 3
    grown = beat(group, "a", 2)
    ordinals = b"ordinals".ljust(16, b".")
    assert grown.member_epoch == 3
    assert grown.assignment == {ORDERS: frozenset(range(4)), ordinals: frozenset({0, 1})}
    assert group.subscribed_topics() == {"orders", "ordinals"}


def test_a_regex_no_member_has_any_more_is_resolved_anew(
    host: FakeHost, group: ConsumerGroup
) -> None:
    join(group, "a", subscribed_topic_regex="ord.*")
    host.advance(0)
    beat(group, "a", 1)
    beat(group, "a", -1)  # leaves: nobody has the regex
    ordinals = host.add_topic("ordinals", 1)
    joined = join(group, "b", subscribed_topic_regex="ord.*")
    assert joined.assignment == {}
    host.advance(0)  # at once, not after the batch interval
    assert beat(group, "b", joined.member_epoch).assignment == {
        ORDERS: frozenset(range(4)),
        ordinals: frozenset({0}),
    }


def test_regexes_are_resolved_again_after_the_refresh_interval(
    host: FakeHost, group: ConsumerGroup
) -> None:
    join(group, "a", subscribed_topic_regex="ord.*")
    host.advance(0)
    beat(group, "a", 1)
    resolved_at = group.regexes.resolved_ms
    step_ms = SESSION_MS // 2
    for _ in range(host.config.group_consumer_regex_refresh_interval_ms // step_ms - 1):
        host.advance(step_ms)
        beat(group, "a", 2)
        assert group.regexes.resolved_ms == resolved_at
    host.advance(step_ms)
    beat(group, "a", 2)
    host.advance(0)
    assert group.regexes.resolved_ms == host.clock_ms
    assert group.epoch == 2  # the same topics: nothing moves


def test_a_loaded_group_keeps_its_regexes_topics_until_it_resolves_them_again(
    host: FakeHost, group: ConsumerGroup
) -> None:
    join(group, "a", subscribed_topic_regex="ord.*")
    host.advance(0)
    assert beat(group, "a", 1).assignment == {ORDERS: frozenset(range(4))}
    group.unload()
    stored = StoredConsumerGroup.from_value(host.state[consumer_group_key("g")])
    member = StoredConsumerMember.from_value(host.state[consumer_member_key("g", "a")])
    loaded = ConsumerGroup.load("g", host, stored, {"a": member})
    # Its first heartbeat is in the same epoch: nothing waits for a resolution.
    again = beat(loaded, "a", 2)
    assert (again.error, again.member_epoch, loaded.epoch) == (E["NONE"], 2, 2)
    host.advance(0)  # resolved again: the same topics, nothing moves
    assert loaded.regexes.resolved_ms == host.clock_ms
    assert loaded.epoch == 2


def test_a_subscription_change_moves_the_group_on(host: FakeHost, group: ConsumerGroup) -> None:
    payments = host.add_topic("payments", 2)
    join(group, "a", ["orders"])
    changed = beat(group, "a", 1, subscribed_topic_names=["payments"])
    # The orders partitions are to be revoked first.
    assert changed.member_epoch == 1
    assert changed.assignment == {}
    done = beat(group, "a", 1, owned_partitions={})
    assert done.member_epoch == 2
    assert done.assignment == {payments: frozenset({0, 1})}


def test_the_assignor_most_members_ask_for_is_used(group: ConsumerGroup) -> None:
    join(group, "a", ["orders"], server_assignor="range")
    assert group.assignor_name() == "range"
    join(group, "b", ["orders"])
    assert group.assignor_name() == "range"
    join(group, "c", ["orders"], server_assignor="uniform")
    assert group.assignor_name() == "uniform"  # a tie: the first configured


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"member_id": ""}, "INVALID_REQUEST"),
        ({"group_id": ""}, "INVALID_REQUEST"),
        ({"rebalance_timeout_ms": -1}, "INVALID_REQUEST"),
        ({"owned_partitions": None}, "INVALID_REQUEST"),
        ({"owned_partitions": {ORDERS: [1]}}, "INVALID_REQUEST"),
        ({"subscribed_topic_names": None}, "INVALID_REQUEST"),
        ({"instance_id": ""}, "INVALID_REQUEST"),
        ({"member_epoch": -3}, "INVALID_REQUEST"),
        ({"server_assignor": "sticky"}, "UNSUPPORTED_ASSIGNOR"),
        ({"subscribed_topic_regex": "orders(("}, "INVALID_REGULAR_EXPRESSION"),
    ],
)
def test_malformed_heartbeats_are_refused(
    engine_factory: EngineFactory, fields: dict[str, Any], code: str
) -> None:
    groups = engine_factory().groups
    request = Heartbeat(
        "g",
        "a",
        0,
        rebalance_timeout_ms=REBALANCE_MS,
        subscribed_topic_names=["orders"],
        owned_partitions={},
    )._replace(**fields)
    result = groups.consumer_group_heartbeat(request).result(TIMEOUT)
    assert result.error == E[code]
    assert result.error_message


def test_a_full_group_refuses_new_members() -> None:
    host = FakeHost(group_consumer_max_size=1)
    group = ConsumerGroup("g", host)
    assert join(group, "a", []).error == E["NONE"]
    assert join(group, "b", []).error == E["GROUP_MAX_SIZE_REACHED"]
    assert join(group, "a", []).error == E["NONE"]  # a member already in rejoins


# -- no partition held by two members, whatever happens ----------------------------------


class Client:
    """A member's process as librdkafka behaves: it holds what the last
    answer assigned it and says so in its next heartbeat; after an answer
    it did not get it sends a full heartbeat; fenced, it lets every
    partition go and joins again."""

    def __init__(self, member_id: str) -> None:
        self.member_id = member_id
        self.running = False
        self.subscription: dict[str, Any] = {}
        self.epoch = -1
        """-1: not in the group (not running, or fenced and to join again)."""
        self.owned: dict[bytes, frozenset[int]] = {}
        self.reported: dict[bytes, frozenset[int]] | None = None
        """What its last heartbeat said it owns; None: to be said again."""
        self.full = False
        """Its next heartbeat is a full one (after an answer it did not get)."""

    def apply(self, result: HeartbeatResult) -> None:
        if result.error in (E["FENCED_MEMBER_EPOCH"], E["UNKNOWN_MEMBER_ID"]):
            self.drop()
            return
        assert result.error == E["NONE"], result
        self.epoch = result.member_epoch
        if result.assignment is not None:
            self.owned = {t: ps for t, ps in result.assignment.items() if ps}

    def drop(self) -> None:
        self.epoch = -1
        self.owned = {}
        self.reported = None
        self.full = False


SUBSCRIPTIONS: dict[str, dict[str, Any]] = {
    "names": {"subscribed_topic_names": ["orders", "payments"]},
    "one": {"subscribed_topic_names": ["payments"]},
    "regex": {"subscribed_topic_regex": "(orders|payments|extra.*)"},
}


class ReconciliationMachine(RuleBasedStateMachine):
    """Clients join (by names or a regex), heartbeat (saying what they own,
    or not), lose answers, leave, crash; topics grow and appear. No
    partition is ever held by two clients, nor owned twice in the
    coordinator; once everyone heartbeats the group settles on its target."""

    def __init__(self) -> None:
        super().__init__()
        self.host = FakeHost()
        self.host.add_topic("orders", 3)
        self.host.add_topic("payments", 2)
        self.group = ConsumerGroup("g", self.host)
        self.clients = [Client(f"member-{i}") for i in range(4)]

    @initialize()
    def start(self) -> None:
        self.host.clock_ms = 0

    def _send(self, client: Client, lose_answer: bool = False) -> None:
        if client.epoch < 0:
            result = join(self.group, client.member_id, **client.subscription)
            reported: dict[bytes, frozenset[int]] | None = {}
        elif client.full:
            reported = dict(client.owned)
            result = beat(
                self.group,
                client.member_id,
                client.epoch,
                owned_partitions=reported,
                rebalance_timeout_ms=REBALANCE_MS,
                **client.subscription,
            )
        else:
            reported = None if client.reported == client.owned else dict(client.owned)
            result = beat(self.group, client.member_id, client.epoch, owned_partitions=reported)
        client.full = lose_answer
        if lose_answer:
            return
        if reported is not None:
            client.reported = reported
        client.apply(result)

    @rule(index=st.integers(0, 3), by=st.sampled_from(sorted(SUBSCRIPTIONS)))
    def start_client(self, index: int, by: str) -> None:
        client = self.clients[index]
        if not client.running:
            client.running = True
            client.subscription = SUBSCRIPTIONS[by]
            self._send(client)

    @rule(index=st.integers(0, 3), lose_answer=st.booleans())
    def heartbeat(self, index: int, lose_answer: bool) -> None:
        client = self.clients[index]
        if client.running:
            self._send(client, lose_answer)

    @rule(index=st.integers(0, 3))
    def leave(self, index: int) -> None:
        client = self.clients[index]
        if client.running and client.epoch >= 0:
            result = beat(self.group, client.member_id, -1)
            assert result.error == E["NONE"]
            client.drop()
            client.running = False

    @rule(index=st.integers(0, 3))
    def crash(self, index: int) -> None:
        """The process dies; its member goes when its session ends."""
        client = self.clients[index]
        if client.running:
            client.drop()
            client.running = False
            member = self.group.members.get(client.member_id)
            if member is not None:
                assert member.session_timer is not None
                member.session_timer.callback()
            assert client.member_id not in self.group.members

    @rule(index=st.integers(0, 3))
    def rebalance_timeout(self, index: int) -> None:
        """Its rebalance timeout ends: a member still revoking is fenced
        (its client, which took too long, gives its partitions up too)."""
        client = self.clients[index]
        member = self.group.members.get(client.member_id)
        if member is not None and member.rebalance_timer is not None:
            member.rebalance_timer.callback()
            if member.member_id not in self.group.members:
                client.drop()

    @rule(topic=st.sampled_from(["orders", "payments", "extra-1"]), more=st.integers(1, 3))
    def grow(self, topic: str, more: int) -> None:
        current = self.host.topic_map.get(topic)
        self.host.add_topic(topic, (current.partitions if current else 0) + more)

    @precondition(lambda self: any(c.running for c in self.clients))
    @rule()
    def settle(self) -> None:
        """Every running client heartbeats until the group is stable; then
        each holds exactly its target and every subscribed partition is held."""
        running = [c for c in self.clients if c.running]
        for _ in range(3 * len(running) + 3):
            for client in running:
                self._send(client)
        assert self.group.state == ConsumerGroupState.STABLE
        subscribed = {self.host.topic_map[n].topic_id for n in self.group.topics}
        held: set[tuple[bytes, int]] = set()
        for client in running:
            member = self.group.members[client.member_id]
            assert member.epoch == self.group.assignment_epoch
            assert member.assigned == self.group.target[client.member_id]
            assert client.owned == {t: ps for t, ps in member.assigned.items() if ps}
            held |= {(t, p) for t, ps in client.owned.items() for p in ps}
        expected = {
            (info.topic_id, p)
            for info in self.host.topic_map.values()
            if info.topic_id in subscribed
            for p in range(info.partitions)
        }
        assert held == expected

    @invariant()
    def no_partition_has_two_owners(self) -> None:
        seen: dict[tuple[bytes, int], str] = {}
        for member in self.group.members.values():
            for tp in member.owned():
                assert tp not in seen, f"{tp} held by {seen[tp]} and {member.member_id}"
                seen[tp] = member.member_id
        assert seen == self.group.owners

    @invariant()
    def no_partition_is_consumed_by_two_clients(self) -> None:
        seen: dict[tuple[bytes, int], str] = {}
        for client in self.clients:
            for topic, partitions in client.owned.items():
                for partition in partitions:
                    tp = (topic, partition)
                    assert tp not in seen, f"{tp} consumed by {seen[tp]} and {client.member_id}"
                    seen[tp] = client.member_id

    @invariant()
    def clients_hold_only_what_the_coordinator_lets_them(self) -> None:
        for client in self.clients:
            if not client.owned:
                continue
            member = self.group.members[client.member_id]
            held = {(t, p) for t, ps in client.owned.items() for p in ps}
            assert held <= member.owned()


TestReconciliation = ReconciliationMachine.TestCase
TestReconciliation.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)


# -- through an engine: the registry, offsets, admin APIs, restarts ----------------------


CONSUMER_SETTINGS: dict[str, Any] = {
    "group_consumer_session_timeout_ms": 60_000,
    "group_consumer_heartbeat_interval_ms": 200,
    "group_consumer_min_session_timeout_ms": 100,  # a restart's test takes 300 ms
    "group_consumer_min_heartbeat_interval_ms": 100,
    "group_initial_rebalance_delay_ms": 0,
    "group_min_session_timeout_ms": 10,
}


def open_engine(engine_factory: EngineFactory, data_dir: Path, **settings: Any) -> engine.Engine:
    groups = engine.GroupConfig(**{**CONSUMER_SETTINGS, **settings})
    opened = engine_factory(data_dir=data_dir, groups=groups)
    if "orders" not in opened.list_topics():
        opened.create_topic("orders", 4)
    return opened


def engine_join(
    opened: engine.Engine, member_id: str, group_id: str = "g", **fields: Any
) -> HeartbeatResult:
    request = Heartbeat(
        group_id,
        member_id,
        0,
        rebalance_timeout_ms=REBALANCE_MS,
        subscribed_topic_names=["orders"],
        owned_partitions={},
    )._replace(**fields)
    return opened.groups.consumer_group_heartbeat(request).result(TIMEOUT)


def engine_beat(
    opened: engine.Engine, member_id: str, epoch: int, group_id: str = "g", **fields: Any
) -> HeartbeatResult:
    request = Heartbeat(group_id, member_id, epoch, **fields)
    return opened.groups.consumer_group_heartbeat(request).result(TIMEOUT)


def test_a_restart_keeps_the_groups_epochs_and_members(
    engine_factory: EngineFactory, tmp_path: Path
) -> None:
    data = tmp_path / "node"
    first = open_engine(engine_factory, data)
    topic_id = first.topic_id("orders")
    engine_join(first, "a", instance_id="host-a")
    engine_join(first, "b")
    kept = engine_beat(first, "a", 1, owned_partitions={topic_id: [0, 1, 2, 3]}).assignment
    assert kept is not None
    assert engine_beat(first, "a", 1, owned_partitions=kept).member_epoch == 2
    b_assignment = engine_beat(first, "b", 2).assignment
    first.close()

    second = open_engine(engine_factory, data)
    (described,) = second.groups.consumer_group_describe(["g"])
    assert (described.state, described.group_epoch, described.assignment_epoch) == (
        "Stable",
        2,
        2,
    )
    members = {m.member_id: m for m in described.members}
    assert members["a"].instance_id == "host-a"
    assert members["a"].assignment == kept
    assert members["b"].assignment == b_assignment
    # Members carry on in their epochs; nothing moves.
    again = engine_beat(second, "a", 2, owned_partitions=kept)
    assert (again.error, again.member_epoch) == (E["NONE"], 2)
    assert engine_beat(second, "b", 2).error == E["NONE"]
    assert second.groups.consumer_group_describe(["g"])[0].group_epoch == 2


def test_the_coordinator_resolves_a_new_regex_on_its_timer_not_in_the_heartbeat(
    engine_factory: EngineFactory, tmp_path: Path
) -> None:
    clock = ManualClock()
    groups = engine.GroupConfig(**CONSUMER_SETTINGS)
    opened = engine_factory(data_dir=tmp_path / "node", groups=groups, clock=clock)
    opened.create_topic("orders", 2)
    topic_id = opened.topic_id("orders")
    joined = engine_join(opened, "a", subscribed_topic_names=None, subscribed_topic_regex="ord.*")
    assert (joined.error, joined.member_epoch, joined.assignment) == (E["NONE"], 1, {})
    # The clock stands still: only the timer thread, not a request, moves it on.
    deadline = time.monotonic() + TIMEOUT
    while opened.groups.consumer_group_describe(["g"])[0].group_epoch != 2:
        assert time.monotonic() < deadline, "the regex was never resolved"
        time.sleep(0.01)
    later = engine_beat(opened, "a", 1)
    assert (later.member_epoch, later.assignment) == (2, {topic_id: frozenset({0, 1})})


def test_members_that_do_not_return_after_a_restart_expire(
    engine_factory: EngineFactory, tmp_path: Path
) -> None:
    data = tmp_path / "node"
    first = open_engine(engine_factory, data)
    engine_join(first, "a")
    first.close()
    second = open_engine(engine_factory, data, group_consumer_session_timeout_ms=300)
    deadline = time.monotonic() + TIMEOUT
    while second.groups.consumer_group_describe(["g"])[0].state != "Empty":
        assert time.monotonic() < deadline, "the member never expired"
        time.sleep(0.05)
    assert second.groups.consumer_group_describe(["g"])[0].group_epoch == 2


def test_a_group_id_is_either_classic_or_consumer(
    engine_factory: EngineFactory, tmp_path: Path
) -> None:
    opened = open_engine(engine_factory, tmp_path / "node")
    groups = opened.groups
    engine_join(opened, "a", group_id="new")
    joined = groups.join_group(
        "new", "", None, "consumer", [("range", b"")], 10_000, 10_000, require_known_member_id=False
    )
    assert joined.result(TIMEOUT).error == E["INCONSISTENT_GROUP_PROTOCOL"]

    classic = groups.join_group(
        "old", "", None, "consumer", [("range", b"")], 10_000, 10_000, require_known_member_id=False
    )
    member = classic.result(TIMEOUT)
    assert member.error == E["NONE"]
    # Its members' metadata is no consumer-protocol subscription: it cannot
    # be taken over online, which Kafka answers GROUP_ID_NOT_FOUND.
    assert engine_join(opened, "x", group_id="old").error == E["GROUP_ID_NOT_FOUND"]

    # An empty group changes protocol, keeping its committed offsets.
    groups.leave_group("old", [(member.member_id, None)]).result(10)
    commit = groups.commit_offsets(
        "old", -1, "", None, {TopicPartition("orders", 0): OffsetAndMetadata(7)}
    )
    assert commit.result(TIMEOUT) == {TopicPartition("orders", 0): E["NONE"]}
    assert engine_join(opened, "x", group_id="old").error == E["NONE"]
    assert groups.consumer_group_describe(["old"])[0].error == E["NONE"]
    committed = groups.fetch_offsets("old", [TopicPartition("orders", 0)])
    assert committed[TopicPartition("orders", 0)][0] is not None
    assert committed[TopicPartition("orders", 0)][0].offset == 7
    assert engine_beat(opened, "x", 1, group_id="old").error == E["NONE"]
    engine_beat(opened, "x", -1, group_id="old")
    again = groups.join_group(
        "old", "", None, "consumer", [("range", b"")], 10_000, 10_000, require_known_member_id=False
    )
    assert again.result(TIMEOUT).error == E["NONE"]
    assert groups.consumer_group_describe(["old"])[0].error == E["GROUP_ID_NOT_FOUND"]


def test_members_commit_and_fetch_in_their_epoch(
    engine_factory: EngineFactory, tmp_path: Path
) -> None:
    opened = open_engine(engine_factory, tmp_path / "node")
    groups = opened.groups
    tp = TopicPartition("orders", 0)
    offsets = {tp: OffsetAndMetadata(5)}
    engine_join(opened, "a")
    engine_join(opened, "b")  # group epoch 2; a is still in epoch 1

    def commit(member_id: str, epoch: int) -> int:
        return groups.commit_offsets("g", epoch, member_id, None, offsets).result(TIMEOUT)[tp]

    assert commit("a", 1) == E["NONE"]
    assert commit("b", 2) == E["NONE"]
    assert commit("b", 1) == E["STALE_MEMBER_EPOCH"]
    assert commit("b", 3) == E["FENCED_MEMBER_EPOCH"]
    assert commit("nobody", 2) == E["UNKNOWN_MEMBER_ID"]
    assert commit("", -1) == E["UNKNOWN_MEMBER_ID"]  # the group has members

    assert groups.fetch_offsets("g", [tp], member_id="b", member_epoch=2)[tp][0] is not None
    assert groups.fetch_offsets("g", [tp])[tp][0] is not None  # an admin's fetch
    with pytest.raises(StaleMemberEpoch):
        groups.fetch_offsets("g", [tp], member_id="b", member_epoch=1)
    with pytest.raises(FencedMemberEpoch):
        groups.fetch_offsets("g", [tp], member_id="b", member_epoch=3)
    with pytest.raises(UnknownMemberId):
        groups.fetch_offsets("g", [tp], member_id="nobody", member_epoch=1)

    engine_beat(opened, "a", -1)
    engine_beat(opened, "b", -1)
    assert commit("", -1) == E["NONE"]  # an empty group takes commits from outside


def test_admin_apis_cover_consumer_groups(engine_factory: EngineFactory, tmp_path: Path) -> None:
    opened = open_engine(engine_factory, tmp_path / "node")
    opened.create_topic("audit", 1)
    groups = opened.groups
    engine_join(opened, "a")
    groups.commit_offsets(
        "g",
        1,
        "a",
        None,
        {
            TopicPartition("orders", 1): OffsetAndMetadata(3),
            TopicPartition("audit", 0): OffsetAndMetadata(1),
        },
    ).result(TIMEOUT)

    listed = groups.list_groups()
    assert [(g.group_id, g.protocol_type, g.state, g.group_type) for g in listed] == [
        ("g", "consumer", "Stable", "consumer")
    ]
    assert groups.list_groups(types=["Classic"]) == []
    assert [g.group_id for g in groups.list_groups(states=["stable"], types=["CONSUMER"])] == ["g"]

    # DescribeGroups is a classic group's: Kafka 4.0 answers a consumer group not found.
    (described,) = groups.describe_groups(["g"])
    assert (described.error, described.state, described.protocol_type, described.members) == (
        E["GROUP_ID_NOT_FOUND"],
        "Dead",
        "",
        [],
    )
    assert described.error_message == "Group g is not a classic group."

    # Offsets of a topic nobody subscribes to may go; the others may not.
    deleted = groups.delete_offsets(
        "g", [TopicPartition("orders", 1), TopicPartition("audit", 0)]
    ).result(TIMEOUT)
    assert deleted == {
        TopicPartition("orders", 1): E["GROUP_SUBSCRIBED_TO_TOPIC"],
        TopicPartition("audit", 0): E["NONE"],
    }
    assert groups.subscribed_topics("g") == {"orders"}
    assert groups.delete_groups(["g"]).result(TIMEOUT) == {"g": E["NON_EMPTY_GROUP"]}
    engine_beat(opened, "a", -1)
    assert groups.delete_groups(["g"]).result(TIMEOUT) == {"g": E["NONE"]}
    assert groups.list_groups() == []
    assert groups.fetch_offsets("g", None) == {}
    (gone,) = groups.consumer_group_describe(["g"])
    assert gone.error == E["GROUP_ID_NOT_FOUND"]


def test_a_deleted_group_stays_deleted_after_a_restart(
    engine_factory: EngineFactory, tmp_path: Path
) -> None:
    data = tmp_path / "node"
    first = open_engine(engine_factory, data)
    engine_join(first, "a")
    engine_beat(first, "a", -1)
    first.groups.delete_groups(["g"]).result(TIMEOUT)
    engine_join(first, "b", group_id="h")
    first.close()
    second = open_engine(engine_factory, data)
    assert [g.group_id for g in second.groups.list_groups()] == ["h"]
