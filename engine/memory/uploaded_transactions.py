"""Where a partition's stable log ends, and which of its transactions were
aborted, from what the object store holds committed alone (``tidelog
lookup --isolation-level read_committed``).

A serving partition keeps both in memory (engine/partition_txns.py) and
writes them whole into every checkpoint of its state stream (open
transactions and the aborted-transaction index as of the checkpoint's
end: docs/engine-format.md, "Partition state"). A reader of the bucket
does what recovery does: it reads the partition's last uploaded
checkpoint, then replays only the batches after it (a transactional batch
opens its producer's transaction, a marker ends it). A transaction still
open at the end (its marker not uploaded yet, or not written yet) holds
the stable end at its first offset. Without a checkpoint it can use
(none uploaded, or one of a newer format) it replays the partition from
its log start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import msgpack

import native
from engine import markers
from engine.checkpoint_records import NEWEST_VERSION, PART_VERSION, checkpoints, last_part
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
    state_stream_id: int,
    start: int,
    end: int,
    current: Callable[[], ManifestState] | None = None,
) -> StableView:
    """The last stable offset of data stream ``stream_id``'s ``[start,
    end)`` as committed in ``state``, and the aborted transactions in it,
    from the last checkpoint in ``state_stream_id`` (the partition's state
    stream) and the batches after it."""
    txns, replay_from = _last_checkpoint(store, state, state_stream_id, end, current)
    replay_from = max(replay_from, start)
    if replay_from < end:
        rest = Candidates([], [(replay_from, end)])
        for stored in committed_batches(store, state, stream_id, rest, current):
            payload = memoryview(stored.payload)
            for header in native.scan_batches(payload):
                # Batches below the checkpoint's end are in its state already.
                if not header.is_transactional or header.base_offset < replay_from:
                    continue
                if not header.is_control:
                    txns.on_batch(header.producer_id, header.base_offset)
                    continue
                marker = markers.decode(payload[header.position : header.position + header.size])
                if marker is not None:
                    txns.on_marker(
                        header.producer_id, header.base_offset, marker.commit, durable=True
                    )
    txns.drop_before(start)
    return StableView(txns.first_unstable_offset(end, start), txns.aborted)


def _last_checkpoint(
    store: ObjectStore,
    state: ManifestState,
    state_stream_id: int,
    end: int,
    current: Callable[[], ManifestState] | None,
) -> tuple[PartitionTransactions, int]:
    """The transactions in the last committed checkpoint that describes no
    batch past ``end``, and the data offset it describes them to; none and
    0 if there is no such checkpoint. Read newest first, one append at a
    time: every checkpoint holds the transactions whole, so the newest
    alone is read unless it describes batches not committed yet (a
    checkpoint is appended after the batches it covers, so at most a few
    are passed over)."""
    meta = state.streams.get(state_stream_id)
    if meta is None:
        return PartitionTransactions(), 0
    offset = meta.end_offset
    while offset > meta.start_offset:
        offset -= 1
        record = _checkpoint_at(store, state, state_stream_id, offset, current)
        count = last_part(record)
        if 0 < count <= offset + 1 - meta.start_offset:
            # The last part of a checkpoint in parts: read the run from its
            # first part, as recovery does (none if it is not whole).
            first = offset + 1 - count
            run = [
                _checkpoint_at(store, state, state_stream_id, o, current)
                for o in range(first, offset)
            ]
            record = _whole([*run, record])
            if record is None:
                continue
            if record["end"] > end:
                # Its parts were just read: the next to look at is the
                # append before its part 0, not its parts again one by one.
                offset = first
                continue
        elif record is not None and record["v"] == PART_VERSION:
            continue  # a part of a run never completed, or not its last
        if record is None or record["v"] > NEWEST_VERSION:
            break  # a format this reader does not know: replay from the log start
        if record["end"] > end:
            continue
        # Format 1 predates transactions: a partition then had none.
        txns = record.get("txns")
        if txns is None:
            return PartitionTransactions(), record["end"]
        return PartitionTransactions.from_wire(txns), record["end"]
    return PartitionTransactions(), 0


def _checkpoint_at(
    store: ObjectStore,
    state: ManifestState,
    state_stream_id: int,
    offset: int,
    current: Callable[[], ManifestState] | None,
) -> dict[str, Any] | None:
    one = Candidates([], [(offset, offset + 1)])
    for stored in committed_batches(store, state, state_stream_id, one, current):
        if stored.base_offset == offset:
            record = msgpack.unpackb(stored.payload, raw=False, strict_map_key=False)
            return record if isinstance(record, dict) else None
    return None


def _whole(records: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The checkpoint the parts ``records`` (oldest first) make, if they are
    one run whole and of a format this reader knows."""
    if any(record is None for record in records):
        return None
    try:
        read = list(checkpoints(records, "a checkpoint in parts"))
    except ValueError:
        return None
    return read[-1] if read else None
