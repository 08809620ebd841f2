"""A member of a KIP-848 consumer group: its subscription, its current
assignment (epoch, partitions assigned and pending revocation) and where
it is in reconciling that with its target, and its stored form."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum
from typing import Any, NamedTuple

from engine.groups.assignors import TopicId
from engine.groups.records import StoredConsumerMember
from engine.groups.timers import Timer

Partitions = dict[TopicId, frozenset[int]]
"""Partitions by topic id."""


class ReconciliationState(StrEnum):
    """Where a member is in reconciling its assignment with its target."""

    STABLE = "stable"
    UNREVOKED_PARTITIONS = "unrevoked_partitions"
    """Waiting for the member to give up its partitions pending revocation."""
    UNRELEASED_PARTITIONS = "unreleased_partitions"
    """In the target epoch, waiting for partitions other members still own."""


class ClassicProtocol(NamedTuple):
    """What a member of the classic protocol joined with: it heartbeats
    with JoinGroup, SyncGroup and Heartbeat (classic_members.py)."""

    session_timeout_ms: int
    protocols: list[tuple[str, bytes]]
    """(name, metadata) in its order of preference."""


class ConsumerMember:
    """A member: its subscription and its current assignment."""

    def __init__(self, member_id: str) -> None:
        self.member_id = member_id
        self.instance_id: str | None = None
        self.rack_id: str | None = None
        self.client_id = ""
        self.client_host = ""
        self.subscribed_topic_names: tuple[str, ...] = ()
        self.subscribed_topic_regex: str | None = None
        self.server_assignor: str | None = None
        self.rebalance_timeout_ms = 0
        self.epoch = 0
        self.previous_epoch = 0
        self.state = ReconciliationState.STABLE
        self.assigned: Partitions = {}
        self.revoking: Partitions = {}
        """Partitions pending revocation: still owned until the member says it let them go."""
        self.classic: ClassicProtocol | None = None
        """Set for a member of the classic protocol."""
        self.session_timer: Timer | None = None
        self.rebalance_timer: Timer | None = None
        self.classic_timer: Timer | None = None
        """A classic member's deadline to join again (after REBALANCE_IN_PROGRESS)
        or to sync (after its JoinGroup): Kafka's join and sync timeouts."""

    def current(self) -> tuple[int, int, ReconciliationState, Partitions, Partitions]:
        return self.epoch, self.previous_epoch, self.state, self.assigned, self.revoking

    def owned(self) -> set[tuple[TopicId, int]]:
        """The partitions the member holds: assigned or pending revocation."""
        return {
            (t, p) for part in (self.assigned, self.revoking) for t, ps in part.items() for p in ps
        }

    def cancel_timers(self) -> None:
        for timer in (self.session_timer, self.rebalance_timer, self.classic_timer):
            if timer is not None:
                timer.cancel()
        self.session_timer = self.rebalance_timer = self.classic_timer = None

    def successor(self, member_id: str) -> ConsumerMember:
        """A static member's new process: the same subscription and
        partitions under a new member id, epoch 0 (it reconciles at once)."""
        member = ConsumerMember(member_id)
        for name in (
            "instance_id",
            "rack_id",
            "client_id",
            "client_host",
            "subscribed_topic_names",
            "subscribed_topic_regex",
            "server_assignor",
            "rebalance_timeout_ms",
            "classic",
            "state",
            "assigned",
            "revoking",
        ):
            setattr(member, name, getattr(self, name))
        return member

    def to_stored(self, target: Partitions) -> StoredConsumerMember:
        return StoredConsumerMember(
            self.instance_id,
            self.rack_id,
            self.client_id,
            self.client_host,
            self.subscribed_topic_names,
            self.subscribed_topic_regex,
            self.server_assignor,
            self.rebalance_timeout_ms,
            self.epoch,
            self.previous_epoch,
            self.state.value,
            self.assigned,
            self.revoking,
            target,
            None
            if self.classic is None
            else (self.classic.session_timeout_ms, self.classic.protocols),
        )

    @classmethod
    def from_stored(
        cls, member_id: str, stored: StoredConsumerMember
    ) -> tuple[ConsumerMember, Partitions]:
        member = cls(member_id)
        member.instance_id = stored.instance_id
        member.rack_id = stored.rack_id
        member.client_id = stored.client_id
        member.client_host = stored.client_host
        member.subscribed_topic_names = stored.topics
        member.subscribed_topic_regex = stored.regex
        member.server_assignor = stored.assignor
        member.rebalance_timeout_ms = stored.rebalance_timeout_ms
        member.epoch = stored.epoch
        member.previous_epoch = stored.previous_epoch
        member.state = ReconciliationState(stored.state)
        member.assigned = stored.assigned
        member.revoking = stored.revoking
        if stored.classic is not None:
            member.classic = ClassicProtocol(*stored.classic)
        return member, stored.target


def as_partitions(owned: Mapping[TopicId, Collection[int]]) -> Partitions:
    return {t: frozenset(ps) for t, ps in owned.items() if ps}


def freeze(partitions: Mapping[TopicId, set[int]]) -> Partitions:
    return {t: frozenset(ps) for t, ps in sorted(partitions.items()) if ps}


def member_facts(member: ConsumerMember) -> tuple[Any, ...]:
    """What of a member is stored apart from its assignment."""
    return (
        member.instance_id,
        member.rack_id,
        member.client_id,
        member.client_host,
        member.subscribed_topic_names,
        member.subscribed_topic_regex,
        member.server_assignor,
        member.rebalance_timeout_ms,
        member.classic,
    )
