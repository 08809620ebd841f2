"""The log cache: recent appends in memory, grouped into upload blocks.

Appends of every stream go into the active block; when it is big or old
enough it is sealed and handed to the uploader, and a new one starts. Blocks
stay readable after upload so tail reads do no I/O, until the cache is over
its byte bound and the oldest uploaded block is evicted. Not thread-safe:
the stream store calls it under its lock.

Each stream's cached batches are one list for the whole cache, and a block
names its share of each stream by two numbers (where it starts in that list
and how many), not by lists of its own: a dict of ints is left untracked by
the cyclic collector, and an array of ends is visited as one object, so a
block adds nothing a collection walks, where a list a stream a block was
made with every block and walked by every middle collection
(docs/design/0156).
"""

from __future__ import annotations

import bisect
import time
from array import array
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from s3stream.objects import StoredBatch
from wal import Position


@dataclass
class CacheBlock:
    block_id: int
    created: float = field(default_factory=time.monotonic)
    size: int = 0
    firsts: dict[int, int] = field(default_factory=dict)
    """Per stream, the index of its first batch in this block, counted in its
    ``_StreamCache`` from the first batch ever put there (``dropped`` too)."""
    counts: dict[int, int] = field(default_factory=dict)
    """Per stream, how many of its batches this block holds."""
    trims: dict[int, int] = field(default_factory=dict)
    """Stream start offsets moved while this block was active."""
    unconfirmed: int = 0
    """Records of this block not yet durable in the WAL."""
    last_position: Position | None = None
    """The WAL position of this block's last record, once all are durable."""
    sealed: bool = False
    uploaded: bool = False

    def confirm(self, position: Position) -> None:
        """One of this block's records became durable at ``position``."""
        self.unconfirmed -= 1
        self.note_position(position)

    def note_position(self, position: Position) -> None:
        if self.last_position is None or position > self.last_position:
            self.last_position = position

    @property
    def empty(self) -> bool:
        return not self.counts and not self.trims

    @property
    def ready(self) -> bool:
        """Sealed, and every record is durable in the WAL: it may be uploaded."""
        return self.sealed and self.unconfirmed == 0


class _StreamCache:
    """One stream's cached batches in offset order: the batches, and their
    end offsets as an array (searched by bisect; a collection visits its
    type, not its items)."""

    __slots__ = ("batches", "dropped", "ends", "gone")

    def __init__(self) -> None:
        self.ends = array("q")
        self.batches: list[StoredBatch] = []
        self.dropped = 0
        """Batches dropped from the front since the first: a block's
        ``firsts`` minus this is where its share starts in ``batches``."""
        self.gone = 0
        """Slots at the front of ``batches`` whose batches an eviction
        cutting a share across holds has handed back already (``_GONE`` in
        them): the first batch still cached is ``batches[gone]``. They are
        deleted with the share's last piece: deleting each piece moved the
        rest of the list (and of ``ends``) a hold, so that one hot stream's
        eviction cost its list's length a hold, some hundred times a block."""

    def share(self, first: int, count: int) -> list[StoredBatch]:
        start = first - self.dropped
        return self.batches[start : start + count]

    def share_end(self, first: int, count: int) -> int:
        """The end offset of the last batch of a block's share."""
        return self.ends[first - self.dropped + count - 1]


_GONE = StoredBatch(-1, -1, b"")
"""What a slot an eviction emptied holds until the list's front is deleted."""


class LogCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.unuploaded_bytes = 0
        self._next_block = 1
        self._blocks: deque[CacheBlock] = deque()
        self._streams: dict[int, _StreamCache] = {}
        self._deleted: dict[int, _StreamCache] = {}
        """Deleted streams' caches, unread, until their blocks are evicted."""
        self._evicting: deque[Iterator[tuple[int, int]]] = deque()
        """The shares (stream, count) of the blocks taken off for eviction
        whose batches are not all dropped yet, block by block, oldest first:
        ``evict_queued`` drops them a bounded part a hold (0157, amended)."""
        self._cut: tuple[int, int] | None = None
        """The rest (stream, count) of a share whose front the last
        ``evict_queued`` dropped, the first to drop in the next."""
        self.active = self._new_block()

    def _new_block(self) -> CacheBlock:
        block = CacheBlock(self._next_block)
        self._next_block += 1
        self._blocks.append(block)
        return block

    # -- writing ------------------------------------------------------------

    def add(self, stream_id: int, batch: StoredBatch) -> CacheBlock:
        block = self.active
        counts = block.counts
        # CacheBlock.empty written out: a property, a Python call an append.
        if not counts and not block.trims:
            block.created = time.monotonic()  # the upload age counts from the first append
        _, end, payload, _ = batch  # one unpack: each field by name is a descriptor call
        cache = self._streams.get(stream_id)
        if cache is None:
            cache = self._first_end(stream_id, end)
        else:
            # First: the one step that can refuse (an end past int64 raises
            # OverflowError), before anything counts the batch, so that a
            # refusal leaves every block's firsts and counts true.
            cache.ends.append(end)
        size = len(payload)
        block.size += size
        self.size += size
        self.unuploaded_bytes += size
        count = counts.get(stream_id)
        if count is None:
            block.firsts[stream_id] = cache.dropped + len(cache.batches)
            counts[stream_id] = 1
        else:
            counts[stream_id] = count + 1
        cache.batches.append(batch)
        return block

    def _first_end(self, stream_id: int, end: int) -> _StreamCache:
        """The cache of a stream not readable here yet, with ``end``
        appended to its ends; made readable only once that took."""
        cache = self._deleted.get(stream_id)  # an append that raced its stream's deletion
        if cache is not None:
            cache.ends.append(end)
            return cache
        cache = _StreamCache()
        cache.ends.append(end)
        self._streams[stream_id] = cache
        return cache

    def batches_of(self, block: CacheBlock) -> dict[int, list[StoredBatch]]:
        """The block's batches by stream, in offset order (a deleted
        stream's too, until the block is evicted)."""
        out: dict[int, list[StoredBatch]] = {}
        self.read_pieces(block, [(s, 0, count) for s, count in block.counts.items()], out)
        return out

    def read_pieces(
        self,
        block: CacheBlock,
        pieces: Iterable[tuple[int, int, int]],
        out: dict[int, list[StoredBatch]],
    ) -> None:
        """Adds to ``out`` each piece (stream, skip, count) of the block's
        shares: ``count`` of the stream's batches in the block from its
        ``skip``-th, after what ``out`` has of that stream already
        (s3stream/block_shares.py reads a block in pieces, a hold each)."""
        firsts = block.firsts
        for stream_id, skip, count in pieces:
            batches = self._holding(stream_id).share(firsts[stream_id] + skip, count)
            got = out.get(stream_id)
            if got is None:
                out[stream_id] = batches
            else:
                got += batches

    def ends_of(self, block: CacheBlock) -> dict[int, int]:
        """Each of the block's streams' end offset in it (the block not
        evicted yet)."""
        out: dict[int, int] = {}
        self.read_ends(block, block.counts, out)
        return out

    def read_ends(self, block: CacheBlock, stream_ids: Iterable[int], out: dict[int, int]) -> None:
        """Adds to ``out`` each of ``stream_ids``' end offset in the block
        (s3stream/block_shares.py reads them a group of streams a hold)."""
        firsts = block.firsts
        counts = block.counts
        for stream_id in stream_ids:
            cache = self._holding(stream_id)
            out[stream_id] = cache.share_end(firsts[stream_id], counts[stream_id])

    def _holding(self, stream_id: int) -> _StreamCache:
        """The cache of a stream a block holds batches of: a deleted
        stream's too, until that block is evicted."""
        return self._streams.get(stream_id) or self._deleted[stream_id]

    def add_trim(self, stream_id: int, start_offset: int) -> CacheBlock:
        if self.active.empty:
            self.active.created = time.monotonic()
        self.active.trims[stream_id] = start_offset
        return self.active

    def seal(self) -> CacheBlock | None:
        """Seals the active block (if it holds anything) and starts a new one."""
        block = self.active
        if block.empty:
            return None
        block.sealed = True
        self.active = self._new_block()
        return block

    def next_to_upload(self) -> CacheBlock | None:
        """The oldest sealed block not uploaded yet (uploads go in order)."""
        for block in self._blocks:
            if not block.uploaded:
                return block if block.sealed else None
        return None

    def sealed_after(self, block: CacheBlock) -> CacheBlock | None:
        """The block uploaded next after ``block``, if it is sealed already."""
        for other in self._blocks:
            if other.block_id == block.block_id + 1:
                return other if other.sealed else None
        return None

    def unuploaded_appends(self) -> int:
        """Appends in blocks not uploaded yet (the active block included)."""
        return sum(
            count for block in self._blocks if not block.uploaded for count in block.counts.values()
        )

    def oldest_unuploaded(self) -> float | None:
        """When (time.monotonic) the oldest block not uploaded yet got its
        first append; None when everything is uploaded."""
        for block in self._blocks:
            if not block.uploaded and not block.empty:
                return block.created
        return None

    def unuploaded_bytes_of(self, stream_id: int, from_offset: int) -> int:
        """The bytes of the stream's batches from ``from_offset`` in blocks not
        uploaded yet (the active block included)."""
        cache = self._streams.get(stream_id) or self._deleted.get(stream_id)
        if cache is None:
            return 0
        return sum(
            len(batch.payload)
            for block in self._blocks
            if not block.uploaded and stream_id in block.counts
            for batch in cache.share(block.firsts[stream_id], block.counts[stream_id])
            if batch.base_offset >= from_offset
        )

    def mark_uploaded(self, block: CacheBlock) -> None:
        """Marks the block uploaded and takes off the blocks the byte bound
        asks to evict, oldest first: from here they count for nothing and
        no block lookup finds them, but their batches stay in their
        streams' lists until ``evict_queued`` drops them, a bounded part a
        hold of the store's lock. Dropping a 32 MiB block's 330,000 small
        batches in one hold took 4-24 ms (copying their references), which
        every append and cached read waited out (docs/design/0157)."""
        block.uploaded = True
        self.unuploaded_bytes -= block.size
        while self.size > self.max_bytes and self._blocks and self._blocks[0].uploaded:
            evicted = self._blocks.popleft()
            # A sealed block's counts are never written again: iterated
            # across holds. Queued in order, as each stream's list may only
            # drop its front.
            self._evicting.append(iter(evicted.counts.items()))
            self.size -= evicted.size

    @property
    def evicting(self) -> bool:
        """Whether evicted blocks still have batches in their streams' lists."""
        return self._cut is not None or bool(self._evicting)

    def evict_queued(self, budget: int, stream_cost: int) -> list[list[StoredBatch]]:
        """Drops the front of the queued evictions' shares, at most
        ``budget`` batches' worth (a stream counted as ``stream_cost``,
        one batch at least), a share longer than that cut across calls;
        gives back the dropped batches, for the caller to free once it
        has released the store's lock."""
        dropped: list[list[StoredBatch]] = []
        room = budget
        streams, deleted, queue = self._streams, self._deleted, self._evicting
        while not dropped or room > stream_cost:
            if self._cut is not None:
                stream_id, count = self._cut
                self._cut = None
            else:
                if not queue:
                    break
                share = next(queue[0], None)
                if share is None:
                    queue.popleft()
                    continue
                stream_id, count = share
            taken = room - stream_cost  # min and max written out: a call each, 10,000 a block
            if taken >= count:
                taken = count
            elif taken < 1:
                taken = 1
            # Looked up in this hold: the stream may have been deleted
            # since the block was taken off (its cache kept, unread).
            cache = streams.get(stream_id) or deleted[stream_id]
            batches = cache.batches
            # The front dropped here, not in a method of _StreamCache: a
            # Python call a stream was a third of the eviction's holds.
            start = cache.gone
            end = start + taken
            dropped.append(batches[start:end])
            if taken < count:
                # The list's length kept: its slots emptied in place, the
                # front deleted once, with the share's last piece.
                batches[start:end] = [_GONE] * taken
                cache.gone = end
                self._cut = (stream_id, count - taken)
            else:
                del cache.ends[:end], batches[:end]
                cache.dropped += end
                cache.gone = 0
                if not batches:
                    del (streams if stream_id in streams else deleted)[stream_id]
            room -= taken + stream_cost
        return dropped

    def evict_all(self) -> list[list[StoredBatch]]:
        """Drops every queued eviction's batches at once, for a caller no
        append waits on (tests)."""
        return self.evict_queued(1 << 62, 0)

    def drop_stream(self, stream_id: int) -> None:
        """Forgets a deleted stream for reads (its upload blocks skip it too);
        its batches stay where its blocks find them until those are evicted."""
        cache = self._streams.pop(stream_id, None)
        if cache is not None:
            self._deleted[stream_id] = cache

    # -- reading ------------------------------------------------------------

    def first_offset(self, stream_id: int) -> int | None:
        """The first offset of the stream still cached (None: none is)."""
        cache = self._streams.get(stream_id)
        if cache is None or not cache.batches:
            return None
        return cache.batches[cache.gone].base_offset

    def covers(self, stream_id: int, offset: int) -> bool:
        cache = self._streams.get(stream_id)
        return cache is not None and cache.batches[cache.gone].base_offset <= offset

    def read(
        self, stream_id: int, offset: int, max_bytes: int, end: int, at_least_one: bool = True
    ) -> list[StoredBatch]:
        """Batches from the one holding ``offset`` up to ``max_bytes`` (but one
        even if bigger, if ``at_least_one``) that end at or before ``end``; the
        caller checked ``covers``."""
        cache = self._streams[stream_id]
        i = bisect.bisect_right(cache.ends, offset, cache.gone)
        out: list[StoredBatch] = []
        budget = max_bytes
        while i < len(cache.batches):
            batch = cache.batches[i]
            if batch.end_offset > end or (
                (out or not at_least_one) and len(batch.payload) > budget
            ):
                break
            out.append(batch)
            budget -= len(batch.payload)
            i += 1
        return out
