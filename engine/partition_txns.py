"""A partition's transactions: which are open, where the stable log ends,
and which were aborted.

A producer's transaction in a partition begins at its first transactional
batch and ends at the marker the coordinator writes (commit or abort). The
last stable offset (LSO) is the first offset of the earliest transaction
not yet known to be complete, or the high watermark: a read_committed
consumer reads only below it. A transaction counts as complete once its
marker is durable, so the LSO never passes data whose fate a crash could
still change. The aborted index lists (producer id, first offset, marker
offset) of every aborted transaction, so a fetch can tell a read_committed
consumer which batches to drop, as Kafka's transaction index does.

This state is kept in the partition's checkpoints and rebuilt by replaying
batch headers after the last one (docs/transactions.md).
"""

from __future__ import annotations

import bisect
from typing import Any, NamedTuple


class AbortedTxn(NamedTuple):
    producer_id: int
    first_offset: int
    last_offset: int
    """The offset of the abort marker."""


class PartitionTransactions:
    """Not thread safe: the partition holds its lock around every call."""

    def __init__(self) -> None:
        self.ongoing: dict[int, int] = {}
        """Producer id -> first offset of its open transaction."""
        self.completing: list[tuple[int, int]] = []
        """(first offset, marker offset) of ended transactions whose marker
        is not durable yet."""
        self.aborted: list[AbortedTxn] = []
        """Ordered by marker offset."""

    def on_batch(self, producer_id: int, base_offset: int) -> bool:
        """A transactional batch is appended at ``base_offset``; whether it
        opens the producer's transaction here."""
        if producer_id in self.ongoing:
            return False
        self.ongoing[producer_id] = base_offset
        return True

    def forget_open(self, producer_id: int) -> None:
        """The batch that opened the producer's transaction was refused by
        the store: it is not open after all."""
        del self.ongoing[producer_id]

    def on_marker(
        self, producer_id: int, marker_offset: int, commit: bool, durable: bool = False
    ) -> AbortedTxn | None:
        """A marker was appended; returns the aborted entry it adds, if any.
        A marker for a producer with no open transaction (a marker written
        again after a restart) changes nothing."""
        first = self.ongoing.get(producer_id)
        if first is None:
            return None
        # Completing before no longer open: Partition.stable_offset reads
        # both without the lock, and must never find the transaction in
        # neither while its marker is not durable.
        if not durable:
            self.completing.append((first, marker_offset))
        del self.ongoing[producer_id]
        if commit:
            return None
        entry = AbortedTxn(producer_id, first, marker_offset)
        self.aborted.append(entry)
        return entry

    def first_unstable_offset(self, high_watermark: int, log_start: int) -> int:
        """The last stable offset, given the partition's high watermark and
        log start: never below the log start (DeleteRecords may pass an
        open transaction's first offset; Kafka's
        UnifiedLog.maybeIncrementFirstUnstableOffset clamps it there)."""
        if not self.ongoing and not self.completing:
            return high_watermark
        if self.completing:
            self.completing = [c for c in self.completing if c[1] >= high_watermark]
        lowest = min(self.ongoing.values(), default=high_watermark)
        for first, _ in self.completing:
            lowest = min(lowest, first)
        return min(max(lowest, log_start), high_watermark)

    def aborted_between(self, start: int, end: int) -> list[AbortedTxn]:
        """Aborted transactions that overlap [start, end): their marker is at
        or after ``start`` and their first offset before ``end`` (Kafka's
        collectAbortedTransactions), ordered by first offset."""
        if start >= end:
            return []
        index = bisect.bisect_left(self.aborted, start, key=lambda t: t.last_offset)
        found = [t for t in self.aborted[index:] if t.first_offset < end]
        found.sort(key=lambda t: t.first_offset)
        return found

    def drop_before(self, offset: int) -> None:
        """Forgets aborted transactions whose marker is below ``offset`` (the
        log start): nothing a fetch can read refers to them."""
        if self.aborted and self.aborted[0].last_offset < offset:
            index = bisect.bisect_left(self.aborted, offset, key=lambda t: t.last_offset)
            del self.aborted[:index]

    def forget(self, entries: set[AbortedTxn]) -> None:
        """Removes aborted entries whose marker the log cleaner is removing."""
        self.aborted = [t for t in self.aborted if t not in entries]

    def to_wire(self) -> dict[str, Any]:
        return {
            "ongoing": [[pid, first] for pid, first in self.ongoing.items()],
            "aborted": [list(t) for t in self.aborted],
        }

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> PartitionTransactions:
        txns = cls()
        txns.ongoing = {pid: first for pid, first in raw["ongoing"]}
        txns.aborted = [AbortedTxn(*t) for t in raw["aborted"]]
        return txns
