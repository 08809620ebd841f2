"""What a table may hold of a partition: its committed records below the
remote end, read from a position.

The remote end (the end of what the object store's manifest has committed)
and the last stable offset both fall where an append begins, so the read
stops at a stored batch and never splits a transaction's decision from its
records. Records of aborted transactions and transaction markers are left
out as a read_committed consumer leaves them out (engine/isolation.py).
Records of a masked topic are read masked, as a principal without unmask
reads them (engine/masking/), so a table never holds a clear value of a
masked field.
"""

from __future__ import annotations

from typing import NamedTuple

import native
from engine.isolation import committed_batches
from engine.masking.batches import mask_batch
from engine.masking.documents import Masking
from engine.partition import Partition, PartitionFetch
from native.buffers import BytesLike


class SettledRead(NamedTuple):
    batches: list[BytesLike]
    """The committed stored batches read (no control batches, none of an
    aborted transaction), each ending below the settled end; masked when
    the read was given a masking."""
    position: int
    """Where the read started: records of ``batches`` below it are not the read's."""
    next_offset: int
    """Where the partition's next read starts (past markers and aborted records)."""
    bytes_read: int
    """Stored batch bytes the records came from (before any masking)."""
    skipped: int
    """Offsets below the log start the position had not reached: records
    retention or DeleteRecords removed before the table got them."""
    max_inflated: int
    """The most one batch may inflate to when it is decoded."""


def settled_end(partition: Partition) -> int:
    """The end of what a table may hold: the lower of the remote end and
    the last stable offset."""
    remote_end = partition.store.remote_end_offset(partition.stream_id)
    return min(remote_end, partition.last_stable_offset)


def read_settled(
    partition: Partition, position: int, max_bytes: int, masking: Masking | None = None
) -> SettledRead:
    """The committed batches of ``partition`` from ``position`` up to its
    settled end, about ``max_bytes`` of them (at least one batch when there
    is one), left encoded: the table's columns are decoded from them in
    bulk (columns.py). With ``masking`` (the topic's), each batch is masked
    as a fetch without unmask masks it (same offsets, timestamps and
    transactional fields; docs/governance.md, "Masked replay")."""
    skipped = 0
    log_start = partition.log_start_offset
    if position < log_start:
        skipped, position = log_start - position, log_start
    end = settled_end(partition)
    if position >= end:
        return SettledRead([], position, position, 0, skipped, native.MAX_INFLATED)
    fetched = partition.fetch(position, max_bytes, read_committed=True)
    kept, kept_end = _below(fetched.records, end)
    next_offset = fetched.next_offset if len(kept) == len(fetched.records) else kept_end
    next_offset = min(max(next_offset, position), end)
    aborted = fetched.aborted_transactions
    batches: list[BytesLike] = list(committed_batches(kept, aborted)) if aborted else kept
    if masking is not None:
        batches = [mask_batch(batch, masking, fetched.max_inflated) for batch in batches]
    return SettledRead(
        batches, position, next_offset, sum(len(p) for p in kept), skipped, fetched.max_inflated
    )


def _below(payloads: PartitionFetch | list[BytesLike], end: int) -> tuple[list[BytesLike], int]:
    """The stored batches of ``payloads`` that end at or below ``end``, in
    order up to the first that does not, and where the last of them ends."""
    kept: list[BytesLike] = []
    kept_end = -1
    for payload in payloads if isinstance(payloads, list) else payloads.records:
        view = memoryview(payload)
        cut = 0
        for header in native.scan_batches(view):
            if header.last_offset >= end:
                if cut:
                    kept.append(view[:cut])
                return kept, kept_end
            cut = header.position + header.size
            kept_end = header.last_offset + 1
        kept.append(payload)
    return kept, kept_end
