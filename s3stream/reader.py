"""The read path from object storage: object index, block fetches, read-ahead.

The manifest says which object holds an offset; the object's index (read
once with one suffix GET, then cached) says which block; blocks are read
whole with ranged GETs into the block cache. The blocks of the reading
stream that the suffix GET brought are kept, so they are not fetched again.

Every read that misses starts a read-ahead: the blocks from the one it needs
on, up to a window, are claimed and fetched by the reader's workers, adjacent
blocks together in one GET of up to a span (in a stream object, which a
sequential reader reads all of, of up to the window and LARGEST_READ_BYTES),
several GETs in flight; the read itself then waits only for its own block.
The window starts small (a random read wastes little) and doubles with every
read that starts where the last one ended, up to ``readahead_bytes`` or the
stream's share of the block cache: a consumer catching up sequentially soon
has many megabytes on their way. A read starting at the first offset of a
stream object fetches the whole object, and the stream objects after it, in
one GET each (those no larger than LARGEST_READ_BYTES), as far as its
window reaches (its limit, for a reader alone: a replay); an index read
takes only as much of a stream object's end as the reader keeps. Indexes
of the objects ahead are read by the workers. Reads never wait behind
uploads and uploads never wait behind reads: they run on different threads.

A damaged object (a block or index failing its checks) is logged once per
object, with the offsets it holds, and every read that needs the damaged
part raises CorruptObject; the object's other blocks are still served. A
block failing its checks is read once more first: bytes damaged on the way
from the store pass the second time.

A range replaced by a log cleaner (``StreamStore.replace_range``) may have
gaps, offsets no block holds: a read there returns the next batch, and a
read in a gap at a range's end goes on at the range's end.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from typing import Any, NamedTuple

from s3stream.block_cache import BlockCache, Loader
from s3stream.errors import CorruptObject
from s3stream.manifest_entries import ObjectMeta
from s3stream.manifest_state import ManifestState
from s3stream.objects import (
    INDEX_ENTRY,
    SUFFIX_READ_BYTES,
    BlockInfo,
    ObjectIndex,
    ObjectKind,
    StoredBatch,
    parse_block,
    parse_footer,
    parse_index,
    read_index,
)
from s3stream.read_ahead_gate import ReadAheadGate
from s3stream.read_positions import ReadPosition, StreamPositions
from s3stream.store import ObjectNotFound, ObjectStore

log = logging.getLogger("tidelog.s3stream")


class _BlockRef(NamedTuple):
    key: str
    info: BlockInfo
    whole: bool
    """The block is in a stream object: a sequential reader reads all of it,
    so one GET may span as much of it as the window holds."""


class _KeepFromTail(NamedTuple):
    """Blocks a reader is about to read, kept from an index's suffix GET:
    the source stream's blocks from ``offset`` on, ``window`` bytes of them."""

    stream_id: int
    offset: int
    window: int
    reach: int
    """How far the reader's window goes from ``offset`` now: what it has
    fetched whole, and how much of an object's end its index read takes."""


INDEX_TAIL_BYTES = 8 * 1024
"""What a reader fetches of a stream object's end where the suffix GET's
data would not be kept (it starts the object, or looks the index up alone,
and its window ends before the last SUFFIX_READ_BYTES): the footer and an
index of some 200 blocks (a stream object of LARGEST_READ_BYTES in blocks
of the default 1 MiB has 16). The 64 KiB otherwise fetched there were
mostly blocks the window's own GETs fetch again (docs/design/0155,
"Read-ahead read before it is evicted"). A larger index is read with a
second GET, as before."""

LARGEST_READ_BYTES = 16 * 1024 * 1024
"""The most one GET of a stream object reads into one buffer, whole or a
span of its blocks (a single block larger than this is still read whole).
glibc maps every allocation of 32 MiB or more afresh, whatever its
threshold says (the server raises it to that most, engine/cli/serve.py),
and unmaps it when freed: a read into such a buffer faults in every page
(on a virtual machine, pages its host must back again), and the free, made
by whichever thread drops the last block of it from the block cache,
unmaps it with the GIL held, some 5 ms for a 64 MiB stream object. Below
it, read buffers come from the heap and are reused once the cache lets
them go (docs/design/0064)."""


class ObjectReader:
    def __init__(
        self,
        store: ObjectStore,
        block_cache: BlockCache,
        executor: Executor,
        *,
        readahead_bytes: int = 64 * 1024 * 1024,
        readahead_span_bytes: int = 16 * 1024 * 1024,
        index_cache_entries: int = 4096,
        gate: ReadAheadGate | None = None,
    ) -> None:
        self.store = store
        self.block_cache = block_cache
        self._executor = executor
        self._readahead_bytes = readahead_bytes
        self._span_bytes = readahead_span_bytes
        self._index_entries = index_cache_entries
        self.gate = gate if gate is not None else ReadAheadGate(0, lambda: False)
        """How many of the workers' loads run at once beside live traffic."""
        self._initial_window = min(readahead_bytes, max(readahead_span_bytes // 2, 1))
        self._indexes: OrderedDict[str, ObjectIndex] = OrderedDict()
        self._index_loads: dict[str, Future[ObjectIndex]] = {}
        self._prefetching: set[int] = set()
        """Streams with a read-ahead waiting for an index on a worker."""
        self._lock = threading.Lock()
        self._reads: dict[int, StreamPositions] = {}
        """Each stream's read positions, each with its own read-ahead
        window: readers of one stream at different places (consumer
        groups, replay jobs) do not reset each other's."""
        self._bytes_read = 0
        """The read clock: bytes all reads returned so far."""
        self._reading_now: dict[int, int] = {}
        """Each stream's reads under way, on any thread: their positions
        are taken out meanwhile, so the positions kept do not count them."""
        self._at_once: OrderedDict[int, int] = OrderedDict()
        """Streams being read at once, least lately read first, each with
        the read clock at its last read: one leaves once the others have
        read a block cache's worth of bytes since (its read-ahead would be
        gone from the cache by then whatever it was), or when it reads to
        its end. Counted in bytes read, not seconds, so readers that poll
        slowly, or run slowly on a loaded machine, still share the cache
        (docs/design/0155)."""
        self.gets = 0
        self._reported: set[str] = set()
        """Keys of the damaged objects logged so far (each is logged once)."""

    def read(
        self,
        state: ManifestState,
        stream_id: int,
        offset: int,
        max_bytes: int,
        end: int,
        at_least_one: bool = True,
    ) -> list[StoredBatch]:
        """Batches of the stream from the one holding ``offset``, up to
        ``max_bytes`` (but one even if bigger, if ``at_least_one``) and not
        past ``end``, from objects only."""
        if self._readahead_bytes <= 0:
            return self._read_from(state, stream_id, offset, max_bytes, end, at_least_one, None)
        position, limit, before = self._window(stream_id, offset)
        out: list[StoredBatch] = []
        try:
            out = self._read_from(
                state, stream_id, offset, max_bytes, end, at_least_one, (position.window, limit)
            )
        except BaseException:
            # A failed read leaves its reader where it was, window and all:
            # its next read, at the same offset, goes on from there with the
            # window it had, not one doubled by a read that returned nothing
            # (a store failing again and again would otherwise grow it to
            # its limit without a byte read). A new reader's position had
            # none (0, which doubles to 0): it is not kept, and the next
            # read starts one afresh, with the first window.
            position.window = before
            self._park(stream_id, position if before else None, offset, end, out)
            raise
        self._park(stream_id, position, out[-1].end_offset if out else offset, end, out)
        return out

    def _read_from(
        self,
        state: ManifestState,
        stream_id: int,
        offset: int,
        max_bytes: int,
        end: int,
        at_least_one: bool,
        window: tuple[int, int] | None,
    ) -> list[StoredBatch]:
        """``read``'s batches, with read-ahead of the window and limit
        given (None: none)."""
        # An index read from its tail keeps what the read returns, or as
        # much as the stream's read-ahead may hold (its window grows to its
        # limit as the reader goes on; the bytes are fetched already, only
        # the cache's room is spent, within the stream's share). A worker's
        # index read for the read-ahead keeps only what is left of its
        # window: the rest of the share is ahead in the object before it.
        # What is fetched for it, whole objects and an index's suffix, is
        # what the position's window reaches, not its limit: a window grows
        # to that read by read, while the stream's other readers and other
        # streams' come to be counted and the limit falls; fetched at once,
        # it pushed their read-ahead out unread (docs/design/0155,
        # "Read-ahead read before it is evicted"). A reader alone (a
        # replay) reaches its limit at once, as before: one GET a stream
        # object.
        keep_bytes = reach = max_bytes
        if window is not None:
            keep_bytes = max(max_bytes, window[1])
            reach = keep_bytes if self._reading_alone(stream_id) else max(max_bytes, window[0])
            found = state.ranges[stream_id].find(offset) if stream_id in state.ranges else None
            if found is not None:  # needed now: read it here, once
                meta = state.objects[found[2]]
                whole = self._reads_whole(meta, offset, found[0], reach)
                if whole and self.cached_index(meta.key) is None:
                    # Within the window, never past the limit: a fetch's
                    # size is what a peer asks for.
                    budget = min(reach, window[1]) - meta.size
                    self._fetch_following_objects(state, stream_id, found[1], budget)
                source = state.source_of(stream_id, found[0], found[2])
                keep = _KeepFromTail(source, offset, keep_bytes, reach)
                self._index_for_read(meta, offset, found[0], keep, whole)
            # The blocks this read returns are fetched with its read-ahead, in
            # spans, not one GET each (up to the limit: a fetch's size is
            # what a peer asks for).
            self._read_ahead(state, stream_id, offset, max(window[0], min(max_bytes, window[1])))
        out: list[StoredBatch] = []
        budget = max_bytes
        try:
            for ref in self._blocks_from(state, stream_id, offset, None, keep_bytes, reach):
                for batch in self._block(ref):
                    if batch.end_offset <= offset:
                        continue
                    if batch.end_offset > end or (
                        (out or not at_least_one) and len(batch.payload) > budget
                    ):
                        break
                    out.append(batch)
                    budget -= len(batch.payload)
                    offset = batch.end_offset
                else:
                    if budget > 0 and offset < end:
                        continue
                break
        except Exception:
            if not out:
                raise
            # What was read is returned; the next read, starting where this
            # one stopped, meets the failure and reports it.
        return out

    def _park(
        self,
        stream_id: int,
        position: ReadPosition | None,
        next_offset: int,
        end: int,
        out: list[StoredBatch],
    ) -> None:
        """Puts a reader's position back once its read is done, where it
        reads next (None: dropped), and advances the read clock by what the
        read returned."""
        with self._lock:
            self._bytes_read += sum(len(batch.payload) for batch in out)
            under_way = self._reading_now.pop(stream_id) - 1
            if under_way:
                self._reading_now[stream_id] = under_way
            positions = self._reads.get(stream_id)
            if positions is not None and position is not None:
                positions.put(position, next_offset, self._bytes_read, next_offset >= end)
            if positions is None or positions.reading() == 0:
                # Forgotten meanwhile (deleted while this read ran), or all
                # its readers caught up: nothing ahead to keep in the cache.
                self._at_once.pop(stream_id, None)

    def _reading_alone(self, stream_id: int) -> bool:
        """Whether the stream is the only one counted as being read, and the
        calling read its only reader: no other position kept, and no other
        read of the stream under way (readers of one stream on several
        fetch threads, each with its position taken out, would each find
        none kept and take the stream's whole share)."""
        with self._lock:
            positions = self._reads.get(stream_id)
            return (
                len(self._at_once) == 1
                and stream_id in self._at_once
                and self._reading_now.get(stream_id) == 1
                and (positions is None or positions.reading() == 0)
            )

    def _fetch_following_objects(
        self, state: ManifestState, stream_id: int, offset: int, budget: int
    ) -> None:
        """Starts whole-object reads of the stream objects that follow on
        from ``offset`` while the caller reads the one before them, up to
        ``budget``: what the reader's limit leaves beside that one (it has
        all of them ahead). A reader catching up then waits for one GET at
        a time only at its start."""
        ranges = state.ranges[stream_id]
        while (found := ranges.find(offset)) is not None and found[0] == offset:
            meta = state.objects[found[2]]
            if not self._reads_whole(meta, offset, found[0], budget):
                return
            budget -= meta.size
            offset = found[1]
            if self.cached_index(meta.key) is None:
                self._submit(self._load_quietly, meta)

    def _submit(self, load: Callable[..., None], *args: Any) -> bool:
        """Runs ``load`` on a worker once the gate admits it. Every load
        is admitted before it registers a load of its own that others may
        wait for (index() does so inside it), so whoever waits for one
        waits for a load that runs. False if the pool is shut down (the
        store is closing; a fetch may still be running): read-ahead is
        only a head start, and the read goes on without it."""
        try:
            self._executor.submit(self._gated, load, *args)
        except RuntimeError:
            return False
        return True

    def _gated(self, load: Callable[..., None], *args: Any) -> None:
        with self.gate.admitted():
            load(*args)

    def _load_quietly(self, meta: ObjectMeta) -> None:
        with contextlib.suppress(Exception):  # a read that needs it reports the failure
            self.index(meta, whole=True)

    def forget_stream(self, stream_id: int) -> None:
        with self._lock:
            self._reads.pop(stream_id, None)
            self._at_once.pop(stream_id, None)

    def _window(self, stream_id: int, offset: int) -> tuple[ReadPosition, int, int]:
        """The reader position reading at ``offset`` and its read-ahead
        window: doubled if a read of the stream ended there (that reader
        goes on), back to the start if not (a new reader, or one that
        sought); never more than its share of the block cache (the limit,
        given beside it): the stream's share, split between the stream's
        readers. Last, the window the position had before this read."""
        with self._lock:
            positions = self._reads.get(stream_id)
            if positions is None:
                positions = self._reads[stream_id] = StreamPositions()
            self._at_once[stream_id] = self._bytes_read
            self._at_once.move_to_end(stream_id)
            self._reading_now[stream_id] = self._reading_now.get(stream_id, 0) + 1
            cache_bytes = self.block_cache.max_bytes
            position = positions.take(offset, self._bytes_read, cache_bytes)
            limit = self._window_limit_locked(positions.reading() + 1)
            before = position.window
            if position.end == offset:
                position.window = min(limit, position.window * 2)
            else:
                position.window = min(limit, self._initial_window)
            return position, limit, before

    def _window_limit(self) -> int:
        with self._lock:
            return self._window_limit_locked()

    def _window_limit_locked(self, readers: int = 1) -> int:
        """``readahead_bytes``, or less when many streams are being read at
        once: all their windows together stay within the block cache (with
        a share to spare), so one reader's read-ahead does not push
        another's out of the cache before it is read (and fetched again).
        A stream's share is split between its ``readers`` (positions)."""
        cache_bytes = self.block_cache.max_bytes
        while self._at_once:
            stream_id, read_at = next(iter(self._at_once.items()))
            if self._bytes_read - read_at < cache_bytes:
                break
            del self._at_once[stream_id]
        share = cache_bytes // (len(self._at_once) + 1) // readers
        return max(1, min(self._readahead_bytes, share))

    def _read_ahead(self, state: ManifestState, stream_id: int, offset: int, window: int) -> None:
        """Claims the blocks from the one holding ``offset`` on, up to
        ``window`` bytes, that nobody has yet, and fetches them on the
        workers, adjacent ones together. Nothing is fetched while at least
        half the window ahead is cached or on its way: the window is then
        refilled in one go when the reader has used half of it, rather than
        a block at a time as the reader moves. An index not yet read is read
        by a worker, which then goes on from there."""
        span: list[_BlockRef] = []
        missing: list[int] = []
        ahead = 0
        refill_below = window // 2
        fetching = False
        for ref in self._blocks_from(state, stream_id, offset, missing):
            if window <= 0:
                break
            window -= ref.info.size
            if not fetching:
                if self.block_cache.ahead((ref.key, ref.info.position)):
                    ahead += ref.info.size
                    continue
                if ahead >= refill_below and ahead > 0:
                    return
                fetching = True
            if not self.block_cache.claim((ref.key, ref.info.position)):
                self._submit_span(span)
                span = []
                continue
            if span and not self._extends(span, ref):
                self._submit_span(span)
                span = []
            span.append(ref)
        self._submit_span(span)
        if missing and window > 0:
            with self._lock:
                if stream_id in self._prefetching:
                    return
                self._prefetching.add(stream_id)
            if not self._submit(self._read_ahead_quietly, state, stream_id, missing[0], window):
                with self._lock:
                    self._prefetching.discard(stream_id)

    def _read_ahead_quietly(
        self, state: ManifestState, stream_id: int, offset: int, window: int
    ) -> None:
        # Only ever a head start: a read that needs this index or block will
        # read it itself and report what went wrong. Read-ahead goes on only
        # if the index arrived, so a failing store is not asked again and
        # again by the workers.
        try:
            found = state.ranges[stream_id].find(offset)
            if found is None:
                return
            source = state.source_of(stream_id, found[0], found[2])
            keep = _KeepFromTail(source, offset, window, window)
            self._index_for_read(state.objects[found[2]], offset, found[0], keep)
        except Exception:
            return
        finally:
            with self._lock:
                self._prefetching.discard(stream_id)
        with contextlib.suppress(Exception):
            self._read_ahead(state, stream_id, offset, window)

    def _extends(self, span: list[_BlockRef], ref: _BlockRef) -> bool:
        last = span[-1]
        size = last.info.position + last.info.size - span[0].info.position
        # No more than half the block cache either: the cache counts a
        # GET's buffer whole only up to that (docs/design/0155), so its
        # bound holds for the bytes a larger one's blocks keep alive.
        most = min(
            LARGEST_READ_BYTES if ref.whole else self._span_bytes,
            max(ref.info.size, self.block_cache.max_bytes // 2),
        )
        return (
            last.key == ref.key
            and last.info.position + last.info.size == ref.info.position
            and size + ref.info.size <= most
        )

    def _submit_span(self, span: list[_BlockRef]) -> None:
        if span and not self._submit(self._load_span, span):
            # Claimed, but no worker will load them: released, so a read
            # waiting for one fails rather than waits for ever, and the next
            # read of it loads it itself.
            closed = RuntimeError("the reader's workers are shut down")
            for ref in span:
                self.block_cache.abandon((ref.key, ref.info.position), closed)

    def _load_span(self, span: list[_BlockRef]) -> None:
        key = span[0].key
        start = span[0].info.position
        end = span[-1].info.position + span[-1].info.size
        try:
            self.gets += 1
            data = memoryview(self._get_range(key, start, end))
        except BaseException as error:
            for ref in span:
                self.block_cache.abandon((key, ref.info.position), error)
            return
        for ref in span:
            block_key = (key, ref.info.position)
            begin = ref.info.position - start
            try:
                batches = parse_block(key, ref.info, data[begin : begin + ref.info.size])
            except BaseException as error:
                self.block_cache.abandon(block_key, error)
                continue
            self.block_cache.fulfil(block_key, ref.info.size, batches)

    def _blocks_from(
        self,
        state: ManifestState,
        stream_id: int,
        offset: int,
        missing: list[int] | None = None,
        keep_bytes: int = 0,
        reach: int = 0,
    ) -> Iterator[_BlockRef]:
        """The stream's blocks from the one holding ``offset`` on, across
        objects. With ``missing``, indexes are not read: the iteration stops
        at the first object whose index is not cached, noting the offset
        there in ``missing``. An index read here keeps up to ``keep_bytes``
        of the stream's blocks its suffix GET brought, the reader's window
        reaching ``reach`` bytes on."""
        ranges = state.ranges.get(stream_id)
        if ranges is None:
            return
        while True:
            found = ranges.find(offset)
            if found is None:
                return
            range_start, range_end, object_id = found
            meta = state.objects[object_id]
            # A shared range is held by its source stream's blocks.
            source = state.source_of(stream_id, range_start, object_id)
            if missing is None:
                keep = _KeepFromTail(source, offset, keep_bytes, reach)
                index = self._index_for_read(meta, offset, range_start, keep)
            else:
                cached = self.cached_index(meta.key)
                if cached is None:
                    missing.append(offset)
                    return
                index = cached
            i = index.find(source, offset)
            while i is not None and i < len(index.blocks):
                info = index.blocks[i]
                if info.stream_id != source or info.start_offset >= range_end:
                    break
                yield _BlockRef(meta.key, info, meta.kind is ObjectKind.STREAM)
                offset = info.end_offset
                i += 1
            if offset < range_end:
                if not _holds_any(index, source, range_start, range_end):
                    # The index disagrees with the manifest.
                    raise CorruptObject(
                        meta.key,
                        f"no block holds stream {stream_id} in [{range_start}, {range_end})",
                    )
                offset = range_end  # a replaced range's records after here were removed

    def gap_end(self, state: ManifestState, stream_id: int, offset: int) -> int | None:
        """If ``offset`` lies in a gap at the end of a range (a replaced range
        whose last records were removed), the end of that range: where a
        read finding nothing at ``offset`` in objects goes on."""
        ranges = state.ranges.get(stream_id)
        found = ranges.find(offset) if ranges is not None else None
        if found is None or found[0] > offset:
            return None
        range_start, range_end, object_id = found
        index = self.index(state.objects[object_id])
        i = index.find(state.source_of(stream_id, range_start, object_id), offset)
        if i is not None and index.blocks[i].start_offset < range_end:
            return None  # there is data after offset in the range: not a gap
        return range_end

    def _block(self, ref: _BlockRef) -> list[StoredBatch]:
        """The block's batches; read from the store once more if its bytes
        fail their checks: bytes damaged on the way (nothing checks a GET's
        body but these checks) pass the second time, and only a block
        failing both is damaged (the failure is not cached, so the second
        get loads it again)."""
        block_key = (ref.key, ref.info.position)
        try:
            return self.block_cache.get(block_key, ref.info.size, self._loader(ref))
        except CorruptObject as first:
            try:
                batches = self.block_cache.get(block_key, ref.info.size, self._loader(ref))
            except CorruptObject as error:
                info = ref.info
                self._report(
                    error,
                    f"stream {info.stream_id} offsets [{info.start_offset}, {info.end_offset})",
                )
                raise
            log.warning(
                "a read of object %s failed its checks and passed when read again: "
                "damaged on the way from the store, not in it (%s)",
                ref.key,
                first.reason,
            )
            return batches

    def _report(self, error: CorruptObject, holding: str) -> None:
        """Logs a damaged object, once per object: what it is and what it holds."""
        with self._lock:
            if error.key in self._reported:
                return
            self._reported.add(error.key)
        log.error("object %s is damaged, %s cannot be read: %s", error.key, holding, error)

    def _loader(self, ref: _BlockRef) -> Loader:
        def load() -> list[StoredBatch]:
            self.gets += 1
            start = ref.info.position
            data = self._get_range(ref.key, start, start + ref.info.size)
            return parse_block(ref.key, ref.info, data)

        return load

    def cached_index(self, key: str) -> ObjectIndex | None:
        with self._lock:
            return self._cached_index_locked(key)

    def _cached_index_locked(self, key: str) -> ObjectIndex | None:
        index = self._indexes.get(key)
        if index is not None:
            self._indexes.move_to_end(key)
        return index

    def _index_for_read(
        self,
        meta: ObjectMeta,
        offset: int,
        range_start: int,
        keep: _KeepFromTail,
        whole: bool | None = None,
    ) -> ObjectIndex:
        """The index of an object a read at ``offset`` needs, whose range for
        the stream starts at ``range_start``; read with the whole object if
        ``whole`` (as the read decided it) or else ``_reads_whole`` for the
        window's reach says so, else from its tail, keeping the blocks of
        ``keep`` the tail brought."""
        try:
            if whole is None:
                whole = self._reads_whole(meta, offset, range_start, keep.reach)
            return self.index(meta, whole=whole, keep=keep)
        except CorruptObject as error:
            held = ", ".join(
                f"stream {r.stream_id} [{r.start_offset}, {r.end_offset})" for r in meta.ranges
            )
            self._report(error, f"its index is unreadable, so all it holds ({held})")
            raise

    def _reads_whole(self, meta: ObjectMeta, offset: int, range_start: int, window: int) -> bool:
        """Whether a read at ``offset`` fetches all of the object in one GET:
        yes for a stream object whose range starts there (a consumer catching
        up from there reads all of it, and one GET is the cheapest way, the
        index coming with it), if it fits ``window`` (as far as the reader's
        window reaches: the whole object is that reader's read-ahead) and
        the stream's share, and is no larger than LARGEST_READ_BYTES (a larger one's index is read
        from its tail, its blocks in spans of up to that)."""
        return (
            offset <= range_start
            and meta.kind is ObjectKind.STREAM
            and self._readahead_bytes > 0
            and meta.size <= min(window, self._window_limit(), LARGEST_READ_BYTES)
        )

    def index(
        self, meta: ObjectMeta, *, whole: bool = False, keep: _KeepFromTail | None = None
    ) -> ObjectIndex:
        """The object's index: cached, or read with one GET of the object's
        tail (once, however many threads ask at the same time). With
        ``whole``, the GET reads the whole object and its blocks go to the
        block cache too; with ``keep``, the blocks a reader is about to read
        that the tail holds go there (a look-up that needs only the index,
        ``gap_end``'s or one by time, keeps none: parsing them would cost
        CPU and cache for nothing)."""
        with self._lock:
            index = self._cached_index_locked(meta.key)
            if index is not None:
                return index
            loading = self._index_loads.get(meta.key)
            if loading is None:
                mine: Future[ObjectIndex] = Future()
                self._index_loads[meta.key] = mine
        if loading is not None:
            return loading.result()
        try:
            index = self._read_whole(meta) if whole else self._read_index(meta, keep)
        except BaseException as error:
            with self._lock:
                del self._index_loads[meta.key]
            mine.set_exception(error)
            raise
        with self._lock:
            del self._index_loads[meta.key]
            self._indexes[meta.key] = index
            while len(self._indexes) > self._index_entries:
                self._indexes.popitem(last=False)
        mine.set_result(index)
        return index

    def _read_whole(self, meta: ObjectMeta, data: bytes | None = None) -> ObjectIndex:
        if data is None:
            self.gets += 1
            # The bytes the manifest says the object has, as a ranged read
            # of it takes them (from its tail): a read by either route
            # serves the same, and never more than the manifest's size.
            data = self.store.get(meta.key, 0, meta.size)
        index = read_index(meta.key, data, len(data))
        if isinstance(index, int):  # cannot happen with the whole object in hand
            raise CorruptObject(meta.key, "index outside the object", index)
        view = memoryview(data)
        # Counted whole, a buffer over half the block cache would push out
        # everything else, its own blocks too; the cache counts such a one's
        # blocks by their sizes, which holds its bound only if they do not
        # keep it alive: each is copied out (a small object read from its
        # tail into a small cache; a whole read is within the window's
        # limit, at most half the cache).
        copy = 2 * len(data) > self.block_cache.max_bytes
        for info in index.blocks:
            raw = view[info.position : info.position + info.size]
            try:
                batches = parse_block(meta.key, info, bytes(raw) if copy else raw)
            except CorruptObject:
                # Not cached: the read that needs this block fetches it again
                # and reports the damage; the object's other blocks are served.
                continue
            block_key = (meta.key, info.position)
            if self.block_cache.claim(block_key):
                self.block_cache.fulfil(block_key, info.size, batches)
        return index

    def _read_index(self, meta: ObjectMeta, keep: _KeepFromTail | None) -> ObjectIndex:
        tail_start = max(0, meta.size - _tail_bytes(meta, keep))
        tail = self._get_range(meta.key, tail_start, meta.size)
        self.gets += 1
        if tail_start == 0:  # a small object: the tail is all of it, blocks too
            return self._read_whole(meta, tail)
        found = read_index(meta.key, tail, meta.size)
        if isinstance(found, int):  # a big index: read exactly the rest of it
            footer = parse_footer(meta.key, tail, meta.size)
            length = footer.block_count * INDEX_ENTRY.size
            index_bytes = self._get_range(meta.key, found, found + length)
            self.gets += 1
            found = parse_index(meta.key, footer, index_bytes)
        if keep is not None:
            self._keep_from_tail(meta.key, found, memoryview(tail), tail_start, keep)
        return found

    def _keep_from_tail(
        self, key: str, index: ObjectIndex, tail: memoryview, tail_start: int, keep: _KeepFromTail
    ) -> None:
        """Caches, unread, the blocks of ``keep`` that lie in the tail just
        fetched: the read that follows would otherwise GET them again.
        Blocks that are less than half the tail, or all of a tail over half
        the block cache, are copied out of it first (one copy of their
        span, or of each block if the span is over half the cache): the
        views would keep all of the tail alive, and the block cache count
        it whole, or not count it (docs/design/0155)."""
        window = keep.window
        kept: list[BlockInfo] = []
        i = index.find(keep.stream_id, keep.offset)
        while i is not None and i < len(index.blocks) and window > 0:
            info = index.blocks[i]
            if info.stream_id != keep.stream_id:
                break
            window -= info.size
            i += 1
            if info.position >= tail_start:
                kept.append(info)
        if not kept:
            return
        first = kept[0].position - tail_start
        last = kept[-1].position + kept[-1].size - tail_start
        source, base = tail, 0
        # A copy of their span over half the cache is no better than the
        # tail: counted by the blocks, kept alive whole by any one of them.
        # Each block is then copied on its own.
        alone = 2 * (last - first) > self.block_cache.max_bytes
        if not alone and (
            2 * (last - first) < len(tail) or 2 * len(tail) > self.block_cache.max_bytes
        ):
            source, base = memoryview(bytes(tail[first:last])), first
        for info in kept:
            begin = info.position - tail_start - base
            raw = source[begin : begin + info.size]
            try:
                batches = parse_block(key, info, bytes(raw) if alone else raw)
            except CorruptObject:
                continue  # the read that needs it fetches it again and reports the damage
            block_key = (key, info.position)
            if self.block_cache.claim(block_key):
                self.block_cache.fulfil(block_key, info.size, batches)

    def _get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of an object. The stores answer a range
        starting past an object's end as they answer a key that is not
        there (ObjectNotFound), which a fetch takes for an object compacted
        away, or missing if the manifest still names it; an object that is
        there but ends before ``start`` is cut short: damage, as a whole
        read of it finds (CorruptObject, with its size)."""
        try:
            return self.store.get(key, start, end)
        except ObjectNotFound as gone:
            try:
                size = self.store.head(key).size
            except ObjectNotFound:
                raise gone from None
            if size >= start:  # put again meanwhile: not damage this read saw
                raise
            raise CorruptObject(
                key, f"object of {size} bytes is cut short: it ends before byte {start}"
            ) from gone

    def forget(self, key: str) -> None:
        with self._lock:
            self._indexes.pop(key, None)


def _tail_bytes(meta: ObjectMeta, keep: _KeepFromTail | None) -> int:
    """How much of the object's end an index read fetches. A stream object
    holds one stream's blocks, in offset order from its first byte on, so
    where the read's offset lies in bytes is about as far into the object
    as it is into its offsets (the index says exactly, once read). A read
    starting in the object's last SUFFIX_READ_BYTES takes the end from
    about there (its own blocks come with the index in one GET, as before,
    and not the bytes before them); a read whose window reaches the
    object's end keeps all the suffix brings, and takes all of it; any
    other takes INDEX_TAIL_BYTES, the window's own GETs fetching its
    blocks (the suffix's blocks were past its window, dropped and fetched
    again). An object of several streams (a larger index, other streams'
    blocks) takes the whole suffix; so does a look-up of the index alone
    of those (its index may be large), where a stream object's takes the
    small tail."""
    if meta.kind is not ObjectKind.STREAM or len(meta.ranges) != 1:
        return SUFFIX_READ_BYTES
    small = min(INDEX_TAIL_BYTES, SUFFIX_READ_BYTES)
    if keep is None:
        return small
    held = meta.ranges[0]
    into = max(0, keep.offset - held.start_offset)
    at = meta.size * into // max(1, held.end_offset - held.start_offset)
    if at >= meta.size - SUFFIX_READ_BYTES:
        return min(SUFFIX_READ_BYTES, meta.size - at + small)
    if at + keep.reach >= meta.size:
        return SUFFIX_READ_BYTES
    return small


def _holds_any(index: ObjectIndex, stream_id: int, start: int, end: int) -> bool:
    """Whether the object has a block of the stream within ``[start, end)``."""
    i = index.find(stream_id, start)
    return i is not None and index.blocks[i].start_offset < end
