"""The group coordinator: every consumer group of this node, their
committed offsets, and the Python API the wire handlers (and in-process
consumers) use.

Thread safety: one lock guards every group and offset; no call blocks
while holding it. Long waits (a JoinGroup waiting for the rebalance, a
SyncGroup waiting for the leader's assignment, a commit waiting to be
durable) are ``concurrent.futures.Future``s that the coordinator settles
after releasing the lock, on the caller's thread or its timer thread;
asyncio callers await them with ``asyncio.wrap_future``. The futures are
marked running, so a caller that stops waiting cannot cancel them.

Durability: group metadata and offsets live in the "groups" state log
(records.py, docs/groups.md). A commit, a transaction's completion and a
leader's assignment are answered only once their records are durable;
commits become visible to OffsetFetch at that moment, as in Kafka.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import Future, InvalidStateError
from typing import Any, TypeVar

from engine.errors import (
    GroupIdNotFound,
    InvalidGroupId,
    NonEmptyGroup,
    NotCoordinator,
)
from engine.groups.classic import ClassicGroup, JoinRequest
from engine.groups.config import GroupConfig
from engine.groups.consumer_group import (
    CONSUMER_GROUP_KEY,
    CONSUMER_MEMBER_KEY,
    ConsumerGroup,
    ConsumerGroupDescription,
    ConsumerGroupState,
    Heartbeat,
    HeartbeatResult,
    Refused,
    TopicInfo,
    check_assignors,
)
from engine.groups.consumer_group import validate as validate_heartbeat
from engine.groups.offsets import OffsetKey, OffsetStore
from engine.groups.records import (
    GROUP,
    OFFSET,
    TXN,
    CommittedOffset,
    PendingOffset,
    StoredGroup,
    group_key,
    offset_key,
    txn_key,
)
from engine.groups.results import (
    GroupDescription,
    GroupListing,
    GroupState,
    JoinResult,
    SyncResult,
)
from engine.groups.subscription import CONSUMER_PROTOCOL_TYPE
from engine.groups.timers import Timer, TimerThread
from engine.partition import now_ms
from engine.protocol.kafka_code import KafkaCode
from engine.state_log import StateLog
from engine.types import OffsetAndMetadata, TopicPartition

log = logging.getLogger("tidelog.groups")

T = TypeVar("T")


CLASSIC = "classic"


class GroupCoordinator:
    """Consumer groups (Kafka's classic protocol, and KIP-848's consumer
    protocol in consumer_group.py) and committed offsets.

    ``partition_count(topic)`` says how many partitions a topic has (None if
    it does not exist); offsets of other partitions are refused. ``topics()``
    gives every topic's id and partition count, for KIP-848 groups.
    """

    def __init__(
        self,
        state_log: StateLog,
        config: GroupConfig | None = None,
        partition_count: Callable[[str], int | None] = lambda topic: None,
        clock_ms: Callable[[], int] = now_ms,
        topics: Callable[[], Mapping[str, TopicInfo]] = dict,
    ) -> None:
        self.config = config or GroupConfig()
        check_assignors(self.config)
        self._log = state_log
        self._partition_count = partition_count
        self._clock_ms = clock_ms
        self._topic_metadata = topics
        self._consumer_groups: dict[str, ConsumerGroup] = {}
        """KIP-848 consumer groups; a group id is in this or in ``_groups``, never both."""
        self._lock = threading.RLock()
        self._depth = 0
        self._ready: list[tuple[Future[Any], Any]] = []
        self._groups: dict[str, ClassicGroup] = {}
        self._offsets = OffsetStore()
        self._closed = False
        self._timers = TimerThread("tidelog-groups")
        with self._locked():
            self._load()
            self._retention_timer = self._timers.call_later(
                self.config.offsets_retention_check_interval_ms / 1000, self._retention_check
            )

    # -- the host of the groups (classic.GroupHost) ------------------------------------

    def now_ms(self) -> int:
        return self._clock_ms()

    def resolve(self, future: Future[Any], value: Any) -> None:
        self._ready.append((future, value))

    def schedule(self, group: ClassicGroup, delay_s: float, callback: Callable[[], None]) -> Timer:
        def run() -> None:
            with self._locked():
                if not self._closed and self._groups.get(group.group_id) is group:
                    callback()
                    self._forget_if_unused(group)

        return self._timers.call_later(delay_s, run)

    def store_group(
        self,
        group: ClassicGroup,
        assignment: Mapping[str, bytes],
        then: Callable[[KafkaCode], None] | None = None,
    ) -> None:
        value = group.to_stored(assignment).to_value()

        def done(error: KafkaCode) -> None:
            if error != KafkaCode.NONE:
                log.warning("group %s: storing its metadata failed", group.group_id)
            if then is not None and self._groups.get(group.group_id) is group:
                then(error)

        self._write({group_key(group.group_id): value}, [], done)

    # -- locking and writing ------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The coordinator's lock; futures resolved under it are settled
        once the outermost holder releases it."""
        with self._lock:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                ready: list[tuple[Future[Any], Any]] = []
                if self._depth == 0:
                    ready, self._ready = self._ready, []
        for future, value in ready:
            _settle(future, value)

    def _write(
        self,
        puts: dict[Hashable, Any],
        deletes: list[Hashable],
        then: Callable[[KafkaCode], None] | None = None,
    ) -> None:
        """Appends to the state log; ``then(error_code)`` runs under the
        lock once the records are durable (NOT_COORDINATOR if they failed)."""
        try:
            written = self._log.update(puts=puts or None, deletes=deletes or None)
        except Exception as error:  # the store refused: fenced, closed or failed
            log.warning("writing group state failed: %s", error)
            if then is not None:
                then(KafkaCode.NOT_COORDINATOR)
            return
        if then is None:
            written.add_done_callback(_log_failure)
            return

        def durable(future: Future[int]) -> None:
            # On the WAL's thread, which must not wait for the coordinator's
            # lock: the rest runs on the coordinator's thread.
            error = KafkaCode.NONE if future.exception() is None else KafkaCode.NOT_COORDINATOR

            def run() -> None:
                with self._locked():
                    then(error)

            self._timers.call_soon(run)

        written.add_done_callback(durable)

    def _check_open(self) -> None:
        if self._closed:
            raise NotCoordinator("the group coordinator is closed")

    # -- loading ------------------------------------------------------------------------

    def _load(self) -> None:
        stored: dict[str, StoredGroup] = {}
        dropped: list[Hashable] = []
        consumer_groups: dict[str, Any] = {}
        consumer_members: dict[str, dict[str, Any]] = {}
        for key, value in self._log.items():
            assert isinstance(key, tuple)
            kind = key[0]
            if kind == GROUP:
                stored[key[1]] = StoredGroup.from_value(value)
            elif kind == OFFSET:
                _, group_id, topic, partition = key
                tp = TopicPartition(topic, partition)
                if self._partition_error(tp) != KafkaCode.NONE:
                    dropped.append(key)  # its topic was deleted
                    continue
                self._offsets.load(group_id, tp, CommittedOffset.from_value(value))
            elif kind == TXN:
                _, producer_id, group_id, topic, partition = key
                if value is None:
                    dropped.append(key)  # completed; its deletion did not make it
                    continue
                pending = PendingOffset.from_value(value)
                self._offsets.add_pending(
                    producer_id, OffsetKey(group_id, TopicPartition(topic, partition)), pending
                )
                self._offsets.saw_sequence(pending.offset.sequence)
            elif kind == CONSUMER_GROUP_KEY:
                consumer_groups[key[1]] = value
            elif kind == CONSUMER_MEMBER_KEY:
                consumer_members.setdefault(key[1], {})[key[2]] = value
            else:
                log.warning("groups state log: ignoring a key of unknown kind %r", kind)
        dropped += self._load_consumer_groups(consumer_groups, consumer_members)
        for group_id, group_state in stored.items():
            if group_id in self._consumer_groups:
                dropped.append(group_key(group_id))  # converted; its deletion did not make it
                continue
            self._groups[group_id] = ClassicGroup.load(group_id, self, group_state)
        for group_id in self._offsets.group_ids() - set(stored) - set(self._consumer_groups):
            self._groups[group_id] = ClassicGroup(group_id, self)
        if dropped:
            self._write({}, dropped)
        if self._groups:
            log.info(
                "groups loaded: %d groups, %d with members",
                len(self._groups),
                sum(1 for g in self._groups.values() if g.members),
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
            if self._closed:
                error = KafkaCode.NOT_COORDINATOR
            consumer_group = (
                self._consumer_groups.get(group_id) if error == KafkaCode.NONE else None
            )
            if consumer_group is not None:
                # No migration between the protocols: only an empty group changes hands.
                if not consumer_group.is_empty:
                    error = KafkaCode.INCONSISTENT_GROUP_PROTOCOL
                elif member_id:
                    error = KafkaCode.UNKNOWN_MEMBER_ID
                else:
                    self._drop_consumer_group(consumer_group)
            group = self._groups.get(group_id) if error == KafkaCode.NONE else None
            if error == KafkaCode.NONE and group is None:
                if member_id:
                    error = KafkaCode.UNKNOWN_MEMBER_ID
                else:
                    group = ClassicGroup(group_id, self)
                    self._groups[group_id] = group
            if group is None:
                return _done(JoinResult(error, member_id=member_id))
            joined = group.join(request)
            self._forget_if_unused(group)
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
            group = self._groups.get(group_id) if error == KafkaCode.NONE else None
            if group is None:
                return _done(
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
            group = self._groups.get(group_id)
            if group is None:
                return KafkaCode.UNKNOWN_MEMBER_ID
            return group.heartbeat(generation_id, member_id, group_instance_id)

    def leave_group(
        self,
        group_id: str,
        members: Sequence[tuple[str, str | None]],
        reason: str | None = None,
    ) -> list[KafkaCode]:
        """LeaveGroup for (member id, group instance id) pairs: an error code
        per member. A member id of "" with an instance id removes whichever
        member holds that instance id. Raises InvalidGroupId, NotCoordinator."""
        if not group_id:
            raise InvalidGroupId(group_id)
        with self._locked():
            self._check_open()
            group = self._groups.get(group_id)
            if group is None:
                return [KafkaCode.UNKNOWN_MEMBER_ID for _ in members]
            why = f"it left the group ({reason or 'no reason given'})"
            errors = [
                group.leave(member_id, instance_id, why) for member_id, instance_id in members
            ]
            self._forget_if_unused(group)
            return errors

    def _group_error(self, group_id: str) -> KafkaCode:
        if not group_id:
            return KafkaCode.INVALID_GROUP_ID
        if self._closed:
            return KafkaCode.NOT_COORDINATOR
        return KafkaCode.NONE

    def _forget_if_unused(self, group: ClassicGroup) -> None:
        """A group that never formed and holds nothing is not kept (a
        refused first JoinGroup, say)."""
        if (
            group.state == GroupState.EMPTY
            and group.generation_id == 0
            and not group.members
            and not group.pending_members
            and not self._offsets.has_offsets(group.group_id)
        ):
            self._groups.pop(group.group_id, None)

    # -- committing ---------------------------------------------------------------------

    def commit_offsets(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        offsets: Mapping[TopicPartition, OffsetAndMetadata],
        retention_ms: int = -1,
    ) -> Future[dict[TopicPartition, KafkaCode]]:
        """OffsetCommit: an error code per partition once the commit is
        durable. A commit with generation -1 and no member id is accepted
        from outside any group while the group has no members.
        ``retention_ms`` (OffsetCommit v2-4) >= 0 expires these offsets that
        long after the commit, whatever the group does."""
        if group_id is None:
            raise InvalidGroupId(group_id)
        with self._locked():
            if self._closed:
                return _done({tp: KafkaCode.NOT_COORDINATOR for tp in offsets})
            group = self._groups.get(group_id)
            consumer_group = self._consumer_groups.get(group_id)
            if consumer_group is not None:
                # OffsetCommit v9+: the member's epoch in place of a generation.
                error = consumer_group.commit_error(
                    member_id, group_instance_id, generation_id, False
                )
            else:
                error = self._commit_error(
                    group, generation_id, member_id, group_instance_id, False
                )
            if error == KafkaCode.NONE and group is not None:
                if group.state == GroupState.COMPLETING_REBALANCE:
                    # The member has its new generation but no assignment
                    # yet: it must not commit for the old one.
                    error = KafkaCode.REBALANCE_IN_PROGRESS
                elif group.state != GroupState.EMPTY:
                    group.watch_session(group.members[member_id])
            now = self.now_ms()
            expire = now + retention_ms if retention_ms >= 0 else -1
            results, accepted = self._check_offsets(offsets, error)
            values = {
                tp: CommittedOffset(
                    om.offset,
                    om.leader_epoch,
                    om.metadata or "",
                    now,
                    expire,
                    self._offsets.next_sequence(),
                )
                for tp, om in accepted.items()
            }
            if not values:
                return _done(results)
            target = self._group_for_commit(group_id)
            keys = [OffsetKey(group_id, tp) for tp in values]
            self._offsets.writing(keys)
            for key in keys:
                self._offsets.issued(key, values[key.tp].sequence)
            future: Future[dict[TopicPartition, KafkaCode]] = _running_future()

            def written(error: KafkaCode) -> None:
                self._offsets.written(keys)
                for key in keys:
                    results[key.tp] = error
                    if error == KafkaCode.NONE:
                        self._make_visible(target, key, values[key.tp])
                self.resolve(future, results)

            self._write(
                {offset_key(group_id, tp): v.to_value() for tp, v in values.items()}, [], written
            )
            return future

    def commit_transactional_offsets(
        self,
        group_id: str,
        producer_id: int,
        producer_epoch: int,
        member_id: str,
        generation_id: int,
        group_instance_id: str | None,
        offsets: Mapping[TopicPartition, OffsetAndMetadata],
    ) -> Future[dict[TopicPartition, KafkaCode]]:
        """TxnOffsetCommit: stores the offsets durably as pending for the
        producer's transaction; they are invisible to fetch_offsets (and
        make require_stable fetches answer KafkaCode.UNSTABLE_OFFSET_COMMIT) until
        complete_transaction. Member and generation are checked as for a
        commit when given (KIP-447); generation -1 and no member skip it."""
        if not group_id:
            raise InvalidGroupId(group_id)
        with self._locked():
            if self._closed:
                return _done({tp: KafkaCode.NOT_COORDINATOR for tp in offsets})
            group = self._groups.get(group_id)
            consumer_group = self._consumer_groups.get(group_id)
            if consumer_group is not None:
                error = consumer_group.commit_error(
                    member_id, group_instance_id, generation_id, True
                )
            else:
                error = self._commit_error(group, generation_id, member_id, group_instance_id, True)
            now = self.now_ms()
            results, accepted = self._check_offsets(offsets, error)
            pending = {
                OffsetKey(group_id, tp): PendingOffset(
                    producer_epoch,
                    CommittedOffset(
                        om.offset,
                        om.leader_epoch,
                        om.metadata or "",
                        now,
                        -1,
                        self._offsets.next_sequence(),
                    ),
                )
                for tp, om in accepted.items()
            }
            if not pending:
                return _done(results)
            target = self._group_for_commit(group_id)
            self._offsets.writing(pending)
            future: Future[dict[TopicPartition, KafkaCode]] = _running_future()

            def written(error: KafkaCode) -> None:
                self._offsets.written(pending)
                for key, value in pending.items():
                    results[key.tp] = error
                    if error == KafkaCode.NONE and self._still_there(target, key.tp):
                        self._offsets.add_pending(producer_id, key, value)
                self.resolve(future, results)

            puts = {
                txn_key(producer_id, k.group_id, k.tp): v.to_value() for k, v in pending.items()
            }
            self._write(puts, [], written)
            return future

    def complete_transaction(self, producer_id: int, committed: bool) -> Future[None]:
        """Makes the producer's pending offsets (of every group) committed,
        or drops them, durably. A pending offset older than the partition's
        committed one (committed later outside the transaction) is dropped.
        Idempotent: nothing pending is nothing to do."""
        with self._locked():
            if self._closed:
                return _failed(NotCoordinator("the group coordinator is closed"))
            pending = self._offsets.pending_of(producer_id)
            if not pending:
                return _done(None)
            txn_keys = [txn_key(producer_id, k.group_id, k.tp) for k in pending]
            # Only offsets newer than the partition's last commit, in the
            # order commits are written, become the committed ones.
            newer = {
                key: value.offset
                for key, value in pending.items()
                if committed
                and value.offset.sequence > self._offsets.latest(key)
                and self._any_group(key.group_id) is not None
            }
            for key, offset in newer.items():
                self._offsets.issued(key, offset.sequence)
            future: Future[None] = _running_future()

            def written(error: KafkaCode) -> None:
                if error != KafkaCode.NONE:
                    self.resolve(future, NotCoordinator("completing the transaction failed"))
                    return
                self._offsets.remove_pending(producer_id, pending)
                for key, offset in newer.items():
                    group = self._any_group(key.group_id)
                    if group is not None:
                        self._make_visible(group, key, offset)
                if committed:
                    self._write({}, txn_keys)  # the nil markers are no longer needed
                self.resolve(future, None)

            if committed:
                # One record: the offsets and the end of their pending state.
                puts: dict[Hashable, Any] = {
                    offset_key(k.group_id, k.tp): v.to_value() for k, v in newer.items()
                }
                puts.update(dict.fromkeys(txn_keys))
                self._write(puts, [], written)
            else:
                self._write({}, txn_keys, written)
            return future

    def _make_visible(
        self, group: ClassicGroup | ConsumerGroup, key: OffsetKey, offset: CommittedOffset
    ) -> None:
        """A durable commit becomes the committed offset, unless a later one
        was written meanwhile or the offset was removed (its group, its
        topic or itself deleted) after it was written."""
        if self._offsets.latest(key) == offset.sequence and self._still_there(group, key.tp):
            self._offsets.put(key.group_id, key.tp, offset)

    def _commit_error(
        self,
        group: ClassicGroup | None,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        transactional: bool,
    ) -> KafkaCode:
        """Kafka's validateOffsetCommit: members commit for their
        generation; a commit from outside the group (generation < 0, no
        member id) only while the group has no members."""
        if group is None:
            if generation_id >= 0 and not transactional:
                return KafkaCode.ILLEGAL_GENERATION  # a generation of a group that is gone
            if generation_id >= 0 or member_id or group_instance_id is not None:
                return KafkaCode.UNKNOWN_MEMBER_ID
            return KafkaCode.NONE
        if generation_id >= 0 or member_id or group_instance_id is not None:
            if group.is_static_member_fenced(group_instance_id, member_id):
                return KafkaCode.FENCED_INSTANCE_ID
            if not group.has_member(member_id):
                return KafkaCode.UNKNOWN_MEMBER_ID
            if generation_id != group.generation_id:
                return KafkaCode.ILLEGAL_GENERATION
            return KafkaCode.NONE
        if not transactional and group.state != GroupState.EMPTY:
            return KafkaCode.UNKNOWN_MEMBER_ID
        return KafkaCode.NONE

    def _check_offsets(
        self, offsets: Mapping[TopicPartition, OffsetAndMetadata], error: KafkaCode
    ) -> tuple[dict[TopicPartition, KafkaCode], dict[TopicPartition, OffsetAndMetadata]]:
        """The error of each partition, and the offsets that may be written."""
        results: dict[TopicPartition, KafkaCode] = {}
        accepted: dict[TopicPartition, OffsetAndMetadata] = {}
        limit = self.config.offset_metadata_max_bytes
        for tp, om in offsets.items():
            code = self._partition_error(tp)
            if code == KafkaCode.NONE:
                code = error
            if code == KafkaCode.NONE and om.metadata is not None and len(om.metadata) > limit:
                code = KafkaCode.OFFSET_METADATA_TOO_LARGE
            results[tp] = code
            if code == KafkaCode.NONE:
                accepted[tp] = om
        return results, accepted

    def _partition_error(self, tp: TopicPartition) -> KafkaCode:
        count = self._partition_count(tp.topic)
        if count is None or not 0 <= tp.partition < count:
            return KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
        return KafkaCode.NONE

    def _group_for_commit(self, group_id: str) -> ClassicGroup | ConsumerGroup:
        consumer_group = self._consumer_groups.get(group_id)
        if consumer_group is not None:
            return consumer_group
        group = self._groups.get(group_id)
        if group is None:
            group = self._groups[group_id] = ClassicGroup(group_id, self)
        return group

    def _still_there(self, group: ClassicGroup | ConsumerGroup, tp: TopicPartition) -> bool:
        """A write becoming durable after its group or topic was deleted
        must not bring its offset back."""
        return (
            self._any_group(group.group_id) is group and self._partition_error(tp) == KafkaCode.NONE
        )

    # -- reading offsets ----------------------------------------------------------------

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
            committed = self._offsets.of_group(group_id)
            wanted = list(committed) if partitions is None else list(partitions)
            answer: dict[TopicPartition, tuple[OffsetAndMetadata | None, int]] = {}
            for tp in wanted:
                if require_stable and self._offsets.is_unstable(group_id, tp):
                    answer[tp] = (None, KafkaCode.UNSTABLE_OFFSET_COMMIT)
                    continue
                found = committed.get(tp)
                answer[tp] = (found.public() if found is not None else None, KafkaCode.NONE)
            return answer

    def delete_offsets(
        self, group_id: str, partitions: Sequence[TopicPartition]
    ) -> Future[dict[TopicPartition, KafkaCode]]:
        """OffsetDelete: removes committed offsets of an empty group, or of
        topics no member subscribes to (KafkaCode.GROUP_SUBSCRIBED_TO_TOPIC for the
        others). Raises GroupIdNotFound, NonEmptyGroup (a group that is not
        a consumer group and has members), InvalidGroupId, NotCoordinator."""
        if not group_id:
            raise InvalidGroupId(group_id)
        with self._locked():
            self._check_open()
            group = self._any_group(group_id)
            if group is None:
                raise GroupIdNotFound(group_id)
            if (
                isinstance(group, ClassicGroup)
                and group.state != GroupState.EMPTY
                and group.protocol_type != CONSUMER_PROTOCOL_TYPE
            ):
                raise NonEmptyGroup(group_id, group.state.value)
            results = {tp: self._partition_error(tp) for tp in partitions}
            consuming = not _is_empty(group)
            for tp, code in results.items():
                if code == KafkaCode.NONE and consuming and group.is_subscribed_to(tp.topic):
                    results[tp] = KafkaCode.GROUP_SUBSCRIBED_TO_TOPIC
            removable = [tp for tp, code in results.items() if code == KafkaCode.NONE]
            self._offsets.remove(group_id, removable)
            deletes = [offset_key(group_id, tp) for tp in removable]
            for producer_id, key in self._offsets.pending_where(group_id, removable):
                self._offsets.remove_pending(producer_id, [key])
                deletes.append(txn_key(producer_id, key.group_id, key.tp))
            if not deletes:
                return _done(results)
            future: Future[dict[TopicPartition, KafkaCode]] = _running_future()

            def written(error: KafkaCode) -> None:
                for tp in removable:
                    results[tp] = error
                self.resolve(future, results)

            self._write({}, deletes, written)
            return future

    # -- groups -------------------------------------------------------------------------

    def describe_groups(self, group_ids: Sequence[str]) -> list[GroupDescription]:
        """DescribeGroups: a group that does not exist is described as Dead
        (with no error, as Kafka does before DescribeGroups v6)."""
        with self._locked():
            self._check_open()
            described = []
            for group_id in group_ids:
                group = self._groups.get(group_id)
                consumer_group = self._consumer_groups.get(group_id)
                if consumer_group is not None:
                    described.append(consumer_group.describe_classic())
                elif group is None:
                    described.append(
                        GroupDescription(
                            group_id, KafkaCode.NONE, GroupState.DEAD.value, "", "", []
                        )
                    )
                else:
                    described.append(group.describe())
            return described

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
                for group in self._groups.values()
            ] + [group.listing() for group in self._consumer_groups.values()]
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
                group = self._any_group(group_id)
                if group is None:
                    results[group_id] = KafkaCode.GROUP_ID_NOT_FOUND
                elif not _is_empty(group):
                    results[group_id] = KafkaCode.NON_EMPTY_GROUP
                else:
                    deletes += self._drop_group(group)
                    deleted.append(group_id)
                    results[group_id] = KafkaCode.NONE
            if not deletes:
                return _done(results)
            future: Future[dict[str, int]] = _running_future()

            def written(error: KafkaCode) -> None:
                for group_id in deleted:
                    results[group_id] = error
                self.resolve(future, results)

            self._write({}, deletes, written)
            return future

    def _drop_group(self, group: ClassicGroup | ConsumerGroup) -> list[Hashable]:
        """Forgets the group and its offsets; returns the keys to delete."""
        group_id = group.group_id
        if isinstance(group, ConsumerGroup):
            keys = self._drop_consumer_group(group, write=False)
        else:
            del self._groups[group_id]
            group.unload(KafkaCode.NOT_COORDINATOR)
            keys = [group_key(group_id)]
        committed = list(self._offsets.of_group(group_id))
        self._offsets.remove(group_id, committed)
        keys += [offset_key(group_id, tp) for tp in committed]
        for producer_id, key in self._offsets.pending_where(group_id):
            self._offsets.remove_pending(producer_id, [key])
            keys.append(txn_key(producer_id, group_id, key.tp))
        log.info("group %s deleted", group_id)
        return keys

    def subscribed_topics(self, group_id: str) -> set[str]:
        """The topics the group's members subscribe to (consumer groups; empty if unknown)."""
        with self._locked():
            group = self._any_group(group_id)
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
                if not self._closed:
                    self._retention_timer = self._timers.call_later(
                        self.config.offsets_retention_check_interval_ms / 1000,
                        self._retention_check,
                    )

    def expire_offsets(self) -> int:
        """Removes the offsets retention expires now (KIP-211), and groups
        left with neither members nor offsets; returns how many offsets."""
        with self._locked():
            if self._closed:
                return 0
            now = self.now_ms()
            retention = self.config.offsets_retention_ms
            deletes: list[Hashable] = []
            expired_count = 0
            for group in list(self._groups.values()):
                group_id = group.group_id
                if group.protocol_type is None:
                    # Only commits from outside any group: each by its own age.
                    expired = self._offsets.expired(group_id, now, retention, None)
                elif group.state == GroupState.EMPTY:
                    # Every offset, once the group has been empty that long.
                    expired = self._offsets.expired(group_id, now, retention, group.state_timestamp)
                elif (
                    group.state == GroupState.STABLE
                    and group.protocol_type == CONSUMER_PROTOCOL_TYPE
                    and group.subscribed_topics is not None
                ):
                    # Topics no member consumes any more, by their commit's age.
                    expired = self._offsets.expired(
                        group_id, now, retention, None, group.subscribed_topics
                    )
                else:
                    expired = []
                self._offsets.remove(group_id, expired)
                deletes += [offset_key(group_id, tp) for tp in expired]
                expired_count += len(expired)
                deletes += self._forget_if_empty(group)
            for consumer_group in list(self._consumer_groups.values()):
                count, keys = self._expire_consumer_group_offsets(consumer_group, now, retention)
                expired_count += count
                deletes += keys
            if deletes:
                self._write({}, deletes)
            if expired_count:
                log.info("expired %d committed offsets", expired_count)
            return expired_count

    def _forget_if_empty(self, group: ClassicGroup) -> list[Hashable]:
        if (
            group.state != GroupState.EMPTY
            or group.pending_members
            or self._offsets.has_offsets(group.group_id)
        ):
            return []
        del self._groups[group.group_id]
        group.unload(KafkaCode.NOT_COORDINATOR)
        return [group_key(group.group_id)]

    # -- topics -------------------------------------------------------------------------

    def on_topic_deleted(self, topic: str) -> None:
        """Drops every group's committed and pending offsets of ``topic``
        (and groups left with nothing), as Kafka does when a topic goes."""
        with self._locked():
            if self._closed:
                return
            committed, pending = self._offsets.of_topic(topic)
            deletes: list[Hashable] = []
            touched = set()
            for key in committed:
                self._offsets.remove(key.group_id, [key.tp])
                deletes.append(offset_key(key.group_id, key.tp))
                touched.add(key.group_id)
            for producer_id, key in pending:
                self._offsets.remove_pending(producer_id, [key])
                deletes.append(txn_key(producer_id, key.group_id, key.tp))
                touched.add(key.group_id)
            for group_id in touched:
                group = self._groups.get(group_id)
                if group is not None:
                    deletes += self._forget_if_empty(group)
                consumer_group = self._consumer_groups.get(group_id)
                if consumer_group is not None:
                    deletes += self._forget_consumer_group_if_empty(consumer_group)
            if deletes:
                self._write({}, deletes)

    # -- consumer groups (KIP-848) ------------------------------------------------------

    def topics(self) -> Mapping[str, TopicInfo]:
        return self._topic_metadata()

    def schedule_consumer(
        self, group: ConsumerGroup, delay_s: float, callback: Callable[[], None]
    ) -> Timer:
        def run() -> None:
            with self._locked():
                if not self._closed and self._consumer_groups.get(group.group_id) is group:
                    callback()

        return self._timers.call_later(delay_s, run)

    def write_consumer(
        self,
        puts: dict[Hashable, Any],
        deletes: list[Hashable],
        then: Callable[[KafkaCode], None] | None = None,
    ) -> None:
        self._write(puts, deletes, then)

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
            try:
                validate_heartbeat(request, self.config, member_id_required)
            except Refused as refused:
                return _done(HeartbeatResult(refused.code, refused.message))
            if self._closed:
                return _done(
                    HeartbeatResult(KafkaCode.NOT_COORDINATOR, "the coordinator is closed")
                )
            group_id = request.group_id
            group = self._consumer_groups.get(group_id)
            if group is None:
                if request.member_epoch != 0:
                    return _done(
                        HeartbeatResult(
                            KafkaCode.UNKNOWN_MEMBER_ID, f"group {group_id} has no members"
                        )
                    )
                classic = self._groups.get(group_id)
                if classic is not None:
                    if classic.state != GroupState.EMPTY or classic.pending_members:
                        return _done(
                            HeartbeatResult(
                                KafkaCode.INCONSISTENT_GROUP_PROTOCOL,
                                f"group {group_id} is a classic group with members",
                            )
                        )
                    # An empty classic group becomes a consumer group; its
                    # offsets stay, its stored metadata goes.
                    del self._groups[group_id]
                    classic.unload(KafkaCode.NOT_COORDINATOR)
                    self._write({}, [group_key(group_id)])
                group = self._consumer_groups[group_id] = ConsumerGroup(group_id, self)
            answer = group.heartbeat(request)
            self._forget_consumer_group_if_unused(group)
            return answer

    def consumer_group_describe(self, group_ids: Sequence[str]) -> list[ConsumerGroupDescription]:
        """ConsumerGroupDescribe: a group that is not a consumer group (or
        does not exist) is GROUP_ID_NOT_FOUND."""
        with self._locked():
            self._check_open()
            described = []
            for group_id in group_ids:
                group = self._consumer_groups.get(group_id)
                if group is not None:
                    described.append(group.describe())
                    continue
                message = (
                    f"group {group_id} is not a consumer group"
                    if group_id in self._groups
                    else f"group {group_id} not found"
                )
                described.append(
                    ConsumerGroupDescription(
                        group_id,
                        KafkaCode.GROUP_ID_NOT_FOUND,
                        message,
                        ConsumerGroupState.DEAD.value,
                        -1,
                        -1,
                        "",
                        [],
                        {},
                    )
                )
            return described

    def _any_group(self, group_id: str) -> ClassicGroup | ConsumerGroup | None:
        return self._groups.get(group_id) or self._consumer_groups.get(group_id)

    def _load_consumer_groups(
        self, groups: Mapping[str, Any], members: Mapping[str, Mapping[str, Any]]
    ) -> list[Hashable]:
        """Loads the stored consumer groups; returns the keys of members
        whose group is gone (to delete)."""
        for group_id, value in groups.items():
            self._consumer_groups[group_id] = ConsumerGroup.load(
                group_id, self, value, members.get(group_id, {})
            )
        return [
            (CONSUMER_MEMBER_KEY, group_id, member_id)
            for group_id, of_group in members.items()
            if group_id not in groups
            for member_id in of_group
        ]

    def _drop_consumer_group(self, group: ConsumerGroup, write: bool = True) -> list[Hashable]:
        """Forgets a consumer group (not its offsets); its keys are deleted,
        or returned to be deleted if not ``write``."""
        del self._consumer_groups[group.group_id]
        group.unload()
        keys = group.keys()
        if write:
            self._write({}, keys)
        return keys

    def _forget_consumer_group_if_unused(self, group: ConsumerGroup) -> None:
        """A group whose first join was refused holds nothing: not kept."""
        if group.is_empty and group.epoch == 0 and not self._offsets.has_offsets(group.group_id):
            del self._consumer_groups[group.group_id]
            group.unload()

    def _forget_consumer_group_if_empty(self, group: ConsumerGroup) -> list[Hashable]:
        if not group.is_empty or self._offsets.has_offsets(group.group_id):
            return []
        return self._drop_consumer_group(group, write=False)

    def _expire_consumer_group_offsets(
        self, group: ConsumerGroup, now: int, retention: int
    ) -> tuple[int, list[Hashable]]:
        """Retention of a consumer group's offsets, as for a classic one: all
        of an empty group's, else those of topics no member subscribes to;
        then the group itself if it is left empty with no offsets."""
        group_id = group.group_id
        if group.is_empty:
            expired = self._offsets.expired(group_id, now, retention, group.state_timestamp)
        else:
            expired = self._offsets.expired(
                group_id, now, retention, None, group.subscribed_topics()
            )
        self._offsets.remove(group_id, expired)
        keys = [offset_key(group_id, tp) for tp in expired]
        return len(expired), keys + self._forget_consumer_group_if_empty(group)

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Answers every waiting member NOT_COORDINATOR (clients look the
        coordinator up again) and stops the timers. Writes already made
        still settle their futures."""
        with self._locked():
            if self._closed:
                return
            self._closed = True
            self._retention_timer.cancel()
            for group in self._groups.values():
                group.unload(KafkaCode.NOT_COORDINATOR)
            for consumer_group in self._consumer_groups.values():
                consumer_group.unload()
        self._timers.stop()


def _settle(future: Future[Any], value: Any) -> None:
    """Settles ``future`` unless something settled it first."""
    with contextlib.suppress(InvalidStateError):
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            future.set_result(value)


def _running_future() -> Future[Any]:
    future: Future[Any] = Future()
    future.set_running_or_notify_cancel()
    return future


def _done(value: T) -> Future[T]:
    future: Future[T] = _running_future()
    future.set_result(value)
    return future


def _failed(error: BaseException) -> Future[Any]:
    future: Future[Any] = _running_future()
    future.set_exception(error)
    return future


def _log_failure(future: Future[int]) -> None:
    error = future.exception()
    if error is not None:
        log.warning("writing group state failed: %s", error)


def _is_empty(group: ClassicGroup | ConsumerGroup) -> bool:
    if isinstance(group, ConsumerGroup):
        return group.is_empty
    return group.state == GroupState.EMPTY
