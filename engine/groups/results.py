"""What the group coordinator's Python API hands back: one record per
answer, with Kafka's error codes where Kafka answers per item."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from engine.protocol.kafka_code import KafkaCode

NO_GENERATION = -1
UNKNOWN_MEMBER_ID = ""
"""The member id of a first JoinGroup, and of a commit from outside any group."""


class GroupState(StrEnum):
    """A classic group's states, named as Kafka names them on the wire."""

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


class JoinedMember(NamedTuple):
    """A member as the leader sees it in its JoinGroup answer."""

    member_id: str
    group_instance_id: str | None
    metadata: bytes


class JoinResult(NamedTuple):
    error: KafkaCode
    generation_id: int = NO_GENERATION
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    member_id: str = UNKNOWN_MEMBER_ID
    members: list[JoinedMember] = []  # noqa: RUF012 - NamedTuple defaults are never mutated
    """Every member with its metadata for the chosen protocol: for the leader only."""
    skip_assignment: bool = False
    """Always False: assignments are made by the leader, never by this broker."""


class SyncResult(NamedTuple):
    error: KafkaCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


class LeaveResult(NamedTuple):
    """A LeaveGroup's answer, once what it changed is durable: ``error`` is
    the request's (NOT_COORDINATOR when its write failed, and then no
    member is answered, as Kafka's GroupCoordinatorService), ``members``
    a code per member otherwise."""

    error: KafkaCode
    members: list[KafkaCode]


class MemberDescription(NamedTuple):
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    """The member's metadata for the chosen protocol (empty unless Stable)."""
    assignment: bytes
    """The member's assignment (empty unless Stable)."""


class GroupDescription(NamedTuple):
    group_id: str
    error: KafkaCode
    state: str
    protocol_type: str
    protocol_name: str
    """The chosen protocol (empty unless Stable)."""
    members: list[MemberDescription]
    error_message: str | None = None
    """Why the group is not described (with an error)."""


class GroupListing(NamedTuple):
    group_id: str
    protocol_type: str
    state: str
    group_type: str = "classic"


class ConsumerLag(NamedTuple):
    """How far a group is behind in one partition."""

    committed_offset: int | None
    """The group's committed offset, None if it has none."""
    high_watermark: int
    lag: int | None
    """``high_watermark - committed_offset`` (at least 0); None without a committed offset."""
