"""What an EndTxn is answered before anything is written: Kafka 4.0's
TransactionCoordinator checks, in their order, for a transactions v1 end
(EndTxn v0-4, ``endTransactionWithTV1``) and a transactions v2 one (v5,
``endTransaction``): which producer may end the transaction, which is
fenced, which repeats an end that already completed, and which must wait.

A v2 end bumps the epoch, and past the last epoch moves the transactional
id to a new producer id (docs/design/0076), so a v2 EndTxn may carry the
epoch before the bump or the producer id before the move: its retry is
answered with what the producer goes on with, and any other such request
is fenced (PRODUCER_FENCED) rather than refused as another producer's
(INVALID_PRODUCER_ID_MAPPING), as Kafka answers it (docs/design/0090).

One difference of timing: Kafka's id is pending only while a state write
is in flight, and answers the requests that meet a transaction whose
markers are being written from its Prepare state; here the id stays
pending until the transaction is complete, so a pending id whose state is
already PrepareCommit or PrepareAbort is answered from that state too.
"""

from __future__ import annotations

import enum

from engine.errors import (
    ConcurrentTransactions,
    InvalidProducerIdMapping,
    InvalidTransactionRequest,
    InvalidTxnState,
    ProducerFenced,
)
from engine.transactions.metadata import (
    MAX_EPOCH,
    NO_PRODUCER_ID,
    PREPARED,
    TV_2,
    TransactionMetadata,
    TxnState,
)


class EndStep(enum.Enum):
    """What the coordinator does with an EndTxn its checks let through."""

    PREPARE = "prepare"
    """Writes PrepareCommit or PrepareAbort: the open transaction ends (or,
    under v2, an abort ends an empty one)."""
    ANSWERED = "answered"
    """The end already completed: answered with the producer id and epoch
    the producer goes on with, nothing written."""


def end_step(
    meta: TransactionMetadata | None,
    transactional_id: str,
    producer_id: int,
    producer_epoch: int,
    commit: bool,
    transaction_version: int,
    pending: bool,
) -> EndStep:
    """The step for an EndTxn from (``producer_id``, ``producer_epoch``)
    against the id's state ``meta`` (None: unknown), ``pending`` if a change
    to the id is under way; raises the error Kafka answers instead."""
    if not transactional_id:
        raise InvalidTransactionRequest("a transactional id must not be empty")
    if meta is None:
        raise InvalidProducerIdMapping(f"no transactional id {transactional_id!r}")
    # Kafka's pendingTransitionInProgress: a state write in flight. Markers
    # being written (a Prepare state, pending here) are answered below.
    writing = pending and meta.state not in PREPARED
    if transaction_version < TV_2:
        return _v1_step(meta, producer_id, producer_epoch, commit, writing)
    return _v2_step(meta, producer_id, producer_epoch, commit, writing)


def _v1_step(
    meta: TransactionMetadata, producer_id: int, epoch: int, commit: bool, writing: bool
) -> EndStep:
    """Kafka's endTransactionWithTV1: the producer id and epoch must be the
    current ones exactly."""
    if meta.producer_id != producer_id:
        raise _not_mapped(meta, producer_id)
    if epoch != meta.producer_epoch:
        raise ProducerFenced(meta.transactional_id, epoch, meta.producer_epoch)
    if writing:
        raise _busy(meta)
    state = meta.state
    if state is TxnState.ONGOING:
        return EndStep.PREPARE
    if state is _complete(commit):
        return EndStep.ANSWERED
    if state is _prepare(commit):
        raise _completing(meta)
    raise _invalid(meta, commit)


def _v2_step(
    meta: TransactionMetadata, producer_id: int, epoch: int, commit: bool, writing: bool
) -> EndStep:
    """Kafka's endTransaction under transactions v2, where the pending check
    comes first (a move to a new producer id may be the write in flight)."""
    if writing:
        raise _busy(meta)
    if handed_over(meta, producer_id):
        raise _completing(meta)
    overflow_retry = retried_past_last_epoch(meta, producer_id, epoch)
    if meta.producer_id != producer_id and not overflow_retry:
        raise _not_mapped(meta, producer_id)
    bump_retry = retried_bump(meta, producer_id, epoch)
    state = meta.state
    if state in PREPARED:
        valid = bump_retry
    elif state in (TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT):
        valid = bump_retry or overflow_retry or epoch == meta.producer_epoch
    else:  # Ongoing, Empty
        valid = epoch == meta.producer_epoch
    # MAX_EPOCH is a fence's (a timeout's abort at the last epoch handed
    # out), never a producer's: an end at the last epoch moves the id to a
    # new producer id instead. Let through, a request carrying it would be
    # bumped past the int16 its markers carry, and never complete.
    if not valid or epoch >= MAX_EPOCH:
        raise ProducerFenced(meta.transactional_id, epoch, meta.producer_epoch)
    retry = bump_retry or overflow_retry
    if state is TxnState.ONGOING:
        return EndStep.PREPARE
    if state is _prepare(commit):
        raise _completing(meta)
    if state is _complete(commit) and retry:
        return EndStep.ANSWERED
    # An abort with nothing added still ends a transaction under v2 (the
    # producer's epoch is bumped past anything it may have sent): Kafka's
    # prepareAbortOrCommit with noPartitionAdded.
    if not commit and not retry and state in (TxnState.EMPTY, *_COMPLETE):
        return EndStep.PREPARE
    raise _invalid(meta, commit)


def handed_over(meta: TransactionMetadata, producer_id: int) -> bool:
    """Whether ``producer_id`` is the one a v2 end at the last epoch hands
    the id to, while that end is still completing: its EndTxn may have
    been answered with it already (at a refused step, as Kafka 4 answers
    it once Prepare* is durable), and its producer's requests are told to
    wait (CONCURRENT_TRANSACTIONS), as Kafka's pending check, made before
    the producer id's, tells them, never that the id is another's."""
    return meta.state in PREPARED and producer_id == meta.next_producer_id != NO_PRODUCER_ID


def retried_bump(meta: TransactionMetadata, producer_id: int, epoch: int) -> bool:
    """Whether (``producer_id``, ``epoch``) is the producer whose v2 end
    bumped the epoch to the current one (Kafka's retryOnEpochBump). Kafka
    asks only that the epoch be the one before the current; here the bump
    must also be an end's: a fence (a timeout's abort, InitProducerId)
    bumps once where Kafka's v2 abort bumps twice, and its producer, one
    epoch behind, must stay fenced."""
    return (
        meta.producer_id == producer_id
        and meta.epoch_bumped
        and meta.last_producer_epoch == epoch == meta.producer_epoch - 1
    )


def retried_past_last_epoch(meta: TransactionMetadata, producer_id: int, epoch: int) -> bool:
    """Whether (``producer_id``, ``epoch``) is the producer whose v2 end at
    the last epoch moved the id to its current producer id, not yet used
    past epoch 0 (Kafka's retryOnOverflow)."""
    return (
        meta.last_producer_id == producer_id != meta.producer_id
        and epoch == MAX_EPOCH - 1
        and meta.producer_epoch == 0
    )


_COMPLETE = (TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT)


def _complete(commit: bool) -> TxnState:
    return TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT


def _prepare(commit: bool) -> TxnState:
    return TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT


def _not_mapped(meta: TransactionMetadata, producer_id: int) -> InvalidProducerIdMapping:
    return InvalidProducerIdMapping(
        f"transactional id {meta.transactional_id!r} does not have producer id {producer_id}"
    )


def _busy(meta: TransactionMetadata) -> ConcurrentTransactions:
    return ConcurrentTransactions(f"transactional id {meta.transactional_id!r} is busy")


def _completing(meta: TransactionMetadata) -> ConcurrentTransactions:
    return ConcurrentTransactions(
        f"transactional id {meta.transactional_id!r} is completing this transaction"
    )


def _invalid(meta: TransactionMetadata, commit: bool) -> InvalidTxnState:
    wanted = "commit" if commit else "abort"
    return InvalidTxnState(
        f"transactional id {meta.transactional_id!r} cannot {wanted} in state {meta.state.value}"
    )
