"""The group coordinator: every consumer group of this node, their
committed offsets, and the Python API the wire handlers (and in-process
consumers) use. It routes each request to a classic group (classic.py), a
KIP-848 consumer group (consumer_group.py) or the committed offsets
(offset_manager.py), and hosts them: the lock, the timers, the writes.

Thread safety: one lock guards every group and offset; no call blocks
while holding it. Long waits (a JoinGroup waiting for the rebalance, a
SyncGroup waiting for the leader's assignment, a commit waiting to be
durable) are ``concurrent.futures.Future``s that the coordinator settles
after releasing the lock, on the caller's thread or its timer thread;
asyncio callers await them with ``asyncio.wrap_future``. The futures are
marked running, so a caller that stops waiting cannot cancel them.

Durability: group metadata and offsets live in the "groups" state log
(its records built and read by records.py; docs/groups.md). A commit, a
transaction's completion and a leader's assignment are answered only once
their records are durable; commits become visible to OffsetFetch at that
moment, as in Kafka.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any

from engine.clock import SYSTEM, Clock
from engine.config import ConfigEntry
from engine.errors import (
    GroupCoordinatorClosed,
    GroupIdNotFound,
    InvalidGroupId,
    NonEmptyGroup,
    NotCoordinator,
)
from engine.futures import done, failed, running_future
from engine.groups import classic_members
from engine.groups.classic import ClassicGroup
from engine.groups.classic_groups import ClassicGroups
from engine.groups.classic_join import join as join_classic
from engine.groups.classic_member import JoinRequest
from engine.groups.config import GroupConfig
from engine.groups.consumer_group import ConsumerGroup
from engine.groups.consumer_group_description import (
    ConsumerGroupDescription,
    listing,
)
from engine.groups.consumer_groups import ConsumerGroups
from engine.groups.consumer_heartbeat import Heartbeat, HeartbeatResult, Refused
from engine.groups.consumer_heartbeat import validate as validate_heartbeat
from engine.groups.consumer_member import ConsumerMember
from engine.groups.executor import GroupExecutor
from engine.groups.failed_writes import restore
from engine.groups.migration import (
    check_online_upgrade,
    fill_classic_group,
    may_downgrade,
    take_over,
    targets_are_free,
)
from engine.groups.offset_manager import OffsetManager, Transaction, is_consuming
from engine.groups.records import (
    classic_group_key,
    read_state,
)
from engine.groups.results import (
    GroupDescription,
    GroupListing,
    GroupState,
    JoinResult,
    LeaveResult,
    SyncResult,
)
from engine.groups.subscription import CONSUMER_PROTOCOL_TYPE
from engine.groups.topic_subscriptions import TopicInfo
from engine.protocol.kafka_code import KafkaCode
from engine.state_log import StateLog
from engine.types import OffsetAndMetadata, TopicPartition
from wal.closing import Closing

log = logging.getLogger("tidelog.groups")


CLASSIC = "classic"


class GroupCoordinator:
    """Consumer groups (Kafka's classic protocol, and KIP-848's consumer
    protocol) and committed offsets.

    ``partition_count(topic)`` says how many partitions a topic has (None if
    it does not exist); offsets of other partitions are refused. ``topics()``
    gives every topic's id and partition count, for KIP-848 groups. The
    coordinator is the offsets' host (offset_manager.OffsetHost).
    """

    def __init__(
        self,
        state_log: StateLog,
        config: GroupConfig | None = None,
        partition_count: Callable[[str], int | None] = lambda topic: None,
        clock: Clock = SYSTEM,
        topics: Callable[[], Mapping[str, TopicInfo]] = dict,
    ) -> None:
        self.config = config or GroupConfig()
        self._run = GroupExecutor(state_log, clock)
        self._closing = Closing("GroupCoordinator")
        self._offsets = OffsetManager(self, self.config, partition_count)
        self._classic_groups = ClassicGroups(self._run, self.config, self._offsets.has_offsets)
        self._consumer_groups = ConsumerGroups(
            self._run, self.config, topics, self._offsets.has_offsets, self._downgrade
        )
        """KIP-848 consumer groups; a group id is in these or in the classic ones, never both."""
        self._run.on_failed_write = self._restore_after_failed_write
        with self._locked():
            self._load()
            self._retention_timer = self._run.call_later(
                self.config.offsets_retention_check_interval_ms / 1000, self._retention_check
            )

    # -- the host of the offsets (offset_manager.OffsetHost) ----------------------------

    def forget_if_unused(self, group_id: str) -> None:
        """Forgets a group made only by commits without a generation (a
        simple consumer's, an admin's, a transaction's) once it holds no
        offsets: a restart, which makes such a group only for the offsets
        it loads, would not find it (Kafka's offset expiry removes it too,
        at its next run)."""
        group = self._classic_groups.get(group_id)
        if group is not None:
            self._classic_groups.forget_if_unused(group)

    def now_ms(self) -> int:
        return self._run.now_ms()

    def monotonic(self) -> float:
        return self._run.monotonic()

    def resolve(self, future: Future[Any], value: Any) -> None:
        self._run.resolve(future, value)

    @property
    def max_record_bytes(self) -> int:
        return self._run.state_log.store.max_append_bytes

    def group(self, group_id: str) -> ClassicGroup | ConsumerGroup | None:
        return self._classic_groups.get(group_id) or self._consumer_groups.get(group_id)

    def group_for_commit(self, group_id: str) -> ClassicGroup | ConsumerGroup:
        consumer_group = self._consumer_groups.get(group_id)
        if consumer_group is not None:
            return consumer_group
        group = self._classic_groups.get(group_id)
        if group is None:
            group = self._classic_groups.create(group_id)
        return group

    def write(
        self,
        puts: dict[Hashable, Any],
        deletes: list[Hashable],
        then: Callable[[KafkaCode], None] | None = None,
    ) -> None:
        self._run.write(puts, deletes, then)

    def _locked(self) -> AbstractContextManager[None]:
        """The coordinator's lock (GroupExecutor.locked)."""
        return self._run.locked()

    def _restore_after_failed_write(self, puts: list[Hashable], deletes: list[Hashable]) -> None:
        """The groups and offsets a failed write touched, as the state log
        holds them (failed_writes.py)."""
        if self._run.closed:
            return
        restore(
            puts,
            deletes,
            self._run.state_log.items(),
            self._classic_groups,
            self._consumer_groups,
            self._offsets,
        )

    def _check_open(self) -> None:
        if self._run.closed:
            raise GroupCoordinatorClosed()

    # -- loading ------------------------------------------------------------------------

    def _load(self) -> None:
        state = read_state(self._run.state_log.items())
        self._consumer_groups.load_configs(state.group_configs)
        dropped = self._offsets.load(state)
        dropped += self._consumer_groups.load(state.consumer_groups, state.consumer_members)
        for group_id, group_state in state.classic_groups.items():
            if group_id in self._consumer_groups:
                # converted; its deletion did not make it
                dropped.append(classic_group_key(group_id))
                continue
            self._classic_groups.load(group_id, group_state)
        known = set(state.classic_groups) | set(state.consumer_groups)
        for group_id in self._offsets.group_ids() - known:
            self._classic_groups.create(group_id)
        if dropped:
            self.write({}, dropped)
        if self._classic_groups:
            log.info(
                "groups loaded: %d groups, %d with members",
                len(self._classic_groups),
                sum(1 for g in self._classic_groups if g.members),
            )

    # -- membership ---------------------------------------------------------------------

    def join_group(
        self,
        group_id: str,
        member_id: str,
        group_instance_id: str | None,
        protocol_type: str,
        protocols: Sequence[tuple[str, bytes]],
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        client_id: str = "",
        client_host: str = "",
        require_known_member_id: bool = True,
        reason: str | None = None,
    ) -> Future[JoinResult]:
        """JoinGroup. The future resolves when the member is in the next
        generation (or refused): ``members`` is filled for the leader only.
        With ``require_known_member_id`` (JoinGroup v4+), a first join with
        an empty member id is answered MEMBER_ID_REQUIRED with the id to
        join with (KIP-394)."""
        error = KafkaCode.NONE
        if not group_id:
            error = KafkaCode.INVALID_GROUP_ID
        elif not (
            self.config.group_min_session_timeout_ms
            <= session_timeout_ms
            <= self.config.group_max_session_timeout_ms
        ):
            error = KafkaCode.INVALID_SESSION_TIMEOUT
        request = JoinRequest(
            member_id,
            group_instance_id,
            protocol_type,
            [(name, bytes(metadata)) for name, metadata in protocols],
            session_timeout_ms,
            rebalance_timeout_ms,
            client_id,
            client_host,
            require_known_member_id,
            reason,
        )
        with self._locked():
            if self._run.closed:
                error = KafkaCode.COORDINATOR_NOT_AVAILABLE
            consumer_group = (
                self._consumer_groups.get(group_id) if error == KafkaCode.NONE else None
            )
            if consumer_group is not None:
                if not consumer_group.is_empty:
                    # Its classic members are served by the consumer group.
                    answer = classic_members.join(consumer_group, request)
                    self._consumer_groups.forget_if_unused(consumer_group)
                    return answer
                if member_id:
                    error = KafkaCode.UNKNOWN_MEMBER_ID
                else:
                    self._consumer_groups.drop(consumer_group)
            group = self._classic_groups.get(group_id) if error == KafkaCode.NONE else None
            if error == KafkaCode.NONE and group is None:
                if member_id:
                    error = KafkaCode.UNKNOWN_MEMBER_ID
                else:
                    group = self._classic_groups.create(group_id)
            if group is None:
                return done(JoinResult(error, member_id=member_id))
            joined = join_classic(group, request)
            self._classic_groups.forget_if_unused(group)
            return joined

    def sync_group(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: Mapping[str, bytes],
    ) -> Future[SyncResult]:
        """SyncGroup: the leader hands in every member's assignment; each
        member's future resolves to its own once the leader's is durable."""
        with self._locked():
            error = self._group_error(group_id)
            consumer_group = self._consumer_groups.get(group_id)
            if error == KafkaCode.NONE and consumer_group is not None:
                return classic_members.sync(
                    consumer_group,
                    generation_id,
                    member_id,
                    group_instance_id,
                    protocol_type,
                    protocol_name,
                )
            group = self._classic_groups.get(group_id) if error == KafkaCode.NONE else None
            if group is None:
                return done(
                    SyncResult(error if error != KafkaCode.NONE else KafkaCode.UNKNOWN_MEMBER_ID)
                )
            return group.sync(
                generation_id,
                member_id,
                group_instance_id,
                protocol_type,
                protocol_name,
                assignments,
            )

    def heartbeat(
        self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None
    ) -> KafkaCode:
        """Heartbeat: the error code (REBALANCE_IN_PROGRESS: join again)."""
        with self._locked():
            error = self._group_error(group_id)
            if error != KafkaCode.NONE:
                return error
            consumer_group = self._consumer_groups.get(group_id)
            if consumer_group is not None:
                return classic_members.heartbeat(
                    consumer_group, generation_id, member_id, group_instance_id
                )
            group = self._classic_groups.get(group_id)
            if group is None:
                return KafkaCode.UNKNOWN_MEMBER_ID
            return group.heartbeat(generation_id, member_id, group_instance_id)

    def leave_group(
        self,
        group_id: str,
        members: Sequence[tuple[str, str | None]],
        reason: str | None = None,
    ) -> Future[LeaveResult]:
        """LeaveGroup for (member id, group instance id) pairs: a code per
        member, once what the leave changed is durable (the group emptied,
        a consumer group's member deleted), or NOT_COORDINATOR for the
        request if that write failed, as Kafka answers after the write (its
        CoordinatorRuntime): a consumer group is then what the state log
        holds, its member in it; a classic group stays Empty, its members
        gone, as Kafka's ClassicGroup stays (docs/design/0109). A member
        id of "" with an instance id removes whichever member holds that
        instance id. Raises InvalidGroupId, GroupCoordinatorClosed."""
        if not group_id:
            raise InvalidGroupId(group_id)
        with self._locked():
            self._check_open()
            with self._run.awaiting_writes() as writes:
                codes = self._leave(group_id, members, reason)
        return _after(writes, codes)

    def _leave(
        self, group_id: str, members: Sequence[tuple[str, str | None]], reason: str | None
    ) -> list[KafkaCode]:
        consumer_group = self._consumer_groups.get(group_id)
        if consumer_group is not None:
            errors = [
                classic_members.leave(consumer_group, member_id, instance_id)
                for member_id, instance_id in members
            ]
            consumer_group.flush()
            return errors
        group = self._classic_groups.get(group_id)
        if group is None:
            return [KafkaCode.UNKNOWN_MEMBER_ID for _ in members]
        why = f"it left the group ({reason or 'no reason given'})"
        errors = [group.leave(member_id, instance_id, why) for member_id, instance_id in members]
        self._classic_groups.forget_if_unused(group)
        return errors

    def _group_error(self, group_id: str) -> KafkaCode:
        if not group_id:
            return KafkaCode.INVALID_GROUP_ID
        if self._run.closed:
            # Kafka 4's GroupCoordinatorService while not active.
            return KafkaCode.COORDINATOR_NOT_AVAILABLE
        return KafkaCode.NONE

    # -- offsets ------------------------------------------------------------------------

    def commit_offsets(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        offsets: Mapping[TopicPartition, OffsetAndMetadata],
        retention_ms: int = -1,
        missing_group: KafkaCode = KafkaCode.GROUP_ID_NOT_FOUND,
        member_epochs: bool = True,
    ) -> Future[dict[TopicPartition, KafkaCode]]:
        """OffsetCommit: an error code per partition once the commit is
        durable. A commit with generation -1 and no member id is accepted
        from outside any group while the group has no members.
        ``retention_ms`` (OffsetCommit v2-4) >= 0 expires these offsets that
        long after the commit, whatever the group does. A commit with a
        generation for a group that does not exist answers
        ``missing_group`` (OffsetCommit v0-8 answer ILLEGAL_GENERATION).
        ``member_epochs`` False (OffsetCommit v0-8): a member of the
        consumer protocol may not commit (UNSUPPORTED_VERSION, as Kafka's
        ConsumerGroup.validateOffsetCommit)."""
        if group_id is None:
            raise InvalidGroupId(group_id)
        with self._locked():
            if self._run.closed:
                return done(dict.fromkeys(offsets, KafkaCode.COORDINATOR_NOT_AVAILABLE))
            error = self._member_error(
                group_id,
                generation_id,
                member_id,
                group_instance_id,
                False,
                missing_group,
                member_epochs,
            )
            return self._offsets.commit(group_id, offsets, error, retention_ms=retention_ms)

    def commit_transactional_offsets(
        self,
        group_id: str,
        producer_id: int,
        producer_epoch: int,
        member_id: str,
        generation_id: int,
        group_instance_id: str | None,
        offsets: Mapping[TopicPartition, OffsetAndMetadata],
        check: Callable[[], None] | None = None,
    ) -> Future[dict[TopicPartition, KafkaCode]]:
        """TxnOffsetCommit: stores the offsets durably as pending for the
        producer's transaction; they are invisible to fetch_offsets (and
        make require_stable fetches answer KafkaCode.UNSTABLE_OFFSET_COMMIT) until
        complete_transaction. Member and generation are checked as for a
        commit when given (KIP-447); generation -1 and no member skip it.

        ``check`` is the transaction coordinator's (it raises if the
        transaction is not open). It runs outside this coordinator's lock,
        once the commit is registered: a transaction that completes after
        the check passed, before the write began, voids the commit
        (INVALID_TXN_STATE) rather than leaving its offsets pending for the
        producer's next transaction (docs/design/0048)."""
        if not group_id:
            raise InvalidGroupId(group_id)
        with self._locked():
            if self._group_error(group_id) == KafkaCode.COORDINATOR_NOT_AVAILABLE:
                # Answered before the transaction is verified, as Kafka's
                # group coordinator answers before it asks the other.
                return done(dict.fromkeys(offsets, KafkaCode.COORDINATOR_NOT_AVAILABLE))
            expected = self._offsets.expect_transactional_commit(producer_id)
        try:
            if check is not None:
                check()
            with self._locked():
                if self._run.closed:
                    return done(dict.fromkeys(offsets, KafkaCode.COORDINATOR_NOT_AVAILABLE))
                error = self._member_error(
                    group_id, generation_id, member_id, group_instance_id, True
                )
                transaction = Transaction(producer_id, producer_epoch)
                return self._offsets.commit(
                    group_id, offsets, error, transaction, expected=expected
                )
        finally:
            with self._locked():
                self._offsets.settled(expected)

    def complete_transaction(
        self, producer_id: int, committed: bool, producer_epoch: int | None = None
    ) -> Future[None]:
        """Makes the producer's pending offsets (of every group) committed,
        or drops them, durably. A pending offset older than the partition's
        committed one (committed later outside the transaction) is dropped,
        and so is one committed at another epoch than ``producer_epoch``
        (the transaction's, when given). Idempotent: nothing pending is
        nothing to do."""
        with self._locked():
            if self._run.closed:
                return failed(NotCoordinator("the group coordinator is closed"))
            return self._offsets.complete_transaction(producer_id, committed, producer_epoch)

    def pending_producers(self) -> set[int]:
        """The producer ids with offsets pending in a transaction."""
        with self._locked():
            return self._offsets.store.pending_producers()

    def _member_error(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        transactional: bool,
        missing_group: KafkaCode = KafkaCode.GROUP_ID_NOT_FOUND,
        member_epochs: bool = True,
    ) -> KafkaCode:
        """Whether the member may commit, as its group's protocol checks it
        (a KIP-848 group, OffsetCommit v9+: the member's epoch in place of a
        generation); the one check that differs between the commit paths."""
        consumer_group = self._consumer_groups.get(group_id)
        if consumer_group is not None:
            return consumer_group.commit_error(
                member_id, group_instance_id, generation_id, transactional, member_epochs
            )
        return self._classic_groups.commit_error(
            group_id, generation_id, member_id, group_instance_id, transactional, missing_group
        )

    def fetch_offsets(
        self,
        group_id: str,
        partitions: Sequence[TopicPartition] | None,
        require_stable: bool = False,
        member_id: str | None = None,
        member_epoch: int = -1,
    ) -> dict[TopicPartition, tuple[OffsetAndMetadata | None, int]]:
        """OffsetFetch: per partition (every committed one if ``partitions``
        is None) the committed offset (None: none) and an error code. With
        ``require_stable``, a partition with a commit being written or
        pending in a transaction is answered KafkaCode.UNSTABLE_OFFSET_COMMIT. A
        member of a consumer group (KIP-848) that gives its id and epoch
        (OffsetFetch v9+) must be in that epoch: raises UnknownMemberId,
        StaleMemberEpoch or FencedMemberEpoch otherwise."""
        if group_id is None:
            raise InvalidGroupId(group_id)
        with self._locked():
            self._check_open()
            consumer_group = self._consumer_groups.get(group_id)
            if consumer_group is not None:
                consumer_group.check_fetch(member_id, member_epoch)
            return self._offsets.fetch(group_id, partitions, require_stable)

    def delete_offsets(
        self, group_id: str, partitions: Sequence[TopicPartition]
    ) -> Future[dict[TopicPartition, KafkaCode]]:
        """OffsetDelete: removes committed offsets of an empty group, or of
        topics no member subscribes to (KafkaCode.GROUP_SUBSCRIBED_TO_TOPIC for the
        others). Raises GroupIdNotFound, NonEmptyGroup (a group that is not
        a consumer group and has members), InvalidGroupId, GroupCoordinatorClosed."""
        if not group_id:
            raise InvalidGroupId(group_id)
        with self._locked():
            self._check_open()
            group = self.group(group_id)
            if group is None:
                raise GroupIdNotFound(group_id)
            if (
                isinstance(group, ClassicGroup)
                and group.state != GroupState.EMPTY
                and group.protocol_type != CONSUMER_PROTOCOL_TYPE
            ):
                raise NonEmptyGroup(group_id, group.state.value)
            return self._offsets.delete(group, is_consuming(group), partitions)

    # -- groups -------------------------------------------------------------------------

    def describe_groups(self, group_ids: Sequence[str]) -> list[GroupDescription]:
        """DescribeGroups: a group that does not exist, or is a consumer
        group (KIP-848, described by ConsumerGroupDescribe), is described
        as Dead with GROUP_ID_NOT_FOUND, as Kafka 4.0's GroupMetadataManager
        describes it (classicGroup() finds no classic group; its
        DescribeGroups answers so from v6, and with no error before)."""
        with self._locked():
            self._check_open()
            described = []
            for group_id in group_ids:
                group = self._classic_groups.get(group_id)
                if group is not None:
                    described.append(group.describe())
                    continue
                message = (
                    f"Group {group_id} is not a classic group."
                    if group_id in self._consumer_groups
                    else f"Group {group_id} not found."
                )
                described.append(
                    GroupDescription(
                        group_id,
                        KafkaCode.GROUP_ID_NOT_FOUND,
                        GroupState.DEAD.value,
                        "",
                        "",
                        [],
                        message,
                    )
                )
            return described

    def count(self) -> int:
        """How many groups there are, of both types (read without the
        lock: a size, to choose where to list them)."""
        return len(self._classic_groups) + len(self._consumer_groups)

    def list_groups(
        self, states: Sequence[str] | None = None, types: Sequence[str] | None = None
    ) -> list[GroupListing]:
        """ListGroups, filtered by state names and group types (both
        case-insensitive; a group is of type "classic" or "consumer")."""
        wanted_states = {s.lower() for s in states} if states else None
        wanted_types = {t.lower() for t in types} if types else None
        with self._locked():
            self._check_open()
            listed = [
                GroupListing(group.group_id, group.protocol_type or "", group.state.value, CLASSIC)
                for group in self._classic_groups
            ] + [listing(group) for group in self._consumer_groups]
        # Filtered and sorted after the lock: the listings are values, and
        # every other group request waits for the lock.
        return [
            listing
            for listing in sorted(listed, key=lambda g: g.group_id)
            if (wanted_states is None or listing.state.lower() in wanted_states)
            and (wanted_types is None or listing.group_type in wanted_types)
        ]

    def delete_groups(self, group_ids: Sequence[str]) -> Future[dict[str, int]]:
        """DeleteGroups: an error code per group once the deletions are
        durable; a group with members is KafkaCode.NON_EMPTY_GROUP. A group's
        committed and pending offsets go with it."""
        with self._locked():
            self._check_open()
            results: dict[str, int] = {}
            deletes: list[Hashable] = []
            deleted = []
            for group_id in group_ids:
                group = self.group(group_id)
                if group is None:
                    results[group_id] = KafkaCode.GROUP_ID_NOT_FOUND
                elif is_consuming(group):
                    results[group_id] = KafkaCode.NON_EMPTY_GROUP
                else:
                    deletes += self._drop_group(group)
                    deleted.append(group_id)
                    results[group_id] = KafkaCode.NONE
            if not deletes:
                return done(results)
            future: Future[dict[str, int]] = running_future()

            def written(error: KafkaCode) -> None:
                for group_id in deleted:
                    results[group_id] = error
                self.resolve(future, results)

            self.write({}, deletes, written)
            return future

    def _drop_group(self, group: ClassicGroup | ConsumerGroup) -> list[Hashable]:
        """Forgets the group and its offsets; returns the keys to delete."""
        group_id = group.group_id
        if isinstance(group, ConsumerGroup):
            keys = self._consumer_groups.drop(group, write=False)
        else:
            keys = self._classic_groups.drop(group)
        keys += self._offsets.remove_group(group_id)
        log.info("group %s deleted", group_id)
        return keys

    def subscribed_topics(self, group_id: str) -> set[str]:
        """The topics the group's members subscribe to (consumer groups; empty if unknown)."""
        with self._locked():
            group = self.group(group_id)
            if group is None:
                raise GroupIdNotFound(group_id)
            if isinstance(group, ConsumerGroup):
                return group.subscribed_topics()
            return set(group.subscribed_topics or ())

    # -- retention ----------------------------------------------------------------------

    def _retention_check(self) -> None:
        try:
            self.expire_offsets()
        finally:
            with self._locked():
                if not self._run.closed:
                    self._retention_timer = self._run.call_later(
                        self.config.offsets_retention_check_interval_ms / 1000,
                        self._retention_check,
                    )

    def expire_offsets(self) -> int:
        """Removes the offsets retention expires now (KIP-211), and groups
        left with neither members nor offsets; returns how many offsets."""
        with self._locked():
            if self._run.closed:
                return 0
            now = self.now_ms()
            deletes: list[Hashable] = []
            expired_count = 0
            for group in self._classic_groups:
                group_id = group.group_id
                expired: list[Hashable] = []
                if group.protocol_type is None:
                    # Only commits from outside any group: each by its own age.
                    expired = self._offsets.expire(group_id, now, None)
                elif group.state == GroupState.EMPTY:
                    # Every offset, once the group has been empty that long.
                    expired = self._offsets.expire(group_id, now, group.state_timestamp)
                elif (
                    group.state == GroupState.STABLE
                    and group.protocol_type == CONSUMER_PROTOCOL_TYPE
                    and group.subscribed_topics is not None
                ):
                    # Topics no member consumes any more, by their commit's age.
                    expired = self._offsets.expire(group_id, now, None, group.subscribed_topics)
                expired_count += len(expired)
                deletes += expired + self._classic_groups.forget_if_empty(group)
            for consumer_group in self._consumer_groups:
                expired = self._expire_consumer_group_offsets(consumer_group, now)
                expired_count += len(expired)
                deletes += expired + self._consumer_groups.forget_if_empty(consumer_group)
            if deletes:
                self.write({}, deletes)
            if expired_count:
                log.info("expired %d committed offsets", expired_count)
            return expired_count

    # -- topics -------------------------------------------------------------------------

    def on_topic_deleted(self, topic: str) -> None:
        """Drops every group's committed and pending offsets of ``topic``
        (and groups left with nothing), as Kafka does when a topic goes."""
        with self._locked():
            if self._run.closed:
                return
            deletes, touched = self._offsets.remove_topic(topic)
            for group_id in touched:
                group = self._classic_groups.get(group_id)
                if group is not None:
                    deletes += self._classic_groups.forget_if_empty(group)
                consumer_group = self._consumer_groups.get(group_id)
                if consumer_group is not None:
                    deletes += self._consumer_groups.forget_if_empty(consumer_group)
            if deletes:
                self.write({}, deletes)

    # -- consumer groups (KIP-848) ------------------------------------------------------

    def consumer_group_heartbeat(
        self, request: Heartbeat, member_id_required: bool = True
    ) -> Future[HeartbeatResult]:
        """ConsumerGroupHeartbeat: joins (member epoch 0), heartbeats, or
        leaves (-1; -2 for a static member coming back) a consumer group,
        which a first join creates. The answer carries the member's epoch
        and, when it changed, its assignment; it resolves once what the
        heartbeat changed is durable. ``member_id_required`` (v1+): the
        member makes its own id; in v0 a joining member without one is
        given one."""
        with self._locked():
            if self._run.closed:  # before the request's checks, as Kafka's
                closed = HeartbeatResult(KafkaCode.COORDINATOR_NOT_AVAILABLE, "it is closed")
                return done(closed)
            try:
                validate_heartbeat(request, self.config, member_id_required)
            except Refused as refused:
                return done(HeartbeatResult(refused.code, refused.message))
            group_id = request.group_id
            group = self._consumer_groups.get(group_id)
            if group is None:
                if request.member_epoch != 0:
                    return done(
                        HeartbeatResult(
                            KafkaCode.UNKNOWN_MEMBER_ID, f"group {group_id} has no members"
                        )
                    )
                classic = self._classic_groups.get(group_id)
                if classic is not None and classic.state != GroupState.EMPTY:
                    # A classic group with members is taken over online
                    # (migration.py); its record is deleted in the write
                    # that stores the consumer group. An Empty one is
                    # replaced, as Kafka replaces it, ids handed out with
                    # MEMBER_ID_REQUIRED included (such a member then
                    # joins the consumer group).
                    try:
                        check_online_upgrade(classic, self.config)
                        group = self._consumer_groups.create(group_id)
                        try:
                            take_over(classic, group, self._consumer_groups.topics())
                        except Refused:
                            self._consumer_groups.drop(group, write=False)
                            raise
                    except Refused as refused:
                        return done(HeartbeatResult(refused.code, refused.message))
                    return self._take_over(classic, group, request)
                if classic is not None:
                    # An empty classic group becomes a consumer group;
                    # its offsets stay, its stored metadata goes.
                    self.write({}, self._classic_groups.drop(classic))
                group = self._consumer_groups.create(group_id)
            answer = group.heartbeat(request)
            self._consumer_groups.forget_if_unused(group)
            return answer

    def _take_over(
        self, classic: ClassicGroup, group: ConsumerGroup, request: Heartbeat
    ) -> Future[HeartbeatResult]:
        """The joining heartbeat of the consumer group that holds
        ``classic``'s members. Refused (the group is full), it changes
        nothing: as Kafka, whose refused heartbeat writes no record, the
        classic group stays, served as it was, and the consumer group is
        neither kept nor written. If the write fails, the classic group
        comes back as memory held it, a rebalance in progress included,
        where Kafka's revert puts the same object back in its groups
        (docs/design/0109); its waiters were answered REBALANCE_IN_PROGRESS
        by the takeover, as Kafka's convertToConsumerGroup answers them,
        and join (or sync) again."""
        kept = True
        unloaded = False

        def undo() -> None:
            nonlocal kept
            kept = False
            if self._consumer_groups.get(group.group_id) is group:
                self._consumer_groups.drop(group, write=False)
            group.hand_over({}, [])
            if unloaded and self.group(classic.group_id) is None:
                self._classic_groups.put_back(classic)
                classic.resume()

        self._classic_groups.set_aside(classic)
        group.undo_if_flush_fails = undo
        try:
            answer = group.heartbeat(request, undo)
        except BaseException:  # the classic group must not be lost with the request
            if self._consumer_groups.get(group.group_id) is group:
                self._consumer_groups.drop(group, write=False)
            if self.group(classic.group_id) is None:
                self._classic_groups.put_back(classic)
            raise
        if kept:
            classic.unload(KafkaCode.REBALANCE_IN_PROGRESS)
            unloaded = True
        else:  # refused, or its write refused at once: nothing was answered
            self._classic_groups.put_back(classic)
        return answer

    def _downgrade(self, group: ConsumerGroup, leaving: ConsumerMember | None) -> bool:
        """The last consumer-protocol member of ``group`` is fenced (or,
        None, was replaced by a classic static member): a classic group of
        the classic members takes its place, if the policy allows
        (migration.py); a fenced member's going makes it rebalance, and so
        does a replacement while a member's target is still held by
        another (Kafka's would then let a SyncGroup hand out a partition
        its holder has not yet been told to give up)."""
        if not may_downgrade(group, leaving, self.config):
            return False
        settled = leaving is None and targets_are_free(group)
        classic = self._classic_groups.create(group.group_id)
        assignments = fill_classic_group(group, leaving, classic, self._consumer_groups.topics())
        keys = self._consumer_groups.drop(group, write=False)
        group.hand_over(
            {classic_group_key(group.group_id): classic.to_stored(assignments).to_value()}, keys
        )
        for member in classic.members.values():
            classic.watch_session(member)
        if not settled:
            classic.prepare_rebalance(f"group {group.group_id} is downgraded to a classic group")
        return True

    def consumer_group_describe(self, group_ids: Sequence[str]) -> list[ConsumerGroupDescription]:
        """ConsumerGroupDescribe: a group that is not a consumer group (or
        does not exist) is GROUP_ID_NOT_FOUND."""
        with self._locked():
            self._check_open()
            return self._consumer_groups.describe(group_ids, self._classic_groups)

    def _expire_consumer_group_offsets(self, group: ConsumerGroup, now: int) -> list[Hashable]:
        """Retention of a consumer group's offsets, as for a classic one: all
        of an empty group's, else those of topics no member subscribes to."""
        if group.is_empty:
            return self._offsets.expire(group.group_id, now, group.state_timestamp)
        return self._offsets.expire(group.group_id, now, None, group.subscribed_topics())

    # -- group configs (GROUP config resources, KIP-848) --------------------------------

    def describe_group_configs(self, group_id: str) -> list[ConfigEntry]:
        """DescribeConfigs of a GROUP resource: each group config, the
        group's own (source GROUP) or the broker's (DEFAULT). Raises
        EmptyGroupName, GroupCoordinatorClosed."""
        with self._locked():
            self._check_open()
            return self._consumer_groups.describe_configs(group_id)

    def alter_group_configs(
        self, group_id: str, changes: Mapping[str, str | None], validate_only: bool = False
    ) -> Future[None]:
        """IncrementalAlterConfigs of a GROUP resource: sets (a value) or
        removes (None) the group's own configs, done once durable; a
        consumer group times its members by them from their next heartbeat.
        Raises InvalidConfig, EmptyGroupName, GroupCoordinatorClosed; the future
        fails with NotCoordinator if the write does."""
        with self._locked():
            self._check_open()
            return self._consumer_groups.alter_configs(group_id, changes, validate_only)

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Answers every waiting member NOT_COORDINATOR (clients look the
        coordinator up again) and stops the timers. Writes already made
        still settle their futures."""
        if self._closing.finished:
            return
        with self._locked():
            self._run.closed = True
            self._closing.step("unload", self._unload)
        self._closing.step("timers", self._run.stop)
        self._closing.finish()

    def _unload(self) -> None:
        """(Under the lock.) Run again after being cut short, it answers
        the members still waiting and stops the timers still set."""
        self._retention_timer.cancel()
        self._classic_groups.unload()
        self._consumer_groups.unload()


def _after(writes: Sequence[Future[KafkaCode]], codes: list[KafkaCode]) -> Future[LeaveResult]:
    """``codes`` once every write in ``writes`` settled (they settle once
    the coordinator's lock is released); if one failed, the request's error
    is the first failed write's (NOT_COORDINATOR, or COORDINATOR_NOT_AVAILABLE
    for a store past its headroom)."""
    answer: Future[LeaveResult] = running_future()
    remaining = len(writes)
    failed_write = KafkaCode.NONE
    counting = threading.Lock()

    def settled(write: Future[KafkaCode]) -> None:
        nonlocal remaining, failed_write
        with counting:
            remaining -= 1
            if failed_write == KafkaCode.NONE:
                failed_write = write.result()
            if remaining:
                return
        if failed_write != KafkaCode.NONE:
            answer.set_result(LeaveResult(failed_write, []))
        else:
            answer.set_result(LeaveResult(KafkaCode.NONE, codes))

    if not writes:
        answer.set_result(LeaveResult(KafkaCode.NONE, codes))
    for write in writes:
        write.add_done_callback(settled)
    return answer
