"""One classic consumer group: its members and its state machine.

The states and transitions are Kafka's (GroupCoordinator / ClassicGroup):

    Empty --join--> PreparingRebalance --all joined, or rebalance timeout-->
    CompletingRebalance --leader's SyncGroup durable--> Stable
    Stable / CompletingRebalance --member joins, leaves, changes, expires-->
    PreparingRebalance --no member left--> Empty

A group runs under its coordinator's lock: the coordinator (the "host")
gives it timers whose callbacks run under that lock, durable writes of its
metadata, and futures settled once the lock is released. Nothing here
blocks or does I/O.

This module owns the state machine: rebalancing, syncing, heartbeats,
sessions, leaving, and the group's stored form. How a member joins
(new, known and static members) is in classic_join.py; a member and the
choice of the group's protocol in classic_member.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, Protocol

from engine.futures import running_future
from engine.groups.classic_member import (
    NEW_MEMBER_JOIN_TIMEOUT_MS,
    Member,
    select_protocol,
    supports_protocols,
)
from engine.groups.config import GroupConfig
from engine.groups.records import StoredGroup, StoredMember
from engine.groups.results import (
    GroupDescription,
    GroupState,
    JoinedMember,
    JoinResult,
    MemberDescription,
    SyncResult,
)
from engine.groups.subscription import group_subscription
from engine.groups.timers import Timer
from engine.protocol.kafka_code import KafkaCode

log = logging.getLogger("tidelog.groups")


class GroupHost(Protocol):
    """What a group needs from its coordinator."""

    config: GroupConfig

    def now_ms(self) -> int: ...

    def monotonic(self) -> float: ...

    def resolve(self, future: Future[Any], value: Any) -> None:
        """Settles ``future`` with ``value`` once the coordinator's lock is released."""

    def schedule(self, group: ClassicGroup, delay_s: float, callback: Callable[[], None]) -> Timer:
        """Calls ``callback`` after ``delay_s``, under the lock, if the group still exists."""

    def store_group(
        self,
        group: ClassicGroup,
        assignment: Mapping[str, bytes],
        then: Callable[[KafkaCode], None] | None = None,
        rebuilt: bool = True,
    ) -> None:
        """Writes the group's metadata with ``assignment``; ``then(error_code)``
        runs under the lock once it is durable (or failed), if the group
        still exists. ``rebuilt`` False: if the write fails, the group is
        kept as ``then`` leaves it, not rebuilt from the state log (the
        write changed nothing in memory that ``then`` does not put back)."""

    def store_again(self, group: ClassicGroup) -> None:
        """A write of the group's record failed and the group is kept as
        memory holds it: its record is written again while it is Empty or
        Stable (a rebalance's own write stores it otherwise), until one is
        durable or the store stops taking writes."""


class ClassicGroup:
    def __init__(self, group_id: str, host: GroupHost) -> None:
        self.group_id = group_id
        self.host = host
        self.state = GroupState.EMPTY
        self.state_timestamp = host.now_ms()
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.generation_id = 0
        self.leader_id: str | None = None
        self.members: dict[str, Member] = {}
        self.static_members: dict[str, str] = {}
        """group.instance.id -> member id."""
        self.pending_members: dict[str, Timer] = {}
        """Member ids handed out with MEMBER_ID_REQUIRED, not yet joined with (KIP-394)."""
        self.pending_sync: set[str] = set()
        """Members of the new generation that have not sent SyncGroup yet."""
        self.subscribed_topics: set[str] | None = None
        """The members' subscriptions (consumer groups), None if not known."""
        self.new_member_added = False
        self._initial_delay_remaining_ms: int | None = None
        self._rebalance_timer: Timer | None = None
        self._sync_timer: Timer | None = None
        self.store_again_timer: Timer | None = None
        """A write of the group's record again, after one failed (GroupHost.store_again)."""
        self.store_again_delay_s = 0.0

    # -- facts ---------------------------------------------------------------------

    @property
    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def has_member(self, member_id: str) -> bool:
        return member_id in self.members

    def is_static_member_fenced(self, group_instance_id: str | None, member_id: str) -> bool:
        """Another member id holds this instance id now."""
        if group_instance_id is None:
            return False
        current = self.static_members.get(group_instance_id)
        return current is not None and current != member_id

    def all_members_joined(self) -> bool:
        return not self.pending_members and all(
            m.join_waiter is not None for m in self.members.values()
        )

    def supports_protocols(self, protocol_type: str, names: set[str]) -> bool:
        return supports_protocols(self.members.values(), self.protocol_type, protocol_type, names)

    def select_protocol(self) -> str:
        return select_protocol(self.members.values())

    def is_subscribed_to(self, topic: str) -> bool:
        return self.subscribed_topics is None or topic in self.subscribed_topics

    # -- joining (classic_join.py) --------------------------------------------------

    def join_result(self, member: Member, leader: str | None = None) -> JoinResult:
        is_leader = member.member_id == self.leader_id
        return JoinResult(
            KafkaCode.NONE,
            self.generation_id,
            self.protocol_type,
            self.protocol_name,
            (leader if leader is not None else self.leader_id) or "",
            member.member_id,
            self._joined_members() if is_leader and leader is None else [],
        )

    def _joined_members(self) -> list[JoinedMember]:
        return [
            JoinedMember(m.member_id, m.group_instance_id, m.metadata(self.protocol_name))
            for m in self.members.values()
        ]

    # -- rebalancing ---------------------------------------------------------------

    def maybe_prepare_rebalance(self, reason: str) -> None:
        if self.state in (
            GroupState.EMPTY,
            GroupState.STABLE,
            GroupState.COMPLETING_REBALANCE,
        ):
            self.prepare_rebalance(reason)

    def prepare_rebalance(self, reason: str) -> None:
        if self.state == GroupState.COMPLETING_REBALANCE:
            self._reset_and_propagate_assignment_error(KafkaCode.REBALANCE_IN_PROGRESS)
        self._cancel_sync_deadline()
        initial = self.state == GroupState.EMPTY
        self._transition(GroupState.PREPARING_REBALANCE)
        log.info(
            "group %s: preparing to rebalance from generation %d: %s",
            self.group_id,
            self.generation_id,
            reason,
        )
        if self._rebalance_timer is not None:
            self._rebalance_timer.cancel()
        if initial:
            delay = self.host.config.group_initial_rebalance_delay_ms
            self._initial_delay_remaining_ms = max(self.rebalance_timeout_ms - delay, 0)
            self._rebalance_timer = self.host.schedule(self, delay / 1000, self._initial_delay_over)
        else:
            self._initial_delay_remaining_ms = None
            self._rebalance_timer = self.host.schedule(
                self, self.rebalance_timeout_ms / 1000, self._rebalance_timed_out
            )
            self.try_complete_join()

    def _initial_delay_over(self) -> None:
        remaining = self._initial_delay_remaining_ms
        if self.state != GroupState.PREPARING_REBALANCE or remaining is None:
            return
        if self.new_member_added and remaining > 0:
            # Members keep arriving: wait once more, up to the rebalance timeout.
            self.new_member_added = False
            delay = self.host.config.group_initial_rebalance_delay_ms
            self._initial_delay_remaining_ms = max(remaining - delay, 0)
            self._rebalance_timer = self.host.schedule(
                self, min(delay, remaining) / 1000, self._initial_delay_over
            )
            return
        self.complete_join()

    def _rebalance_timed_out(self) -> None:
        if self.state == GroupState.PREPARING_REBALANCE:
            self.complete_join()

    def try_complete_join(self) -> None:
        if (
            self.state == GroupState.PREPARING_REBALANCE
            and self._initial_delay_remaining_ms is None
            and self.all_members_joined()
        ):
            self.complete_join()

    def complete_join(self) -> None:
        """Ends the join phase: members that did not rejoin (dynamic ones)
        are removed, and the next generation starts."""
        if self._rebalance_timer is not None:
            self._rebalance_timer.cancel()
            self._rebalance_timer = None
        self._initial_delay_remaining_ms = None
        self.new_member_added = False
        for member in list(self.members.values()):
            if member.join_waiter is None and member.group_instance_id is None:
                log.info("group %s: %s did not rejoin in time", self.group_id, member.member_id)
                self.drop(member)
        if self.members and not self._elect_joined_leader():
            # Only static members that have not rejoined: wait for them (or
            # for their sessions to expire) another rebalance timeout.
            self._rebalance_timer = self.host.schedule(
                self, self.rebalance_timeout_ms / 1000, self._rebalance_timed_out
            )
            return
        self.generation_id += 1
        if not self.members:
            self.protocol_name = None
            self.subscribed_topics = None
            self._transition(GroupState.EMPTY)
            log.info("group %s: generation %d is empty", self.group_id, self.generation_id)
            # Kept Empty if the write fails, as Kafka's ClassicGroup (which
            # its coordinator's revert never touches) is kept: the members
            # removed are gone, and a rebalance begun meanwhile goes on.
            # The host writes the record again (docs/design/0109).
            self.host.store_group(self, {}, self._empty_stored, rebuilt=False)
            return
        self.protocol_name = self.select_protocol()
        self.subscribed_topics = group_subscription(
            self.protocol_type, (m.metadata(self.protocol_name) for m in self.members.values())
        )
        self._transition(GroupState.COMPLETING_REBALANCE)
        log.info(
            "group %s: generation %d with %d members, protocol %s",
            self.group_id,
            self.generation_id,
            len(self.members),
            self.protocol_name,
        )
        for member in self.members.values():
            if member.join_waiter is not None:
                self.host.resolve(member.join_waiter, self.join_result(member))
                member.join_waiter = None
            member.is_new = False
            self.watch_session(member)
            self.pending_sync.add(member.member_id)
        self._sync_timer = self.host.schedule(
            self, self.rebalance_timeout_ms / 1000, self._sync_timed_out
        )

    def _empty_stored(self, error: KafkaCode) -> None:
        if error != KafkaCode.NONE:
            # Kafka's coordinator only warns ("the previous generation
            # written to the log will become active again"); here a
            # restart must load the group memory holds.
            self.host.store_again(self)

    def _elect_joined_leader(self) -> bool:
        leader = self.members.get(self.leader_id or "")
        if leader is not None and leader.join_waiter is not None:
            return True
        for member in self.members.values():
            if member.join_waiter is not None:
                self.leader_id = member.member_id
                return True
        return False

    def _sync_timed_out(self) -> None:
        self._sync_timer = None
        if self.state in (GroupState.COMPLETING_REBALANCE, GroupState.STABLE) and self.pending_sync:
            missing = sorted(self.pending_sync)
            for member_id in missing:
                member = self.members.get(member_id)
                if member is not None:
                    self.drop(member)
            self.prepare_rebalance(f"members {missing} did not sync in time")

    def _cancel_sync_deadline(self) -> None:
        if self._sync_timer is not None:
            self._sync_timer.cancel()
            self._sync_timer = None
        self.pending_sync.clear()

    # -- syncing -------------------------------------------------------------------

    def sync(
        self,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: Mapping[str, bytes],
    ) -> Future[SyncResult]:
        future: Future[SyncResult] = running_future()
        error = self._check_member(generation_id, member_id, group_instance_id)
        if error == KafkaCode.NONE and (
            (protocol_type is not None and protocol_type != self.protocol_type)
            or (protocol_name is not None and protocol_name != self.protocol_name)
        ):
            error = KafkaCode.INCONSISTENT_GROUP_PROTOCOL
        if error == KafkaCode.NONE and self.state == GroupState.EMPTY:
            error = KafkaCode.UNKNOWN_MEMBER_ID
        if error == KafkaCode.NONE and self.state == GroupState.PREPARING_REBALANCE:
            error = KafkaCode.REBALANCE_IN_PROGRESS
        if error != KafkaCode.NONE:
            self.host.resolve(future, SyncResult(error))
            return future
        member = self.members[member_id]
        self.pending_sync.discard(member_id)
        if self.state == GroupState.STABLE:
            self.host.resolve(future, self._sync_result(member))
            self.watch_session(member)
            return future
        if member.sync_waiter is not None:  # a second SyncGroup replaces the first
            self.host.resolve(member.sync_waiter, SyncResult(KafkaCode.REBALANCE_IN_PROGRESS))
        member.sync_waiter = future
        if member_id == self.leader_id:
            assignment = {m: bytes(assignments.get(m, b"")) for m in self.members}
            generation = self.generation_id

            def stored(error: KafkaCode) -> None:
                # Another member may have joined while this was written.
                if self.state != GroupState.COMPLETING_REBALANCE:
                    return
                if self.generation_id != generation:
                    return
                if error != KafkaCode.NONE:
                    self._reset_and_propagate_assignment_error(error)
                    self.maybe_prepare_rebalance("storing the assignment failed")
                    return
                for m in self.members.values():
                    m.assignment = assignment.get(m.member_id, b"")
                self._propagate_assignment(KafkaCode.NONE)
                self._transition(GroupState.STABLE)
                log.info("group %s: generation %d is stable", self.group_id, generation)

            # The assignment is applied once durable: a failed write leaves
            # the group in this rebalance, which ``stored`` goes on with as
            # Kafka's ClassicGroup (never reverted by its snapshots) does.
            self.host.store_group(self, assignment, stored, rebuilt=False)
        return future

    def _sync_result(self, member: Member, error: KafkaCode = KafkaCode.NONE) -> SyncResult:
        return SyncResult(error, self.protocol_type, self.protocol_name, member.assignment)

    def _propagate_assignment(self, error: KafkaCode) -> None:
        for member in self.members.values():
            if member.sync_waiter is not None:
                self.host.resolve(member.sync_waiter, self._sync_result(member, error))
                member.sync_waiter = None
                self.watch_session(member)

    def _reset_and_propagate_assignment_error(self, error: KafkaCode) -> None:
        for member in self.members.values():
            member.assignment = b""
        self._propagate_assignment(error)

    # -- heartbeats and sessions ---------------------------------------------------

    def _check_member(
        self, generation_id: int, member_id: str, instance_id: str | None
    ) -> KafkaCode:
        if self.is_static_member_fenced(instance_id, member_id):
            return KafkaCode.FENCED_INSTANCE_ID
        if member_id not in self.members:
            return KafkaCode.UNKNOWN_MEMBER_ID
        if generation_id != self.generation_id:
            return KafkaCode.ILLEGAL_GENERATION
        return KafkaCode.NONE

    def heartbeat(
        self, generation_id: int, member_id: str, group_instance_id: str | None
    ) -> KafkaCode:
        error = self._check_member(generation_id, member_id, group_instance_id)
        if error != KafkaCode.NONE:
            return error
        if self.state == GroupState.EMPTY:
            return KafkaCode.UNKNOWN_MEMBER_ID
        self.watch_session(self.members[member_id])
        if self.state == GroupState.PREPARING_REBALANCE:
            return KafkaCode.REBALANCE_IN_PROGRESS
        return KafkaCode.NONE

    def watch_session(self, member: Member) -> None:
        """(Re)starts the member's session: it is removed if nothing renews
        it in its session timeout (a new member: in the join timeout)."""
        timeout_ms = NEW_MEMBER_JOIN_TIMEOUT_MS if member.is_new else member.session_timeout_ms
        member.session_deadline = self.host.monotonic() + timeout_ms / 1000
        timer = member.session_timer
        if timer is not None and not timer.cancelled and timer.when <= member.session_deadline:
            return  # it fires first and then waits for the rest
        if timer is not None:
            timer.cancel()
        member.session_timer = self.host.schedule(
            self, timeout_ms / 1000, lambda: self._check_session(member)
        )

    def _check_session(self, member: Member) -> None:
        member.session_timer = None
        if self.members.get(member.member_id) is not member:
            return
        left = member.session_deadline - self.host.monotonic()
        if left > 0:
            member.session_timer = self.host.schedule(
                self, left, lambda: self._check_session(member)
            )
            return
        if not member.is_new and (member.join_waiter or member.sync_waiter) is not None:
            return  # waiting on the group keeps it alive; the answer restarts the session
        log.info("group %s: the session of %s expired", self.group_id, member.member_id)
        self.remove_member(member, "its session expired")

    def remove_member(self, member: Member, reason: str) -> None:
        """Removes a member (it left, or its session expired) and rebalances."""
        if member.join_waiter is not None:
            self.host.resolve(
                member.join_waiter,
                JoinResult(KafkaCode.UNKNOWN_MEMBER_ID, member_id=member.member_id),
            )
            member.join_waiter = None
        if member.sync_waiter is not None:
            self.host.resolve(member.sync_waiter, SyncResult(KafkaCode.UNKNOWN_MEMBER_ID))
            member.sync_waiter = None
        self.drop(member)
        if self.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self.maybe_prepare_rebalance(f"{member.member_id} left: {reason}")
        elif self.state == GroupState.PREPARING_REBALANCE:
            self.try_complete_join()

    def drop(self, member: Member) -> None:
        self.members.pop(member.member_id, None)
        if member.session_timer is not None:
            member.session_timer.cancel()
            member.session_timer = None
        instance_id = member.group_instance_id
        if instance_id is not None and self.static_members.get(instance_id) == member.member_id:
            del self.static_members[instance_id]
        if self.leader_id == member.member_id:
            self.leader_id = next(iter(self.members), None)
        self.pending_sync.discard(member.member_id)

    # -- leaving -------------------------------------------------------------------

    def leave(self, member_id: str, group_instance_id: str | None, reason: str) -> KafkaCode:
        if not member_id:
            # Removal by instance id alone (an administrator's, KIP-345).
            current = self.static_members.get(group_instance_id or "")
            if group_instance_id is None or current is None:
                return KafkaCode.UNKNOWN_MEMBER_ID
            self.remove_member(self.members[current], reason)
            return KafkaCode.NONE
        if member_id in self.pending_members:
            self.pending_members.pop(member_id).cancel()
            if self.state == GroupState.PREPARING_REBALANCE:
                self.try_complete_join()
            return KafkaCode.NONE
        if self.is_static_member_fenced(group_instance_id, member_id):
            return KafkaCode.FENCED_INSTANCE_ID
        member = self.members.get(member_id)
        if member is None:
            return KafkaCode.UNKNOWN_MEMBER_ID
        self.remove_member(member, reason)
        return KafkaCode.NONE

    # -- closing -------------------------------------------------------------------

    def unload(self, error: KafkaCode) -> None:
        """Answers every waiting member with ``error`` and stops the timers
        (the coordinator is closing)."""
        for member in self.members.values():
            if member.join_waiter is not None:
                self.host.resolve(member.join_waiter, JoinResult(error, member_id=member.member_id))
                member.join_waiter = None
            if member.sync_waiter is not None:
                self.host.resolve(member.sync_waiter, SyncResult(error))
                member.sync_waiter = None
            if member.session_timer is not None:
                member.session_timer.cancel()
        timers = (self._rebalance_timer, self._sync_timer, self.store_again_timer)
        for timer in (*timers, *self.pending_members.values()):
            if timer is not None:
                timer.cancel()
        self.store_again_timer = None  # cancelled: a group put back may be stored again
        self.pending_members.clear()

    def resume(self) -> None:
        """After ``unload`` (its waiters answered, its timers stopped), the
        group is served again as it was (a takeover of it failed to write):
        every member's session starts again, and a rebalance in progress
        has its timeout again, within which the members answered rejoin
        (or sync); those that do not are removed as in any rebalance."""
        for member in self.members.values():
            self.watch_session(member)
        if self.state == GroupState.PREPARING_REBALANCE:
            self._initial_delay_remaining_ms = None
            self._rebalance_timer = self.host.schedule(
                self, self.rebalance_timeout_ms / 1000, self._rebalance_timed_out
            )
        elif self.state == GroupState.COMPLETING_REBALANCE:
            self._sync_timer = self.host.schedule(
                self, self.rebalance_timeout_ms / 1000, self._sync_timed_out
            )

    # -- state ---------------------------------------------------------------------

    def _transition(self, state: GroupState) -> None:
        self.state = state
        self.state_timestamp = self.host.now_ms()

    def to_stored(self, assignment: Mapping[str, bytes]) -> StoredGroup:
        members = [
            StoredMember(
                m.member_id,
                m.group_instance_id,
                m.client_id,
                m.client_host,
                m.rebalance_timeout_ms,
                m.session_timeout_ms,
                m.metadata(self.protocol_name),
                assignment.get(m.member_id, b""),
            )
            for m in self.members.values()
        ]
        return StoredGroup(
            self.protocol_type,
            self.generation_id,
            self.protocol_name,
            self.leader_id,
            self.host.now_ms(),
            members,
        )

    @classmethod
    def load(cls, group_id: str, host: GroupHost, stored: StoredGroup) -> ClassicGroup:
        """A group as it was stored: Stable with its members (whose sessions
        start now: those that do not come back expire), or Empty."""
        group = cls(group_id, host)
        group.protocol_type = stored.protocol_type
        group.generation_id = stored.generation_id
        group.protocol_name = stored.protocol_name
        group.state_timestamp = stored.state_timestamp
        for saved in stored.members:
            member = Member(
                saved.member_id,
                saved.group_instance_id,
                saved.client_id,
                saved.client_host,
                saved.rebalance_timeout_ms,
                saved.session_timeout_ms,
                [(stored.protocol_name or "", saved.metadata)],
            )
            member.assignment = saved.assignment
            group.members[member.member_id] = member
            if member.group_instance_id is not None:
                group.static_members[member.group_instance_id] = member.member_id
        if group.members:
            group.state = GroupState.STABLE
            group.leader_id = stored.leader if stored.leader in group.members else None
            group.leader_id = group.leader_id or next(iter(group.members))
            group.subscribed_topics = group_subscription(
                group.protocol_type,
                (m.metadata(group.protocol_name) for m in group.members.values()),
            )
            for member in group.members.values():
                group.watch_session(member)
            if len(group.members) > host.config.group_max_size:
                group.prepare_rebalance("the group is over its maximum size")
        return group

    def describe(self) -> GroupDescription:
        stable = self.state == GroupState.STABLE
        members = [
            MemberDescription(
                m.member_id,
                m.group_instance_id,
                m.client_id,
                m.client_host,
                m.metadata(self.protocol_name) if stable else b"",
                m.assignment if stable else b"",
            )
            for m in self.members.values()
        ]
        return GroupDescription(
            self.group_id,
            KafkaCode.NONE,
            self.state.value,
            self.protocol_type or "",
            (self.protocol_name or "") if stable else "",
            members,
        )
