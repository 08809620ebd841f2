"""A member of a classic group: what it joined with (its protocols, in
its order of preference), its assignment, what it is waiting for, and its
session; and the choice of the group's protocol among its members'."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from typing import NamedTuple

from engine.groups.results import JoinResult, SyncResult
from engine.groups.timers import Timer

NEW_MEMBER_JOIN_TIMEOUT_MS = 300_000
"""A new member's JoinGroup waits at most this long (Kafka's value): a
client that gave up on it and joins again would otherwise leave defunct
members behind for a whole rebalance."""


Protocols = Sequence[tuple[str, bytes]]


class JoinRequest(NamedTuple):
    member_id: str
    group_instance_id: str | None
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    client_id: str
    client_host: str
    require_known_member_id: bool
    reason: str | None


class PendingRename:
    """A static member's replacement whose write has no outcome yet: the
    member id to go back to if it fails (classic_join.py)."""

    __slots__ = ("back_to",)

    def __init__(self, back_to: str) -> None:
        self.back_to = back_to


class Member:
    """A member of a group, and what it is waiting for."""

    def __init__(
        self,
        member_id: str,
        group_instance_id: str | None,
        client_id: str,
        client_host: str,
        rebalance_timeout_ms: int,
        session_timeout_ms: int,
        protocols: list[tuple[str, bytes]],
    ) -> None:
        self.member_id = member_id
        self.group_instance_id = group_instance_id
        self.client_id = client_id
        self.client_host = client_host
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.session_timeout_ms = session_timeout_ms
        self.protocols = protocols
        """(name, metadata) in the member's order of preference."""
        self.assignment = b""
        self.join_waiter: Future[JoinResult] | None = None
        self.sync_waiter: Future[SyncResult] | None = None
        self.is_new = False
        """Joined and not yet part of a generation."""
        self.session_deadline = 0.0
        self.session_timer: Timer | None = None
        self.pending_renames: list[PendingRename] = []
        """Its replacements by a static member's new process being
        written, oldest first."""

    def metadata(self, protocol: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""

    def matches(self, protocols: Protocols) -> bool:
        return list(protocols) == self.protocols

    def vote(self, candidates: set[str]) -> str:
        """The member's most preferred protocol among ``candidates``."""
        return next(name for name, _ in self.protocols if name in candidates)


def supports_protocols(
    members: Iterable[Member], group_protocol_type: str | None, protocol_type: str, names: set[str]
) -> bool:
    """Whether a member joining with ``protocol_type`` and protocols
    ``names`` fits the group: one of them is one every member supports."""
    members = list(members)
    if not members:
        return bool(protocol_type) and bool(names)
    if protocol_type != group_protocol_type:
        return False
    counts = Counter(name for m in members for name, _ in m.protocols)
    return any(counts[name] == len(members) for name in names)


def select_protocol(members: Iterable[Member]) -> str:
    """Kafka's vote: among the protocols every member supports, the one
    most members prefer (ties: the earliest in the first member's list)."""
    members = list(members)
    candidates = {name for name, _ in members[0].protocols}
    for member in members[1:]:
        candidates &= {name for name, _ in member.protocols}
    votes = Counter(member.vote(candidates) for member in members)
    order = [name for name, _ in members[0].protocols if name in candidates]
    return max(order, key=lambda name: (votes[name], -order.index(name)))
