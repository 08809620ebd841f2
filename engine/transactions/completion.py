"""Completing a decided transaction: a commit or abort marker written to
every partition of the transaction and waited for until durable, the
group coordinator told to settle the transaction's offsets, then
CompleteCommit or CompleteAbort written to the state log.

Completion runs on worker threads (it waits on storage). Writing a marker
again is harmless, so a completion whose markers fail leaves the
transaction in Prepare* and is simply run again: by the coordinator's
timer, or by the next open of the engine (``retry_incomplete``).

Once every marker is durable the outcome is visible and cannot change;
what is left is the Complete* record. As Kafka's
TransactionMarkerChannelManager.tryAppendToLog does, a refusal it will
take later (COORDINATOR_NOT_AVAILABLE: the store past its headroom) only
writes that record again, the id pending throughout, and the EndTxn is
answered as Kafka answers it once the Prepare* state is durable: done. A
store that can no longer be written (NOT_COORDINATOR) leaves Prepare*,
as the state log holds it, for the next open to complete (markers written
again, as a Kafka coordinator that loads the log sends them again); the
EndTxn is answered done too. Never a second outcome: nothing ends a
Prepare* transaction but its own completion.
"""

from __future__ import annotations

import functools
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from engine.errors import CoordinatorClosed, EngineError
from engine.transactions.host import TransactionHost
from engine.transactions.metadata import (
    NO_PRODUCER_ID,
    PREPARED,
    TransactionMetadata,
    TxnState,
    completed,
)
from engine.transactions.table import TransactionTable, retriable, settle, write_error
from engine.types import TopicPartition
from s3stream import S3StreamError

if TYPE_CHECKING:
    from engine.partition import Partition

log = logging.getLogger("tidelog.transactions")

COMPLETE_RETRY_BACKOFF_S = 0.05
"""The first wait before a refused Complete* record is written again;
doubled at each refusal up to ``COMPLETE_RETRY_BACKOFF_MAX_S``."""
COMPLETE_RETRY_BACKOFF_MAX_S = 1.0


class TransactionCompleter:
    """Thread safe."""

    def __init__(self, host: TransactionHost, table: TransactionTable) -> None:
        self._host = host
        self._table = table
        self._workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tidelog-txn")
        self._closing = threading.Event()
        """Set at close: a Complete* record refused for room is left to the next open."""

    def complete_later(
        self, prepared: TransactionMetadata, result: Future[None] | None = None
    ) -> None:
        """Completes a prepared transaction on a worker thread. Its
        transactional id is pending already and stays so until then;
        ``result`` resolves once the transaction is complete."""
        try:
            work = self._workers.submit(self._complete, prepared, result)
        except RuntimeError:  # shut down: the next open completes it
            self._left_for_next_open(prepared, result)
            return
        # Close cancels the completions still waiting for a worker (all of
        # them may be writing a refused Complete* record again): each is
        # answered, not left waiting for ever.
        work.add_done_callback(
            lambda done: self._left_for_next_open(prepared, result) if done.cancelled() else None
        )

    def _left_for_next_open(
        self, prepared: TransactionMetadata, result: Future[None] | None
    ) -> None:
        with self._table.lock:
            self._table.release(prepared.transactional_id)
        if result is not None and not result.done():
            result.set_exception(CoordinatorClosed("transaction"))

    def retry_incomplete(self) -> int:
        """Completes Prepare* transactions nobody is completing (after a
        restart, or a failed attempt); returns how many."""
        table = self._table
        with table.lock:
            waiting = [
                meta
                for meta in table.states()
                if meta.state in PREPARED and not table.is_pending(meta.transactional_id)
            ]
            for meta in waiting:
                table.hold(meta.transactional_id)
        for meta in waiting:
            self.complete_later(meta)
        return len(waiting)

    def close(self) -> None:
        """Waits for the completions in flight; those not started, or whose
        Complete* record is being written again, are left for the next open
        (an EndTxn still waiting is answered CoordinatorClosed: NOT_COORDINATOR
        on the wire, as Kafka answers a request whose coordinator left)."""
        self._closing.set()
        self._workers.shutdown(wait=True, cancel_futures=True)

    def _complete(self, prepared: TransactionMetadata, result: Future[None] | None) -> None:
        commit = prepared.state is TxnState.PREPARE_COMMIT
        try:
            self._write_markers(prepared, commit)
            if prepared.groups:
                # The transaction's offsets carry the epoch it ran at, which
                # under transactions v2 is the one before the end's bump.
                epoch = (
                    prepared.last_producer_epoch
                    if prepared.epoch_bumped
                    else prepared.producer_epoch
                )
                self._host.groups.complete_transaction(prepared.producer_id, commit, epoch).result()
        except BaseException as error:
            # Left in Prepare*: the timer (or the next open) tries again.
            log.warning(
                "completing the transaction of %r failed, will retry: %s",
                prepared.transactional_id,
                error,
            )
            with self._table.lock:
                self._table.release(prepared.transactional_id)
            if result is not None:
                result.set_exception(write_error(error))
            return
        self._write_completed(prepared, result)

    def _write_completed(self, prepared: TransactionMetadata, result: Future[None] | None) -> None:
        """Writes Complete*, again while the store refuses it for room: the
        markers are durable, so only this record is retried, never a
        marker of either outcome (Kafka's tryAppendToLog)."""
        # The producer id and epoch the EndTxn answers are the ones memory
        # holds in Prepare*, but for a rotation (transactions v2 at the last
        # epoch): a producer told its new id before the record hands it over
        # would be refused as another producer's meanwhile, so that answer
        # waits for the record.
        answer_early = prepared.next_producer_id == NO_PRODUCER_ID
        backoff = COMPLETE_RETRY_BACKOFF_S
        while True:
            finished: Future[None] = Future()
            finished.set_running_or_notify_cancel()
            self._table.write(
                completed(prepared, self._host.clock.time_ms()),
                functools.partial(settle, finished),
                retry_on=retriable,
            )
            try:
                finished.result()
            except BaseException as error:
                if answer_early and result is not None and not result.done():
                    result.set_result(None)  # decided and visible: Kafka has answered
                if retriable(error) and not self._closing.wait(backoff):
                    if backoff == COMPLETE_RETRY_BACKOFF_S:
                        log.warning(
                            "completing the transaction of %r was refused, writing it again "
                            "until the store takes it: %s",
                            prepared.transactional_id,
                            error,
                        )
                    backoff = min(2 * backoff, COMPLETE_RETRY_BACKOFF_MAX_S)
                    continue
                log.warning(
                    "completing the transaction of %r failed; the next open completes it: %s",
                    prepared.transactional_id,
                    error,
                )
                with self._table.lock:
                    self._table.release(prepared.transactional_id)
                if result is not None and not result.done():
                    result.set_exception(error)
                return
            if result is not None and not result.done():
                result.set_result(None)
            return

    def _write_markers(self, prepared: TransactionMetadata, commit: bool) -> None:
        # Kafka's coordinator epoch is the leader epoch of the transaction
        # log's partition; here, the engine's leader epoch.
        epoch = self._host.leader_epoch
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
                raise write_error(error) from error
        for future in written:
            try:
                future.result()
            except S3StreamError as error:
                raise write_error(error) from error

    def _partition(self, tp: TopicPartition) -> Partition | None:
        """The partition if it exists (never auto-created)."""
        if tp not in self._host.topic_partitions([tp.topic]):
            return None
        try:
            return self._host.partition(tp.topic, tp.partition)
        except EngineError:
            return None
