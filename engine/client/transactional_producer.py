"""The embedded transactional producer: ``engine.producer(transactional_id=...)``.

The same calls as confluent-kafka's transactional producer, driving the
engine's transaction coordinator directly (no requests):
``init_transactions`` (fences any older producer with the transactional id
and aborts its open transaction), ``begin_transaction``, ``send``,
``send_offsets_to_transaction`` (a consumer group's offsets, committed with
the records), ``commit_transaction`` and ``abort_transaction``. The sender
thread adds each partition to the transaction before its first batch there
(AddPartitionsToTxn) and writes transactional batches.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from engine.authorization import AclOperation
from engine.client.producer import Producer
from engine.clock import Clock
from engine.errors import (
    ConcurrentTransactions,
    CoordinatorCannotWrite,
    CoordinatorNotAvailable,
    EngineClosed,
    EngineError,
    InvalidTxnState,
    NotCoordinator,
)
from engine.protocol.kafka_code import KafkaCode
from engine.types import OffsetAndMetadata, TopicPartition

if TYPE_CHECKING:
    from engine.client.host import ClientHost

DEFAULT_TIMEOUT_MS = 60_000
"""Kafka's transaction.timeout.ms default."""
DEFAULT_DELIVERY_TIMEOUT_MS = 120_000
"""Kafka's delivery.timeout.ms default."""

RETRIED = (ConcurrentTransactions, CoordinatorNotAvailable, NotCoordinator)
"""The coordinator's answers a request is sent again after, as Kafka's
TransactionManager sends it again: the id busy (CONCURRENT_TRANSACTIONS),
its state log refusing a write for room (COORDINATOR_NOT_AVAILABLE) or
unable to write (NOT_COORDINATOR). Never a closed engine's
(CoordinatorClosed is an EngineClosed) nor a failed, fenced or closed
store's (CoordinatorCannotWrite): neither serves again until the engine is
opened again, so sending again would only hold the caller for
max_block_ms."""
CONCURRENT_BACKOFF_S = 0.01
"""The wait before a request the id was busy for is sent again (Kafka's
client waits 20 ms at most for an add, as the id is busy only briefly)."""
RETRY_BACKOFF_S = 0.1
"""The first wait before a request the coordinator could not serve is sent
again (Kafka's retry.backoff.ms), doubled at each refusal up to
``RETRY_BACKOFF_MAX_S`` (retry.backoff.max.ms)."""
RETRY_BACKOFF_MAX_S = 1.0


class TransactionError(EngineError):
    """A record of the transaction failed: it can only be aborted (Kafka's
    abortable error); the cause is chained."""

    code = KafkaCode.INVALID_TXN_STATE


class TransactionAborted(EngineError):
    """A record of a transaction aborted before it was sent: it was never
    written (Kafka's TransactionAbortedException, which fails the batches
    abortTransaction finds unsent)."""

    code = KafkaCode.INVALID_TXN_STATE


class TransactionalProducer(Producer):
    """A producer whose records are written in transactions."""

    def __init__(
        self,
        engine: ClientHost,
        *,
        transactional_id: str,
        transaction_timeout_ms: int = DEFAULT_TIMEOUT_MS,
        delivery_timeout_ms: float | None = None,
        **options: Any,
    ) -> None:
        if options.pop("idempotent", True) is not True:
            raise ValueError("a transactional producer is idempotent")
        # Kafka refuses a delivery.timeout.ms below linger.ms +
        # request.timeout.ms, and raises one the user left unset to that sum
        # (KafkaProducer.configureDeliveryTimeout): a batch would expire
        # before it may be sent. The embedded sender has no request timeout,
        # so linger_ms is the floor.
        linger_ms = float(options.get("linger_ms", 0.0))
        if delivery_timeout_ms is None:
            delivery_timeout_ms = max(float(DEFAULT_DELIVERY_TIMEOUT_MS), linger_ms)
        if not 0 <= delivery_timeout_ms < float("inf"):
            raise ValueError(
                f"delivery_timeout_ms must be a finite number >= 0, not {delivery_timeout_ms}"
            )
        if delivery_timeout_ms < linger_ms:
            raise ValueError(
                f"delivery_timeout_ms ({delivery_timeout_ms}) must be at least linger_ms "
                f"({linger_ms}), as Kafka requires delivery.timeout.ms >= linger.ms + "
                "request.timeout.ms"
            )
        super().__init__(engine, idempotent=False, **options)
        self.transactional_id = transactional_id
        self.transaction_timeout_ms = transaction_timeout_ms
        self.delivery_timeout_s = delivery_timeout_ms / 1000
        """How long after its batch opened a record may wait for its
        partition's add to the transaction (Kafka's delivery.timeout.ms)."""
        self._coordinator = engine.transactions
        self._state_lock = threading.Lock()
        self._requests = threading.Lock()
        """One coordinator request at a time, as a Kafka client sends them."""
        self._accepting = False  # until begin_transaction
        self._added: set[TopicPartition] = set()
        self._offsets_added: set[str] = set()
        self._maybe_added: set[TopicPartition] = set()
        self._offsets_maybe_added: set[str] = set()
        """Partitions and groups whose add was answered NOT_COORDINATOR, or
        not waited for to its end (TimeoutError): the state write's outcome
        is unknown (one that reached the WAL before the store failed is read
        by a restart; one still in flight is written after), so the abort
        adds them again before its EndTxn, and ends them with the rest."""
        self._failure: BaseException | None = None
        self._aborting = threading.Event()
        """Set while abort_transaction fails what is unsent: the sender's
        add, sent again after a refusal, gives up at once."""

    def __enter__(self) -> TransactionalProducer:
        return self

    # -- the transaction ---------------------------------------------------------------

    def init_transactions(self, timeout: float | None = None) -> None:
        """Gets the transactional id's producer id and a new epoch (waiting
        while an older producer's open transaction is aborted)."""
        self._access.transactional_id(AclOperation.WRITE, self.transactional_id)
        pid, epoch = self._request(
            lambda: self._coordinator.init_producer_id(
                self.transactional_id, self.transaction_timeout_ms
            ),
            timeout,
        )
        with self._state_lock:
            self.producer_id, self.producer_epoch = pid, epoch
            self._sequences.clear()
            self._accepting = False
            self._failure = None

    def begin_transaction(self) -> None:
        with self._state_lock:
            if self.producer_id < 0:
                raise InvalidTxnState("init_transactions() comes first")
            if self._accepting:
                raise InvalidTxnState("a transaction is already open")
            self._accepting = True
            self._added = set()
            self._offsets_added = set()
            self._maybe_added = set()
            self._offsets_maybe_added = set()
            self._failure = None

    def send_offsets_to_transaction(
        self,
        offsets: Mapping[TopicPartition, int | OffsetAndMetadata],
        group_id: str,
        timeout: float | None = None,
    ) -> None:
        """Commits the group's ``offsets`` (the next offset to read, per
        partition) when the transaction commits, and not at all if it aborts."""
        self._check_in_transaction()
        # Kafka's AddOffsetsToTxn and TxnOffsetCommit: READ on the group and its topics.
        self._access.group(AclOperation.READ, group_id)
        for topic in sorted({TopicPartition(*tp).topic for tp in offsets}):
            self._access.topic(AclOperation.READ, topic)
        groups = self._engine.groups
        if group_id not in self._offsets_added:
            self._add_offsets(group_id, timeout)
        wanted = {
            TopicPartition(*tp): value
            if isinstance(value, OffsetAndMetadata)
            else OffsetAndMetadata(value)
            for tp, value in offsets.items()
        }
        results: dict[TopicPartition, KafkaCode] = groups.commit_transactional_offsets(
            group_id,
            self.producer_id,
            self.producer_epoch,
            "",
            -1,
            None,
            wanted,
            check=lambda: self._coordinator.check_offset_commit(
                self.transactional_id, self.producer_id, self.producer_epoch, group_id
            ),
        ).result(timeout)
        failed = {tp: code for tp, code in results.items() if code != KafkaCode.NONE}
        if failed:
            raise TransactionError(f"group {group_id!r} refused offsets: {failed}")

    def commit_transaction(self, timeout: float | None = None) -> None:
        """Sends what is queued, waits for it, and commits; if any record
        failed the transaction can only be aborted (TransactionError); if
        they are not all written within ``timeout``, TimeoutError and
        nothing committed (call it again).
        Sends are refused from here on, as Kafka's producer refuses them
        once committing: a record queued after the flush would be left for
        the next transaction."""
        self._check_in_transaction()
        with self._state_lock:
            self._accepting = False
        try:
            if not self.flush(timeout):
                # Committed now, a record still being written would be
                # refused once the transaction is over: a commit without
                # it. Kafka's commitTransaction times out the same way and
                # may be called again.
                raise TimeoutError(
                    f"{self.transactional_id!r}: the transaction's records were not written "
                    f"within {timeout} s; commit again, or abort"
                )
            with self._state_lock:
                failure = self._failure
            if failure is not None:
                raise TransactionError("a record of the transaction failed: abort it") from failure
            # Only an offsets' add can be left unknown here (a record's fails
            # the transaction): ended with the rest, not left open.
            self._add_again(timeout)
            self._end(True, timeout)
        except BaseException:
            with self._state_lock:
                self._accepting = True  # still open: commit or abort it again
            raise

    def abort_transaction(self, timeout: float | None = None) -> None:
        """Fails the records not sent yet at once (their futures raise
        TransactionAborted), waits for those being written, and aborts: no
        record of the transaction is ever read committed. Kafka's producer
        aborts its undrained batches the same way rather than send them
        (RecordAccumulator.abortUndrainedBatches), so an add the
        coordinator keeps refusing holds the abort no longer than one
        request. If those being written are not done within ``timeout``,
        TimeoutError and nothing ended (call it again)."""
        self._check_in_transaction()
        with self._state_lock:
            self._accepting = False  # later sends are refused, not queued
        self._aborting.set()
        try:
            self._fail_queued(
                TransactionAborted(f"{self.transactional_id!r} aborted its transaction")
            )
            if not self.flush(timeout):  # what the sender took: written, or failed by its add
                # A record whose add is still being written would be added,
                # and written, after an abort that found nothing to end: a
                # transaction left open until its timeout. Kafka's
                # abortTransaction times out the same way and may be called
                # again.
                raise TimeoutError(
                    f"{self.transactional_id!r}: the transaction's records being sent were "
                    f"not done within {timeout} s; abort again"
                )
            self._add_again(timeout)
            self._end(False, timeout)
        except BaseException:
            with self._state_lock:
                self._accepting = True  # still open: abort it again
            raise
        finally:
            self._aborting.clear()

    def _add_again(self, timeout: float | None) -> None:
        """Adds again what an add answered NOT_COORDINATOR (or not waited
        for to its end) may have added, so that the abort's EndTxn (or a
        commit's, for an offsets' add) ends it (one still in flight is
        answered CONCURRENT_TRANSACTIONS, and asked again, until it is
        written). Kafka's producer sends such an
        add again (looking the coordinator up) ahead of its EndTxn, and the
        coordinator then aborts every partition its log says the
        transaction has; here the coordinator's memory is what was answered
        (0103), so without the add again a restart that reads the unknown
        one would find the transaction open, and hold it until its timeout.
        A store that still cannot write raises: abort again once it can
        (after a restart, init_transactions aborts what is open)."""
        for tp in sorted(self._maybe_added - self._added):
            self._add_partition(tp, timeout)
        for group_id in sorted(self._offsets_maybe_added - self._offsets_added):
            self._add_offsets(group_id, timeout)

    def _add_partition(
        self, tp: TopicPartition, timeout: float | None, retry_until: float | None = None
    ) -> None:
        try:
            self._request(
                lambda: self._coordinator.add_partitions(
                    self.transactional_id, self.producer_id, self.producer_epoch, [tp]
                ),
                timeout,
                retry_until=retry_until,
                abortable=retry_until is not None,
            )
        except (NotCoordinator, TimeoutError):  # see _maybe_added
            self._maybe_added.add(tp)
            raise
        self._added.add(tp)

    def _add_offsets(self, group_id: str, timeout: float | None) -> None:
        try:
            self._request(
                lambda: self._coordinator.add_offsets(
                    self.transactional_id, self.producer_id, self.producer_epoch, group_id
                ),
                timeout,
            )
        except (NotCoordinator, TimeoutError):  # see _maybe_added
            self._offsets_maybe_added.add(group_id)
            raise
        self._offsets_added.add(group_id)

    def _end(self, commit: bool, timeout: float | None) -> None:
        if self._added or self._offsets_added:  # else the coordinator never heard of it
            self._request(
                lambda: self._coordinator.end_transaction(
                    self.transactional_id, self.producer_id, self.producer_epoch, commit
                ),
                timeout,
            )
        with self._state_lock:
            self._accepting = False

    def _check_in_transaction(self) -> None:
        if not self._accepting:
            raise InvalidTxnState("no transaction is open: begin_transaction() first")

    # -- the Producer's hooks ------------------------------------------------------------

    def _refusal(self) -> EngineError:
        if not self._accepting:
            return InvalidTxnState("no transaction is open: begin_transaction() first")
        return super()._refusal()

    _transactional = True

    def _before_send(self, tp: TopicPartition, since: float) -> None:
        if tp not in self._added:
            # Kafka's producer sends AddPartitionsToTxn again after a
            # retriable answer for as long as the batch may wait: its batches
            # expire delivery.timeout.ms after they were opened (the
            # accumulator's expiredBatches), and the transaction can then
            # only be aborted. max.block.ms bounds no add.
            self._add_partition(tp, None, retry_until=since + self.delivery_timeout_s)

    def _send_failed(self, error: BaseException) -> None:
        with self._state_lock:
            if self._failure is None:
                self._failure = error

    def _request(
        self,
        call: Callable[[], Future[Any]],
        timeout: float | None,
        *,
        retry_until: float | None = None,
        abortable: bool = False,
    ) -> Any:
        """A coordinator request, sent again after a retriable answer
        (``RETRIED``) until ``timeout`` or, without one, ``max_block_ms``
        has passed (Kafka's producer bounds init, commit and abort by
        max.block.ms), or until the clock reads ``retry_until`` when given
        (the sender's adds). The last answer is raised then. An answer is
        waited for as long as ``timeout`` says (for ever without one), as
        before a retry. ``abortable`` (the sender's adds): an abort of the
        transaction ends the retries at once, with TransactionAborted."""
        bound = self.max_block_s if timeout is None else timeout
        wait_until = None if timeout is None else self._clock.monotonic() + bound
        if retry_until is None:
            retry_until = self._clock.monotonic() + bound
        backoff = RETRY_BACKOFF_S
        with self._requests:
            while True:
                try:
                    return call().result(_remaining(self._clock, wait_until))
                except (EngineClosed, CoordinatorCannotWrite):
                    raise  # a closed engine's or failed store's: never served again
                except RETRIED as error:
                    if isinstance(error, ConcurrentTransactions):
                        pause = CONCURRENT_BACKOFF_S
                    else:
                        pause, backoff = backoff, min(2 * backoff, RETRY_BACKOFF_MAX_S)
                    if self._clock.monotonic() + pause > retry_until:
                        raise
                    if abortable and self._aborting.wait(pause):
                        raise TransactionAborted(
                            f"{self.transactional_id!r} aborted its transaction while "
                            "adding the partition"
                        ) from error
                    if not abortable:
                        time.sleep(pause)


def _remaining(clock: Clock, deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - clock.monotonic(), 0.0)
