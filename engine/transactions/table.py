"""The transactional ids' current states: in memory, and durable in the
"transactions" state log (one key per transactional id, the value
``TransactionMetadata.to_wire``; docs/transactions.md gives the layout).

A new state takes effect only once its record is durable, so a restart
finds each transaction where it was, and a write the store refuses or
fails leaves the state as the state log holds it (the state log undoes a
failed record itself): unlike the group coordinator, which changes its
groups before it writes and rebuilds them after a failed write
(engine/groups/failed_writes.py), there is nothing to rebuild. Only one
change to a transactional id is in flight at a time: an id is *pending*
while its state is being written or its transaction completes, and
requests about it get CONCURRENT_TRANSACTIONS meanwhile.

Callers hold ``lock`` while they read the table and mark an id pending;
``write`` and ``remove`` take it themselves when the state log answers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future

from engine.errors import (
    CoordinatorCannotWrite,
    CoordinatorNotAvailable,
    Fenced,
    StateRecordTooLarge,
    StorageError,
)
from engine.state_log import StateLog
from engine.transactions.metadata import TransactionMetadata
from s3stream import AppendTooLarge, NoRoom, S3StreamError

log = logging.getLogger("tidelog.transactions")


class TransactionTable:
    """Thread safe through ``lock``."""

    def __init__(self, state_log: StateLog) -> None:
        self.lock = threading.Lock()
        self.closed = False
        """Set at close, under the lock: no change starts after it."""
        self._log = state_log
        self._txns: dict[str, TransactionMetadata] = {}
        self._by_producer: dict[int, str] = {}
        self._pending: set[str] = set()
        for key, value in state_log.items():
            meta = TransactionMetadata.from_wire(str(key), value)
            self._txns[meta.transactional_id] = meta
            self._by_producer[meta.producer_id] = meta.transactional_id

    # -- reading (under the lock) -----------------------------------------------------

    def get(self, transactional_id: str) -> TransactionMetadata | None:
        return self._txns.get(transactional_id)

    def of_producer(self, producer_id: int) -> TransactionMetadata | None:
        """The state of the transactional id that has ``producer_id``."""
        transactional_id = self._by_producer.get(producer_id)
        meta = None if transactional_id is None else self._txns.get(transactional_id)
        return meta if meta is not None and meta.producer_id == producer_id else None

    def states(self) -> list[TransactionMetadata]:
        return list(self._txns.values())

    def __len__(self) -> int:
        return len(self._txns)

    # -- one change in flight per id (under the lock) ---------------------------------

    def is_pending(self, transactional_id: str) -> bool:
        return transactional_id in self._pending

    def hold(self, transactional_id: str) -> None:
        """Marks the id pending: a change to it is under way."""
        self._pending.add(transactional_id)

    def release(self, transactional_id: str) -> None:
        self._pending.discard(transactional_id)

    # -- writing ------------------------------------------------------------------------

    def write(
        self,
        meta: TransactionMetadata,
        then: Callable[[BaseException | None], None],
        *,
        keep_pending: bool = False,
        retry_on: Callable[[BaseException], bool] = lambda error: False,
    ) -> None:
        """Writes ``meta`` (its id already pending); once durable, makes it the
        id's state and calls ``then(None)``. If the write is refused or
        fails, the state stays what the state log holds (the one before)
        and ``then(error)`` gets Kafka's error for it (``write_error``).
        The id stays pending with ``keep_pending`` once written (a
        completion follows), and after an error ``retry_on`` accepts (its
        writer writes again: Kafka's retryOnError)."""
        transactional_id = meta.transactional_id

        def durable(future: Future[int]) -> None:
            failure = future.exception()
            error = None if failure is None else write_error(failure)
            with self.lock:
                if error is None:
                    previous = self._txns.get(transactional_id)
                    if previous is not None and previous.producer_id != meta.producer_id:
                        self._by_producer.pop(previous.producer_id, None)
                    self._txns[transactional_id] = meta
                    self._by_producer[meta.producer_id] = transactional_id
                    if not keep_pending:
                        self._pending.discard(transactional_id)
                elif not retry_on(error):
                    self._pending.discard(transactional_id)
            then(error)

        try:
            written = self._log.put(transactional_id, meta.to_wire())
        except BaseException as refused:  # nothing accepted: the state log holds the state before
            error = write_error(refused)
            if not retry_on(error):
                with self.lock:
                    self._pending.discard(transactional_id)
            then(error)
            return
        written.add_done_callback(durable)

    def remove(self, meta: TransactionMetadata) -> None:
        """Forgets the id (already pending), durably, unless it changed since
        ``meta`` was read. A refused or failed delete keeps it (the state
        log keeps it too); the next expiry pass tries again."""
        transactional_id = meta.transactional_id

        def removed(future: Future[int]) -> None:
            failure = future.exception()
            with self.lock:
                self._pending.discard(transactional_id)
                if failure is None and self._txns.get(transactional_id) == meta:
                    del self._txns[transactional_id]
                    if self._by_producer.get(meta.producer_id) == transactional_id:
                        del self._by_producer[meta.producer_id]
            if failure is not None:
                log.warning("forgetting transactional id %r failed: %s", transactional_id, failure)

        try:
            deleted = self._log.delete(transactional_id)
        except S3StreamError as refused:
            with self.lock:
                self._pending.discard(transactional_id)
            log.warning("forgetting transactional id %r was refused: %s", transactional_id, refused)
            return
        deleted.add_done_callback(removed)


def write_error(error: BaseException) -> BaseException:
    """The error a write of the coordinator's (a state record, a marker)
    that the store refused or failed is answered with, as Kafka's
    TransactionStateManager.appendTransactionToLog maps a log append's
    error: a log that could not take it in time (REQUEST_TIMED_OUT; here
    a store past its unuploaded headroom, NoRoom) is
    COORDINATOR_NOT_AVAILABLE, which clients retry where they are; a log
    that failed or is no longer this node's (KAFKA_STORAGE_ERROR,
    NOT_LEADER_OR_FOLLOWER; here a failed, fenced or closed store) is
    NOT_COORDINATOR: the client finds the coordinator again, which
    serves once the engine is opened again. A record too large for the
    WAL (MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE; here AppendTooLarge)
    is UNKNOWN_SERVER_ERROR. Anything else passes as it
    is (an engine error keeps its code, the rest is UNKNOWN_SERVER_ERROR)."""
    if isinstance(error, NoRoom):
        return CoordinatorNotAvailable(str(error))
    if isinstance(error, AppendTooLarge):
        # Refused before the store heard of it, which keeps serving: as
        # Kafka answers a transaction record its log refused as too large.
        return StateRecordTooLarge(str(error))
    if isinstance(error, S3StreamError | StorageError | Fenced):
        return CoordinatorCannotWrite(f"the transaction coordinator cannot write: {error}")
    return error


def retriable(error: BaseException) -> bool:
    """Whether a refused write of the coordinator's is written again where
    it is (Kafka's marker channel retries a completion's append on
    COORDINATOR_NOT_AVAILABLE; the store takes it once uploads resume)."""
    return isinstance(error, CoordinatorNotAvailable)


def settle(future: Future[None], error: BaseException | None) -> None:
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
