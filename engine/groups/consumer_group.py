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

Reconciliation (Kafka's CurrentAssignmentBuilder) moves each member
towards its target: first it is asked to revoke the partitions it must
give up, staying in its epoch; once its heartbeat no longer reports them,
it moves to the target epoch and is given the partitions of its target
that no other member owns any more (a partition still owned elsewhere is
"unreleased" and given at a later heartbeat). So no partition is ever
assigned or pending revocation to two members at once; ``owners`` holds
that index and refuses any change that would break it.

A group runs under its coordinator's lock: the coordinator (the "host")
gives it timers whose callbacks run under that lock, durable writes of its
records, and futures settled once the lock is released. Nothing here
blocks or does I/O. Its stored form, in the "groups" state log, is built
and read by records.py and described in docs/groups.md ("Consumer groups
(KIP-848)").
"""

from __future__ import annotations

import base64
import functools
import logging
import re
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from concurrent.futures import Future
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from engine.errors import FencedMemberEpoch, StaleMemberEpoch, UnknownMemberId
from engine.futures import running_future
from engine.groups.assignors import ASSIGNORS, MemberSpec, TopicId
from engine.groups.config import GroupConfig
from engine.groups.records import (
    StoredConsumerGroup,
    StoredConsumerMember,
    consumer_group_key,
    consumer_member_key,
)
from engine.groups.results import GroupDescription, GroupListing, MemberDescription
from engine.groups.timers import Timer
from engine.protocol.consumer_protocol import Assignment as ProtocolAssignment
from engine.protocol.consumer_protocol import Subscription, encode_assignment, encode_subscription
from engine.protocol.kafka_code import KafkaCode
from engine.types import TopicPartition

log = logging.getLogger("tidelog.groups")


JOIN_GROUP_MEMBER_EPOCH = 0
LEAVE_GROUP_MEMBER_EPOCH = -1
LEAVE_GROUP_STATIC_MEMBER_EPOCH = -2
"""A static member's temporary leave: it keeps its place (and partitions)
for its session timeout, for a new process with its instance id."""

CONSUMER = "consumer"
"""The group type, and the protocol type its members have, on the wire."""


Partitions = dict[TopicId, frozenset[int]]
"""Partitions by topic id."""


class ConsumerGroupState(StrEnum):
    """A consumer group's states, named as Kafka names them on the wire."""

    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    """The group epoch is ahead of the target assignment."""
    RECONCILING = "Reconciling"
    """A member has not reached the target assignment yet."""
    STABLE = "Stable"
    DEAD = "Dead"


class ReconciliationState(StrEnum):
    """Where a member is in reconciling its assignment with its target."""

    STABLE = "stable"
    UNREVOKED_PARTITIONS = "unrevoked_partitions"
    """Waiting for the member to give up its partitions pending revocation."""
    UNRELEASED_PARTITIONS = "unreleased_partitions"
    """In the target epoch, waiting for partitions other members still own."""


class TopicInfo(NamedTuple):
    topic_id: TopicId
    partitions: int


class Heartbeat(NamedTuple):
    """A ConsumerGroupHeartbeat request; None (or -1) is "unchanged"."""

    group_id: str
    member_id: str
    member_epoch: int
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    subscribed_topic_names: Sequence[str] | None = None
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    owned_partitions: Mapping[TopicId, Collection[int]] | None = None
    """The partitions the member owns (by topic id); None: unchanged."""
    client_id: str = ""
    client_host: str = ""


class HeartbeatResult(NamedTuple):
    error: KafkaCode
    error_message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    assignment: Partitions | None = None
    """The member's assignment, when it changed or the request was a full one."""


class ConsumerMemberDescription(NamedTuple):
    member_id: str
    instance_id: str | None
    rack_id: str | None
    member_epoch: int
    client_id: str
    client_host: str
    subscribed_topic_names: list[str]
    subscribed_topic_regex: str | None
    assignment: Partitions
    target_assignment: Partitions


class ConsumerGroupDescription(NamedTuple):
    group_id: str
    error: KafkaCode
    error_message: str | None
    state: str
    group_epoch: int
    assignment_epoch: int
    assignor_name: str
    members: list[ConsumerMemberDescription]
    topic_names: dict[TopicId, str]
    """The names of the topics the assignments name (deleted ones are absent)."""


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
    ) -> None:
        """Appends to the state log; ``then(error_code)`` runs under the lock
        once the records are durable (or failed)."""

    def topics(self) -> Mapping[str, TopicInfo]:
        """Every topic that exists now, by name."""


class Refused(Exception):
    """A heartbeat, commit or fetch the group refuses, with Kafka's error."""

    def __init__(self, code: KafkaCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def default_assignor(config: GroupConfig) -> str:
    return config.group_consumer_assignors[0]


def check_assignors(config: GroupConfig) -> None:
    """Refuses a configuration naming no assignor or one that does not exist."""
    names = config.group_consumer_assignors
    if not names:
        raise ValueError("group_consumer_assignors names no assignor")
    unknown = [name for name in names if name not in ASSIGNORS]
    if unknown:
        raise ValueError(
            f"group_consumer_assignors: unknown assignors {unknown}; there are {sorted(ASSIGNORS)}"
        )


@functools.lru_cache(maxsize=256)
def compile_regex(regex: str) -> re.Pattern[str]:
    return re.compile(regex)


def validate(request: Heartbeat, config: GroupConfig, member_id_required: bool) -> None:
    """Kafka's checks of a ConsumerGroupHeartbeat request as a whole; raises Refused."""
    epoch = request.member_epoch
    if (member_id_required or epoch > 0 or epoch == LEAVE_GROUP_MEMBER_EPOCH) and not (
        request.member_id
    ):
        raise Refused(KafkaCode.INVALID_REQUEST, "MemberId can't be empty.")
    if not request.group_id:
        raise Refused(KafkaCode.INVALID_REQUEST, "GroupId can't be empty.")
    if request.instance_id == "":
        raise Refused(KafkaCode.INVALID_REQUEST, "InstanceId can't be empty.")
    if request.rack_id == "":
        raise Refused(KafkaCode.INVALID_REQUEST, "RackId can't be empty.")
    if epoch == JOIN_GROUP_MEMBER_EPOCH:
        if request.rebalance_timeout_ms == -1:
            raise Refused(
                KafkaCode.INVALID_REQUEST, "RebalanceTimeoutMs must be provided in first request."
            )
        if request.owned_partitions is None or any(request.owned_partitions.values()):
            raise Refused(
                KafkaCode.INVALID_REQUEST, "TopicPartitions must be empty when (re-)joining."
            )
        if request.subscribed_topic_names is None and request.subscribed_topic_regex is None:
            raise Refused(
                KafkaCode.INVALID_REQUEST,
                "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null "
                "when (re-)joining.",
            )
    elif epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
        if request.instance_id is None:
            raise Refused(KafkaCode.INVALID_REQUEST, "InstanceId can't be null.")
    elif epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH:
        raise Refused(KafkaCode.INVALID_REQUEST, "MemberEpoch is invalid.")
    if request.rebalance_timeout_ms < -1:
        raise Refused(KafkaCode.INVALID_REQUEST, "RebalanceTimeoutMs is invalid.")
    assignor = request.server_assignor
    if assignor is not None and assignor not in config.group_consumer_assignors:
        raise Refused(
            KafkaCode.UNSUPPORTED_ASSIGNOR,
            f"ServerAssignor {assignor} is not supported. Supported assignors: "
            f"{', '.join(config.group_consumer_assignors)}.",
        )
    if request.subscribed_topic_regex:
        try:
            compile_regex(request.subscribed_topic_regex)
        except (re.error, RecursionError, OverflowError) as error:
            raise Refused(
                KafkaCode.INVALID_REGULAR_EXPRESSION,
                f"SubscribedTopicRegex {request.subscribed_topic_regex!r} is not a valid "
                f"regular expression: {error}",
            ) from None


def new_member_id() -> str:
    """A member id as Kafka makes them: a random UUID, URL-safe base64."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


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
        self.session_timer: Timer | None = None
        self.rebalance_timer: Timer | None = None

    def current(self) -> tuple[int, int, ReconciliationState, Partitions, Partitions]:
        return self.epoch, self.previous_epoch, self.state, self.assigned, self.revoking

    def owned(self) -> set[tuple[TopicId, int]]:
        """The partitions the member holds: assigned or pending revocation."""
        return {
            (t, p) for part in (self.assigned, self.revoking) for t, ps in part.items() for p in ps
        }

    def cancel_timers(self) -> None:
        for timer in (self.session_timer, self.rebalance_timer):
            if timer is not None:
                timer.cancel()
        self.session_timer = self.rebalance_timer = None

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
        return member, stored.target


def _as_partitions(owned: Mapping[TopicId, Collection[int]]) -> Partitions:
    return {t: frozenset(ps) for t, ps in owned.items() if ps}


class ConsumerGroup:
    def __init__(self, group_id: str, host: ConsumerGroupHost) -> None:
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
        """The subscribed topics that exist, as the target assignment saw them."""
        self.owners: dict[tuple[TopicId, int], str] = {}
        """Which member holds each partition (assigned or pending revocation)."""
        self.state_timestamp = host.now_ms()
        """When the group last became empty (the start of its offsets' retention)."""
        self._changed_members: set[str] = set()
        self._group_changed = False

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
        """The assignor most members ask for (the configured default if none
        does; a tie goes to the one configured first)."""
        configured = self.host.config.group_consumer_assignors
        votes = Counter(
            m.server_assignor for m in self.members.values() if m.server_assignor in configured
        )
        if not votes:
            return default_assignor(self.host.config)
        return max(votes, key=lambda name: (votes[name], -configured.index(name)))

    def subscribed_topics(self) -> set[str]:
        """The topics some member subscribes to, by name or by regex."""
        names = {n for m in self.members.values() for n in m.subscribed_topic_names}
        return names | set(self.topics)

    def is_subscribed_to(self, topic: str) -> bool:
        if any(topic in m.subscribed_topic_names for m in self.members.values()):
            return True
        return any(
            m.subscribed_topic_regex is not None and _matches(m.subscribed_topic_regex, topic)
            for m in self.members.values()
        )

    # -- the heartbeat -------------------------------------------------------------

    def heartbeat(self, request: Heartbeat) -> Future[HeartbeatResult]:
        """Joins, leaves or heartbeats (by the member epoch). The future
        resolves once what changed is durable."""
        try:
            if request.member_epoch in (LEAVE_GROUP_MEMBER_EPOCH, LEAVE_GROUP_STATIC_MEMBER_EPOCH):
                result = self._leave(request)
            else:
                result = self._heartbeat(request)
        except Refused as refused:
            result = HeartbeatResult(refused.code, refused.message)
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
            found = self.members.get(request.member_id)
            if found is None:
                raise Refused(
                    KafkaCode.UNKNOWN_MEMBER_ID,
                    f"member {request.member_id} is not in group {self.group_id}",
                )
            member, joined = found, False
            self._check_epoch(member, request.member_epoch, request.owned_partitions)
            if request.instance_id is not None and member.instance_id != request.instance_id:
                raise Refused(
                    KafkaCode.FENCED_INSTANCE_ID,
                    f"member {member.member_id} does not have instance id {request.instance_id}",
                )
        before = member.assigned
        subscription_changed = self._update_member(member, request) or joined
        topics = self._subscription_metadata()
        if subscription_changed or topics != self.topics:
            self.topics = topics
            self._bump_epoch()
        if self.epoch > self.assignment_epoch:
            self._compute_target()
        self._reconcile(member, request.owned_partitions)
        self._watch_session(member)
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
            self.host.config.group_consumer_heartbeat_interval_ms,
            dict(member.assigned) if full or member.assigned != before else None,
        )

    def _joining_member(self, request: Heartbeat) -> tuple[ConsumerMember, bool]:
        """The member that joins (epoch 0), and whether it is new."""
        member_id = request.member_id or new_member_id()
        instance_id = request.instance_id
        if instance_id is not None:
            current_id = self.static_members.get(instance_id)
            if current_id is not None and current_id != member_id:
                current = self.members[current_id]
                if current.epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH:
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
        if len(self.members) >= self.host.config.group_consumer_max_size:
            raise Refused(
                KafkaCode.GROUP_MAX_SIZE_REACHED,
                f"group {self.group_id} has reached its maximum size "
                f"({self.host.config.group_consumer_max_size})",
            )
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
            "state",
            "assigned",
            "revoking",
        ):
            setattr(member, name, getattr(old, name))
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

    def _check_epoch(
        self,
        member: ConsumerMember,
        received: int,
        owned: Mapping[TopicId, Collection[int]] | None,
    ) -> None:
        """Kafka's fencing: a member heartbeats in its epoch, or in the one
        before with no partition it was not assigned (the answer that
        moved it on may have been lost)."""
        if received > member.epoch:
            raise Refused(
                KafkaCode.FENCED_MEMBER_EPOCH,
                f"the member has a greater epoch ({received}) than the coordinator knows "
                f"({member.epoch}); it must give up its partitions and rejoin",
            )
        if received < member.epoch and (
            received != member.previous_epoch
            or owned is None
            or not _is_subset(_as_partitions(owned), member.assigned)
        ):
            raise Refused(
                KafkaCode.FENCED_MEMBER_EPOCH,
                f"the member has a smaller epoch ({received}) than the coordinator knows "
                f"({member.epoch}); it must give up its partitions and rejoin",
            )

    def _update_member(self, member: ConsumerMember, request: Heartbeat) -> bool:
        """Applies what the request changes; whether the member's
        subscription (topics, regex or assignor) changed."""
        before = _member_facts(member)
        changed = False
        if request.rack_id is not None:
            member.rack_id = request.rack_id
        if request.rebalance_timeout_ms != -1:
            member.rebalance_timeout_ms = request.rebalance_timeout_ms
        if request.subscribed_topic_names is not None:
            names = tuple(sorted(set(request.subscribed_topic_names)))
            changed |= names != member.subscribed_topic_names
            member.subscribed_topic_names = names
        if request.subscribed_topic_regex is not None:
            regex = request.subscribed_topic_regex or None
            changed |= regex != member.subscribed_topic_regex
            member.subscribed_topic_regex = regex
        if request.server_assignor is not None:
            changed |= request.server_assignor != member.server_assignor
            member.server_assignor = request.server_assignor
        member.client_id = request.client_id
        member.client_host = request.client_host
        if _member_facts(member) != before:
            self._changed_members.add(member.member_id)
        return changed

    def _subscription_metadata(self) -> dict[str, TopicInfo]:
        """The topics that exist among those the members subscribe to."""
        existing = self.host.topics()
        names = {n for m in self.members.values() for n in m.subscribed_topic_names}
        regexes = {
            m.subscribed_topic_regex
            for m in self.members.values()
            if m.subscribed_topic_regex is not None
        }
        found = {n: existing[n] for n in names if n in existing}
        for regex in regexes:
            found.update((n, info) for n, info in existing.items() if _matches(regex, n))
        return dict(sorted(found.items()))

    def _member_topic_ids(self, member: ConsumerMember) -> frozenset[TopicId]:
        ids = {self.topics[n].topic_id for n in member.subscribed_topic_names if n in self.topics}
        regex = member.subscribed_topic_regex
        if regex is not None:
            ids.update(info.topic_id for n, info in self.topics.items() if _matches(regex, n))
        return frozenset(ids)

    def _bump_epoch(self) -> None:
        self.epoch += 1
        self._group_changed = True

    def _compute_target(self) -> None:
        """The target assignment for the group epoch, by the group's assignor."""
        specs = {
            member_id: MemberSpec(
                member.instance_id,
                member.rack_id,
                self._member_topic_ids(member),
                self.target.get(member_id, {}),
            )
            for member_id, member in self.members.items()
        }
        partitions = {info.topic_id: info.partitions for info in self.topics.values()}
        name = self.assignor_name()
        assigned = ASSIGNORS[name].assign(specs, partitions)
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

    # -- reconciliation --------------------------------------------------------------

    def _reconcile(
        self, member: ConsumerMember, owned: Mapping[TopicId, Collection[int]] | None
    ) -> None:
        """Kafka's CurrentAssignmentBuilder: one step of the member towards
        its target assignment."""
        target_epoch = self.assignment_epoch
        target = self.target.get(member.member_id, {})
        owned_now = None if owned is None else _as_partitions(owned)
        match member.state:
            case ReconciliationState.STABLE:
                if member.epoch == target_epoch:
                    return
                step = self._next_assignment(member, member.epoch, target_epoch, target, owned_now)
            case ReconciliationState.UNREVOKED_PARTITIONS:
                if _owns_any(owned_now, member.revoking):
                    return
                step = self._next_assignment(member, member.epoch, target_epoch, target, owned_now)
            case ReconciliationState.UNRELEASED_PARTITIONS:
                step = self._next_assignment(member, member.epoch, target_epoch, target, owned_now)
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

    def _next_assignment(
        self,
        member: ConsumerMember,
        member_epoch: int,
        target_epoch: int,
        target: Partitions,
        owned: Partitions | None,
    ) -> tuple[int, ReconciliationState, Partitions, Partitions]:
        """Kafka's computeNextAssignment: (epoch, state, assigned, pending revocation)."""
        unreleased = False
        assigned: dict[TopicId, set[int]] = {}
        revoking: dict[TopicId, set[int]] = {}
        pending: dict[TopicId, set[int]] = {}
        for topic_id in sorted(set(target) | set(member.assigned)):
            wanted = target.get(topic_id, frozenset())
            current = member.assigned.get(topic_id, frozenset())
            keep = current & wanted
            give_up = current - keep
            to_get = set(wanted - keep)
            held = {p for p in to_get if (topic_id, p) in self.owners}
            if held:
                unreleased = True
                to_get -= held
            if keep:
                assigned[topic_id] = set(keep)
            if give_up:
                revoking[topic_id] = set(give_up)
            if to_get:
                pending[topic_id] = to_get
        frozen = _freeze(assigned)
        if revoking and _owns_any(owned, _freeze(revoking)):
            # It gives up partitions first, in its current epoch.
            return member_epoch, ReconciliationState.UNREVOKED_PARTITIONS, frozen, _freeze(revoking)
        if pending:
            for topic_id, partitions in pending.items():
                assigned.setdefault(topic_id, set()).update(partitions)
            state = (
                ReconciliationState.UNRELEASED_PARTITIONS
                if unreleased
                else ReconciliationState.STABLE
            )
            return target_epoch, state, _freeze(assigned), {}
        if unreleased:
            return target_epoch, ReconciliationState.UNRELEASED_PARTITIONS, frozen, {}
        return target_epoch, ReconciliationState.STABLE, frozen, {}

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

    def _leave(self, request: Heartbeat) -> HeartbeatResult:
        if request.instance_id is None:
            member = self.members.get(request.member_id)
            if member is None:
                raise Refused(
                    KafkaCode.UNKNOWN_MEMBER_ID,
                    f"member {request.member_id} is not in group {self.group_id}",
                )
        else:
            member_id = self.static_members.get(request.instance_id)
            if member_id is None:
                raise Refused(
                    KafkaCode.UNKNOWN_MEMBER_ID,
                    f"instance id {request.instance_id} is unknown in group {self.group_id}",
                )
            if member_id != request.member_id:
                raise Refused(
                    KafkaCode.FENCED_INSTANCE_ID,
                    f"instance id {request.instance_id} belongs to member {member_id}",
                )
            member = self.members[member_id]
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
        """Fences a member: its partitions are free and the group epoch is bumped."""
        log.info("group %s: member %s removed: %s", self.group_id, member.member_id, reason)
        member.cancel_timers()
        self._set_current(member, member.epoch, member.previous_epoch, member.state, {}, {})
        del self.members[member.member_id]
        if member.instance_id is not None and (
            self.static_members.get(member.instance_id) == member.member_id
        ):
            del self.static_members[member.instance_id]
        self.target.pop(member.member_id, None)
        self._changed_members.add(member.member_id)
        self._bump_epoch()
        if not self.members:
            self.state_timestamp = self.host.now_ms()

    def _watch_session(self, member: ConsumerMember) -> None:
        if member.session_timer is not None:
            member.session_timer.cancel()
        timeout_ms = self.host.config.group_consumer_session_timeout_ms
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

    # -- committed offsets -----------------------------------------------------------

    def commit_error(
        self,
        member_id: str,
        instance_id: str | None,
        member_epoch: int,
        transactional: bool,
    ) -> KafkaCode:
        """Kafka's ConsumerGroup.validateOffsetCommit: members commit in
        their epoch; a commit from outside the group (epoch < 0) only while
        the group is empty."""
        if member_epoch < 0 and not self.members:
            return KafkaCode.NONE
        if transactional and member_epoch < 0 and not member_id and instance_id is None:
            return KafkaCode.NONE  # TxnOffsetCommit without group metadata is not checked
        member = self.members.get(member_id)
        if member is None:
            return KafkaCode.UNKNOWN_MEMBER_ID
        return _epoch_error(member_epoch, member.epoch)

    def check_fetch(self, member_id: str | None, member_epoch: int) -> None:
        """Kafka's ConsumerGroup.validateOffsetFetch: a fetch that names a
        member (OffsetFetch v9+) is in its epoch; raises UnknownMemberId,
        StaleMemberEpoch or FencedMemberEpoch. Without one (an admin, or an
        older version) it is not checked."""
        if member_id is None and member_epoch < 0:
            return
        member = self.members.get(member_id or "")
        if member is None:
            raise UnknownMemberId(f"member {member_id} is not in group {self.group_id}")
        error = _epoch_error(member_epoch, member.epoch)
        if error == KafkaCode.FENCED_MEMBER_EPOCH:
            raise FencedMemberEpoch(
                f"epoch {member_epoch} is ahead of member {member_id}'s ({member.epoch})"
            )
        if error == KafkaCode.STALE_MEMBER_EPOCH:
            raise StaleMemberEpoch(
                f"epoch {member_epoch} is behind member {member_id}'s ({member.epoch})"
            )

    # -- storing -------------------------------------------------------------------

    def flush(self, then: Callable[[KafkaCode], None] | None = None) -> bool:
        """Writes what changed since the last flush; False if nothing did
        (``then`` is not called)."""
        if not self._group_changed and not self._changed_members:
            return False
        puts: dict[Hashable, Any] = {}
        deletes: list[Hashable] = []
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
        self.host.write_consumer(puts, deletes, then)
        return True

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
    ) -> ConsumerGroup:
        """A group as it was stored. Every member's session starts now (those
        that do not heartbeat again expire); members that were revoking
        partitions have their rebalance timeout again from now."""
        group = cls(group_id, host)
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
        for member in group.members.values():
            group._watch_session(member)
            if member.state == ReconciliationState.UNREVOKED_PARTITIONS:
                group._watch_rebalance(member)
        return group

    def unload(self) -> None:
        """Stops the timers (the coordinator is closing or the group goes)."""
        for member in self.members.values():
            member.cancel_timers()

    # -- describing ----------------------------------------------------------------

    def describe(self) -> ConsumerGroupDescription:
        names = {info.topic_id: name for name, info in self.host.topics().items()}
        members = [
            ConsumerMemberDescription(
                m.member_id,
                m.instance_id,
                m.rack_id,
                m.epoch,
                m.client_id,
                m.client_host,
                list(m.subscribed_topic_names),
                m.subscribed_topic_regex,
                dict(m.assigned),
                dict(self.target.get(m.member_id, {})),
            )
            for m in self.members.values()
        ]
        return ConsumerGroupDescription(
            self.group_id,
            KafkaCode.NONE,
            None,
            self.state.value,
            self.epoch,
            self.assignment_epoch,
            self.assignor_name(),
            members,
            names,
        )

    def describe_classic(self) -> GroupDescription:
        """The group as DescribeGroups shows it: protocol type "consumer",
        the assignor as the protocol, each member's subscription and
        assignment in the classic consumer protocol's encodings."""
        names = {info.topic_id: name for name, info in self.host.topics().items()}
        members = []
        for m in self.members.values():
            topics = sorted(set(m.subscribed_topic_names) | set(self._member_topic_names(m)))
            assigned = [
                TopicPartition(names[t], p)
                for t, ps in sorted(m.assigned.items())
                if t in names
                for p in sorted(ps)
            ]
            members.append(
                MemberDescription(
                    m.member_id,
                    m.instance_id,
                    m.client_id,
                    m.client_host,
                    encode_subscription(Subscription(topics), 0),
                    encode_assignment(ProtocolAssignment(assigned), 0),
                )
            )
        return GroupDescription(
            self.group_id, KafkaCode.NONE, self.state.value, CONSUMER, self.assignor_name(), members
        )

    def _member_topic_names(self, member: ConsumerMember) -> list[str]:
        regex = member.subscribed_topic_regex
        if regex is None:
            return []
        return [n for n in self.topics if _matches(regex, n)]

    def listing(self) -> GroupListing:
        return GroupListing(self.group_id, CONSUMER, self.state.value, CONSUMER)


def _member_facts(member: ConsumerMember) -> tuple[Any, ...]:
    return (
        member.instance_id,
        member.rack_id,
        member.client_id,
        member.client_host,
        member.subscribed_topic_names,
        member.subscribed_topic_regex,
        member.server_assignor,
        member.rebalance_timeout_ms,
    )


def _epoch_error(received: int, current: int) -> KafkaCode:
    if received > current:
        return KafkaCode.FENCED_MEMBER_EPOCH
    if received < current:
        return KafkaCode.STALE_MEMBER_EPOCH
    return KafkaCode.NONE


@functools.lru_cache(maxsize=65536)
def _matches(regex: str, topic: str) -> bool:
    """Kafka matches a subscription's regex against the whole topic name.
    Remembered: every heartbeat matches the group's regexes against every
    topic."""
    try:
        return compile_regex(regex).fullmatch(topic) is not None
    except (re.error, RecursionError, OverflowError):
        return False


def _is_subset(owned: Partitions, assigned: Partitions) -> bool:
    return all(ps <= assigned.get(t, frozenset()) for t, ps in owned.items())


def _owns_any(owned: Partitions | None, partitions: Partitions) -> bool:
    """Whether the member still holds any of ``partitions``; a member that
    did not say what it owns holds what it held."""
    if owned is None:
        return True
    return any(owned.get(t, frozenset()) & ps for t, ps in partitions.items())


def _freeze(partitions: Mapping[TopicId, set[int]]) -> Partitions:
    return {t: frozenset(ps) for t, ps in sorted(partitions.items()) if ps}
