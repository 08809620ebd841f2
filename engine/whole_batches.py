"""A fetch's answer cut to whole record batches, Kafka's unit of a fetch.

The stream store keeps an append as it came: one stored entry that may
hold several record batches (``Engine.produce`` or ``submit`` of
concatenated batches; a Kafka client's Produce carries one), and it
answers a read with whole entries, from the log cache and from objects
alike. Kafka answers a fetch batch by batch (``LocalLog.read``): from the
batch holding the fetch offset, whole batches up to ``max_bytes``, the
first one whole even if it is larger. So the first entry of a read is cut
here at batch boundaries: batches of it below the offset are left out (a
fetch resumed inside an entry would otherwise get them again), and so are
its batches past ``max_bytes``. The store counts entries against
``max_bytes``, so only the first entry can pass it; the entries after it
are whole and fit.
"""

from __future__ import annotations

import native
from s3stream.objects import StoredBatch


def whole_batches(
    entries: list[StoredBatch], offset: int, max_bytes: int, next_offset: int
) -> tuple[list[StoredBatch], int]:
    """``entries`` (a read from ``offset``) with the first one cut to the
    batch holding ``offset`` and the batches after it that fit in
    ``max_bytes``; and where the next fetch starts (``next_offset``
    unless the cut left batches out at the end)."""
    if not entries:
        return entries, next_offset
    first = entries[0]
    if first.base_offset >= offset and len(first.payload) <= max_bytes:
        return entries, next_offset  # nothing below the offset, nothing over the limit
    cut = _cut(first, offset, max_bytes)
    if cut is first:
        return entries, next_offset
    if cut.end_offset < first.end_offset:  # batches left out at the end: nothing follows
        return [cut], cut.end_offset
    return [cut, *entries[1:]], next_offset


def _cut(entry: StoredBatch, offset: int, max_bytes: int) -> StoredBatch:
    headers = native.scan_batches(entry.payload)
    kept = [header for header in headers if header.last_offset >= offset]
    if not kept:  # cannot be: the store answers with the entry holding the offset
        return entry
    size = kept[0].size  # the first batch whole, whatever its size
    count = 1
    while count < len(kept) and size + kept[count].size <= max_bytes:
        size += kept[count].size
        count += 1
    start = kept[0].position
    if start == 0 and size == len(entry.payload):
        return entry
    last = kept[count - 1]
    # The entry's own end when its last batch is kept: only a cut at the
    # back moves where the next fetch starts.
    end = entry.end_offset if count == len(kept) else last.last_offset + 1
    payload = memoryview(entry.payload)[start : start + size]
    return StoredBatch(kept[0].base_offset if start else entry.base_offset, end, payload)
