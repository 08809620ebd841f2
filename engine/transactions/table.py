"""The transactional ids' current states: in memory, and durable in the
"transactions" state log (one key per transactional id, the value
``TransactionMetadata.to_wire``; docs/transactions.md gives the layout).

A new state takes effect only once its record is durable, so a restart
finds each transaction where it was. Only one change to a transactional id
is in flight at a time: an id is *pending* while its state is being
written or its transaction completes, and requests about it get
CONCURRENT_TRANSACTIONS meanwhile.

Callers hold ``lock`` while they read the table and mark an id pending;
``write`` and ``remove`` take it themselves when the state log answers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future

from engine.errors import CoordinatorNotAvailable, EngineClosed, EngineError, Fenced, StorageError
from engine.state_log import StateLog
from engine.transactions.metadata import TransactionMetadata
from s3stream import Fenced as StoreFenced
from s3stream import NoRoom, S3StreamError, StoreClosed


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
    ) -> None:
        """Writes ``meta`` (its id already pending); once durable, makes it the
        id's state and calls ``then(None)`` (``then(error)`` if the write
        failed, leaving the state as it was). The id stays pending with
        ``keep_pending`` (a completion follows)."""
        transactional_id = meta.transactional_id

        def durable(future: Future[int]) -> None:
            error = future.exception()
            with self.lock:
                if error is None:
                    previous = self._txns.get(transactional_id)
                    if previous is not None and previous.producer_id != meta.producer_id:
                        self._by_producer.pop(previous.producer_id, None)
                    self._txns[transactional_id] = meta
                    self._by_producer[meta.producer_id] = transactional_id
                if error is not None or not keep_pending:
                    self._pending.discard(transactional_id)
            then(None if error is None else as_engine_error(error))

        try:
            written = self._log.put(transactional_id, meta.to_wire())
        except BaseException as error:
            with self.lock:
                self._pending.discard(transactional_id)
            then(as_engine_error(error))
            return
        written.add_done_callback(durable)

    def remove(self, meta: TransactionMetadata) -> None:
        """Forgets the id (already pending), durably, unless it changed since
        ``meta`` was read."""
        transactional_id = meta.transactional_id

        def removed(future: Future[int]) -> None:
            with self.lock:
                self._pending.discard(transactional_id)
                if future.exception() is None and self._txns.get(transactional_id) == meta:
                    del self._txns[transactional_id]
                    if self._by_producer.get(meta.producer_id) == transactional_id:
                        del self._by_producer[meta.producer_id]

        try:
            self._log.delete(transactional_id).add_done_callback(removed)
        except S3StreamError:
            with self.lock:
                self._pending.discard(transactional_id)
            raise


def storage_error(error: S3StreamError) -> EngineError:
    """The engine's error for a failure of the storage below it."""
    if isinstance(error, StoreClosed):
        return EngineClosed()
    if isinstance(error, StoreFenced):
        return Fenced(f"another engine opened this storage: {error}")
    if isinstance(error, NoRoom):
        # As Kafka's TransactionStateManager answers a write its log could
        # not take in time (REQUEST_TIMED_OUT): the client retries it.
        return CoordinatorNotAvailable(str(error))
    return StorageError(str(error))


def as_engine_error(error: BaseException) -> BaseException:
    if isinstance(error, EngineError):
        return error
    if isinstance(error, S3StreamError):
        return storage_error(error)
    return error


def settle(future: Future[None], error: BaseException | None) -> None:
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
