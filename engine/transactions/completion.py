"""Completing a decided transaction: a commit or abort marker written to
every partition of the transaction and waited for until durable, the
group coordinator told to settle the transaction's offsets, then
CompleteCommit or CompleteAbort written to the state log.

Completion runs on worker threads (it waits on storage), in steps, as
Kafka's TransactionMarkerChannelManager and
TransactionMarkerRequestCompletionHandler run it: each partition's marker
is written until it is durable, on its own. A marker the store refuses
(for room) or that fails otherwise is written again for that partition
alone, after a backoff (50 ms doubling to 1 s); a partition already
marked is never marked again, and one deleted meanwhile is dropped (Kafka
skips a partition whose leader it no longer finds). Only once every
partition is marked are the offsets settled and the Complete* record
written, again after the same backoff while the store refuses it for
room (Kafka's tryAppendToLog). Between attempts a completion waits on
the retry timer, not on a worker, so completions waiting out a refusal
never stall the others; its id stays pending throughout, and it has one
attempt in flight or waiting at a time (docs/design/0108).

The EndTxn is answered once the markers are durable; at the first
refusal it is answered done instead, as Kafka answers it once the
Prepare* state is durable: the outcome is fixed, and read_committed
readers see it on every partition once its marker is written. A
transactions v2 end at the last epoch is answered so too, with the new
producer id its Complete* record hands the id to (Kafka 4 answers the
new id as it answers Prepare*); until that record is written the new
id's requests are told to wait (CONCURRENT_TRANSACTIONS, ending.py's
``handed_over``), so a marker retried for ever holds no caller. A store
that can no longer be written (NOT_COORDINATOR: failed, fenced or
closed), or the close of the coordinator, stops the completion and
leaves Prepare*, as the state log holds it, for the next open, which
writes the markers again (a Kafka coordinator that loads the log sends
them again). Never a second
outcome: nothing ends a Prepare* transaction but its own completion.
"""

from __future__ import annotations

import functools
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.errors import CoordinatorCannotWrite, CoordinatorClosed, EngineClosed, EngineError
from engine.transactions.host import TransactionHost
from engine.transactions.metadata import (
    PREPARED,
    TransactionMetadata,
    TxnState,
    completed,
)
from engine.transactions.retry_timer import RetryTimer
from engine.transactions.table import TransactionTable, retriable, settle, write_error
from engine.types import TopicPartition
from s3stream import StreamNotFound, StreamNotOpen

if TYPE_CHECKING:
    from engine.partition import Partition

log = logging.getLogger("tidelog.transactions")

RETRY_BACKOFF_S = 0.05
"""The first wait before a refused or failed step of a completion (a
partition's marker, the offsets, the Complete* record) is tried again;
doubled at each attempt up to ``RETRY_BACKOFF_MAX_S``."""
RETRY_BACKOFF_MAX_S = 1.0


@dataclass
class Completion:
    """One decided transaction on its way to Complete*: what is left of it."""

    prepared: TransactionMetadata
    result: Future[None] | None
    """Resolved once the EndTxn may be answered; None for the timer's ends."""
    unmarked: list[TopicPartition]
    """The partitions whose marker is not durable yet, in order."""
    offsets_settled: bool = False
    backoff: float = RETRY_BACKOFF_S
    warned: bool = False
    """Its first retry was logged: the next ones are not (one warning a
    completion, however long the store refuses)."""


class TransactionCompleter:
    """Thread safe."""

    def __init__(self, host: TransactionHost, table: TransactionTable) -> None:
        self._host = host
        self._table = table
        self._workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tidelog-txn")
        self._retries = RetryTimer()
        self._closing = threading.Event()
        """Set at close: a step refused meanwhile is left to the next open."""

    def complete_later(
        self, prepared: TransactionMetadata, result: Future[None] | None = None
    ) -> None:
        """Completes a prepared transaction on a worker thread. Its
        transactional id is pending already and stays so until then;
        ``result`` resolves once the EndTxn may be answered (see above)."""
        self._submit(Completion(prepared, result, sorted(prepared.partitions)))

    def _submit(self, completion: Completion) -> None:
        try:
            work = self._workers.submit(self._complete, completion)
        except RuntimeError:  # shut down: the next open completes it
            self._left_for_next_open(completion)
            return
        # Close cancels the completions still waiting for a worker: each is
        # answered, not left waiting for ever.
        work.add_done_callback(
            lambda done: self._left_for_next_open(completion) if done.cancelled() else None
        )

    def _left_for_next_open(self, completion: Completion) -> None:
        with self._table.lock:
            self._table.release(completion.prepared.transactional_id)
        result = completion.result
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
        """Waits for the steps in flight; completions waiting for a worker or
        for their retry are left for the next open (an EndTxn still waiting
        is answered CoordinatorClosed: NOT_COORDINATOR on the wire, as Kafka
        answers a request whose coordinator left)."""
        self._closing.set()
        self._retries.close()
        self._workers.shutdown(wait=True, cancel_futures=True)

    def _complete(self, completion: Completion) -> None:
        """One attempt at what is left of the completion, on a worker."""
        if self._closing.is_set():
            self._left_for_next_open(completion)
            return
        prepared = completion.prepared
        try:
            if completion.unmarked:
                self._write_markers(completion)
                if completion.unmarked:
                    self._retry(completion, "its markers")
                    return
            if not completion.offsets_settled:
                if not self._settle_offsets(completion):
                    self._retry(completion, "its offsets")
                    return
                completion.offsets_settled = True
                completion.backoff = RETRY_BACKOFF_S
        except BaseException as error:
            # Left in Prepare*, as the state log holds it: the next open
            # (or, for an error the store did not cause, the timer)
            # completes it, markers written again.
            log.warning(
                "completing the transaction of %r failed, will retry: %s",
                prepared.transactional_id,
                error,
            )
            with self._table.lock:
                self._table.release(prepared.transactional_id)
            if completion.result is not None and not completion.result.done():
                completion.result.set_exception(write_error(error))
            return
        self._write_completed(completion)

    def _retry(self, completion: Completion, what: str, error: BaseException | None = None) -> None:
        """Answers the EndTxn done, and tries the completion again after its
        backoff, on the retry timer (no worker waits)."""
        result = completion.result
        if result is not None and not result.done():
            result.set_result(None)  # decided and durable: Kafka has answered
        if not completion.warned:
            completion.warned = True
            log.warning(
                "completing the transaction of %r: %s refused or failed, trying again "
                "until written%s",
                completion.prepared.transactional_id,
                what,
                "" if error is None else f": {error}",
            )
        delay = completion.backoff
        completion.backoff = min(2 * delay, RETRY_BACKOFF_MAX_S)
        self._retries.schedule(
            delay,
            functools.partial(self._submit, completion),
            functools.partial(self._left_for_next_open, completion),
        )

    def _write_completed(self, completion: Completion) -> None:
        """Writes Complete*; refused for room, it is written again after the
        backoff (the markers are durable: never a marker of either outcome
        again, Kafka's tryAppendToLog)."""
        prepared, result = completion.prepared, completion.result
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
            if retriable(error):
                # Closing too: the retry timer then cancels it, which leaves
                # it for the next open (the EndTxn is answered done first).
                self._retry(completion, "its Complete record", error)
                return
            if result is not None and not result.done():
                result.set_result(None)  # decided and visible: Kafka has answered
            log.warning(
                "completing the transaction of %r failed; the next open completes it: %s",
                prepared.transactional_id,
                error,
            )
            with self._table.lock:
                self._table.release(prepared.transactional_id)
            return
        if result is not None and not result.done():
            result.set_result(None)

    def _write_markers(self, completion: Completion) -> None:
        """Writes the marker of each partition still unmarked and waits for
        them; ``completion.unmarked`` keeps those to write again. Raises
        (nothing more is tried) when the store can no longer be written."""
        prepared = completion.prepared
        commit = prepared.state is TxnState.PREPARE_COMMIT
        # Kafka's coordinator epoch is the leader epoch of the transaction
        # log's partition; here, the engine's leader epoch.
        epoch = self._host.leader_epoch
        written: list[tuple[TopicPartition, Future[int]]] = []
        again: list[TopicPartition] = []
        for tp in completion.unmarked:
            partition = self._partition(tp)
            if partition is None:
                continue  # deleted since: nothing there to end
            try:
                marker = partition.write_marker(
                    prepared.producer_id, prepared.producer_epoch, epoch, commit
                )
            except BaseException as error:
                if self._again(tp, error):
                    again.append(tp)
                continue
            written.append((tp, marker))
        for tp, marker in written:
            try:
                marker.result()
            except BaseException as error:
                if self._again(tp, error):
                    again.append(tp)
        completion.unmarked = sorted(again) if again else again

    def _again(self, tp: TopicPartition, error: BaseException) -> bool:
        """Whether a partition whose marker was refused or failed with
        ``error`` is written again (Kafka's
        TransactionMarkerRequestCompletionHandler retries a partition's
        marker on its own); False for a partition deleted meanwhile, which
        is dropped. Raises, as Kafka's coordinator stops sending once it
        loses its epoch, if the store failed, was fenced or closed."""
        if self._partition(tp) is None:
            return False  # Kafka skips a partition it finds no leader for
        if isinstance(error, StreamNotFound | StreamNotOpen):
            return True  # a deletion under way: looked up again at the next attempt
        answer = write_error(error)
        if isinstance(answer, CoordinatorCannotWrite | EngineClosed):
            raise answer from error
        log.debug("the marker of %s was refused or failed, writing it again: %s", tp, error)
        return True

    def _settle_offsets(self, completion: Completion) -> bool:
        """Settles the transaction's offsets with the group coordinator;
        False if it is to be tried again. Raises if the store can no longer
        be written."""
        prepared = completion.prepared
        if not prepared.groups:
            return True
        # The transaction's offsets carry the epoch it ran at, which under
        # transactions v2 is the one before the end's bump.
        epoch = prepared.last_producer_epoch if prepared.epoch_bumped else prepared.producer_epoch
        commit = prepared.state is TxnState.PREPARE_COMMIT
        try:
            self._host.groups.complete_transaction(prepared.producer_id, commit, epoch).result()
        except BaseException as error:
            answer = write_error(error)
            if isinstance(answer, CoordinatorCannotWrite | EngineClosed):
                raise answer from error
            return False
        return True

    def _partition(self, tp: TopicPartition) -> Partition | None:
        """The partition if it exists (never auto-created)."""
        if tp not in self._host.topic_partitions([tp.topic]):
            return None
        try:
            return self._host.partition(tp.topic, tp.partition)
        except EngineError:
            return None
