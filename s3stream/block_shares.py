"""A sealed block's batches read out of the log cache, and an uploaded
block's evicted, in bounded holds of the store's lock.

A block names its share of each stream's one list of cached batches by
where it starts and how many (docs/design/0156); an eviction of an older
block drops the front of those lists, so the upload reads them under the
store's lock. Read in one hold, a 32 MiB block of 100-byte batches over
1,000 streams kept every append and cached read waiting for milliseconds.
Here the block's shares are cut into groups of a bounded number of batches,
and each group is read in a hold of its own (docs/design/0157).

Between two holds, appends (to the active block only), reads, seals, trims,
stream deletions and evictions of uploaded blocks may all run, and none of
them changes what a sealed block that is not uploaded yet holds: a sealed
block's ``firsts`` and ``counts`` are never written again, its batches are
never evicted before it is uploaded (eviction takes uploaded blocks, oldest
first), and a deleted stream's cache is kept, unread, until its last block
is evicted. Only where a share starts in its list moves, and that is looked
up again in every hold.

The eviction after an upload's commit dropped its blocks' batches from
the front of each of their streams' lists in one hold too (4-24 ms for a
32 MiB block); ``LogCache.mark_uploaded`` now only takes the blocks off
and queues their shares, and ``evict_in_groups`` drops them a bounded
group a hold, in queue order, a share longer than a group cut across
holds (docs/design/0157, amended).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from itertools import islice

from s3stream.log_cache import CacheBlock, LogCache
from s3stream.objects import StoredBatch

GROUP_BATCHES = 4096
"""Batches read in one hold: about 0.2 ms of copying references on this
machine, where a whole 32 MiB block of 100-byte batches is 330,000."""

STREAM_COST = 32
"""A stream in a group counts as this many batches: finding its cache,
slicing its list and keeping the slice (some 1.5 us) cost about as much as
copying that many batches' references (some 45 ns each, a cache miss on
each batch), so a block of 10,000 streams of a few batches each is cut
into holds of the same length too."""


ENDS_GROUP_STREAMS = 256
"""Streams whose end offsets in a block are read in one hold: 0.3-1 us a
stream (two dict lookups, an array's item, cache misses on each), so
0.1-0.3 ms a hold, where a block of 10,000 streams took 2.7-6.7 ms in
one."""


SharePiece = tuple[int, int, int]
"""Part of a block's share of one stream: (stream, skip, length), ``length``
batches from the ``skip``-th of the share. A plain tuple: a NamedTuple's
``__new__`` is a Python call, 1 us a stream at 10,000 streams."""


def share_groups(
    block: CacheBlock, group_batches: int = GROUP_BATCHES
) -> Iterator[list[SharePiece]]:
    """The block's shares cut into groups of at most ``group_batches``
    (streams counted as ``STREAM_COST`` each), in the block's stream order;
    a share longer than a group is cut across groups. The block is sealed:
    its counts are read without the lock."""
    group: list[SharePiece] = []
    room = group_batches
    for stream_id, count in block.counts.items():
        skip = 0
        while skip < count:
            if group and room <= STREAM_COST:
                yield group
                group, room = [], group_batches
            taken = max(1, min(count - skip, room - STREAM_COST))
            group.append((stream_id, skip, taken))
            room -= taken + STREAM_COST
            skip += taken
    if group:
        yield group


def read_block_shares(
    lock: AbstractContextManager[object],
    cache: LogCache,
    block: CacheBlock,
    group_batches: int = GROUP_BATCHES,
) -> dict[int, list[StoredBatch]]:
    """The sealed, not yet uploaded ``block``'s batches by stream, in offset
    order (a deleted stream's too), read group by group, each group under
    ``lock`` (the store's) and no longer."""
    out: dict[int, list[StoredBatch]] = {}
    for group in share_groups(block, group_batches):
        with lock:
            cache.read_pieces(block, group, out)
    return out


def read_block_ends(
    lock: AbstractContextManager[object],
    cache: LogCache,
    block: CacheBlock,
    group_streams: int = ENDS_GROUP_STREAMS,
) -> dict[int, int]:
    """Each of the sealed, not yet evicted ``block``'s streams' end offset
    in it, read ``group_streams`` streams a hold of ``lock``: as with its
    batches, only where a share starts moves between holds, and that is
    looked up again in each."""
    out: dict[int, int] = {}
    streams = iter(block.counts)
    while group := list(islice(streams, group_streams)):
        with lock:
            cache.read_ends(block, group, out)
    return out


def evict_in_groups(
    lock: AbstractContextManager[object],
    cache: LogCache,
    group_batches: int = GROUP_BATCHES,
) -> None:
    """Drops the batches of the blocks ``LogCache.mark_uploaded`` took off
    for eviction, at most ``group_batches`` (streams counted as
    ``STREAM_COST``) a hold of ``lock``, and frees each hold's after
    releasing it. Between holds, appends, reads, seals, trims, deletions,
    reads of later blocks and further uploads' evictions (queued behind)
    may run: a stream's list has either dropped a front of an evicted share
    or not, ``dropped`` counts it, and every lookup of a later block's
    share subtracts that in its own hold (docs/design/0157, amended)."""
    more = True
    while more:
        with lock:
            dropped = cache.evict_queued(group_batches, STREAM_COST)
            more = cache.evicting
        del dropped  # freed here, the lock released
