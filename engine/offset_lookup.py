"""ListOffsets' special timestamps: which offset each names in a partition.

Kafka's ``UnifiedLog.fetchOffsetByTimestamp`` is the model. tidelog keeps
a partition's recent records locally (the WAL and the log cache) and all of
them, once uploaded, in object storage, so Kafka's tiered-storage names
(KIP-405, KIP-1005) have a natural meaning here:

- EARLIEST (-2): the log start offset;
- LATEST (-1): the high watermark (read_committed: the last stable offset);
- MAX_TIMESTAMP (-3): the first record holding the largest timestamp, with
  that timestamp; transaction markers count, as in Kafka;
- EARLIEST_LOCAL (-4): the first offset readable without object storage;
- LATEST_TIERED (-5): the last offset in committed objects (-1: none yet);
- EARLIEST_PENDING_UPLOAD (-6): the first offset not yet in committed
  objects (KIP-1023; the log start if none was uploaded, the log end if all
  was);
- any other timestamp from 0 on: the first record at or after it; a
  negative one that names none of these is not looked up
  (UNSUPPORTED_VERSION, as in Kafka).

Offsets found by time are answered only below the end the isolation level
allows (Kafka filters them the same way); the others are positions, not
records, and are answered as they are.
"""

from __future__ import annotations

import native
from engine.errors import OffsetOutOfRange
from engine.partition import OffsetAndTimestamp, Partition
from engine.time_index import NO_TIMESTAMP

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4
LATEST_TIERED = -5
EARLIEST_PENDING_UPLOAD = -6


def reads_the_log(timestamp: int) -> bool:
    """Whether looking ``timestamp`` up reads records (which may be in object
    storage): a time, or MAX_TIMESTAMP. The other special timestamps are
    answered from what the partition holds in memory."""
    return timestamp >= 0 or timestamp == MAX_TIMESTAMP


FIRST_VERSION = {
    LATEST: 0,
    EARLIEST: 0,
    MAX_TIMESTAMP: 7,
    EARLIEST_LOCAL: 8,
    LATEST_TIERED: 9,
    EARLIEST_PENDING_UPLOAD: 11,
}
"""The ListOffsets version that introduced each special timestamp: an older
request naming one is answered UNSUPPORTED_VERSION (Kafka's ReplicaManager)."""


def unsupported_timestamp(timestamp: int, version: int) -> bool:
    """Whether ListOffsets ``version`` cannot look ``timestamp`` up: a
    special timestamp newer than the version, or a negative one that names
    nothing (Kafka's ReplicaManager.isListOffsetsTimestampUnsupported
    answers both UNSUPPORTED_VERSION rather than search for a time before
    1970)."""
    return timestamp < 0 and version < FIRST_VERSION.get(timestamp, _NO_VERSION)


_NO_VERSION = 1 << 15
"""Past every version: a negative timestamp no version names."""

NOT_FOUND = OffsetAndTimestamp(-1, -1)


def list_offset(leader: Partition, timestamp: int, committed: bool) -> OffsetAndTimestamp:
    """The offset (and timestamp, for those found by time) ``timestamp`` names."""
    if timestamp == EARLIEST:
        return OffsetAndTimestamp(leader.log_start_offset, -1)
    if timestamp == EARLIEST_LOCAL:
        return OffsetAndTimestamp(leader.store.local_start_offset(leader.stream_id), -1)
    if timestamp == LATEST_TIERED:
        return OffsetAndTimestamp(leader.store.remote_end_offset(leader.stream_id) - 1, -1)
    if timestamp == EARLIEST_PENDING_UPLOAD:
        remote_end = leader.store.remote_end_offset(leader.stream_id)
        return OffsetAndTimestamp(max(remote_end, leader.log_start_offset), -1)
    end = leader.last_stable_offset if committed else leader.high_watermark
    if timestamp == LATEST:
        return OffsetAndTimestamp(end, -1)
    if timestamp == MAX_TIMESTAMP:
        found = max_timestamp_offset(leader)
    else:
        found = leader.offset_for_timestamp(timestamp)
    return found if found is not None and found.offset < end else NOT_FOUND


def max_timestamp_offset(leader: Partition) -> OffsetAndTimestamp | None:
    """The first record holding the partition's largest timestamp (None:
    the partition holds no record).

    The time index knows the largest timestamp ever appended and where to
    start looking for it, so this reads about one index interval. Only if
    retention removed that record does it scan the remaining batch headers
    for the largest one (Kafka likewise looks at the remaining segments)."""
    with leader.lock:
        largest = leader.time_index.max_timestamp
    if largest > NO_TIMESTAMP:
        found = leader.offset_for_timestamp(largest, include_control=True)
        if found is not None:
            return found
        if leader.log_end_offset > leader.high_watermark:
            # Appended, not yet durable: that is where the largest timestamp
            # is, and it cannot be answered yet (Kafka answers none as well,
            # the offset not being below the high watermark).
            return None
    remaining = _largest_remaining_timestamp(leader)
    if remaining is None:
        return None
    return leader.offset_for_timestamp(remaining, include_control=True)


def _largest_remaining_timestamp(leader: Partition) -> int | None:
    """The largest batch max timestamp from the log start to the high watermark."""
    largest: int | None = None
    offset, end = leader.log_start_offset, leader.high_watermark
    while offset < end:
        try:
            fetched = leader.fetch(offset, 1024 * 1024)
        except OffsetOutOfRange:
            offset = leader.log_start_offset  # retention moved the start meanwhile
            continue
        for payload in fetched.records:
            view = memoryview(payload)
            for header in native.scan_batches(view):
                if header.last_offset < offset:
                    continue
                batch_largest = header.max_timestamp
                if header.base_offset < offset:
                    # The log start is inside this batch: only its records
                    # from there on are still in the log.
                    batch = view[header.position : header.position + header.size]
                    records = native.decode_records(batch, max_inflated=leader.max_inflated)
                    batch_largest = max(r.timestamp for r in records if r.offset >= offset)
                if largest is None or batch_largest > largest:
                    largest = batch_largest
        if fetched.next_offset <= offset:
            break
        offset = fetched.next_offset
    return largest
