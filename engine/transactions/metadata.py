"""A transactional id's state and the transitions between states.

Kafka's TransactionMetadata on one node. A transactional id maps to a
producer id and epoch; a transaction goes Empty -> Ongoing
(AddPartitionsToTxn, AddOffsetsToTxn) -> PrepareCommit or PrepareAbort
(EndTxn, or a timeout) -> CompleteCommit or CompleteAbort. Under
transactions v2 (KIP-890 part 2, ``transaction_version`` 2) every EndTxn
bumps the epoch, and one at the last epoch rotates the producer id
(docs/design/0076). The functions here compute the next state from the
current one; they change nothing: the coordinator writes the result to
the state log (``table``) before it takes effect. ``to_wire`` is the
state log's value (docs/transactions.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

from engine.errors import ProducerFenced
from engine.types import TopicPartition

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
MAX_EPOCH = 2**15 - 1
"""Producer epochs are int16."""

STATE_FORMAT = 2
"""The version of the state log's values (docs/transactions.md). Format 2
adds the transaction version and the next producer id; a value that
holds neither is still written as format 1, so a tidelog that reads
only format 1 reads every id no transactions v2 client touched."""

TV_2 = 2
"""The ``transaction.version`` feature level of transactions v2: Produce
v12 and TxnOffsetCommit v5 add to the transaction implicitly, EndTxn v5
bumps the epoch (Kafka's TransactionVersion.TV_2)."""


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


ENDABLE = (TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT)
"""States without a transaction in progress."""

PREPARED = (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT)
"""States of a decided transaction whose markers are still being written."""


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
    transaction_version: int = 0
    """The transaction version the client last spoke (Kafka's
    clientTransactionVersion): TV_2 once its transaction was added to by
    Produce v12 or TxnOffsetCommit v5, or ended by EndTxn v5."""
    next_producer_id: int = NO_PRODUCER_ID
    """In PrepareCommit or PrepareAbort under transactions v2 at the last
    epoch: the producer id the completion rotates to (Kafka's nextProducerId)."""

    @property
    def epoch_bumped(self) -> bool:
        """Whether the transaction's end bumped the epoch (transactions v2):
        its records carry ``last_producer_epoch``, its markers ``producer_epoch``."""
        return self.transaction_version >= TV_2 and self.last_producer_epoch >= 0

    def to_wire(self) -> dict[str, Any]:
        v2 = self.transaction_version != 0 or self.next_producer_id != NO_PRODUCER_ID
        extra = {"tv": self.transaction_version, "next_pid": self.next_producer_id} if v2 else {}
        return {
            "v": STATE_FORMAT if v2 else 1,
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
            **extra,
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
            raw.get("tv", 0),
            raw.get("next_pid", NO_PRODUCER_ID),
        )


# -- transitions -------------------------------------------------------------------------


def may_resume(meta: TransactionMetadata, producer_id: int, epoch: int) -> bool:
    """Whether a producer that gives (id, epoch) in InitProducerId is the
    current one (or its retry after a producer id rotation), so it may go
    on rather than be fenced (Kafka's isValidProducerId)."""
    return (
        meta.producer_epoch == NO_PRODUCER_EPOCH
        or producer_id == meta.producer_id
        or (producer_id == meta.last_producer_id and epoch_exhausted(epoch))
    )


def bump(
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


def rotate(
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


def fence(meta: TransactionMetadata, now: int) -> TransactionMetadata:
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


def prepare_end(
    meta: TransactionMetadata,
    commit: bool,
    transaction_version: int,
    next_producer_id: int,
    now: int,
) -> TransactionMetadata:
    """PrepareCommit or PrepareAbort (Kafka's prepareAbortOrCommit). Under
    transactions v2 the epoch is bumped here, so the markers carry the new
    epoch and fence every write of the old one; ``next_producer_id`` is
    the id to rotate to when the bumped epoch is the last one."""
    epoch, last_epoch = meta.producer_epoch, meta.last_producer_epoch
    if transaction_version >= TV_2:
        epoch, last_epoch = meta.producer_epoch + 1, meta.producer_epoch
    return replace(
        meta,
        state=TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT,
        producer_epoch=epoch,
        last_producer_epoch=last_epoch,
        transaction_version=transaction_version,
        next_producer_id=next_producer_id,
        update_ms=now,
    )


def completed(prepared: TransactionMetadata, now: int) -> TransactionMetadata:
    """CompleteCommit or CompleteAbort, once every marker is durable
    (Kafka's prepareComplete). A transaction that ended at the last epoch
    under transactions v2 hands over to its next producer id at epoch 0;
    the last epoch stays the one the client last held, so its retry of
    EndTxn is told apart from a fenced producer."""
    commit = prepared.state is TxnState.PREPARE_COMMIT
    rotated: dict[str, Any] = {}
    if prepared.next_producer_id != NO_PRODUCER_ID:
        rotated = {
            "producer_id": prepared.next_producer_id,
            "producer_epoch": 0,
            "last_producer_id": prepared.producer_id,
            "next_producer_id": NO_PRODUCER_ID,
        }
    return replace(
        prepared,
        state=TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT,
        partitions=frozenset(),
        groups=frozenset(),
        update_ms=now,
        **rotated,
    )
