"""Idempotent producers' state in one partition: epochs and recent sequences.

Kafka's rules (ProducerStateManager): a batch from a known producer must
carry its current epoch or a newer one; with the same epoch its first
sequence must follow the last one; a newer epoch starts again at 0; the
last five batches are remembered so a retried batch is recognised and
answered with its original offsets instead of being written twice. A
producer the partition has never seen (or no longer remembers) may start
at any sequence. Sequences wrap from 2**31 - 1 to 0.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from engine.errors import InvalidProducerEpoch, OutOfOrderSequence
from native import BatchHeader

REMEMBERED_BATCHES = 5
"""Kafka's max.in.flight.requests.per.connection limit for idempotence."""

INT_MAX = 2**31 - 1


class BatchMeta(NamedTuple):
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int
    timestamp: int


@dataclass
class ProducerEntry:
    producer_id: int
    epoch: int
    batches: deque[BatchMeta] = field(default_factory=lambda: deque(maxlen=REMEMBERED_BATCHES))
    last_append_ms: int = 0
    coordinator_epoch: int = -1
    """The coordinator epoch of the last transaction marker written for it."""
    last_timestamp: int = -1
    """The timestamp of its last batch or transaction marker (Kafka's
    ProducerStateEntry.lastTimestamp, which DescribeProducers lists)."""

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else -1


def last_sequence(base_sequence: int, last_offset_delta: int) -> int:
    if base_sequence > INT_MAX - last_offset_delta:
        return last_offset_delta - (INT_MAX - base_sequence) - 1
    return base_sequence + last_offset_delta


def _next_sequence(sequence: int) -> int:
    return 0 if sequence == INT_MAX else sequence + 1


class ProducerStateTable:
    """The partition's producers, keyed by producer id."""

    # One per partition, idle ones included: no dict of its own.
    __slots__ = ("changes", "producers")

    def __init__(self) -> None:
        self.producers: dict[int, ProducerEntry] = {}
        self.changes: dict[int, bool] = {}
        """Producers changed since the last checkpoint took the changes
        (``take_changes``): True written or made, False forgotten (expired).
        One dict, not a set of each: every partition has one, idle ones
        included, and an empty dict weighs 64 bytes, an empty set 216."""

    def check(self, header: BatchHeader) -> BatchMeta | None:
        """Checks one batch before it is written: returns the original's
        metadata if it is a retried duplicate, raises if it is out of order
        or from a fenced epoch, else returns None."""
        producer_id = header.producer_id
        if producer_id < 0:
            return None
        entry = self.producers.get(producer_id)
        if entry is None:
            return None
        epoch = header.producer_epoch
        if epoch < entry.epoch:
            raise InvalidProducerEpoch(producer_id, epoch, entry.epoch)
        first = header.base_sequence
        if epoch > entry.epoch:
            if first != 0:
                raise OutOfOrderSequence(producer_id, 0, first)
            return None
        last = last_sequence(first, header.last_offset_delta)
        for batch in entry.batches:
            if batch.first_seq == first and batch.last_seq == last:
                return batch
        if entry.batches and first != _next_sequence(entry.last_seq):
            raise OutOfOrderSequence(producer_id, _next_sequence(entry.last_seq), first)
        return None

    def update(
        self,
        header: BatchHeader,
        base_offset: int,
        now_ms: int,
        max_timestamp: int | None = None,
    ) -> None:
        """Records a batch written at ``base_offset`` (checked, or replayed);
        ``max_timestamp`` overrides the header's (the broker's append time)."""
        producer_id = header.producer_id
        if producer_id < 0:
            return
        entry = self.producers.get(producer_id)
        if entry is None or header.producer_epoch != entry.epoch:
            entry = self.producers[producer_id] = ProducerEntry(producer_id, header.producer_epoch)
        self.changes[producer_id] = True  # every idempotent batch: one store
        timestamp = header.max_timestamp if max_timestamp is None else max_timestamp
        if header.base_sequence >= 0:
            entry.batches.append(
                BatchMeta(
                    header.base_sequence,
                    last_sequence(header.base_sequence, header.last_offset_delta),
                    base_offset,
                    base_offset + header.last_offset_delta,
                    timestamp,
                )
            )
            entry.last_timestamp = timestamp
        entry.last_append_ms = now_ms

    def end_transaction(
        self, producer_id: int, epoch: int, now_ms: int, coordinator_epoch: int, timestamp: int
    ) -> None:
        """Records a transaction marker stamped ``timestamp``: it carries the
        producer's current epoch (a newer one when the coordinator fenced the
        producer, which forgets the older epoch's batches, as Kafka does),
        and becomes the producer's last timestamp, as in Kafka."""
        entry = self.producers.get(producer_id)
        if entry is None or epoch > entry.epoch:
            entry = self.producers[producer_id] = ProducerEntry(producer_id, epoch)
        self.changes[producer_id] = True
        entry.last_append_ms = now_ms
        entry.last_timestamp = timestamp
        entry.coordinator_epoch = max(entry.coordinator_epoch, coordinator_epoch)

    def expire(self, now_ms: int, expiration_ms: int, keep: Collection[int] = ()) -> int:
        """Forgets producers idle longer than ``expiration_ms`` (but those in
        ``keep``: producers with an open transaction); returns how many."""
        idle = [
            pid
            for pid, entry in self.producers.items()
            if entry.last_append_ms < now_ms - expiration_ms and pid not in keep
        ]
        for pid in idle:
            del self.producers[pid]
            self.changes[pid] = False
        return len(idle)

    def to_wire(self) -> list[Any]:
        return [_entry_to_wire(entry) for entry in self.producers.values()]

    def changes_to_wire(self) -> tuple[list[Any], list[int]]:
        """The entries of the producers changed since the changes were last
        taken, in ``to_wire``'s form, and the ids of those forgotten since:
        what a checkpoint without the table records (docs/engine-format.md,
        "Producer changes"). Costs what changed, not the table."""
        producers = self.producers
        changes = self.changes.items()
        return (
            [_entry_to_wire(producers[pid]) for pid, written in changes if written],
            [pid for pid, written in changes if not written],
        )

    def take_changes(self) -> None:
        """A checkpoint recorded the table or its changes: start again."""
        self.changes.clear()

    def apply_changes(self, changed: list[Any], gone: list[int]) -> None:
        """Applies what ``changes_to_wire`` recorded: entries replaced whole,
        forgotten ids dropped."""
        for raw in changed:
            entry = _entry_from_wire(raw)
            self.producers[entry.producer_id] = entry
        for producer_id in gone:
            self.producers.pop(producer_id, None)

    @classmethod
    def from_wire(cls, raw: list[Any]) -> ProducerStateTable:
        """Reads ``to_wire``'s form."""
        table = cls()
        for fields in raw:
            entry = _entry_from_wire(fields)
            table.producers[entry.producer_id] = entry
        return table


def _entry_to_wire(entry: ProducerEntry) -> list[Any]:
    return [
        entry.producer_id,
        entry.epoch,
        entry.last_append_ms,
        [list(b) for b in entry.batches],
        entry.coordinator_epoch,
        entry.last_timestamp,
    ]


def _entry_from_wire(fields: list[Any]) -> ProducerEntry:
    """Reads ``_entry_to_wire``'s form; entries of format 1 checkpoints lack
    the coordinator epoch, those of formats 1 and 2 the last timestamp (their
    last batch's is taken: a marker's was not kept)."""
    producer_id, epoch, last_append_ms, batches, *rest = fields
    entry = ProducerEntry(producer_id, epoch, last_append_ms=last_append_ms)
    entry.batches.extend(BatchMeta(*b) for b in batches)
    if rest:
        entry.coordinator_epoch = rest[0]
    if len(rest) > 1:
        entry.last_timestamp = rest[1]
    elif entry.batches:
        entry.last_timestamp = entry.batches[-1].timestamp
    return entry
