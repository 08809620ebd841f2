"""Kafka's consumer protocol, client side: the assignors that turn the
members' subscriptions (JoinGroup) into the assignments their group's
leader hands out (SyncGroup). The subscription and assignment encodings
are in engine/protocol/consumer_protocol.py; a member of any client can
lead a group with embedded members and the other way round.

The assignors carry Kafka's protocol names, which is what members of a
group vote on: "range" and "roundrobin" (eager: every member gives up its
partitions before a rebalance) and "cooperative-sticky" (KIP-429: a member
keeps its partitions through a rebalance; one that moves is first revoked
by its owner and only assigned in the rebalance that follows).
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from enum import IntEnum
from typing import ClassVar, NamedTuple

from engine.protocol.consumer_protocol import Subscription
from engine.types import TopicPartition

_INT32 = struct.Struct(">i")


class RebalanceProtocol(IntEnum):
    EAGER = 0
    COOPERATIVE = 1


class MemberSubscription(NamedTuple):
    """One member as the leader sees it."""

    member_id: str
    group_instance_id: str | None
    subscription: Subscription


# -- assignors --------------------------------------------------------------------------


class Assignor:
    """Assigns the partitions of the members' subscribed topics.

    ``partitions_per_topic`` has every subscribed topic that exists (with
    its partition count); ``members`` has every member of the generation.
    The answer names every member, with the partitions it gets in order.
    """

    name: ClassVar[str]
    protocols: ClassVar[tuple[RebalanceProtocol, ...]] = (RebalanceProtocol.EAGER,)

    def user_data(self, generation_id: int) -> bytes | None:
        """The user data of this assignor's subscription."""
        return None

    def assign(
        self, partitions_per_topic: Mapping[str, int], members: Sequence[MemberSubscription]
    ) -> dict[str, list[TopicPartition]]:
        raise NotImplementedError


def member_order(members: Iterable[MemberSubscription]) -> list[MemberSubscription]:
    """Kafka's order of members: static ones first, by instance id, then
    the others by member id."""
    return sorted(
        members,
        key=lambda m: (
            (0, m.group_instance_id) if m.group_instance_id is not None else (1, m.member_id)
        ),
    )


def _subscribed(member: MemberSubscription, partitions_per_topic: Mapping[str, int]) -> set[str]:
    return {t for t in member.subscription.topics if partitions_per_topic.get(t, 0) > 0}


class RangeAssignor(Assignor):
    """Per topic, its partitions in consecutive ranges over the members
    subscribed to it, in member order; the first members get one more
    when they do not divide evenly (Kafka's RangeAssignor)."""

    name = "range"

    def assign(
        self, partitions_per_topic: Mapping[str, int], members: Sequence[MemberSubscription]
    ) -> dict[str, list[TopicPartition]]:
        ordered = member_order(members)
        assignment: dict[str, list[TopicPartition]] = {m.member_id: [] for m in ordered}
        consumers: dict[str, list[str]] = defaultdict(list)
        for member in ordered:
            for topic in _subscribed(member, partitions_per_topic):
                consumers[topic].append(member.member_id)
        for topic in sorted(consumers):
            subscribers = consumers[topic]
            count = partitions_per_topic[topic]
            each, extra = divmod(count, len(subscribers))
            for index, member_id in enumerate(subscribers):
                start = each * index + min(index, extra)
                length = each + (1 if index < extra else 0)
                assignment[member_id] += [
                    TopicPartition(topic, p) for p in range(start, start + length)
                ]
        return assignment


class RoundRobinAssignor(Assignor):
    """Every partition of every subscribed topic (topics in name order) to
    the next member in a circle that subscribes to its topic (Kafka's
    RoundRobinAssignor)."""

    name = "roundrobin"

    def assign(
        self, partitions_per_topic: Mapping[str, int], members: Sequence[MemberSubscription]
    ) -> dict[str, list[TopicPartition]]:
        ordered = member_order(members)
        assignment: dict[str, list[TopicPartition]] = {m.member_id: [] for m in ordered}
        subscribed = {m.member_id: _subscribed(m, partitions_per_topic) for m in ordered}
        topics = sorted(set().union(*subscribed.values())) if subscribed else []
        turn = 0
        for topic in topics:
            for partition in range(partitions_per_topic[topic]):
                while topic not in subscribed[ordered[turn].member_id]:
                    turn = (turn + 1) % len(ordered)
                assignment[ordered[turn].member_id].append(TopicPartition(topic, partition))
                turn = (turn + 1) % len(ordered)
        return assignment


class CooperativeStickyAssignor(Assignor):
    """A balanced assignment that keeps each member's partitions where it
    can, for the incremental cooperative protocol (KIP-429).

    Members keep what they own (a partition claimed by several members
    stays with the one of the latest generation; claimed twice in one
    generation, it is nobody's), up to an even share when every member
    subscribes to the same topics. The partitions left go, one at a time,
    to the least loaded member subscribed to their topic; then partitions
    move from the most to the least loaded members while that narrows the
    gap. A partition that ends up with another member than the one that
    owns it is left out of this round: its owner revokes it and rejoins,
    and the next rebalance assigns it (Kafka's CooperativeStickyAssignor).
    """

    name = "cooperative-sticky"
    protocols = (RebalanceProtocol.EAGER, RebalanceProtocol.COOPERATIVE)

    def user_data(self, generation_id: int) -> bytes | None:
        # The Java client's CooperativeStickyAssignor user data: the
        # generation, for leaders that read subscriptions before v2.
        return _INT32.pack(generation_id)

    def assign(
        self, partitions_per_topic: Mapping[str, int], members: Sequence[MemberSubscription]
    ) -> dict[str, list[TopicPartition]]:
        ordered = member_order(members)
        if not ordered:
            return {}
        rank = {m.member_id: index for index, m in enumerate(ordered)}
        subscribed = {m.member_id: _subscribed(m, partitions_per_topic) for m in ordered}
        every = sorted(
            TopicPartition(topic, p)
            for topic in set().union(*subscribed.values())
            for p in range(partitions_per_topic[topic])
        )
        owners = self._owners(ordered, subscribed, partitions_per_topic)

        assignment: dict[str, list[TopicPartition]] = {m.member_id: [] for m in ordered}
        same_topics = len({frozenset(s) for s in subscribed.values()}) == 1
        share = -(-len(every) // len(ordered)) if same_topics else len(every)
        for tp, owner in sorted(owners.items()):
            if len(assignment[owner]) < share:
                assignment[owner].append(tp)
        placed = {tp for partitions in assignment.values() for tp in partitions}

        def least_loaded(topic: str) -> str | None:
            eligible = [m for m in assignment if topic in subscribed[m]]
            return min(eligible, key=lambda m: (len(assignment[m]), rank[m]), default=None)

        for tp in every:
            if tp not in placed:
                target = least_loaded(tp.topic)
                if target is not None:
                    assignment[target].append(tp)
        self._balance(assignment, subscribed, owners, rank)

        # Cooperative: nothing changes hands in one rebalance.
        return {
            member_id: sorted(tp for tp in partitions if owners.get(tp, member_id) == member_id)
            for member_id, partitions in assignment.items()
        }

    @staticmethod
    def _owners(
        ordered: Sequence[MemberSubscription],
        subscribed: Mapping[str, set[str]],
        partitions_per_topic: Mapping[str, int],
    ) -> dict[TopicPartition, str]:
        claims: dict[TopicPartition, list[tuple[int, str]]] = defaultdict(list)
        for member in ordered:
            generation = member_generation(member.subscription)
            for tp in set(member.subscription.owned_partitions):
                if tp.topic in subscribed[member.member_id] and (
                    0 <= tp.partition < partitions_per_topic[tp.topic]
                ):
                    claims[tp].append((generation, member.member_id))
        owners = {}
        for tp, claimants in claims.items():
            latest = max(generation for generation, _ in claimants)
            holders = [member_id for generation, member_id in claimants if generation == latest]
            if len(holders) == 1:
                owners[tp] = holders[0]
        return owners

    @staticmethod
    def _balance(
        assignment: dict[str, list[TopicPartition]],
        subscribed: Mapping[str, set[str]],
        owners: Mapping[TopicPartition, str],
        rank: Mapping[str, int],
    ) -> None:
        """Moves partitions one at a time from a member to the least loaded
        member subscribed to their topic while that one has at least two
        fewer, preferring partitions the giver did not own before; each move
        narrows the spread, so this ends."""
        subscribers: dict[str, list[str]] = defaultdict(list)
        for member_id in sorted(assignment, key=rank.__getitem__):
            for topic in subscribed[member_id]:
                subscribers[topic].append(member_id)
        moved = True
        while moved:
            moved = False
            for giver in sorted(assignment, key=lambda m: (-len(assignment[m]), rank[m])):
                held = assignment[giver]
                for tp in sorted(held, key=lambda tp: (owners.get(tp) == giver, tp)):
                    taker = min(subscribers[tp.topic], key=lambda m: len(assignment[m]))
                    if len(assignment[taker]) < len(held) - 1:
                        held.remove(tp)
                        assignment[taker].append(tp)
                        moved = True


def member_generation(subscription: Subscription) -> int:
    """The generation a member's owned partitions are from: the
    subscription's (v2+), else the Java client's user data (its generation
    as an int32), else unknown (-1)."""
    if subscription.generation_id >= 0:
        return subscription.generation_id
    data = subscription.user_data
    if data is not None and len(data) == 4:
        generation: int = _INT32.unpack(data)[0]
        return generation
    return -1


ASSIGNORS: dict[str, type[Assignor]] = {
    cls.name: cls for cls in (RangeAssignor, RoundRobinAssignor, CooperativeStickyAssignor)
}


def assignor(name: str) -> Assignor:
    """The assignor of this Kafka name."""
    try:
        return ASSIGNORS[name]()
    except KeyError:
        raise ValueError(
            f"unknown partition assignment strategy {name!r}: {', '.join(ASSIGNORS)}"
        ) from None


def rebalance_protocol(assignors: Sequence[Assignor]) -> RebalanceProtocol:
    """The protocol a member with these assignors follows: the latest one
    every one of them supports (as Kafka's Java client chooses), so
    ["range", "cooperative-sticky"] is eager and ["cooperative-sticky"]
    cooperative."""
    common = set(RebalanceProtocol)
    for each in assignors:
        common &= set(each.protocols)
    if not common:
        raise ValueError("the assignors share no rebalance protocol")
    return max(common)
