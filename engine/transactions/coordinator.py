"""The transaction coordinator: the facade that serves InitProducerId,
AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit's check, EndTxn and
the describe calls, over the parts that do the work.

Kafka's TransactionCoordinator on one node. InitProducerId allocates a
producer id for a transactional id, and bumps its epoch on every call,
which fences an older producer with the same transactional id. The state
machine and its transitions are in ``metadata``; ``table`` holds each id's
state and writes it to the "transactions" state log before it takes
effect; ``completion`` writes the markers that end a decided transaction;
``timers`` aborts transactions past their timeout and forgets idle ids. A
restart finds each transaction where it was: a Prepare* one is completed
(markers written again are harmless), an Ongoing one is aborted once its
timeout, counted from its start, passes.

Only one change to a transactional id is in flight at a time: while its
state is being written, or while a transaction completes, requests about
it get CONCURRENT_TRANSACTIONS, which clients retry.

Partitions ask ``verify`` (under their own lock) whether a transactional
batch may be appended; the coordinator never takes a partition lock while
holding its own, so the two cannot deadlock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from engine import clock
from engine.errors import (
    ConcurrentTransactions,
    CoordinatorClosed,
    EngineError,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    InvalidTransactionRequest,
    InvalidTransactionTimeout,
    InvalidTxnState,
    NotInTransaction,
    ProducerFenced,
    TransactionalIdNotFound,
)
from engine.linear_regex import LinearPattern
from engine.state_log import StateLog
from engine.transactions.completion import TransactionCompleter
from engine.transactions.ending import EndStep, end_step, handed_over
from engine.transactions.host import TransactionHost
from engine.transactions.metadata import (
    ENDABLE,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    PREPARED,
    TV_2,
    TransactionMetadata,
    TxnState,
    bump,
    completed,
    epoch_exhausted,
    fence,
    may_resume,
    prepare_end,
    rotate,
)
from engine.transactions.table import TransactionTable, write_error
from engine.transactions.timers import TransactionTimers
from engine.types import TopicPartition
from s3stream import S3StreamError
from wal.closing import Closing

log = logging.getLogger("tidelog.transactions")


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
        self._table = TransactionTable(state_log)
        self._completer = TransactionCompleter(host, self._table)
        self._timers = TransactionTimers(config, host.clock, self._table, self._completer)
        self._closing = Closing("TransactionCoordinator")

    def start(self) -> None:
        """Completes the transactions a previous run left prepared and starts
        the timers; called once the engine is open (the group coordinator
        too: completing a transaction may settle its offsets)."""
        prepared = self._completer.retry_incomplete()
        orphaned = self._drop_orphaned_offsets()
        self._timers.start()
        log.info(
            "transaction coordinator: %d transactional ids, %d transactions to complete, "
            "pending offsets of %d ended transactions dropped",
            len(self._table),
            prepared,
            orphaned,
        )

    def _drop_orphaned_offsets(self) -> int:
        """Drops the pending offsets of producers with no transaction open or
        completing: a TxnOffsetCommit whose transaction ended while it was
        written, when the engine stopped before its records were deleted
        (docs/design/0048). Left, the producer's next transaction would
        complete them as its own. Returns how many producers had some."""
        groups = self._host.groups
        producers = groups.pending_producers()  # not under the table's lock
        with self._table.lock:
            orphaned = [
                producer_id
                for producer_id in producers
                if (meta := self._table.of_producer(producer_id)) is None or meta.state in ENDABLE
            ]
        # Bounded as opening bounds its waits on the store: a write that is
        # never durable (a stalled disk) fails the start instead of hanging it.
        timeout = self._host.config.store.open_timeout_s
        deadline = clock.monotonic() + timeout
        for producer_id in orphaned:
            dropped = groups.complete_transaction(producer_id, committed=False)
            try:
                dropped.result(max(0.0, deadline - clock.monotonic()))
            except TimeoutError:
                raise TimeoutError(
                    f"dropping the pending offsets of producer {producer_id} at start: "
                    f"not durable after {timeout:g} s (open_timeout_s); check the WAL's "
                    "disk, then open again"
                ) from None
            except EngineError as error:
                log.warning("dropping the pending offsets of producer %d: %s", producer_id, error)
        return len(orphaned)

    @property
    def coordinator_epoch(self) -> int:
        """Kafka's coordinator epoch is the leader epoch of the transaction
        log's partition; here, the engine's leader epoch."""
        return self._host.leader_epoch

    def abort_timed_out(self) -> int:
        """Aborts every Ongoing transaction past its timeout now; returns how many."""
        return self._timers.abort_timed_out()

    def remove_expired(self) -> int:
        """Forgets idle transactional ids now; returns how many."""
        return self._timers.remove_expired()

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
        with self._table.lock:
            self._check_open()
            if self._table.is_pending(transactional_id):
                raise ConcurrentTransactions(f"transactional id {transactional_id!r} is busy")
            meta = self._table.get(transactional_id)
            if meta is None:
                meta = TransactionMetadata(
                    transactional_id,
                    self._allocate_producer_id(),
                    NO_PRODUCER_EPOCH,
                    timeout_ms,
                    TxnState.EMPTY,
                    update_ms=now,
                )
            if expected is not None and not may_resume(meta, *expected):
                raise ProducerFenced(transactional_id, expected[1], meta.producer_epoch)
            if meta.state in PREPARED:
                raise ConcurrentTransactions(
                    f"transactional id {transactional_id!r} is completing a transaction"
                )
            if meta.state is TxnState.ONGOING:
                fenced = fence(meta, now)
                self._table.hold(transactional_id)
                fencing = True
            elif meta.state in ENDABLE:
                if epoch_exhausted(meta.producer_epoch) and (
                    expected is None or expected[1] == meta.producer_epoch
                ):
                    fenced = rotate(meta, self._allocate_producer_id(), timeout_ms, now, expected)
                else:
                    fenced = bump(meta, timeout_ms, now, expected)
                self._table.hold(transactional_id)
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
                self._completer.complete_later(fenced)
                result.set_exception(
                    ConcurrentTransactions(
                        f"transactional id {transactional_id!r}: its open transaction is "
                        "being aborted"
                    )
                )

            self._table.write(fenced, aborting, keep_pending=True)
        else:

            def written(error: BaseException | None) -> None:
                if error is None:
                    result.set_result((fenced.producer_id, fenced.producer_epoch))
                else:
                    result.set_exception(error)

            self._table.write(fenced, written)
        return result

    def _allocate_producer_id(self) -> int:
        try:
            return self._host.catalog.allocate_producer_id()
        except S3StreamError as error:
            raise write_error(error) from error

    # -- the transaction's contents ---------------------------------------------------

    def add_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Iterable[TopicPartition],
        transaction_version: int = 0,
    ) -> Future[None]:
        """AddPartitionsToTxn: the producer may now write to these partitions
        in its transaction (which this begins, if none is open). With
        ``transaction_version`` TV_2, the add a Produce v12 makes implicitly."""
        wanted = frozenset(partitions)
        return self._add(
            transactional_id, producer_id, producer_epoch, wanted, frozenset(), transaction_version
        )

    def add_offsets(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        group_id: str,
        transaction_version: int = 0,
    ) -> Future[None]:
        """AddOffsetsToTxn: the transaction will commit offsets of ``group_id``.
        With ``transaction_version`` TV_2, the add a TxnOffsetCommit v5
        makes implicitly."""
        return self._add(
            transactional_id,
            producer_id,
            producer_epoch,
            frozenset(),
            frozenset([group_id]),
            transaction_version,
        )

    def _add(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: frozenset[TopicPartition],
        groups: frozenset[str],
        transaction_version: int,
    ) -> Future[None]:
        _check_named(transactional_id)
        now = self._clock.time_ms()
        with self._table.lock:
            self._check_open()
            meta = self._current(transactional_id, producer_id, producer_epoch)
            if meta.state in PREPARED:
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
                    transaction_version=transaction_version,
                )
            elif meta.state in ENDABLE:
                updated = replace(
                    meta,
                    state=TxnState.ONGOING,
                    partitions=partitions,
                    groups=groups,
                    start_ms=now,
                    update_ms=now,
                    transaction_version=transaction_version,
                    next_producer_id=NO_PRODUCER_ID,
                )
            else:
                raise InvalidTxnState(
                    f"transactional id {transactional_id!r} is in state {meta.state.value}"
                )
            self._table.hold(transactional_id)
        result: Future[None] = Future()
        result.set_running_or_notify_cancel()

        def written(error: BaseException | None) -> None:
            if error is None:
                result.set_result(None)
            else:
                result.set_exception(error)

        self._table.write(updated, written)
        return result

    def needs_add(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> bool:
        """Whether a Produce v12 (transactions v2) must add ``partitions``
        to the producer's transaction before it appends: False only when
        its open transaction has them all and nothing about the id is
        being written. While a change is written the add is asked (and
        refused CONCURRENT_TRANSACTIONS), so no append overtakes an
        earlier request's append that waits for its add."""
        with self._table.lock:
            meta = self._table.get(transactional_id)
            return (
                meta is None
                or self._table.is_pending(transactional_id)
                or meta.producer_id != producer_id
                or meta.producer_epoch != producer_epoch
                or meta.state is not TxnState.ONGOING
                or not frozenset(partitions) <= meta.partitions
            )

    def verify_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> dict[TopicPartition, bool]:
        """AddPartitionsToTxn v4+'s verify_only: whether each partition is in
        the producer's transaction, changing nothing (Kafka's
        handleVerifyPartitionsInTransaction). Raises
        InvalidProducerIdMapping, ProducerFenced, or ConcurrentTransactions
        while its transaction is completed. A state write in flight is not
        waited for, as Kafka does not: the append this verifies checks the
        partition again under its lock (``verify``)."""
        _check_named(transactional_id)
        with self._table.lock:
            self._check_open()
            meta = self._mapped(transactional_id, producer_id)
            if meta.producer_epoch != producer_epoch:
                raise ProducerFenced(transactional_id, producer_epoch, meta.producer_epoch)
            if meta.state in PREPARED:
                raise ConcurrentTransactions(
                    f"transactional id {transactional_id!r} is completing a transaction"
                )
            return {tp: tp in meta.partitions for tp in partitions}

    def check_offset_commit(
        self, transactional_id: str, producer_id: int, producer_epoch: int, group_id: str
    ) -> None:
        """TxnOffsetCommit's check: the producer's open transaction includes
        the group (AddOffsetsToTxn came first). A fenced epoch is answered
        INVALID_PRODUCER_EPOCH, as the offsets log's own check would."""
        with self._table.lock:
            self._check_open()
            meta = self._mapped(transactional_id, producer_id)
            if meta.producer_epoch != producer_epoch:
                raise InvalidProducerEpoch(producer_id, producer_epoch, meta.producer_epoch)
            if meta.state is not TxnState.ONGOING or group_id not in meta.groups:
                raise NotInTransaction(
                    f"transactional id {transactional_id!r} has no open transaction with "
                    f"offsets of group {group_id!r} (AddOffsetsToTxn comes first)"
                )

    def check_producer(self, transactional_id: str, producer_id: int) -> None:
        """Raises InvalidProducerIdMapping unless ``producer_id`` is the
        transactional id's: a Produce's transactional batches speak for the
        transactional id its sender was authorized on, never for another's
        producer (Kafka's TransactionCoordinator verifies the same mapping)."""
        with self._table.lock:
            meta = self._table.get(transactional_id)
            if meta is not None and handed_over(meta, producer_id):
                # Its batches speak for this id: the implicit add before
                # their append answers them to wait (CONCURRENT_TRANSACTIONS).
                return
            self._mapped(transactional_id, producer_id)

    def verify(self, topic: str, partition: int, producer_id: int, producer_epoch: int) -> None:
        """Raises unless the producer has an open transaction that includes
        the partition: the check a partition makes before it appends a
        transactional batch."""
        with self._table.lock:
            meta = self._table.of_producer(producer_id)
            if meta is None:
                raise InvalidTxnState(f"producer {producer_id} has no transactional id")
            if meta.producer_epoch != producer_epoch:
                raise InvalidProducerEpoch(producer_id, producer_epoch, meta.producer_epoch)
            if meta.state is not TxnState.ONGOING or (
                TopicPartition(topic, partition) not in meta.partitions
            ):
                raise NotInTransaction(
                    f"producer {producer_id} has no open transaction on {topic}-{partition} "
                    "(AddPartitionsToTxn comes first)"
                )

    # -- EndTxn -------------------------------------------------------------------------

    def end_transaction(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        transaction_version: int = 0,
    ) -> Future[tuple[int, int]]:
        """EndTxn: commits or aborts the open transaction. The future
        resolves once every partition has its marker, durably, and the
        state is CompleteCommit or CompleteAbort, to the producer id and
        epoch the producer goes on with: its own under transactions v1,
        the bumped epoch (or, past the last epoch, a new producer id at
        epoch 0) under v2 (``transaction_version`` TV_2, EndTxn v5)."""
        now = self._clock.time_ms()
        with self._table.lock:
            self._check_open()
            meta = self._table.get(transactional_id)
            step = end_step(
                meta,
                transactional_id,
                producer_id,
                producer_epoch,
                commit,
                transaction_version,
                self._table.is_pending(transactional_id),
            )
            assert meta is not None  # end_step raised for an unknown id
            if step is EndStep.ANSWERED:
                # A retry of an end that completed: answered with what the
                # producer goes on with.
                return _done((meta.producer_id, meta.producer_epoch))
            next_producer_id = NO_PRODUCER_ID
            if transaction_version >= TV_2 and epoch_exhausted(meta.producer_epoch):
                next_producer_id = self._allocate_producer_id()
            prepared = prepare_end(meta, commit, transaction_version, next_producer_id, now)
            if meta.state in ENDABLE:  # a v2 abort of an empty transaction begins it now
                prepared = replace(prepared, start_ms=now)
            self._table.hold(transactional_id)
        result: Future[tuple[int, int]] = Future()
        result.set_running_or_notify_cancel()
        ended = completed(prepared, now)
        going_on = (ended.producer_id, ended.producer_epoch)
        finished: Future[None] = Future()
        finished.set_running_or_notify_cancel()

        def answered(done: Future[None]) -> None:
            error = done.exception()
            if error is None:
                result.set_result(going_on)
            else:
                result.set_exception(error)

        finished.add_done_callback(answered)

        def decided(error: BaseException | None) -> None:
            if error is not None:
                finished.set_exception(error)
            else:
                self._completer.complete_later(prepared, finished)

        self._table.write(prepared, decided, keep_pending=True)
        return result

    # -- reading ----------------------------------------------------------------------

    def describe(self, transactional_id: str) -> TransactionMetadata:
        with self._table.lock:
            meta = self._table.get(transactional_id)
        if meta is None or meta.state is TxnState.DEAD:
            raise TransactionalIdNotFound(transactional_id)
        return meta

    def transactions(self) -> list[TransactionMetadata]:
        with self._table.lock:
            return self._table.states()

    def count(self) -> int:
        """How many transactional ids the coordinator holds."""
        return len(self._table)

    def listing(
        self,
        states: Iterable[TxnState] | None = None,
        producer_ids: Iterable[int] = (),
        running_longer_than_ms: int = -1,
        transactional_id_pattern: LinearPattern | None = None,
    ) -> list[TransactionMetadata]:
        """ListTransactions' filters, as Kafka's TransactionStateManager
        applies them: ``states`` (None: any), ``producer_ids`` (empty: any),
        when not negative, transactions that began longer ago than
        ``running_longer_than_ms`` by the coordinator's clock, and ids the
        ``transactional_id_pattern`` matches whole (None: any; Kafka's
        ``matcher().matches()``). Dead ids are never listed."""
        wanted = None if states is None else frozenset(states)
        ids = frozenset(producer_ids)
        now = self._clock.time_ms()
        return [
            meta
            for meta in self.transactions()
            if meta.state is not TxnState.DEAD
            and (wanted is None or meta.state in wanted)
            and (not ids or meta.producer_id in ids)
            and (running_longer_than_ms < 0 or now - meta.start_ms > running_longer_than_ms)
            and (
                transactional_id_pattern is None
                or transactional_id_pattern.fullmatch(meta.transactional_id) is not None
            )
        ]

    # -- checks -------------------------------------------------------------------

    def _mapped(self, transactional_id: str, producer_id: int) -> TransactionMetadata:
        """The id's state if ``producer_id`` is its producer; raises
        InvalidProducerIdMapping if not, ConcurrentTransactions if it is the
        producer id a completing v2 end hands the id to. Under the lock."""
        meta = self._table.get(transactional_id)
        if meta is not None and handed_over(meta, producer_id):
            raise ConcurrentTransactions(
                f"transactional id {transactional_id!r} is completing the transaction that "
                f"hands it to producer id {producer_id}"
            )
        if meta is None or meta.producer_id != producer_id:
            raise InvalidProducerIdMapping(
                f"transactional id {transactional_id!r} does not have producer id {producer_id}"
            )
        return meta

    def _current(
        self, transactional_id: str, producer_id: int, producer_epoch: int
    ) -> TransactionMetadata:
        """The id's state for an add from (producer id, epoch); raises
        Kafka's error if it is busy or not that producer's. Under the lock.

        Kafka 4.0's handleAddPartitionsToTransaction asks about a state
        write in flight first, before the producer id and epoch: the write
        may be the one that gives the producer its new id or epoch, which
        must not fence it. Markers being written (a Prepare state, held
        here until complete) are answered after the checks, from the
        state, as Kafka answers them (engine/transactions/ending.py)."""
        meta = self._table.get(transactional_id)
        if (
            meta is not None
            and meta.state not in PREPARED
            and self._table.is_pending(transactional_id)
        ):
            raise ConcurrentTransactions(f"transactional id {transactional_id!r} is busy")
        meta = self._mapped(transactional_id, producer_id)
        if meta.producer_epoch != producer_epoch:
            raise ProducerFenced(transactional_id, producer_epoch, meta.producer_epoch)
        return meta

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether close has begun: Kafka's coordinator is no longer active
        (``isActive``), and DescribeTransactions and ListTransactions are
        answered COORDINATOR_NOT_AVAILABLE on the wire. The embedded reads
        (``describe``, ``transactions``, ``listing``) still answer from
        memory, what the state log holds."""
        return self._table.closed

    def _check_open(self) -> None:
        """Kafka's coordinator clears its states at shutdown, so a request
        for an id finds no partition of its own: NOT_COORDINATOR
        (TransactionStateManager.getAndMaybeAddTransactionState)."""
        if self._table.closed:
            raise CoordinatorClosed("transaction")

    def close(self) -> None:
        """Stops the timers and waits for completions in flight; a close cut
        short is finished by the next call (wal/closing.py)."""
        with self._table.lock:
            self._table.closed = True
        self._closing.step("timers", self._timers.stop)
        self._closing.step("completions", self._completer.close)
        self._closing.finish()


def _check_named(transactional_id: str) -> None:
    """Kafka's coordinator answers a request with an empty transactional id
    INVALID_REQUEST before it looks the id up."""
    if not transactional_id:
        raise InvalidTransactionRequest("a transactional id must not be empty")


def _done(value: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(value)
    return future
