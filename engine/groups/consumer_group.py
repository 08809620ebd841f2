"""One consumer group of Kafka's consumer group protocol (KIP-848).

In this protocol the coordinator assigns the partitions. Members send
ConsumerGroupHeartbeat with their subscription and the partitions they
own; the coordinator keeps:

- the **group epoch**, bumped whenever the group's membership, a member's
  subscription or assignor, or the metadata of the subscribed topics
  (created, deleted, grown) changes;
- the **target assignment** and its epoch: every member's partitions as
  the server-side assignor (assignors.py) computed them for a group epoch;
- per member, its **current assignment**: its member epoch, the
  partitions it is assigned and those it must give up (pending
  revocation).

This module owns the group's state machine: members joining (static
ones replacing their predecessor), heartbeating, leaving and expiring,
the epochs, and the ``owners`` index that refuses any change giving a
partition to two members at once. Its parts live beside it: the request
and its checks (consumer_heartbeat.py), a member (consumer_member.py),
which topics the members subscribe to (topic_subscriptions.py), the
target assignment (target_assignment.py), one reconciliation step of a
member towards its target (reconciliation.py) and the descriptions
(consumer_group_description.py). The members' regexes are resolved on
the host's timer, off the heartbeat, as Kafka does (topic_subscriptions.py).

A group runs under its coordinator's lock: the coordinator (the "host")
gives it timers whose callbacks run under that lock, durable writes of its
records, and futures settled once the lock is released. Nothing here
blocks or does I/O. Its stored form, in the "groups" state log, is built
and read by records.py and described in docs/groups.md ("Consumer groups
(KIP-848)").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Hashable, Mapping, Set
from concurrent.futures import Future
from enum import StrEnum
from typing import Any, Protocol

from engine.futures import running_future
from engine.groups.assignors import TopicId
from engine.groups.config import GroupConfig
from engine.groups.consumer_heartbeat import (
    JOIN_GROUP_MEMBER_EPOCH,
    LEAVE_GROUP_MEMBER_EPOCH,
    LEAVE_GROUP_STATIC_MEMBER_EPOCH,
    Heartbeat,
    HeartbeatResult,
    Refused,
    apply_heartbeat,
    new_member_id,
)
from engine.groups.consumer_member import (
    ConsumerMember,
    Partitions,
    ReconciliationState,
)
from engine.groups.group_configs import ConsumerGroupSettings
from engine.groups.reconciliation import check_epoch, check_fetch, commit_error, next_step
from engine.groups.records import (
    StoredConsumerGroup,
    StoredConsumerMember,
    consumer_group_key,
    consumer_member_key,
)
from engine.groups.target_assignment import assignor_name, compute_target
from engine.groups.timers import Timer
from engine.groups.topic_subscriptions import (
    RegexResolutions,
    TopicInfo,
    subscribed_regexes,
    subscription_metadata,
)
from engine.protocol.kafka_code import KafkaCode

log = logging.getLogger("tidelog.groups")


class ConsumerGroupState(StrEnum):
    """A consumer group's states, named as Kafka names them on the wire."""

    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    """The group epoch is ahead of the target assignment."""
    RECONCILING = "Reconciling"
    """A member has not reached the target assignment yet."""
    STABLE = "Stable"
    DEAD = "Dead"


class ConsumerGroupHost(Protocol):
    """What a consumer group needs from its coordinator."""

    config: GroupConfig

    def now_ms(self) -> int: ...

    def resolve(self, future: Future[Any], value: Any) -> None:
        """Settles ``future`` with ``value`` once the coordinator's lock is released."""

    def schedule_consumer(
        self, group: ConsumerGroup, delay_s: float, callback: Callable[[], None]
    ) -> Timer:
        """Calls ``callback`` after ``delay_s``, under the lock, if the group still exists."""

    def write_consumer(
        self,
        puts: dict[Hashable, Any],
        deletes: list[Hashable],
        then: Callable[[KafkaCode], None] | None = None,
        rebuilt: bool = True,
    ) -> None:
        """Appends to the state log; ``then(error_code)`` runs under the lock
        once the records are durable (or failed). ``rebuilt`` False: a
        failed write's groups are left as ``then`` leaves them."""

    def topics(self) -> Mapping[str, TopicInfo]:
        """Every topic that exists now, by name."""

    def take_over_as_classic(self, group: ConsumerGroup, leaving: ConsumerMember | None) -> bool:
        """Whether ``leaving``, fenced, leaves only classic members (None:
        a classic static member just replaced the last consumer-protocol
        one), which a classic group then holds in this group's place
        (migration.py): the group has been handed over (ConsumerGroup.hand_over)."""


class ConsumerGroup:
    def __init__(
        self,
        group_id: str,
        host: ConsumerGroupHost,
        settings: ConsumerGroupSettings | None = None,
    ) -> None:
        self.group_id = group_id
        self.host = host
        self.epoch = 0
        """The group epoch."""
        self.assignment_epoch = 0
        """The epoch of the target assignment."""
        self.members: dict[str, ConsumerMember] = {}
        self.static_members: dict[str, str] = {}
        """Instance id -> member id."""
        self.target: dict[str, Partitions] = {}
        """Each member's target assignment."""
        self.topics: dict[str, TopicInfo] = {}
        self.regexes = RegexResolutions()
        """The members' regexes and the topics each resolved to."""
        self._regex_timer: Timer | None = None
        self._refused_topics: Callable[[Collection[str]], Set[str]] | None = None
        """Whom the regexes are resolved for: the topics the principal of
        the last heartbeat subscribing by regex may not describe."""
        """The subscribed topics that exist, as the target assignment saw them."""
        self.owners: dict[tuple[TopicId, int], str] = {}
        """Which member holds each partition (assigned or pending revocation)."""
        self.settings = settings or ConsumerGroupSettings(
            host.config.group_consumer_session_timeout_ms,
            host.config.group_consumer_heartbeat_interval_ms,
        )
        """Its session timeout and heartbeat interval: the broker's, or the
        group's own configs (group_configs.py), from its members' next heartbeat."""
        self.state_timestamp = host.now_ms()
        """When the group last became empty (the start of its offsets' retention)."""
        self._changed_members: set[str] = set()
        self._group_changed = False
        self.puts_to_flush: dict[Hashable, Any] = {}
        self.deletes_to_flush: list[Hashable] = []
        """Keys the next flush deletes with the group's records: a classic
        group's, when this group takes its place (migration.py)."""
        self.undo_if_flush_fails: Callable[[], None] | None = None
        """Called, in place of the group's rebuild from the state log, if
        the next flush's write fails: what the takeover of a classic group
        replaced is put back (GroupCoordinator._take_over)."""

    # -- facts ---------------------------------------------------------------------

    @property
    def state(self) -> ConsumerGroupState:
        if not self.members:
            return ConsumerGroupState.EMPTY
        if self.epoch > self.assignment_epoch:
            return ConsumerGroupState.ASSIGNING
        for member in self.members.values():
            if member.epoch != self.assignment_epoch or member.state != ReconciliationState.STABLE:
                return ConsumerGroupState.RECONCILING
        return ConsumerGroupState.STABLE

    @property
    def is_empty(self) -> bool:
        return not self.members

    def assignor_name(self) -> str:
        return assignor_name(self.members, self.host.config)

    def subscribed_topics(self) -> set[str]:
        """The topics some member subscribes to, by name or by regex."""
        names = {n for m in self.members.values() for n in m.subscribed_topic_names}
        return names | set(self.topics)

    def is_subscribed_to(self, topic: str) -> bool:
        if any(topic in m.subscribed_topic_names for m in self.members.values()):
            return True
        return any(topic in self.regexes.topic_names(m) for m in self.members.values())

    # -- the heartbeat -------------------------------------------------------------

    def heartbeat(
        self, request: Heartbeat, if_refused: Callable[[], None] | None = None
    ) -> Future[HeartbeatResult]:
        """Joins, leaves or heartbeats (by the member epoch). The future
        resolves once what changed is durable. ``if_refused`` is called
        before that write when the heartbeat is refused."""
        try:
            if request.member_epoch in (LEAVE_GROUP_MEMBER_EPOCH, LEAVE_GROUP_STATIC_MEMBER_EPOCH):
                result = self._leave(request)
            else:
                result = self._heartbeat(request)
        except Refused as refused:
            result = HeartbeatResult(refused.code, refused.message)
            if if_refused is not None:
                if_refused()
        future: Future[HeartbeatResult] = running_future()

        def written(error: KafkaCode) -> None:
            if error != KafkaCode.NONE:
                self.host.resolve(future, HeartbeatResult(error, "storing the group failed"))
            else:
                self.host.resolve(future, result)

        if not self.flush(written):
            self.host.resolve(future, result)
        return future

    def _heartbeat(self, request: Heartbeat) -> HeartbeatResult:
        if request.member_epoch == JOIN_GROUP_MEMBER_EPOCH:
            member, joined = self._joining_member(request)
        else:
            member, joined = self._static_or_known(request), False
            check_epoch(member, request.member_epoch, request.owned_partitions)
        before = member.assigned
        subscription_changed, facts_changed = apply_heartbeat(member, request)
        if member.subscribed_topic_regex is not None:
            self._refused_topics = request.refused_topics
        if facts_changed:
            self._changed_members.add(member.member_id)
        self.advance(member, subscription_changed or joined, request.owned_partitions)
        full = request.member_epoch == JOIN_GROUP_MEMBER_EPOCH or (
            request.rebalance_timeout_ms != -1
            and (
                request.subscribed_topic_names is not None
                or request.subscribed_topic_regex is not None
            )
            and request.owned_partitions is not None
        )
        return HeartbeatResult(
            KafkaCode.NONE,
            None,
            member.member_id,
            member.epoch,
            self.settings.heartbeat_interval_ms,
            dict(member.assigned) if full or member.assigned != before else None,
        )

    def advance(
        self,
        member: ConsumerMember,
        subscription_changed: bool,
        owned: Mapping[TopicId, Collection[int]] | None,
    ) -> None:
        """What every heartbeat of a member does once its facts are applied
        (a ConsumerGroupHeartbeat's, or a classic member's JoinGroup): the
        group epoch moves on if a subscription or the subscribed topics
        changed, the target assignment follows it, the member takes one
        step towards its target, and its session starts again."""
        if subscription_changed:
            self._changed_members.add(member.member_id)
        existing = self.host.topics()
        self._schedule_regex_resolution(existing)
        topics = subscription_metadata(self.members.values(), self.regexes, existing)
        if subscription_changed or topics != self.topics:
            self.topics = topics
            self._bump_epoch()
        if self.epoch > self.assignment_epoch:
            self._compute_target()
        self._reconcile(member, owned)
        self._watch_session(member)

    def member_changed(self, member_id: str) -> None:
        """Stores the member with the next flush."""
        self._changed_members.add(member_id)

    def group_changed(self) -> None:
        """Stores the group's record with the next flush."""
        self._group_changed = True

    def _refuse_when_full(self) -> None:
        """Refuses a member more once the group has group.consumer.max.size."""
        if len(self.members) >= self.host.config.group_consumer_max_size:
            raise Refused(
                KafkaCode.GROUP_MAX_SIZE_REACHED,
                f"group {self.group_id} has reached its maximum size "
                f"({self.host.config.group_consumer_max_size})",
            )

    def add_member(self, member: ConsumerMember) -> None:
        """A new member (a classic member's first JoinGroup, or a classic
        group's member taken over by migration.py)."""
        self._refuse_when_full()
        self.members[member.member_id] = member
        if member.instance_id is not None:
            self.static_members[member.instance_id] = member.member_id
        self._changed_members.add(member.member_id)
        for tp in member.owned():
            self.owners.setdefault(tp, member.member_id)
        log.info("group %s: member %s joins", self.group_id, member.member_id)

    def replace_static_member(self, old: ConsumerMember, member_id: str) -> ConsumerMember:
        return self._replace_static_member(old, member_id)

    def watch_session(self, member: ConsumerMember) -> None:
        self._watch_session(member)

    def _static_or_known(self, request: Heartbeat) -> ConsumerMember:
        """The member a heartbeat past its join names. With an instance id
        it is found by that id first, as Kafka's
        getOrMaybeSubscribeStaticConsumerGroupMember does
        (throwIfStaticMemberIsUnknown, then throwIfInstanceIdIsFenced): a
        process whose place a static member's new process took (a classic
        JoinGroup does so even while it is active) is FENCED_INSTANCE_ID,
        fatal to it, not UNKNOWN_MEMBER_ID, on which it would join again
        and take its place back."""
        if request.instance_id is not None:
            self._static_member_id(request.instance_id, request.member_id)
        found = self.members.get(request.member_id)
        if found is None:
            raise Refused(
                KafkaCode.UNKNOWN_MEMBER_ID,
                f"member {request.member_id} is not in group {self.group_id}",
            )
        return found

    def _joining_member(self, request: Heartbeat) -> tuple[ConsumerMember, bool]:
        """The member that joins (epoch 0), and whether it is new."""
        member_id = request.member_id or new_member_id()
        instance_id = request.instance_id
        if instance_id is not None:
            current_id = self.static_members.get(instance_id)
            if current_id is not None and current_id != member_id:
                current = self.members[current_id]
                # A classic predecessor is replaced at once, as Kafka does: a
                # classic static member sends no LeaveGroup when it stops.
                if current.epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH and current.classic is None:
                    raise Refused(
                        KafkaCode.UNRELEASED_INSTANCE_ID,
                        f"static member with instance id {instance_id} cannot join the group "
                        f"because the instance id is owned by member {current_id}",
                    )
                return self._replace_static_member(current, member_id), False
        member = self.members.get(member_id)
        if member is not None:
            if instance_id is not None and member.instance_id != instance_id:
                if member.instance_id is not None:
                    raise Refused(
                        KafkaCode.FENCED_INSTANCE_ID,
                        f"member {member_id} has instance id {member.instance_id}",
                    )
                member.instance_id = instance_id  # it becomes static
                self.static_members[instance_id] = member_id
                self._changed_members.add(member_id)
            return member, False
        self._refuse_when_full()
        member = ConsumerMember(member_id)
        self.members[member_id] = member
        if instance_id is not None:
            member.instance_id = instance_id
            self.static_members[instance_id] = member_id
        self._changed_members.add(member_id)
        log.info("group %s: member %s joins", self.group_id, member_id)
        return member, True

    def _replace_static_member(self, old: ConsumerMember, member_id: str) -> ConsumerMember:
        """A static member's new process takes its place: same subscription,
        partitions and target, a new member id, epoch 0 (it reconciles at once)."""
        member = old.successor(member_id)
        old.cancel_timers()
        del self.members[old.member_id]
        self.members[member_id] = member
        self.target[member_id] = self.target.pop(old.member_id, {})
        for tp in old.owned():
            self.owners[tp] = member_id
        assert old.instance_id is not None
        self.static_members[old.instance_id] = member_id
        self._changed_members.update((old.member_id, member_id))
        log.info(
            "group %s: static member %s (instance %s) replaced by %s",
            self.group_id,
            old.member_id,
            old.instance_id,
            member_id,
        )
        return member

    def _bump_epoch(self) -> None:
        self.epoch += 1
        self._group_changed = True

    def _compute_target(self) -> None:
        """The target assignment for the group epoch, by the group's assignor."""
        name = self.assignor_name()
        assigned = compute_target(name, self.members, self.target, self.topics, self.regexes)
        for member_id, target in assigned.items():
            if self.target.get(member_id) != target:
                self.target[member_id] = target
                self._changed_members.add(member_id)
        self.assignment_epoch = self.epoch
        self._group_changed = True
        log.info(
            "group %s: target assignment of epoch %d by %s for %d members",
            self.group_id,
            self.epoch,
            name,
            len(self.members),
        )

    # -- regex resolution ------------------------------------------------------------

    def _schedule_regex_resolution(self, existing: Mapping[str, TopicInfo]) -> None:
        """Has the members' regexes resolved on the coordinator's timer,
        off the heartbeat, when a resolution is due (Kafka's
        maybeUpdateRegularExpressions)."""
        if self._regex_timer is not None:
            return
        regexes = subscribed_regexes(self.members.values())
        self.regexes.forget_unused(regexes)
        config = self.host.config
        delay_ms = self.regexes.refresh_delay_ms(regexes, existing, self.host.now_ms(), config)
        if delay_ms is not None:
            self._regex_timer = self.host.schedule_consumer(
                self, delay_ms / 1000, self._resolve_regexes
            )

    def _resolve_regexes(self) -> None:
        """Resolves the regexes; if any now matches other topics, the group
        epoch moves on and the members' next heartbeats get the target
        assignment of it (Kafka's handleRegularExpressionsResult)."""
        self._regex_timer = None
        existing = self.host.topics()
        regexes = subscribed_regexes(self.members.values())
        refused = self._refused_topics
        if not self.regexes.resolve(regexes, existing, self.host.now_ms(), refused):
            return
        self.topics = subscription_metadata(self.members.values(), self.regexes, existing)
        self._bump_epoch()
        log.info("group %s: regexes resolved to other topics; epoch %d", self.group_id, self.epoch)
        self.flush()

    # -- reconciliation --------------------------------------------------------------

    def _reconcile(
        self, member: ConsumerMember, owned: Mapping[TopicId, Collection[int]] | None
    ) -> None:
        """Kafka's CurrentAssignmentBuilder: one step of the member towards
        its target assignment."""
        target = self.target.get(member.member_id, {})
        step = next_step(member, self.assignment_epoch, target, self.owners, owned)
        if step is None:
            return
        epoch, state, assigned, revoking = step
        previous = member.current()
        self._set_current(member, epoch, member.epoch, state, assigned, revoking)
        if member.current() == previous:
            return
        self._changed_members.add(member.member_id)
        if member.state == ReconciliationState.UNREVOKED_PARTITIONS:
            self._watch_rebalance(member)
        elif member.rebalance_timer is not None:
            member.rebalance_timer.cancel()
            member.rebalance_timer = None

    def _set_current(
        self,
        member: ConsumerMember,
        epoch: int,
        previous_epoch: int,
        state: ReconciliationState,
        assigned: Partitions,
        revoking: Partitions,
    ) -> None:
        """Changes a member's current assignment, keeping ``owners`` exact:
        a partition another member holds is never taken."""
        new = {(t, p) for part in (assigned, revoking) for t, ps in part.items() for p in ps}
        for tp in new:
            holder = self.owners.get(tp)
            if holder is not None and holder != member.member_id:
                raise RuntimeError(
                    f"group {self.group_id}: partition {tp} of {holder} given to {member.member_id}"
                )
        for tp in member.owned() - new:
            if self.owners.get(tp) == member.member_id:
                del self.owners[tp]
        for tp in new:
            self.owners[tp] = member.member_id
        member.epoch = epoch
        member.previous_epoch = previous_epoch
        member.state = state
        member.assigned = assigned
        member.revoking = revoking

    # -- leaving, sessions, rebalance timeouts ---------------------------------------

    def _static_member_id(self, instance_id: str, member_id: str) -> str:
        """The member holding ``instance_id``, which must be ``member_id``:
        UNKNOWN_MEMBER_ID if no member holds it, FENCED_INSTANCE_ID if
        another does (a static member's new process took its place)."""
        current_id = self.static_members.get(instance_id)
        if current_id is None:
            raise Refused(
                KafkaCode.UNKNOWN_MEMBER_ID,
                f"instance id {instance_id} is unknown in group {self.group_id}",
            )
        if current_id != member_id:
            raise Refused(
                KafkaCode.FENCED_INSTANCE_ID,
                f"static member {member_id} with instance id {instance_id} "
                f"was fenced by member {current_id}",
            )
        return current_id

    def _leave(self, request: Heartbeat) -> HeartbeatResult:
        if request.instance_id is None:
            member = self.members.get(request.member_id)
            if member is None:
                raise Refused(
                    KafkaCode.UNKNOWN_MEMBER_ID,
                    f"member {request.member_id} is not in group {self.group_id}",
                )
        else:
            member = self.members[self._static_member_id(request.instance_id, request.member_id)]
        if request.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            # It keeps its partitions for its session timeout, for a new
            # process with its instance id; those pending revocation go.
            self._set_current(
                member,
                LEAVE_GROUP_STATIC_MEMBER_EPOCH,
                member.epoch,
                member.state,
                member.assigned,
                {},
            )
            if member.rebalance_timer is not None:
                member.rebalance_timer.cancel()
                member.rebalance_timer = None
            self._changed_members.add(member.member_id)
            log.info("group %s: static member %s leaves for now", self.group_id, member.member_id)
        else:
            self.remove_member(member, "it left the group")
        return HeartbeatResult(KafkaCode.NONE, None, member.member_id, request.member_epoch)

    def remove_member(self, member: ConsumerMember, reason: str) -> None:
        """Fences a member: its partitions are free and the group epoch is
        bumped; or the group is handed over to a classic group of the other
        members (online downgrade)."""
        if self.host.take_over_as_classic(self, member):
            log.info(
                "group %s: member %s fenced (%s); a classic group takes over",
                self.group_id,
                member.member_id,
                reason,
            )
            return
        log.info("group %s: member %s removed: %s", self.group_id, member.member_id, reason)
        member.cancel_timers()
        self._set_current(member, member.epoch, member.previous_epoch, member.state, {}, {})
        del self.members[member.member_id]
        if member.instance_id is not None and (
            self.static_members.get(member.instance_id) == member.member_id
        ):
            del self.static_members[member.instance_id]
        self.target.pop(member.member_id, None)
        self.regexes.forget_unused(subscribed_regexes(self.members.values()))
        self._changed_members.add(member.member_id)
        self._bump_epoch()
        if not self.members:
            self.state_timestamp = self.host.now_ms()

    def _watch_session(self, member: ConsumerMember) -> None:
        if member.session_timer is not None:
            member.session_timer.cancel()
        timeout_ms = self.settings.session_timeout_ms
        if member.classic is not None:
            timeout_ms = member.classic.session_timeout_ms
        member.session_timer = self.host.schedule_consumer(
            self, timeout_ms / 1000, lambda: self._session_expired(member)
        )

    def _session_expired(self, member: ConsumerMember) -> None:
        if self.members.get(member.member_id) is member:
            member.session_timer = None
            self.remove_member(member, "its session expired")
            self.flush()

    def _watch_rebalance(self, member: ConsumerMember) -> None:
        if member.rebalance_timer is not None:
            member.rebalance_timer.cancel()
        epoch = member.epoch
        member.rebalance_timer = self.host.schedule_consumer(
            self,
            member.rebalance_timeout_ms / 1000,
            lambda: self._rebalance_timed_out(member, epoch),
        )

    def _rebalance_timed_out(self, member: ConsumerMember, epoch: int) -> None:
        if (
            self.members.get(member.member_id) is member
            and member.state == ReconciliationState.UNREVOKED_PARTITIONS
            and member.epoch == epoch
        ):
            member.rebalance_timer = None
            self.remove_member(member, "it did not revoke its partitions in its rebalance timeout")
            self.flush()

    # -- committed offsets (reconciliation.py checks them) ------------------------

    def commit_error(
        self,
        member_id: str,
        instance_id: str | None,
        member_epoch: int,
        transactional: bool,
        member_epochs: bool = True,
    ) -> KafkaCode:
        return commit_error(
            self.members, member_id, instance_id, member_epoch, transactional, member_epochs
        )

    def check_fetch(self, member_id: str | None, member_epoch: int) -> None:
        check_fetch(self.group_id, self.members, member_id, member_epoch)

    # -- storing -------------------------------------------------------------------

    def flush(self, then: Callable[[KafkaCode], None] | None = None) -> bool:
        """Writes what changed since the last flush; False if nothing did
        (``then`` is not called)."""
        if (
            not self._group_changed
            and not self._changed_members
            and not self.deletes_to_flush
            and not self.puts_to_flush
        ):
            return False
        puts: dict[Hashable, Any] = self.puts_to_flush
        deletes: list[Hashable] = self.deletes_to_flush
        self.puts_to_flush, self.deletes_to_flush = {}, []
        if self._group_changed:
            puts[consumer_group_key(self.group_id)] = self.to_stored().to_value()
        for member_id in sorted(self._changed_members):
            member = self.members.get(member_id)
            key = consumer_member_key(self.group_id, member_id)
            if member is None:
                deletes.append(key)
            else:
                puts[key] = member.to_stored(self.target.get(member_id, {})).to_value()
        self._group_changed = False
        self._changed_members.clear()
        undo = self.undo_if_flush_fails
        if undo is None:
            self.host.write_consumer(puts, deletes, then)
            return True
        self.undo_if_flush_fails = None
        self.host.write_consumer(puts, deletes, _undoing(undo, then), rebuilt=False)
        return True

    def hand_over(self, puts: dict[Hashable, Any], deletes: list[Hashable]) -> None:
        """The group is gone, replaced (migration.py): its next flush writes
        only ``puts`` and ``deletes``, which say so, in one record."""
        self._group_changed = False
        self._changed_members.clear()
        self.puts_to_flush = puts
        self.deletes_to_flush = deletes

    def to_stored(self) -> StoredConsumerGroup:
        return StoredConsumerGroup(
            self.epoch,
            self.assignment_epoch,
            [(n, info.topic_id, info.partitions) for n, info in self.topics.items()],
            self.state_timestamp,
        )

    def keys(self) -> list[Hashable]:
        """Every key the group has in the state log."""
        return [consumer_group_key(self.group_id)] + [
            consumer_member_key(self.group_id, m) for m in self.members
        ]

    @classmethod
    def load(
        cls,
        group_id: str,
        host: ConsumerGroupHost,
        stored: StoredConsumerGroup,
        members: Mapping[str, StoredConsumerMember],
        settings: ConsumerGroupSettings | None = None,
    ) -> ConsumerGroup:
        """A group as it was stored. Every member's session starts now (those
        that do not heartbeat again expire); members that were revoking
        partitions have their rebalance timeout again from now."""
        group = cls(group_id, host, settings)
        group.epoch = stored.epoch
        group.assignment_epoch = stored.assignment_epoch
        group.topics = {n: TopicInfo(topic_id, count) for n, topic_id, count in stored.topics}
        group.state_timestamp = stored.state_timestamp
        for member_id, stored_member in sorted(members.items()):
            member, target = ConsumerMember.from_stored(member_id, stored_member)
            group.members[member_id] = member
            group.target[member_id] = target
            if member.instance_id is not None:
                group.static_members[member.instance_id] = member_id
            for tp in member.owned():
                group.owners.setdefault(tp, member_id)
        group.regexes.restore(subscribed_regexes(group.members.values()), group.topics)
        for member in group.members.values():
            group._watch_session(member)
            if member.state == ReconciliationState.UNREVOKED_PARTITIONS:
                group._watch_rebalance(member)
        return group

    def unload(self) -> None:
        """Stops the timers (the coordinator is closing or the group goes)."""
        for member in self.members.values():
            member.cancel_timers()
        if self._regex_timer is not None:
            self._regex_timer.cancel()
            self._regex_timer = None


def _undoing(
    undo: Callable[[], None], then: Callable[[KafkaCode], None] | None
) -> Callable[[KafkaCode], None]:
    """``then``, after ``undo`` if the write failed."""

    def written(error: KafkaCode) -> None:
        if error != KafkaCode.NONE:
            undo()
        if then is not None:
            then(error)

    return written
