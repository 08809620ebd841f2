"""Reads of the stream store: the tail from the log cache (under the
store's lock, at once), the rest from objects through the ObjectReader;
async reads of objects run on a pool of their own, so the event loop never
waits for object storage, and are waited for at most
``remote_fetch_max_wait_ms``: a read not finished by then goes on, one per
stream and offset, shared by the fetches that ask for it meanwhile
(docs/design/0060)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import NamedTuple

from s3stream.config import MiB
from s3stream.errors import MISSING, CorruptObject, OffsetOutOfRange, ReadPending, StreamNotFound
from s3stream.manifest import Manifest
from s3stream.manifest_state import ManifestState
from s3stream.objects import StoredBatch
from s3stream.read_waits import ReadWaits
from s3stream.reader import ObjectReader
from s3stream.replay_pace import ReplayPace
from s3stream.store import ObjectNotFound, ObjectStoreError
from s3stream.store_state import StoreState

log = logging.getLogger("tidelog.s3stream")

REFUSAL_LOG_INTERVAL_S = 60.0
"""How often a store refusing reads is logged while it goes on refusing."""


class FetchResult(NamedTuple):
    batches: list[StoredBatch]
    next_offset: int
    """Where the next sequential fetch starts."""
    start_offset: int
    end_offset: int
    """The stream's locally durable end (its high watermark)."""


class PendingReads(NamedTuple):
    answered_early: int
    """Async and bounded fetches answered before their object read ended
    (remote_fetch_max_wait_ms)."""
    started: int
    """Async and bounded fetches' object reads started (one per stream and offset in flight)."""
    under_way: int
    """The object reads under way now, those no fetch waits for any more too."""


class Fetcher:
    def __init__(
        self,
        state: StoreState,
        manifest: Manifest,
        reader: ObjectReader,
        pool: ThreadPoolExecutor,
        pace: ReplayPace,
        check_fence: Callable[[], None],
        max_wait_s: float = 0.5,
    ) -> None:
        self.log_cache_hits = 0
        """Reads answered by the log cache (counted under the store's lock)."""
        self.log_cache_misses = 0
        """Reads that went to objects (the block cache, then the object store)."""
        self.read_errors = 0
        """Reads that failed for an object-store error (the caller's retry
        may succeed: at once for a transient one, once the operator fixes
        the store for another); counted under the store's lock."""
        self._refusal_logged_at: float | None = None
        """When a refused read (an error no retry gets past) was last logged."""
        self._state = state
        self._manifest = manifest
        self._reader = reader
        self._pool = pool
        """The fetch threads (wal/thread_priority.py); shut down by close."""
        self.pace = pace
        """Live traffic seen, and the rest an object read takes beside it."""
        self._check_fence = check_fence
        """Raises Fenced if another writer took the bucket over (a store
        error if that cannot be known now)."""
        self.reads_pending = 0
        """Async and bounded fetches answered before their object read ended
        (guarded by the store's lock)."""
        self.object_reads_started = 0
        """Async fetches' object reads started (guarded by the store's lock):
        fewer than the fetches that went to objects by those that shared one."""
        self._max_wait_s = max_wait_s
        """How long an async fetch waits for its object read (remote_fetch_max_wait_ms)."""
        self._waits: ReadWaits[FetchResult] | None = None
        """The waits for object reads of the event loop that fetched last."""
        self._object_reads: dict[tuple[int, int], Future[FetchResult]] = {}
        """The object reads under way, by stream and offset: a fetch that
        finds one waits for it instead of starting another, so a client
        asking again while the store stalls adds no read (guarded by the
        store's lock)."""
        self._replaced_below: dict[int, int] = {}
        """Per stream, the end of the last replaced range: reads below it skip
        the log cache, which may still hold the bytes the replace removed
        (guarded by the store's lock)."""

    def note_replaced_locked(self, stream_id: int, end: int) -> None:
        """A range of the stream ending at ``end`` was replaced in objects."""
        self._replaced_below[stream_id] = max(self._replaced_below.get(stream_id, 0), end)

    def forget_stream_locked(self, stream_id: int) -> None:
        self._replaced_below.pop(stream_id, None)

    def close(self) -> None:
        """Waits for the object reads under way."""
        self._pool.shutdown(wait=True)

    def fetch(self, stream_id: int, offset: int, max_bytes: int = 1 * MiB) -> FetchResult:
        """Stored batches from the one holding ``offset``: up to ``max_bytes``,
        but always at least one batch if there is data at ``offset``."""
        with self._state.lock:
            stream = self._state.stream_locked(stream_id)
            start, end = stream.start_offset, stream.end_offset
        if not start <= offset <= end:
            raise OffsetOutOfRange(stream_id, offset, start, end)
        batches: list[StoredBatch] = []
        budget = max_bytes
        while offset < end and (budget > 0 or not batches):
            with self._state.lock:
                cached = self._cached_locked(stream_id, offset)
                if cached:
                    self.log_cache_hits += 1
                else:
                    self.log_cache_misses += 1
                first = not batches
                found = (
                    self._state.cache.read(stream_id, offset, budget, end, first) if cached else []
                )
            if not cached:
                try:
                    state, found = self._read_objects(stream_id, offset, budget, end, first)
                except Exception as error:
                    if not first:
                        break  # return what was read; the next fetch reports the failure
                    if isinstance(error, ObjectStoreError):
                        self._note_read_error(error)
                    raise
            if not found:
                if not cached and first:
                    # A read in a gap at the end of a replaced range, with
                    # nothing after it in objects: go on past the gap.
                    past = self._reader.gap_end(state, stream_id, offset)
                    if past is not None and past > offset:
                        offset = past
                        continue
                break
            batches.extend(found)
            budget -= sum(len(b.payload) for b in found)
            offset = found[-1].end_offset
            if cached:
                break  # the cache holds everything up to the end
        return FetchResult(batches, offset, start, end)

    def _note_read_error(self, error: ObjectStoreError) -> None:
        """Counts a read the store failed; logs one it refused (denied
        access, a missing bucket: the operator's to fix, while every reader
        retries it) at most once per REFUSAL_LOG_INTERVAL_S."""
        now = self.pace.now()
        with self._state.lock:
            self.read_errors += 1
            last = self._refusal_logged_at
            if error.transient or (last is not None and now - last < REFUSAL_LOG_INTERVAL_S):
                return
            self._refusal_logged_at = now
        log.error("the object store refuses reads of stored data: %s", error)

    def _read_objects(
        self, stream_id: int, offset: int, budget: int, end: int, first: bool
    ) -> tuple[ManifestState, list[StoredBatch]]:
        """The reader's batches from objects, and the manifest state they
        were looked up in. An object gone from the store is damage if the
        manifest still names it (CorruptObject, as for an object failing
        its checks); else it was compacted away after this read looked it
        up, and the read is made again in the manifest as it is now.

        Damage is only claimed once the fence is checked: a writer that
        another process took the bucket over from still has the manifest
        it had, naming objects the new owner may have merged and deleted
        since (Fenced then, which a client retries elsewhere, not a
        CORRUPT_MESSAGE that stops it).

        A stream the manifest no longer names was deleted after the read
        looked it up (its deletion commits to the manifest, then leaves the
        store's state): StreamNotFound, as for a read after it, never an
        empty answer, which says "no more data yet" to a reader that would
        then wait on the deleted stream for ever."""
        state = self._manifest.state
        while True:
            if stream_id not in state.streams:
                raise StreamNotFound(stream_id)
            try:
                return state, self._reader.read(state, stream_id, offset, budget, end, first)
            except ObjectNotFound as error:
                now = self._manifest.state
                if now.names_key(error.key):
                    self._check_fence()
                    raise CorruptObject(error.key, MISSING) from error
                if now is state:
                    raise  # not an object of the manifest's
                state = now

    def _cached_locked(self, stream_id: int, offset: int) -> bool:
        """Whether a read at ``offset`` is answered by the log cache (which
        holds everything from there to the end)."""
        return offset >= self._replaced_below.get(stream_id, 0) and self._state.cache.covers(
            stream_id, offset
        )

    def fetch_bounded(self, stream_id: int, offset: int, max_bytes: int = 1 * MiB) -> FetchResult:
        """Like fetch, for a caller that blocks: an object read runs on the
        fetch threads, shared as fetch_async shares it, and is waited for
        at most remote_fetch_max_wait_ms (ReadPending past it; the read
        goes on, for the next fetch at that offset)."""
        if self._hot(stream_id, offset):
            return self.fetch(stream_id, offset, max_bytes)
        read, shared = self._object_read(stream_id, offset, max_bytes)
        try:
            result = read.result(timeout=self._max_wait_s)
        except TimeoutError:
            if not read.done():
                with self._state.lock:
                    self.reads_pending += 1
                raise ReadPending(stream_id, offset, self._max_wait_s) from None
            result = read.result()  # done just now: its answer, or its error
        return _within(result, max_bytes) if shared else result

    def _hot(self, stream_id: int, offset: int) -> bool:
        """Whether a read at ``offset`` needs no object: at the end (a
        caught-up consumer's), out of range, or in the log cache; a hop to a
        fetch thread would cost more than such a read, and a consumer of
        many quiet partitions makes many."""
        with self._state.lock:
            stream = self._state.stream_locked(stream_id)
            return not stream.start_offset <= offset < stream.end_offset or self._cached_locked(
                stream_id, offset
            )

    def fetch_hot(
        self, stream_id: int, offset: int, max_bytes: int = 1 * MiB
    ) -> FetchResult | None:
        """fetch_async's answer if it needs no object (see _hot), made at
        once: a caller with many partitions to read (a Fetch of thousands)
        awaits only those that need one. None: fetch_async reads it."""
        if not self._hot(stream_id, offset):
            return None
        hot = self.fetch(stream_id, offset, max_bytes)
        if hot.batches:
            # Only records the log cache answered are live traffic: a
            # read at the end with nothing to answer is as likely a
            # replay's, naming a partition it has read to its end, and
            # records come there by appends, which count themselves.
            self.pace.live()
        return hot

    async def fetch_async(
        self, stream_id: int, offset: int, max_bytes: int = 1 * MiB
    ) -> FetchResult:
        """Like fetch; tail reads answer at once, object reads run on the
        fetch threads so the event loop never waits for object storage, and
        beside live traffic are answered after a rest (replay_pace.py)."""
        hot = self.fetch_hot(stream_id, offset, max_bytes)
        if hot is not None:
            return hot
        return await self.fetch_cold(stream_id, offset, max_bytes)

    async def fetch_cold(
        self, stream_id: int, offset: int, max_bytes: int = 1 * MiB
    ) -> FetchResult:
        """fetch_async's object read, for a caller that fetch_hot has just
        answered None: the read needs an object, and asking _hot again (the
        store's lock) would only say so twice. A read that went out of
        range meanwhile raises from the object read as from fetch."""
        started = self.pace.now()
        read, shared = self._object_read(stream_id, offset, max_bytes)
        waits = self._waits
        if waits is None or waits.loop is not asyncio.get_running_loop():
            # Another loop's (an embedded caller's asyncio.run): that
            # loop's waits end on their own timer all the same.
            waits = self._waits = ReadWaits(asyncio.get_running_loop(), self._max_wait_s)
        result = await waits.wait(read)
        if result is None:  # the read goes on, for the next fetch
            with self._state.lock:  # fetch_bounded counts from other threads
                self.reads_pending += 1
            raise ReadPending(stream_id, offset, self._max_wait_s)
        if shared:
            result = _within(result, max_bytes)
        rest = self.pace.rest_after(started)
        if rest > 0:  # live traffic meanwhile: it gets the CPU a replay leaves
            await asyncio.sleep(rest)
        return result

    def _object_read(
        self, stream_id: int, offset: int, max_bytes: int
    ) -> tuple[Future[FetchResult], bool]:
        """The object read at ``offset`` under way, and True (it was started
        by another fetch, maybe with another ``max_bytes``); else a new one
        on the fetch threads, and False."""
        key = (stream_id, offset)
        with self._state.lock:
            read = self._object_reads.get(key)
            if read is not None:
                return read, True
            read = self._pool.submit(self.fetch, stream_id, offset, max_bytes)
            self._object_reads[key] = read
            self.object_reads_started += 1
        # Outside the lock: a read already done calls back at once.
        read.add_done_callback(partial(self._object_read_ended, key))
        return read, False

    def _object_read_ended(self, key: tuple[int, int], read: Future[FetchResult]) -> None:
        with self._state.lock:
            if self._object_reads.get(key) is read:
                del self._object_reads[key]

    def pending_reads(self) -> PendingReads:
        with self._state.lock:
            return PendingReads(
                self.reads_pending, self.object_reads_started, len(self._object_reads)
            )


def _within(result: FetchResult, max_bytes: int) -> FetchResult:
    """A shared read's result cut to this fetch's ``max_bytes`` (the first
    batch whole, whatever its size, as every read answers)."""
    kept: list[StoredBatch] = []
    budget = max_bytes
    for batch in result.batches:
        if kept and len(batch.payload) > budget:
            return result._replace(batches=kept, next_offset=kept[-1].end_offset)
        kept.append(batch)
        budget -= len(batch.payload)
    return result
