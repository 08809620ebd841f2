"""Committed offsets, as the coordinator serves them: commits (plain and
in a transaction, through one path), a transaction's completion, fetches,
deletions, retention (KIP-211), a deleted topic's offsets, and their
loading from the state log.

Runs under the coordinator's lock, like the groups: the coordinator (the
"host") gives it durable writes, futures settled once the lock is
released, the clock, and the groups by id. The coordinator checks the
member and generation of a commit (classic and KIP-848 groups check them
differently) and hands the answer in. The state in memory is in
offset_store.py, its stored form in records.py.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, NamedTuple, Protocol

from engine.errors import NotCoordinator
from engine.futures import done, running_future, settle
from engine.groups.classic import ClassicGroup
from engine.groups.config import GroupConfig
from engine.groups.consumer_group import ConsumerGroup
from engine.groups.offset_store import OffsetKey, OffsetStore
from engine.groups.records import (
    CommittedOffset,
    PendingOffset,
    StoredState,
    offset_key,
    txn_key,
)
from engine.groups.results import GroupState
from engine.protocol.kafka_code import KafkaCode
from engine.state_log import RECORD_FRAMING, put_entry_bytes
from engine.types import OffsetAndMetadata, TopicPartition

Group = ClassicGroup | ConsumerGroup


class OffsetHost(Protocol):
    """What the offsets need from their coordinator."""

    def now_ms(self) -> int: ...

    def resolve(self, future: Future[Any], value: Any) -> None:
        """Settles ``future`` once the coordinator's lock is released."""

    def write(
        self,
        puts: dict[Hashable, Any],
        deletes: list[Hashable],
        then: Callable[[KafkaCode], None] | None = None,
    ) -> None:
        """Appends to the state log; ``then(error_code)`` runs under the
        lock once the records are durable (NOT_COORDINATOR if they failed,
        UNKNOWN_SERVER_ERROR if a record is larger than the store takes)."""

    @property
    def max_record_bytes(self) -> int:
        """The largest record the state log takes (the store's bound)."""

    def group(self, group_id: str) -> Group | None:
        """The group of that id, of either protocol."""

    def group_for_commit(self, group_id: str) -> Group:
        """The group of that id, created (classic, empty) if there is none."""

    def forget_if_unused(self, group_id: str) -> None:
        """Forgets the group if only offsets made it and it holds none now."""


class Transaction(NamedTuple):
    """The transaction a commit is part of (TxnOffsetCommit)."""

    producer_id: int
    producer_epoch: int


class TransactionalWrite:
    """A TxnOffsetCommit whose write is not durable yet, or not even begun:
    it is registered before the transaction coordinator checks it
    (``expect_transactional_commit``). Its transaction may end meanwhile (a
    timeout abort, say): the write is then void, and its offsets must not
    become pending, or the producer's next transaction would complete them
    as its own."""

    __slots__ = ("deleted", "keys", "producer_id", "void", "voided_by")

    def __init__(self, producer_id: int, keys: frozenset[OffsetKey]) -> None:
        self.producer_id = producer_id
        self.keys = keys
        self.void = False
        self.voided_by: Future[None] | None = None
        """The completion that voided it: durable once this settles."""
        self.deleted: set[OffsetKey] = set()
        """Keys whose record a deletion (of its group, topic or offsets)
        deleted meanwhile: they do not become pending."""


class OffsetManager:
    """``partition_count(topic)`` says how many partitions a topic has (None
    if it does not exist); offsets of other partitions are refused."""

    def __init__(
        self,
        host: OffsetHost,
        config: GroupConfig,
        partition_count: Callable[[str], int | None],
    ) -> None:
        self._host = host
        self._config = config
        self._partition_count = partition_count
        self.store = OffsetStore()
        self._transactional_writes: dict[int, list[TransactionalWrite]] = {}
        """Each producer's TxnOffsetCommits being written (none kept once durable)."""
        self._completion_bytes: dict[int, dict[OffsetKey, _Counted]] = {}
        """Per producer, the bytes each of its transaction's offsets may add
        to the record that completes it (the commit's, which is the larger):
        a TxnOffsetCommit that would take it past one record is refused."""
        self._count_serial = 0
        """The token of the last TxnOffsetCommit counted (_count_in_completion)."""
        self._void_unended: dict[int, set[OffsetKey]] = {}
        """Per producer, the keys of void TxnOffsetCommits whose completion
        failed to write the record that ends them: its retry ends them."""

    def load(self, state: StoredState) -> list[Hashable]:
        """Loads the stored offsets; returns the keys to delete: offsets of
        deleted topics, committed or pending (the topic's deletion was
        durable, the deletion of its offsets in this log did not make it),
        and completed transactions' whose deletion did not make it."""
        dropped = list(state.completed)
        for group_id, tp, committed in state.offsets:
            if self.partition_error(tp) != KafkaCode.NONE:
                dropped.append(offset_key(group_id, tp))  # its topic was deleted
                continue
            self.store.load(group_id, tp, committed)
        for producer_id, group_id, tp, pending in state.pending:
            if self.partition_error(tp) != KafkaCode.NONE:
                # As remove_topic would have: kept, the transaction's commit
                # would make them the offsets of a topic made again under
                # the name (docs/design/0053).
                dropped.append(txn_key(producer_id, group_id, tp))
                continue
            key = OffsetKey(group_id, tp)
            self.store.add_pending(producer_id, key, pending)
            self.store.saw_sequence(pending.offset.sequence)
            # The transaction's completion will write it: counted as its
            # TxnOffsetCommit counted it, or a commit after the restart could
            # take the completion past one record and the transaction never end.
            self._completion_bytes.setdefault(producer_id, {})[key] = _Counted.loaded(
                _completion_entry_bytes(producer_id, key, pending.offset)
            )
        return dropped

    def partition_error(self, tp: TopicPartition) -> KafkaCode:
        count = self._partition_count(tp.topic)
        if count is None or not 0 <= tp.partition < count:
            return KafkaCode.UNKNOWN_TOPIC_OR_PARTITION
        return KafkaCode.NONE

    # -- committing ---------------------------------------------------------------------

    def commit(
        self,
        group_id: str,
        offsets: Mapping[TopicPartition, OffsetAndMetadata],
        member_error: KafkaCode,
        transaction: Transaction | None = None,
        retention_ms: int = -1,
        expected: TransactionalWrite | None = None,
    ) -> Future[dict[TopicPartition, KafkaCode]]:
        """OffsetCommit, or TxnOffsetCommit in ``transaction``: an error code
        per partition (``member_error`` for every partition if the member
        check refused the commit) once the offsets are durable. A plain
        commit then becomes the committed offset; a transaction's is
        pending until complete_transaction. ``retention_ms`` >= 0
        (OffsetCommit v2-4) expires the offsets that long after the commit.
        ``expected`` is the TxnOffsetCommit's registration from before its
        check: void if the transaction ended since (INVALID_TXN_STATE)."""
        if expected is not None and expected.void and member_error == KafkaCode.NONE:
            member_error = KafkaCode.INVALID_TXN_STATE
        now = self._host.now_ms()
        expire = now + retention_ms if retention_ms >= 0 and transaction is None else -1
        results, accepted = self._check_offsets(offsets, member_error)
        values = {
            OffsetKey(group_id, tp): CommittedOffset(
                om.offset,
                om.leader_epoch,
                om.metadata or "",
                now,
                expire,
                self.store.next_sequence(),
            )
            for tp, om in accepted.items()
        }
        counted = self._count_in_completion(transaction, values)
        if counted is None:
            # Kafka writes a transaction's offsets as they come and ends them
            # with a marker; here its completion writes them in one record,
            # which must stay one the store takes, or the transaction could
            # never end: refused as Kafka 4 refuses a commit whose record is
            # too large (UNKNOWN_SERVER_ERROR).
            for key in values:
                results[key.tp] = KafkaCode.UNKNOWN_SERVER_ERROR
            return done(results)
        if not values:
            return done(results)
        self._host.group_for_commit(group_id)  # a commit from outside any group makes one
        self.store.writing(values)
        puts: dict[Hashable, Any]
        if transaction is None:
            for key, value in values.items():
                self.store.issued(key, value.sequence)
            puts = {offset_key(k.group_id, k.tp): v.to_value() for k, v in values.items()}
        else:
            puts = {
                txn_key(transaction.producer_id, k.group_id, k.tp): PendingOffset(
                    transaction.producer_epoch, v
                ).to_value()
                for k, v in values.items()
            }
        in_flight = self._track(transaction, values)
        future: Future[dict[TopicPartition, KafkaCode]] = running_future()

        def written(error: KafkaCode) -> None:
            self.store.written(values)
            if counted:
                self._settle_count(counted, error)
            if in_flight is not None and self.settled(in_flight) and error == KafkaCode.NONE:
                # Its transaction ended while this was written: as if
                # Kafka's verification (KIP-890) had refused it. The
                # completion's record deletes it (complete_transaction).
                error = KafkaCode.INVALID_TXN_STATE
            gone: list[OffsetKey] = []
            for key, value in values.items():
                results[key.tp] = error
                if error != KafkaCode.NONE:
                    continue
                if transaction is None:
                    self._make_visible(key, value)
                elif in_flight is not None and key in in_flight.deleted:
                    gone.append(key)
                elif self._still_there(key):
                    pending = PendingOffset(transaction.producer_epoch, value)
                    self.store.add_pending(transaction.producer_id, key, pending)
                else:
                    gone.append(key)
            if transaction is not None and gone:
                # Its group or topic was deleted while this was written: the
                # record must not load, at the next start, as pending offsets
                # of a group that no longer exists.
                self._delete_unclaimed(transaction.producer_id, gone)
            # Refused, voided or deleted meanwhile, it may have left the
            # group it made with nothing, which a restart would not find.
            self._host.forget_if_unused(group_id)
            self._answer_once_void_is_durable(in_flight, future, results)

        self._host.write(puts, [], written)
        return future

    def _count_in_completion(
        self, transaction: Transaction | None, values: Mapping[OffsetKey, CommittedOffset]
    ) -> list[tuple[_Counted, int]] | None:
        """Counts ``values`` in their transaction's completion if it stays
        one record the store takes with them among its offsets: the counts
        taken, each as its key's count and its token, for
        ``_settle_count``; None (nothing counted) if it would not."""
        if transaction is None or not values:
            return []
        producer_id = transaction.producer_id
        counted = self._completion_bytes.setdefault(producer_id, {})
        sizes = {
            key: _completion_entry_bytes(producer_id, key, value) for key, value in values.items()
        }
        grown = sum(
            max(size - counted[key].bytes, 0) if key in counted else size
            for key, size in sizes.items()
        )
        total = sum(count.bytes for count in counted.values()) + grown + RECORD_FRAMING
        if total > self._host.max_record_bytes:
            if not counted:
                del self._completion_bytes[producer_id]
            return None
        self._count_serial += 1
        taken = []
        for key, size in sizes.items():
            count = counted.setdefault(key, _Counted())
            count.writes[self._count_serial] = size
            taken.append((count, self._count_serial))
        return taken

    @staticmethod
    def _settle_count(taken: list[tuple[_Counted, int]], error: KafkaCode) -> None:
        """A TxnOffsetCommit's write ended: durable, its entries replace the
        ones written before them (the completion writes each partition's
        last); refused before the store took anything (no room, or too
        large), they are uncounted. A write that failed after the store
        took it (NOT_COORDINATOR) may still be read by a restart, which
        makes it pending: it stays counted."""
        for count, token in taken:
            if error == KafkaCode.NONE:
                count.written(token)
            elif error in _NOT_WRITTEN:
                count.writes.pop(token, None)

    def expect_transactional_commit(self, producer_id: int) -> TransactionalWrite:
        """Registers a TxnOffsetCommit of the producer before the transaction
        coordinator checks it: a transaction completing between that check
        and the write voids it (commit(expected=)). ``settled`` forgets it."""
        return self._register(producer_id, frozenset())

    def _track(
        self, transaction: Transaction | None, keys: Iterable[OffsetKey]
    ) -> TransactionalWrite | None:
        if transaction is None:
            return None
        return self._register(transaction.producer_id, frozenset(keys))

    def _register(self, producer_id: int, keys: frozenset[OffsetKey]) -> TransactionalWrite:
        write = TransactionalWrite(producer_id, keys)
        self._transactional_writes.setdefault(producer_id, []).append(write)
        return write

    def settled(self, write: TransactionalWrite) -> bool:
        """Forgets a durable (or refused) TxnOffsetCommit; whether its
        transaction ended meanwhile."""
        writes = self._transactional_writes.get(write.producer_id, [])
        if write in writes:
            writes.remove(write)
            if not writes:
                del self._transactional_writes[write.producer_id]
        return write.void

    def _answer_once_void_is_durable(
        self,
        write: TransactionalWrite | None,
        future: Future[dict[TopicPartition, KafkaCode]],
        results: dict[TopicPartition, KafkaCode],
    ) -> None:
        """Answers a commit; a void one only once the completion that voided
        it (and deleted its record) is durable: refused while its record
        could still load at a start, a transaction's retried completion
        would commit what the client was told was refused."""
        completion = write.voided_by if write is not None else None
        if completion is None or completion.done():
            self._host.resolve(future, _unknown_if_failed(completion, results))
            return
        completion.add_done_callback(
            lambda ended: settle(future, _unknown_if_failed(ended, results))
        )

    def _delete_unclaimed(self, producer_id: int, keys: Iterable[OffsetKey]) -> None:
        """Deletes the producer's pending records under ``keys`` that no
        later TxnOffsetCommit of it holds: one pending, or being written
        (the deletion, written after it, would remove its record)."""
        kept = set(self.store.pending_of(producer_id))
        for write in self._transactional_writes.get(producer_id, []):
            kept |= write.keys
        stale = [txn_key(producer_id, k.group_id, k.tp) for k in keys if k not in kept]
        if stale:
            self._host.write({}, stale)

    def complete_transaction(
        self, producer_id: int, committed: bool, producer_epoch: int | None = None
    ) -> Future[None]:
        """Makes the producer's pending offsets (of every group) committed,
        or drops them, durably. A pending offset older than the partition's
        committed one (committed later outside the transaction) is dropped.
        Idempotent: nothing pending is nothing to do. The future fails with
        NotCoordinator if the records could not be written. Commits of the
        producer still being written belonged to this transaction (a next
        one cannot have begun): they are void. With ``producer_epoch`` (the
        transaction's), a commit completes only the offsets committed at
        that epoch and drops the others (see below)."""
        future: Future[None] = running_future()
        self._completion_bytes.pop(producer_id, None)
        void_keys = self._void_unended.pop(producer_id, set())
        for write in self._transactional_writes.pop(producer_id, []):
            write.void = True
            if write.keys:  # its write has begun: its answer waits for this
                write.voided_by = future
                void_keys |= write.keys
        pending = self.store.pending_of(producer_id)
        if not pending and not void_keys:
            return done(None)
        # The void writes' records are in the log before this completion's
        # record, which ends them with the pending ones: once the completion
        # is durable (before EndTxn is answered) no start can load them as
        # pending for the producer's next transaction (docs/design/0053).
        txn_keys = [
            txn_key(producer_id, k.group_id, k.tp) for k in [*pending, *(void_keys - set(pending))]
        ]
        # Only offsets newer than the partition's last commit, in the
        # order commits are written, become the committed ones.
        # A transaction's TxnOffsetCommits all carry its epoch (the check
        # holds them to it). One at an older epoch is a void write of an
        # earlier transaction whose deletion a stop cut short while this
        # one was open: Kafka's log orders such a write before the earlier
        # transaction's marker; the two state logs here order nothing
        # between them, so the epoch tells it apart (docs/design/0048).
        newer = {
            key: value.offset
            for key, value in pending.items()
            if committed
            and producer_epoch in (None, value.producer_epoch)
            and value.offset.sequence > self.store.latest(key)
            and self._host.group(key.group_id) is not None
        }
        for key, offset in newer.items():
            self.store.issued(key, offset.sequence)
        # Being written, as a commit's offsets are: a deletion of their
        # group, topic or offsets meanwhile deletes them too (_being_written).
        self.store.writing(newer)

        def written(error: KafkaCode) -> None:
            self.store.written(newer)
            if error != KafkaCode.NONE:
                # Left in Prepare*, the transaction is completed again: that
                # completion ends the void records (no longer tracked as
                # writes), or a start would load them as pending.
                if void_keys:
                    self._void_unended.setdefault(producer_id, set()).update(void_keys)
                self._host.resolve(future, NotCoordinator("completing the transaction failed"))
                return
            self.store.remove_pending(producer_id, pending)
            for key, offset in newer.items():
                self._make_visible(key, offset)
            for group_id in {key.group_id for key in pending}:
                # Aborted, its offsets may have been all its group held
                self._host.forget_if_unused(group_id)
            if committed:
                self._host.write({}, txn_keys)  # the nil markers are no longer needed
            self._host.resolve(future, None)

        if committed:
            # One record: the offsets and the end of their pending state.
            puts: dict[Hashable, Any] = {
                offset_key(k.group_id, k.tp): v.to_value() for k, v in newer.items()
            }
            puts.update(dict.fromkeys(txn_keys))
            self._host.write(puts, [], written)
        else:
            self._host.write({}, txn_keys, written)
        return future

    def _make_visible(self, key: OffsetKey, offset: CommittedOffset) -> None:
        """A durable commit becomes the committed offset, unless a later one
        was written meanwhile or the offset was removed (its group, its
        topic or itself deleted) after it was written."""
        if self.store.latest(key) == offset.sequence and self._still_there(key):
            self.store.put(key.group_id, key.tp, offset)

    def _check_offsets(
        self, offsets: Mapping[TopicPartition, OffsetAndMetadata], error: KafkaCode
    ) -> tuple[dict[TopicPartition, KafkaCode], dict[TopicPartition, OffsetAndMetadata]]:
        """The error of each partition, and the offsets that may be written."""
        results: dict[TopicPartition, KafkaCode] = {}
        accepted: dict[TopicPartition, OffsetAndMetadata] = {}
        limit = self._config.offset_metadata_max_bytes
        for tp, om in offsets.items():
            code = self.partition_error(tp)
            if code == KafkaCode.NONE:
                code = error
            if code == KafkaCode.NONE and om.metadata is not None and len(om.metadata) > limit:
                code = KafkaCode.OFFSET_METADATA_TOO_LARGE
            results[tp] = code
            if code == KafkaCode.NONE:
                accepted[tp] = om
        return results, accepted

    def _still_there(self, key: OffsetKey) -> bool:
        """A write becoming durable after its group or topic was deleted
        must not bring its offset back. The group is asked for by id, not
        as the object the commit found: a group that changed protocol
        meanwhile (KIP-848's conversion of an empty group) is the same
        group, its offsets kept as its record is, while a deletion's record
        deleted the commit's (_being_written) and forgot its sequence."""
        return (
            self._host.group(key.group_id) is not None
            and self.partition_error(key.tp) == KafkaCode.NONE
        )

    # -- reading ------------------------------------------------------------------------

    def fetch(
        self, group_id: str, partitions: Sequence[TopicPartition] | None, require_stable: bool
    ) -> dict[TopicPartition, tuple[OffsetAndMetadata | None, int]]:
        """OffsetFetch: per partition (every committed one if ``partitions``
        is None) the committed offset (None: none) and an error code
        (UNSTABLE_OFFSET_COMMIT, with ``require_stable``, for a partition
        with a commit being written or pending in a transaction)."""
        committed = self.store.of_group(group_id)
        wanted = list(committed) if partitions is None else list(partitions)
        answer: dict[TopicPartition, tuple[OffsetAndMetadata | None, int]] = {}
        for tp in wanted:
            if require_stable and self.store.is_unstable(group_id, tp):
                answer[tp] = (None, KafkaCode.UNSTABLE_OFFSET_COMMIT)
                continue
            found = committed.get(tp)
            answer[tp] = (found.public() if found is not None else None, KafkaCode.NONE)
        return answer

    def has_offsets(self, group_id: str) -> bool:
        """Committed, pending in a transaction, or being written."""
        return self.store.has_offsets(group_id)

    def group_ids(self) -> set[str]:
        """Every group with committed or pending offsets."""
        return self.store.group_ids()

    # -- removing -----------------------------------------------------------------------

    def delete(
        self, group: Group, consuming: bool, partitions: Sequence[TopicPartition]
    ) -> Future[dict[TopicPartition, KafkaCode]]:
        """OffsetDelete: removes the group's committed (and pending) offsets
        of ``partitions``, and its commits of them being written; while the
        group is ``consuming``, those of topics its members subscribe to are
        GROUP_SUBSCRIBED_TO_TOPIC."""
        group_id = group.group_id
        results = {tp: self.partition_error(tp) for tp in partitions}
        for tp, code in results.items():
            if code == KafkaCode.NONE and consuming and group.is_subscribed_to(tp.topic):
                results[tp] = KafkaCode.GROUP_SUBSCRIBED_TO_TOPIC
        removable = [tp for tp, code in results.items() if code == KafkaCode.NONE]
        deletes = self._remove(group_id, removable)
        deletes += self._remove_pending(group_id, removable)
        # Kafka's tombstone removes the partition's pending offsets of open
        # transactions, their records before it included.
        wanted = set(removable)
        deletes = _unique(
            deletes + self._being_written(lambda k: k.group_id == group_id and k.tp in wanted)
        )
        if not deletes:
            return done(results)
        future: Future[dict[TopicPartition, KafkaCode]] = running_future()

        def written(error: KafkaCode) -> None:
            for tp in removable:
                results[tp] = error
            if error == KafkaCode.NONE:
                self._host.forget_if_unused(group_id)
            self._host.resolve(future, results)

        self._host.write({}, deletes, written)
        return future

    def restore(self, keys: Iterable[Hashable], state: StoredState) -> None:
        """A write deleting ``keys`` failed: the committed and pending
        offsets ``state`` (the state log's) holds under them are there
        again, as a start would load them (not those of a topic deleted
        meanwhile), but those a commit being written will set once durable."""
        wanted = set(keys)
        writing = set(self.store.being_written())
        for group_id, tp, committed in state.offsets:
            key = OffsetKey(group_id, tp)
            if (
                offset_key(group_id, tp) in wanted
                and key not in writing
                and self.partition_error(tp) == KafkaCode.NONE
            ):
                self.store.load(group_id, tp, committed)
        for producer_id, group_id, tp, pending in state.pending:
            if (
                txn_key(producer_id, group_id, tp) in wanted
                and self.partition_error(tp) == KafkaCode.NONE
            ):
                self.store.add_pending(producer_id, OffsetKey(group_id, tp), pending)

    def remove_group(self, group_id: str) -> list[Hashable]:
        """Forgets every committed and pending offset of a group that is
        deleted; returns the keys to delete, those of its commits being
        written among them."""
        keys = self._remove(group_id, self.store.of_group(group_id))
        keys += self._remove_pending(group_id, None)
        return _unique(keys + self._being_written(lambda key: key.group_id == group_id))

    def expire(
        self, group_id: str, now_ms: int, since_ms: int | None, subscribed: set[str] | None = None
    ) -> list[Hashable]:
        """Removes the group's offsets retention expires now (OffsetStore.expired);
        returns their keys, to delete."""
        expired = self.store.expired(
            group_id, now_ms, self._config.offsets_retention_ms, since_ms, subscribed
        )
        return self._remove(group_id, expired)

    def remove_topic(self, topic: str) -> tuple[list[Hashable], set[str]]:
        """Forgets every group's committed and pending offsets of ``topic``;
        returns the keys to delete and the groups that had some."""
        committed, pending = self.store.of_topic(topic)
        deletes: list[Hashable] = []
        touched = set()
        for key in committed:
            self.store.remove(key.group_id, [key.tp])
            deletes.append(offset_key(key.group_id, key.tp))
            touched.add(key.group_id)
        for producer_id, key in pending:
            self.store.remove_pending(producer_id, [key])
            deletes.append(txn_key(producer_id, key.group_id, key.tp))
            touched.add(key.group_id)
        return _unique(deletes + self._being_written(lambda key: key.tp.topic == topic)), touched

    def _being_written(self, matching: Callable[[OffsetKey], bool]) -> list[Hashable]:
        """The records of the commits being written under ``matching`` keys.
        Their group, topic or offsets are deleted: the deletion's record,
        after theirs in the log, deletes them too, so that no start loads
        them (their write's own answer comes too late to delete them if the
        engine stops first), and the commits, once durable, neither become
        visible nor pending: a topic made again under the name would take
        them, and a start would not. A key under a transaction only also
        gets its ``offset`` key deleted, which holds nothing."""
        keys: list[Hashable] = []
        for key in filter(matching, self.store.being_written()):
            self.store.remove(key.group_id, [key.tp])  # it will not become visible
            keys.append(offset_key(key.group_id, key.tp))
        for writes in self._transactional_writes.values():
            for write in writes:
                deleted = set(filter(matching, write.keys))
                write.deleted |= deleted
                keys += [txn_key(write.producer_id, k.group_id, k.tp) for k in deleted]
        return keys

    def _remove(self, group_id: str, partitions: Iterable[TopicPartition]) -> list[Hashable]:
        partitions = list(partitions)
        self.store.remove(group_id, partitions)
        return [offset_key(group_id, tp) for tp in partitions]

    def _remove_pending(
        self, group_id: str, partitions: Iterable[TopicPartition] | None
    ) -> list[Hashable]:
        keys: list[Hashable] = []
        for producer_id, key in self.store.pending_where(group_id, partitions):
            self.store.remove_pending(producer_id, [key])
            keys.append(txn_key(producer_id, key.group_id, key.tp))
        return keys


_NOT_WRITTEN = frozenset({KafkaCode.COORDINATOR_NOT_AVAILABLE, KafkaCode.UNKNOWN_SERVER_ERROR})
"""The codes of a state write the store refused before taking anything
(NoRoom, AppendTooLarge: groups/executor.py): known not to be written.
NOT_COORDINATOR may be a write the WAL failed after its bytes reached the
file, which a restart reads (docs/design/0103)."""


class _Counted:
    """What one pending offset may add to its transaction's completion:
    the largest of its writes that could still be the pending one, by
    token in the order they were begun (a durable one drops those begun
    before it, which it replaces)."""

    __slots__ = ("writes",)

    def __init__(self) -> None:
        self.writes: dict[int, int] = {}

    @classmethod
    def loaded(cls, size: int) -> _Counted:
        count = cls()
        count.writes[0] = size
        return count

    @property
    def bytes(self) -> int:
        return max(self.writes.values(), default=0)

    def written(self, token: int) -> None:
        for earlier in [t for t in self.writes if t < token]:
            del self.writes[earlier]


def _completion_entry_bytes(producer_id: int, key: OffsetKey, value: CommittedOffset) -> int:
    """The bytes one pending offset adds to its transaction's commit
    record: the offset's put and the put that ends its pending state."""
    put = put_entry_bytes(offset_key(key.group_id, key.tp), value.to_value())
    return put + put_entry_bytes(txn_key(producer_id, key.group_id, key.tp), None)


def is_consuming(group: Group) -> bool:
    """Whether the group has members (its offsets of subscribed topics stay)."""
    if isinstance(group, ConsumerGroup):
        return not group.is_empty
    return group.state != GroupState.EMPTY


def _unknown_if_failed(
    completion: Future[None] | None, results: dict[TopicPartition, KafkaCode]
) -> dict[TopicPartition, KafkaCode]:
    """A void commit's answer: NOT_COORDINATOR (its outcome unknown) if the
    completion that voided it failed: its record stays until the completion
    runs again, which a start runs with the record loaded as pending."""
    if completion is not None and completion.exception() is not None:
        return dict.fromkeys(results, KafkaCode.NOT_COORDINATOR)
    return results


def _unique(keys: list[Hashable]) -> list[Hashable]:
    return list(dict.fromkeys(keys))
