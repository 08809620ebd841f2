"""Where a partition's stable log ends, and which of its transactions were
aborted, from its committed batches in the object store alone (``tidelog
lookup --isolation-level read_committed``).

A serving partition keeps both in memory (engine/partition_txns.py); a
reader of the bucket has only the batches. Nothing indexes where a
transaction ends, so every batch from the log start to the committed end
is read, once, and replayed as the partition replays its log: a
transactional batch opens its producer's transaction, a marker ends it.
A transaction still open at the end (its marker not uploaded yet, or not
written yet) holds the stable end at its first offset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import native
from engine import markers
from engine.partition_txns import AbortedTxn, PartitionTransactions
from s3stream import ObjectStore
from s3stream.lookup import Candidates, committed_batches
from s3stream.manifest_state import ManifestState


class StableView(NamedTuple):
    last_stable_offset: int
    aborted: list[AbortedTxn]
    """Ordered by marker offset."""


def stable_view(
    store: ObjectStore,
    state: ManifestState,
    stream_id: int,
    start: int,
    end: int,
    current: Callable[[], ManifestState] | None = None,
) -> StableView:
    """The last stable offset of the stream's ``[start, end)`` as committed
    in ``state``, and the aborted transactions in it."""
    txns = PartitionTransactions()
    everything = Candidates([], [(start, end)])
    for stored in committed_batches(store, state, stream_id, everything, current):
        payload = memoryview(stored.payload)
        for header in native.scan_batches(payload):
            if not header.is_transactional or header.base_offset < start:
                continue
            if not header.is_control:
                txns.on_batch(header.producer_id, header.base_offset)
                continue
            marker = markers.decode(payload[header.position : header.position + header.size])
            if marker is not None:
                txns.on_marker(header.producer_id, header.base_offset, marker.commit, durable=True)
    return StableView(txns.first_unstable_offset(end, start), txns.aborted)
