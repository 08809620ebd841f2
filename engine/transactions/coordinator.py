"""The transaction coordinator: transactional ids, their producer ids and
epochs, and each one's transaction state machine.

Kafka's TransactionCoordinator on one node. A transactional id maps to a
producer id and epoch (InitProducerId allocates the id, and bumps the epoch
on every call, which fences an older producer with the same transactional
id); a transaction goes Empty -> Ongoing (AddPartitionsToTxn,
AddOffsetsToTxn) -> PrepareCommit or PrepareAbort (EndTxn) ->
CompleteCommit or CompleteAbort, once a marker is durable in every
partition of the transaction and the group coordinator has settled its
offsets. Every state is written to the "transactions" state log before it
takes effect (docs/transactions.md gives the record layout), so a restart
finds each transaction where it was: a Prepare* one is completed (markers
written again are harmless), an Ongoing one is aborted once its timeout,
counted from its start, passes.

Only one change to a transactional id is in flight at a time: while its
state is being written, or while a transaction completes, requests about
it get CONCURRENT_TRANSACTIONS, which clients retry.

Partitions ask ``verify`` (under their own lock) whether a transactional
batch may be appended; the coordinator never takes a partition lock while
holding its own, so the two cannot deadlock.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from engine.errors import (
    ConcurrentTransactions,
    EngineClosed,
    EngineError,
    Fenced,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    InvalidTransactionRequest,
    InvalidTransactionTimeout,
    InvalidTxnState,
    ProducerFenced,
    StorageError,
    TransactionalIdNotFound,
)
from engine.state_log import StateLog
from engine.transactions.config import TransactionConfig
from engine.types import TopicPartition
from s3stream import Fenced as StoreFenced
from s3stream import S3StreamError, StoreClosed

if TYPE_CHECKING:
    from engine.catalog import Catalog
    from engine.clock import Clock
    from engine.groups import GroupCoordinator
    from engine.partition import Partition

log = logging.getLogger("tidelog.transactions")

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
MAX_EPOCH = 2**15 - 1
"""Producer epochs are int16."""

STATE_FORMAT = 1
"""The version of the state log's values (docs/transactions.md)."""


def epoch_exhausted(epoch: int) -> bool:
    """Kafka keeps the last epoch for fencing: an id at this epoch is
    replaced by a new producer id rather than bumped."""
    return epoch >= MAX_EPOCH - 1


class TxnState(enum.Enum):
    """Kafka's transaction states, by their names in DescribeTransactions."""

    EMPTY = "Empty"
    ONGOING = "Ongoing"
    PREPARE_COMMIT = "PrepareCommit"
    PREPARE_ABORT = "PrepareAbort"
    COMPLETE_COMMIT = "CompleteCommit"
    COMPLETE_ABORT = "CompleteAbort"
    DEAD = "Dead"
    PREPARE_EPOCH_FENCE = "PrepareEpochFence"


_ENDABLE = (TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT)
"""States without a transaction in progress."""


@dataclass(frozen=True)
class TransactionMetadata:
    """One transactional id's state, as the state log holds it."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TxnState
    last_producer_id: int = NO_PRODUCER_ID
    """The producer id before the last rotation (epoch exhaustion)."""
    last_producer_epoch: int = NO_PRODUCER_EPOCH
    """The epoch before the last bump by the same producer (KIP-360): a
    retried InitProducerId that carries it gets the current epoch again."""
    partitions: frozenset[TopicPartition] = field(default_factory=frozenset)
    groups: frozenset[str] = field(default_factory=frozenset)
    """Consumer groups whose offsets the transaction commits."""
    start_ms: int = -1
    """When the transaction began (its first AddPartitionsToTxn or AddOffsetsToTxn)."""
    update_ms: int = -1

    def to_wire(self) -> dict[str, Any]:
        return {
            "v": STATE_FORMAT,
            "pid": self.producer_id,
            "epoch": self.producer_epoch,
            "last_pid": self.last_producer_id,
            "last_epoch": self.last_producer_epoch,
            "timeout_ms": self.timeout_ms,
            "state": self.state.value,
            "partitions": [[tp.topic, tp.partition] for tp in sorted(self.partitions)],
            "groups": sorted(self.groups),
            "start_ms": self.start_ms,
            "update_ms": self.update_ms,
        }

    @classmethod
    def from_wire(cls, transactional_id: str, raw: dict[str, Any]) -> TransactionMetadata:
        if raw["v"] > STATE_FORMAT:
            raise ValueError(
                f"transactional id {transactional_id!r}: state format {raw['v']} is newer "
                "than this tidelog"
            )
        return cls(
            transactional_id,
            raw["pid"],
            raw["epoch"],
            raw["timeout_ms"],
            TxnState(raw["state"]),
            raw["last_pid"],
            raw["last_epoch"],
            frozenset(TopicPartition(t, p) for t, p in raw["partitions"]),
            frozenset(raw["groups"]),
            raw["start_ms"],
            raw["update_ms"],
        )


class TransactionSettings(Protocol):
    """Where the coordinator's settings are (EngineConfig has them)."""

    @property
    def transactions(self) -> TransactionConfig: ...


class TransactionHost(Protocol):
    """What the coordinator needs from the broker core, and no more: its
    settings, the leader epoch, producer ids, the partitions it writes
    markers to, and the group coordinator that settles transactional offsets."""

    @property
    def config(self) -> TransactionSettings: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def leader_epoch(self) -> int: ...
    @property
    def catalog(self) -> Catalog: ...
    @property
    def groups(self) -> GroupCoordinator: ...
    def topic_partitions(self, topics: Iterable[str]) -> list[TopicPartition]: ...
    def partition(self, topic: str, partition: int, *, auto_create: bool = False) -> Partition: ...


class TransactionCoordinator:
    """Thread safe. Methods that change state validate at once (raising the
    engine's typed errors) and return a future resolved once the new state
    is durable; ``end_transaction``'s resolves once the transaction is
    complete."""

    def __init__(self, host: TransactionHost, state_log: StateLog) -> None:
        config = host.config.transactions
        self._host = host
        self._clock = host.clock
        self._log = state_log
        self.max_timeout_ms = config.transaction_max_timeout_ms
        self.expiration_ms = config.transactional_id_expiration_ms
        self.abort_interval_s = (
            config.transaction_abort_timed_out_transaction_cleanup_interval_ms / 1000
        )
        self.expire_interval_s = (
            config.transaction_remove_expired_transaction_cleanup_interval_ms / 1000
        )
        self._lock = threading.Lock()
        self._txns: dict[str, TransactionMetadata] = {}
        self._by_producer: dict[int, str] = {}
        self._pending: set[str] = set()
        """Transactional ids with a state write or a completion in flight."""
        for key, value in state_log.items():
            meta = TransactionMetadata.from_wire(str(key), value)
            self._txns[meta.transactional_id] = meta
            self._by_producer[meta.producer_id] = meta.transactional_id
        self._workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tidelog-txn")
        self._stop = threading.Event()
        self._wake = threading.Event()
        """Set when the clock jumps (a ManualClock), so the timers re-read it."""
        self._clock.on_advance(self._wake.set)
        self._timer = threading.Thread(target=self._run, name="tidelog-txn-timer", daemon=True)
        self._closed = False

    def start(self) -> None:
        """Completes the transactions a previous run left prepared and starts
        the timers; called once the engine is open (the group coordinator
        too: completing a transaction may settle its offsets)."""
        prepared = self._retry_incomplete()
        self._timer.start()
        log.info(
            "transaction coordinator: %d transactional ids, %d transactions to complete",
            len(self._txns),
            prepared,
        )

    @property
    def coordinator_epoch(self) -> int:
        """Kafka's coordinator epoch is the leader epoch of the transaction
        log's partition; here, the engine's leader epoch."""
        return self._host.leader_epoch

    # -- InitProducerId -------------------------------------------------------------

    def init_producer_id(
        self,
        transactional_id: str,
        timeout_ms: int,
        producer_id: int = NO_PRODUCER_ID,
        producer_epoch: int = NO_PRODUCER_EPOCH,
    ) -> Future[tuple[int, int]]:
        """A producer id and epoch for ``transactional_id``: a new id, or the
        current one with its epoch bumped (fencing the producer that had
        it). With ``producer_id`` and ``producer_epoch`` (KIP-360), the
        producer that had them recovers after an error. If a transaction
        is open it is aborted first, and the future fails with
        ConcurrentTransactions: the client retries."""
        if not transactional_id:
            raise InvalidTransactionRequest("a transactional id must not be empty")
        if not 0 < timeout_ms <= self.max_timeout_ms:
            raise InvalidTransactionTimeout(timeout_ms, self.max_timeout_ms)
        expected: tuple[int, int] | None = None
        if (producer_id, producer_epoch) != (NO_PRODUCER_ID, NO_PRODUCER_EPOCH):
            if producer_id == NO_PRODUCER_ID or producer_epoch == NO_PRODUCER_EPOCH:
                raise InvalidTransactionRequest(
                    "a producer id and epoch are given together or not at all"
                )
            expected = (producer_id, producer_epoch)
        now = self._clock.time_ms()
        with self._lock:
            self._check_open()
            if transactional_id in self._pending:
                raise ConcurrentTransactions(f"transactional id {transactional_id!r} is busy")
            meta = self._txns.get(transactional_id)
            if meta is None:
                meta = TransactionMetadata(
                    transactional_id,
                    self._allocate_producer_id(),
                    NO_PRODUCER_EPOCH,
                    timeout_ms,
                    TxnState.EMPTY,
                    update_ms=now,
                )
            if expected is not None and not _may_resume(meta, *expected):
                raise ProducerFenced(transactional_id, expected[1], meta.producer_epoch)
            if meta.state in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT):
                raise ConcurrentTransactions(
                    f"transactional id {transactional_id!r} is completing a transaction"
                )
            if meta.state is TxnState.ONGOING:
                fenced = _fence(meta, now)
                self._pending.add(transactional_id)
                fencing = True
            elif meta.state in _ENDABLE:
                if epoch_exhausted(meta.producer_epoch) and (
                    expected is None or expected[1] == meta.producer_epoch
                ):
                    fenced = _rotate(meta, self._allocate_producer_id(), timeout_ms, now, expected)
                else:
                    fenced = _bump(meta, timeout_ms, now, expected)
                self._pending.add(transactional_id)
                fencing = False
            else:
                raise InvalidTxnState(
                    f"transactional id {transactional_id!r} is in state {meta.state.value}"
                )
        result: Future[tuple[int, int]] = Future()
        result.set_running_or_notify_cancel()
        if fencing:
            # Kafka answers CONCURRENT_TRANSACTIONS once the abort is decided;
            # the retry bumps the epoch again, so the fencing epoch (which
            # the markers carry) is never handed out.
            def aborting(error: BaseException | None) -> None:
                if error is not None:
                    result.set_exception(error)
                    return
                self._complete_later(fenced)
                result.set_exception(
                    ConcurrentTransactions(
                        f"transactional id {transactional_id!r}: its open transaction is "
                        "being aborted"
                    )
                )

            self._write(fenced, aborting, keep_pending=True)
        else:

            def written(error: BaseException | None) -> None:
                if error is None:
                    result.set_result((fenced.producer_id, fenced.producer_epoch))
                else:
                    result.set_exception(error)

            self._write(fenced, written)
        return result

    def _allocate_producer_id(self) -> int:
        try:
            return self._host.catalog.allocate_producer_id()
        except S3StreamError as error:
            raise _storage_error(error) from error

    # -- the transaction's contents ---------------------------------------------------

    def add_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> Future[None]:
        """AddPartitionsToTxn: the producer may now write to these partitions
        in its transaction (which this begins, if none is open)."""
        wanted = frozenset(partitions)
        return self._add(transactional_id, producer_id, producer_epoch, wanted, frozenset())

    def add_offsets(
        self, transactional_id: str, producer_id: int, producer_epoch: int, group_id: str
    ) -> Future[None]:
        """AddOffsetsToTxn: the transaction will commit offsets of ``group_id``."""
        return self._add(
            transactional_id, producer_id, producer_epoch, frozenset(), frozenset([group_id])
        )

    def _add(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: frozenset[TopicPartition],
        groups: frozenset[str],
    ) -> Future[None]:
        now = self._clock.time_ms()
        with self._lock:
            self._check_open()
            meta = self._current(transactional_id, producer_id, producer_epoch)
            if meta.state in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT):
                raise ConcurrentTransactions(
                    f"transactional id {transactional_id!r} is completing a transaction"
                )
            if meta.state is TxnState.ONGOING:
                if partitions <= meta.partitions and groups <= meta.groups:
                    return _done(None)
                updated = replace(
                    meta,
                    partitions=meta.partitions | partitions,
                    groups=meta.groups | groups,
                    update_ms=now,
                )
            elif meta.state in _ENDABLE:
                updated = replace(
                    meta,
                    state=TxnState.ONGOING,
                    partitions=partitions,
                    groups=groups,
                    start_ms=now,
                    update_ms=now,
                )
            else:
                raise InvalidTxnState(
                    f"transactional id {transactional_id!r} is in state {meta.state.value}"
                )
            self._pending.add(transactional_id)
        result: Future[None] = Future()
        result.set_running_or_notify_cancel()

        def written(error: BaseException | None) -> None:
            if error is None:
                result.set_result(None)
            else:
                result.set_exception(error)

        self._write(updated, written)
        return result

    def check_offset_commit(
        self, transactional_id: str, producer_id: int, producer_epoch: int, group_id: str
    ) -> None:
        """TxnOffsetCommit's check: the producer's open transaction includes
        the group (AddOffsetsToTxn came first). A fenced epoch is answered
        INVALID_PRODUCER_EPOCH, as the offsets log's own check would."""
        with self._lock:
            meta = self._txns.get(transactional_id)
            if meta is None or meta.producer_id != producer_id:
                raise InvalidProducerIdMapping(
                    f"transactional id {transactional_id!r} does not have producer id {producer_id}"
                )
            if meta.producer_epoch != producer_epoch:
                raise InvalidProducerEpoch(producer_id, producer_epoch, meta.producer_epoch)
            if meta.state is not TxnState.ONGOING or group_id not in meta.groups:
                raise InvalidTxnState(
                    f"transactional id {transactional_id!r} has no open transaction with "
                    f"offsets of group {group_id!r} (AddOffsetsToTxn comes first)"
                )

    def verify(self, topic: str, partition: int, producer_id: int, producer_epoch: int) -> None:
        """Raises unless the producer has an open transaction that includes
        the partition: the check a partition makes before it appends a
        transactional batch."""
        with self._lock:
            transactional_id = self._by_producer.get(producer_id)
            meta = None if transactional_id is None else self._txns.get(transactional_id)
            if meta is None or meta.producer_id != producer_id:
                raise InvalidTxnState(f"producer {producer_id} has no transactional id")
            if meta.producer_epoch != producer_epoch:
                raise InvalidProducerEpoch(producer_id, producer_epoch, meta.producer_epoch)
            if meta.state is not TxnState.ONGOING or (
                TopicPartition(topic, partition) not in meta.partitions
            ):
                raise InvalidTxnState(
                    f"producer {producer_id} has no open transaction on {topic}-{partition} "
                    "(AddPartitionsToTxn comes first)"
                )

    # -- EndTxn -------------------------------------------------------------------------

    def end_transaction(
        self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool
    ) -> Future[None]:
        """EndTxn: commits or aborts the open transaction. The future
        resolves once every partition has its marker, durably, and the
        state is CompleteCommit or CompleteAbort."""
        now = self._clock.time_ms()
        with self._lock:
            self._check_open()
            meta = self._current(transactional_id, producer_id, producer_epoch)
            state = meta.state
            if state is TxnState.ONGOING:
                prepared = replace(
                    meta,
                    state=TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT,
                    update_ms=now,
                )
                self._pending.add(transactional_id)
            elif state is (TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT):
                return _done(None)  # a retry of a request that succeeded
            elif state is (TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT):
                raise ConcurrentTransactions(
                    f"transactional id {transactional_id!r} is completing this transaction"
                )
            else:
                wanted = "commit" if commit else "abort"
                raise InvalidTxnState(
                    f"transactional id {transactional_id!r} cannot {wanted} in state {state.value}"
                )
        result: Future[None] = Future()
        result.set_running_or_notify_cancel()

        def decided(error: BaseException | None) -> None:
            if error is not None:
                result.set_exception(error)
            else:
                self._complete_later(prepared, result)

        self._write(prepared, decided, keep_pending=True)
        return result

    def _complete_later(
        self, prepared: TransactionMetadata, result: Future[None] | None = None
    ) -> None:
        """Completes a prepared transaction on a worker thread (it waits for
        markers to be durable). The transactional id stays pending until then."""
        try:
            self._workers.submit(self._complete, prepared, result)
        except RuntimeError:  # shut down: the next open completes it
            with self._lock:
                self._pending.discard(prepared.transactional_id)
            if result is not None:
                result.set_exception(EngineClosed())

    def _complete(self, prepared: TransactionMetadata, result: Future[None] | None) -> None:
        commit = prepared.state is TxnState.PREPARE_COMMIT
        try:
            self._write_markers(prepared, commit)
            if prepared.groups:
                self._host.groups.complete_transaction(prepared.producer_id, commit).result()
            completed = replace(
                prepared,
                state=TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT,
                partitions=frozenset(),
                groups=frozenset(),
                update_ms=self._clock.time_ms(),
            )
            finished: Future[None] = Future()
            finished.set_running_or_notify_cancel()
            self._write(
                completed,
                lambda error: _settle(finished, error),
            )
            finished.result()
        except BaseException as error:
            # Left in Prepare*: the timer (or the next open) tries again.
            log.warning(
                "completing the transaction of %r failed, will retry: %s",
                prepared.transactional_id,
                error,
            )
            with self._lock:
                self._pending.discard(prepared.transactional_id)
            if result is not None:
                result.set_exception(error if isinstance(error, EngineError) else _as_engine(error))
            return
        if result is not None:
            result.set_result(None)

    def _write_markers(self, prepared: TransactionMetadata, commit: bool) -> None:
        epoch = self.coordinator_epoch
        written = []
        for tp in sorted(prepared.partitions):
            partition = self._partition(tp)
            if partition is None:
                continue  # deleted since: nothing there to end
            try:
                written.append(
                    partition.write_marker(
                        prepared.producer_id, prepared.producer_epoch, epoch, commit
                    )
                )
            except S3StreamError as error:
                raise _storage_error(error) from error
        for future in written:
            try:
                future.result()
            except S3StreamError as error:
                raise _storage_error(error) from error

    def _partition(self, tp: TopicPartition) -> Partition | None:
        """The partition if it exists (never auto-created)."""
        if tp not in self._host.topic_partitions([tp.topic]):
            return None
        try:
            return self._host.partition(tp.topic, tp.partition)
        except EngineError:
            return None

    # -- reading ----------------------------------------------------------------------

    def describe(self, transactional_id: str) -> TransactionMetadata:
        with self._lock:
            meta = self._txns.get(transactional_id)
        if meta is None or meta.state is TxnState.DEAD:
            raise TransactionalIdNotFound(transactional_id)
        return meta

    def transactions(self) -> list[TransactionMetadata]:
        with self._lock:
            return list(self._txns.values())

    # -- timers -------------------------------------------------------------------------

    def _run(self) -> None:
        clock = self._clock
        next_abort = clock.monotonic() + self.abort_interval_s
        next_expire = clock.monotonic() + self.expire_interval_s
        while not self._stop.is_set():
            self._wake.wait(max(0.01, min(next_abort, next_expire) - clock.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if clock.monotonic() >= next_abort:
                    self.abort_timed_out()
                    self._retry_incomplete()
                    next_abort = clock.monotonic() + self.abort_interval_s
                if clock.monotonic() >= next_expire:
                    self.remove_expired()
                    next_expire = clock.monotonic() + self.expire_interval_s
            except EngineError as error:
                log.warning("transaction timers: %s", error)
            except Exception:
                log.exception("transaction timers failed, will retry")

    def abort_timed_out(self) -> int:
        """Aborts every Ongoing transaction older than its timeout, bumping
        the epoch so its producer is fenced (as Kafka does); returns how many."""
        now = self._clock.time_ms()
        aborting = []
        with self._lock:
            if self._closed:
                return 0
            for meta in self._txns.values():
                if (
                    meta.state is TxnState.ONGOING
                    and meta.transactional_id not in self._pending
                    and meta.start_ms + meta.timeout_ms < now
                ):
                    self._pending.add(meta.transactional_id)
                    aborting.append(_fence(meta, now))
        for fenced in aborting:
            log.info(
                "aborting the transaction of %r (producer %d): it passed its timeout of %d ms",
                fenced.transactional_id,
                fenced.producer_id,
                fenced.timeout_ms,
            )
            self._write(fenced, self._after_timeout_abort(fenced), keep_pending=True)
        return len(aborting)

    def _after_timeout_abort(
        self, fenced: TransactionMetadata
    ) -> Callable[[BaseException | None], None]:
        def then(error: BaseException | None) -> None:
            if error is None:
                self._complete_later(fenced)
            else:
                log.warning("aborting %r failed, will retry: %s", fenced.transactional_id, error)

        return then

    def _retry_incomplete(self) -> int:
        """Completes Prepare* transactions nobody is completing (after a
        restart, or a failed attempt)."""
        with self._lock:
            waiting = [
                meta
                for meta in self._txns.values()
                if meta.state in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT)
                and meta.transactional_id not in self._pending
            ]
            self._pending.update(meta.transactional_id for meta in waiting)
        for meta in waiting:
            self._complete_later(meta)
        return len(waiting)

    def remove_expired(self) -> int:
        """Forgets transactional ids with no transaction in progress that
        were not used for ``transactional_id_expiration_ms``; returns how many."""
        cutoff = self._clock.time_ms() - self.expiration_ms
        with self._lock:
            if self._closed:
                return 0
            expired = [
                meta
                for meta in self._txns.values()
                if meta.state in _ENDABLE
                and meta.update_ms <= cutoff
                and meta.transactional_id not in self._pending
            ]
            self._pending.update(meta.transactional_id for meta in expired)
        for meta in expired:
            self._remove(meta)
        return len(expired)

    def _remove(self, meta: TransactionMetadata) -> None:
        transactional_id = meta.transactional_id

        def removed(future: Future[int]) -> None:
            with self._lock:
                self._pending.discard(transactional_id)
                if future.exception() is None and self._txns.get(transactional_id) == meta:
                    del self._txns[transactional_id]
                    if self._by_producer.get(meta.producer_id) == transactional_id:
                        del self._by_producer[meta.producer_id]

        try:
            self._log.delete(transactional_id).add_done_callback(removed)
        except S3StreamError:
            with self._lock:
                self._pending.discard(transactional_id)
            raise
        log.info("transactional id %r expired", transactional_id)

    # -- state writes -------------------------------------------------------------------

    def _current(
        self, transactional_id: str, producer_id: int, producer_epoch: int
    ) -> TransactionMetadata:
        """The id's state for a request from (producer id, epoch); raises
        Kafka's error if it is not that producer's, or is busy. Under the lock."""
        meta = self._txns.get(transactional_id)
        if meta is None or meta.producer_id != producer_id:
            raise InvalidProducerIdMapping(
                f"transactional id {transactional_id!r} does not have producer id {producer_id}"
            )
        if meta.producer_epoch != producer_epoch:
            raise ProducerFenced(transactional_id, producer_epoch, meta.producer_epoch)
        if transactional_id in self._pending:
            raise ConcurrentTransactions(f"transactional id {transactional_id!r} is busy")
        return meta

    def _write(
        self,
        meta: TransactionMetadata,
        then: Callable[[BaseException | None], None],
        *,
        keep_pending: bool = False,
    ) -> None:
        """Writes ``meta`` (its id already pending); once durable, makes it the
        id's state and calls ``then(None)`` (``then(error)`` if the write
        failed, leaving the state as it was). The id stays pending with
        ``keep_pending`` (a completion follows)."""
        transactional_id = meta.transactional_id

        def durable(future: Future[int]) -> None:
            error = future.exception()
            with self._lock:
                if error is None:
                    previous = self._txns.get(transactional_id)
                    if previous is not None and previous.producer_id != meta.producer_id:
                        self._by_producer.pop(previous.producer_id, None)
                    self._txns[transactional_id] = meta
                    self._by_producer[meta.producer_id] = transactional_id
                if error is not None or not keep_pending:
                    self._pending.discard(transactional_id)
            then(None if error is None else _as_engine(error))

        try:
            written = self._log.put(transactional_id, meta.to_wire())
        except BaseException as error:
            with self._lock:
                self._pending.discard(transactional_id)
            then(_as_engine(error))
            return
        written.add_done_callback(durable)

    # -- lifecycle ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosed

    def close(self) -> None:
        """Stops the timers and waits for completions in flight."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._wake.set()
        if self._timer.is_alive():
            self._timer.join()
        self._workers.shutdown(wait=True, cancel_futures=True)


def _may_resume(meta: TransactionMetadata, producer_id: int, epoch: int) -> bool:
    """Whether a producer that gives (id, epoch) in InitProducerId is the
    current one (or its retry after a producer id rotation), so it may go
    on rather than be fenced (Kafka's isValidProducerId)."""
    return (
        meta.producer_epoch == NO_PRODUCER_EPOCH
        or producer_id == meta.producer_id
        or (producer_id == meta.last_producer_id and epoch_exhausted(epoch))
    )


def _bump(
    meta: TransactionMetadata, timeout_ms: int, now: int, expected: tuple[int, int] | None
) -> TransactionMetadata:
    """Kafka's prepareIncrementProducerEpoch."""
    bumped = meta.producer_epoch + 1
    if expected is None:
        epoch, last_epoch = bumped, NO_PRODUCER_EPOCH  # a new producer: fence the old one
    elif meta.producer_epoch == NO_PRODUCER_EPOCH or expected[1] == meta.producer_epoch:
        epoch, last_epoch = bumped, meta.producer_epoch
    elif expected[1] == meta.last_producer_epoch:
        epoch, last_epoch = meta.producer_epoch, meta.last_producer_epoch  # a retry
    else:
        raise ProducerFenced(meta.transactional_id, expected[1], meta.producer_epoch)
    return replace(
        meta,
        producer_epoch=epoch,
        last_producer_epoch=last_epoch,
        timeout_ms=timeout_ms,
        state=TxnState.EMPTY,
        partitions=frozenset(),
        groups=frozenset(),
        start_ms=-1,
        update_ms=now,
    )


def _rotate(
    meta: TransactionMetadata,
    producer_id: int,
    timeout_ms: int,
    now: int,
    expected: tuple[int, int] | None,
) -> TransactionMetadata:
    """A new producer id once the epoch is exhausted (Kafka's
    prepareProducerIdRotation)."""
    return replace(
        meta,
        producer_id=producer_id,
        producer_epoch=0,
        last_producer_id=meta.producer_id,
        last_producer_epoch=meta.producer_epoch if expected is not None else NO_PRODUCER_EPOCH,
        timeout_ms=timeout_ms,
        state=TxnState.EMPTY,
        partitions=frozenset(),
        groups=frozenset(),
        start_ms=-1,
        update_ms=now,
    )


def _fence(meta: TransactionMetadata, now: int) -> TransactionMetadata:
    """PrepareAbort at a bumped epoch: the transaction's markers carry it, so
    the producer that had it is fenced in every partition it wrote to."""
    epoch = meta.producer_epoch + 1 if meta.producer_epoch < MAX_EPOCH else meta.producer_epoch
    return replace(
        meta,
        producer_epoch=epoch,
        last_producer_epoch=NO_PRODUCER_EPOCH,
        state=TxnState.PREPARE_ABORT,
        update_ms=now,
    )


def _done(value: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(value)
    return future


def _settle(future: Future[None], error: BaseException | None) -> None:
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _storage_error(error: S3StreamError) -> EngineError:
    if isinstance(error, StoreClosed):
        return EngineClosed()
    if isinstance(error, StoreFenced):
        return Fenced(f"another engine opened this storage: {error}")
    return StorageError(str(error))


def _as_engine(error: BaseException) -> BaseException:
    if isinstance(error, EngineError):
        return error
    if isinstance(error, S3StreamError):
        return _storage_error(error)
    return error
