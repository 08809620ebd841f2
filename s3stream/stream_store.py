"""The stream store: many append-only streams on a local WAL and object storage.

An append is *locally durable* once its record is fsynced in the WAL, and
*remotely durable* once the object holding it is committed to the manifest;
both points are visible per stream (``end_offset`` and
``remote_end_offset``), and an append may ask to be answered at either
(``REMOTE``: its upload starts after a short linger, shared by every
append asking meanwhile). Opening takes the data directory's lock, then
fences any previous writer, then recovers (recovery.py).

StreamStore is the facade: it opens, owns the streams' lifecycle and
closing, and wires the parts, each given only what it needs (the shared
lock, log cache and streams are in store_state.py; every manifest commit
goes through manifest_writer.py):

- ``Appender`` (appender.py): appends and trims into the log cache and
  the WAL, and the WAL's commit hook (the WAL's writer thread runs it);
- ``Uploader`` (uploader.py, its own thread): log cache -> objects ->
  manifest -> WAL trim, the appends waiting to be remotely durable, and
  the idle check that nobody has fenced this writer;
- ``Compactor`` (compaction.py, its own thread): retention, merges, deletions;
- ``Fetcher`` (fetcher.py) over the ``ObjectReader`` (reader.py): reads,
  each with a pool of threads for object-storage reads;
- ``recover`` (recovery.py) and ``replace_range`` (replacing.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, NamedTuple

from native import untracked_record
from s3stream.ack_trace import UploadTrace
from s3stream.append_options import LOCAL, AppendOptions
from s3stream.appender import Appender, CallOnDurable, DurableCall
from s3stream.block_cache import BlockCache
from s3stream.compaction import Compactor, range_size
from s3stream.config import MiB, StreamStoreConfig
from s3stream.errors import (
    Fenced,
    OffsetOutOfRange,
    StoreClosed,
    StoreFailed,
    StreamNotFound,
)
from s3stream.fetcher import Fetcher, FetchResult, PendingReads
from s3stream.forking import fork_ops
from s3stream.header_index import Indexer
from s3stream.lookup import Candidates, header_candidates
from s3stream.manifest import Manifest
from s3stream.manifest_writer import ManifestWriter
from s3stream.objects import StoredBatch
from s3stream.read_ahead_gate import ReadAheadGate
from s3stream.reader import ObjectReader
from s3stream.recovery import RecoverySummary, recover
from s3stream.replacing import replace_range
from s3stream.replay_pace import ReplayPace
from s3stream.store import ObjectNotFound, ObjectStore, ObjectStoreError, open_store
from s3stream.store.hedged import hedged
from s3stream.store.metered import MeteredStore
from s3stream.store_state import Retention, StoreState, StoreStats, StreamState, fail_all
from s3stream.uploader import ObjectIds, Uploader, now_ms
from s3stream.wal_entries import encode_writer, load_identity
from wal import Outcome, WriteAheadLog
from wal.closing import Closing
from wal.thread_priority import ThreadPriority, read_pool

__all__ = [
    "CloseReport",
    "FetchResult",
    "RecoverySummary",
    "StoreStats",
    "StreamStore",
    "StreamStoreConfig",
]

log = logging.getLogger("tidelog.s3stream")

PROBE_KEY = "readiness-probe"
CLEANUP_JOIN_S = 30.0
"""How long closing waits for a checkpoint's background deletions (they stop
at the next deletion once the store stops; one request may be in flight)."""
"""The key a reachability probe asks about; it is never written."""


class LogCacheUsage(NamedTuple):
    size: int
    """Bytes held in the log cache (uploaded blocks kept for tail reads included)."""
    unuploaded_bytes: int
    """Bytes appended and not yet in an uploaded object."""
    oldest_unuploaded_age_s: float
    """Seconds since the first append of the oldest block not uploaded (0: none)."""


@dataclass(frozen=True)
class CloseReport:
    """What closing left behind: everything uploaded, or what is still only
    in the WAL (replayed and uploaded when this data directory opens again)."""

    wal_only_bytes: int = 0
    wal_only_appends: int = 0
    reason: str = ""
    """Why it was not uploaded (fenced, the store unreachable, not asked to)."""

    @property
    def uploaded(self) -> bool:
        return self.wal_only_appends == 0


class StreamStore:
    """Open with :meth:`open`; a context manager; safe to use from many threads
    and from asyncio (``append_async``, ``fetch_async``)."""

    def __init__(self) -> None:
        raise TypeError("use StreamStore.open(...)")

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        object_store: ObjectStore | str | None = None,
        config: StreamStoreConfig | None = None,
    ) -> StreamStore:
        """Opens (fencing any older writer) and recovers from manifest + WAL.

        ``object_store`` defaults to a local directory store under ``data_dir``.
        """
        self = cls.__new__(cls)
        self._init(os.fspath(data_dir), object_store, config or StreamStoreConfig())
        return self

    def _init(
        self, data_dir: str, object_store: ObjectStore | str | None, config: StreamStoreConfig
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        # Created here, not as a parent of the WAL's directory: 0700, as it holds record data.
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        self.stats = StoreStats()
        self.close_report: CloseReport | None = None
        """Set by close: whether everything was uploaded."""
        self._closing = Closing("StreamStore")
        self._close_reason = ""
        """Why close left appends only in the WAL, if they are not uploaded."""
        self._state = state = StoreState(config.log_cache_bytes)
        # Fixed from the opener's priority, whichever thread starts them.
        background = ThreadPriority.below_caller(config.background_nice)
        # The store's URL is checked first (no request is sent): a bad one
        # leaves nothing behind. Then the WAL takes the data directory's
        # lock: an open refused there (another process has the directory)
        # has touched nothing in the object store, so the running owner is
        # not fenced by it.
        policy = config.hedge_policy()
        if object_store is None:
            object_store = "file://" + os.path.abspath(os.path.join(data_dir, "objects"))
        self._owns_store = isinstance(object_store, str)
        opened = open_store(object_store) if isinstance(object_store, str) else object_store
        self._hedging = hedging = hedged(opened, policy)
        self.hedges = None if hedging is None else hedging.stats
        """Hedged requests sent and won (None: not hedged; engine/metrics.py)."""
        self.store = MeteredStore(opened if hedging is None else hedging)
        """The object store, its requests counted (engine/metrics.py)."""
        try:
            self.wal = WriteAheadLog(
                os.path.join(data_dir, "wal"),
                segment_bytes=config.wal_segment_bytes,
                durability=config.durability,
                preallocate=config.wal_preallocate,
                on_commit=self._on_wal_commit,
                accept_data_loss=config.accept_data_loss,
                spare_priority=background,
            )
            try:
                self.identity = load_identity(data_dir)
                self.manifest = Manifest.open(
                    self.store,
                    checkpoint_every=config.checkpoint_every,
                    stop=state.stop,
                    owner=self.identity,
                    timeout=config.open_timeout_s,
                    background_cleanup=True,
                    cleanup_priority=background,
                )
                self._ids = ObjectIds(self.manifest.state.next_object_id)
                wal_prefix = encode_writer(self.identity, self.manifest.epoch)
                self.recovery = recover(
                    self.manifest, self.wal, self.store, self.identity, state.cache, state.streams
                )
                self.stats.abandoned_writes_removed = self.recovery.abandoned_writes_removed
            except BaseException:
                self.wal.close()
                raise
        except BaseException:
            self._close_store()
            raise
        self._manifest_writer = ManifestWriter(self.manifest, self._fail)
        self._read_pool = read_pool(config.read_workers, "s3stream-read", config.read_nice)
        self.block_cache = BlockCache(config.block_cache_bytes)
        pace = ReplayPace(config.replay_rest_ratio)
        self.reader = ObjectReader(
            self.store,
            self.block_cache,
            self._read_pool,
            readahead_bytes=config.readahead_bytes,
            readahead_span_bytes=config.readahead_span_bytes,
            gate=ReadAheadGate(config.read_ahead_beside_live, pace.is_live),
        )
        self._fetcher = Fetcher(
            state,
            self.manifest,
            self.reader,
            read_pool(config.read_workers, "s3stream-fetch", config.read_nice),
            pace,
            partial(self._manifest_writer.check_fence, certain=True),
            config.remote_fetch_max_wait_ms / 1000,
        )
        self._uploader = Uploader(
            state,
            self._manifest_writer,
            self.store,
            self._ids,
            self.wal.trim,
            config,
            self.stats,
            self._fail,
            background,
        )
        self._compactor = Compactor(
            state,
            self._manifest_writer,
            self.store,
            self._ids,
            self.reader.forget,
            config,
            self.stats,
            background,
            swept_on_open=self.recovery.abandoned_writes_swept,
        )
        self._appender = Appender(state, self.wal, wal_prefix, self._uploader, config)
        self._uploader.start()
        self._compactor.start()

    def _close_store(self) -> None:
        """Closes the object store if this store opened it; the hedging
        threads in any case (a store given by the caller stays open)."""
        if self._owns_store:
            self.store.close()
        elif self._hedging is not None:
            self._hedging.stop()

    # -- streams ----------------------------------------------------------------

    def create_stream(self) -> int:
        """Creates an empty stream and returns its id (committed to the manifest)."""
        return self.create_streams(1)[0]

    def create_streams(self, count: int, deadline: float | None = None) -> list[int]:
        """Creates ``count`` empty streams with one manifest commit; returns
        their ids. With ``deadline`` (a time.monotonic() value), a commit
        not made by then raises DeadlinePassed and creates none."""
        if count < 1:
            raise ValueError(f"cannot create {count} streams")
        with self._manifest_writer.serial.until(deadline):
            first = self.manifest.state.next_stream_id
            created = now_ms()
            ids = list(range(first, first + count))
            try:
                self._manifest_writer.commit(
                    [["create_stream", stream_id, created] for stream_id in ids], deadline
                )
            except BaseException:
                # Told it failed, the caller names none of them (a topic's,
                # a fork's or the catalog's streams): if the commit landed
                # all the same, they go once the next section finds it.
                self._manifest_writer.abandon_if_landed(ids)
                raise
        with self._state.lock:
            for stream_id in ids:
                self._state.streams[stream_id] = StreamState(stream_id, 0, 0, 0, 0)
        return ids

    def open_stream(self, stream_id: int, epoch: int) -> None:
        """Opens a stream for appends at ``epoch``; a lower epoch than the
        stream's raises Fenced, a higher one fences older openers."""
        self._state.check_usable()
        stream = self._stream(stream_id)
        if epoch < stream.epoch:
            raise Fenced(f"stream {stream_id}", epoch, stream.epoch)
        if epoch > stream.epoch:
            with self._manifest_writer.serial:
                self._manifest_writer.commit([["open_stream", stream_id, epoch]])
        with self._state.lock:
            stream.epoch = epoch
            stream.opened = True

    def delete_stream(self, stream_id: int) -> None:
        """Deletes the stream; its objects go once nothing else lives in them."""
        self.delete_streams([stream_id])

    def delete_streams(self, stream_ids: Sequence[int], deadline: float | None = None) -> None:
        """Deletes the streams with one manifest commit (by ``deadline``, as
        create_streams)."""
        for stream_id in stream_ids:
            self._stream(stream_id)
        if not stream_ids:
            return
        with self._manifest_writer.serial.until(deadline):
            self._manifest_writer.commit(
                [["delete_stream", stream_id] for stream_id in stream_ids], deadline
            )
        with self._state.lock:
            orphaned = {}
            for stream_id in stream_ids:
                del self._state.streams[stream_id]
                self._state.cache.drop_stream(stream_id)
                self._fetcher.forget_stream_locked(stream_id)
                orphaned[stream_id] = self._uploader.take_waiters_locked(stream_id)
        for stream_id in stream_ids:
            fail_all(orphaned[stream_id], StreamNotFound(stream_id))
            self.reader.forget_stream(stream_id)
        self._compactor.wake()

    def fork_stream(
        self, source_stream_id: int, at: int | None = None, timeout: float | None = 30.0
    ) -> int:
        """Creates a stream whose offsets below ``at`` (default: the source's
        end) are the source's, sharing its committed objects, and returns its
        id; it takes appends from ``at`` on, and neither stream sees the
        other's appends after that. The source's appends are uploaded first
        (within ``timeout``); only the part below ``at`` of the range holding
        ``at``, if any, is copied (s3stream/forking.py). Raises
        OffsetOutOfRange, ForkPointInsideRange (``at`` splits a batch or a
        cleaned range), StreamNotFound, ObjectStoreError, or StoreFailed if
        the upload did not finish in time."""
        self._state.check_usable()
        source = self._stream(source_stream_id)
        at = source.end_offset if at is None else at
        if not source.start_offset <= at <= source.end_offset:
            raise OffsetOutOfRange(source_stream_id, at, source.start_offset, source.end_offset)
        if not self.flush(timeout):
            raise StoreFailed(TimeoutError(f"uploading before a fork took over {timeout} s"))
        with self._manifest_writer.serial:
            start = self._stream(source_stream_id).start_offset
            stream_id, ops, copied = fork_ops(
                self._manifest_writer,
                self.store,
                self._ids,
                self.config.block_bytes,
                source_stream_id,
                start,
                at,
                now_ms(),
            )
            try:
                self._manifest_writer.commit(ops)
            except BaseException:
                # A commit whose answer was lost may be in the store all the
                # same: its copy stays (an orphan at worst, deleted on open),
                # and its stream goes once the next section finds it landed.
                self._manifest_writer.abandon_if_landed([stream_id])
                if copied is not None and not self.manifest.unsettled:
                    with contextlib.suppress(ObjectStoreError):  # else an orphan, deleted on open
                        self.store.delete(copied.meta.key)
                raise
        with self._state.lock:
            self._state.streams[stream_id] = StreamState(stream_id, 0, start, at, at)
        return stream_id

    def streams(self) -> list[int]:
        with self._state.lock:
            return sorted(self._state.streams)

    def start_offset(self, stream_id: int) -> int:
        return self._stream(stream_id).start_offset

    def end_offset(self, stream_id: int) -> int:
        """The end of the locally durable data: the next offset to be read."""
        return self._stream(stream_id).end_offset

    def offsets(self, stream_id: int) -> tuple[int, int]:
        """(start offset, end offset), read together: one look at the
        stream where a caller wants both (a fetch, of every partition)."""
        stream = self._stream(stream_id)
        return stream.start_offset, stream.end_offset

    def offsets_many(self, stream_ids: Iterable[int]) -> list[tuple[int, int]]:
        """offsets() of each stream, under one hold of the lock: a Fetch
        naming a topic's thousands of partitions reads them all at once.
        StreamNotFound if any is missing."""
        with self._state.lock:
            stream_locked = self._state.stream_locked
            found = [stream_locked(stream_id) for stream_id in stream_ids]
        return [(stream.start_offset, stream.end_offset) for stream in found]

    def append_offsets(self, stream_id: int) -> tuple[int, int]:
        """(start offset, next offset), read together: an append's one look
        at the stream before it is made (its base offset, and the log start
        its answer carries).

        Read without the store's lock, one dict look-up and two attribute
        reads (each whole under the GIL): the lock and two calls cost an
        append more than the read. The pair is still one the stream had.
        ``next_offset`` moves only in an append accepted under the store's
        lock (Appender._accept), and the caller holds the lock that orders
        every append of the stream (Partition.lock), so no append moves it
        between the two reads. ``start_offset`` moves forward under the
        store's lock (a trim, retention): a reader may see it just before
        or just after such a move, as a reader under the lock may (the move
        can come the moment the lock is released), and never past the next
        offset, which it does not pass. A stream deleted under it is either
        found or StreamNotFound, as with the lock."""
        stream = self._state.streams.get(stream_id)
        if stream is None:
            raise StreamNotFound(stream_id)
        return stream.start_offset, stream.next_offset

    def fenced_or_failed(self) -> bool:
        """Whether the store stopped for good (Fenced, or a WAL or internal
        failure): appends not durable by then never will be."""
        return self._state.failure is not None

    def failure_error(self) -> BaseException:
        """What a stopped store's callers are given (``fenced_or_failed``)."""
        with self._state.lock:
            return self._state.failure_error()

    def check_writable(self) -> None:
        """Raises what an append made now is refused with (StoreClosed,
        Fenced, StoreFailed), for a caller that appends nothing this time:
        a producer's retry of a batch it already sent."""
        with self._state.lock:
            self._state.check_usable()

    def next_offset(self, stream_id: int) -> int:
        """The offset the next append must start at."""
        return self._stream(stream_id).next_offset

    def remote_end_offset(self, stream_id: int) -> int:
        """The remote watermark: everything below it is in committed objects."""
        self._stream(stream_id)
        meta = self.manifest.state.streams.get(stream_id)
        return meta.end_offset if meta is not None else 0

    def local_start_offset(self, stream_id: int) -> int:
        """The first offset readable without object storage: from the log
        cache, which holds everything not yet uploaded (and what it has not
        evicted since). The end offset if nothing is cached."""
        with self._state.lock:
            stream = self._state.stream_locked(stream_id)
            first = self._state.cache.first_offset(stream_id)
            local = stream.end_offset if first is None else min(first, stream.end_offset)
            return max(local, stream.start_offset)

    def committed_ranges(self, stream_id: int) -> list[tuple[int, int]]:
        """The stream's ranges in committed objects, ``[(start, end)]`` in
        offset order, but those wholly below its start offset: the boundaries
        ``replace_range`` accepts."""
        start = self._stream(stream_id).start_offset
        ranges = self.manifest.state.ranges.get(stream_id)
        if ranges is None:
            return []
        return [(s, e) for s, e, _ in ranges.entries if e > start]

    def stored_bytes(self, stream_id: int) -> int:
        """The bytes the stream's batches take from its start offset, as
        stored: its ranges in committed objects (each counted whole, as Kafka
        counts a log's whole segments), and the batches not in a committed
        object yet (in the WAL and the log cache)."""
        with self._state.lock:
            start = self._state.stream_locked(stream_id).start_offset
            state = self.manifest.state
            meta = state.streams.get(stream_id)
            remote_end = meta.end_offset if meta is not None else 0
            ranges = state.ranges.get(stream_id)
            committed = 0
            for range_start, range_end, object_id in ranges.entries if ranges else ():
                if range_end > start:
                    source = state.source_of(stream_id, range_start, object_id)
                    committed += range_size(state.objects[object_id], source, range_start)
            waiting = self._state.cache.unuploaded_bytes_of(stream_id, max(start, remote_end))
        return committed + waiting

    def set_retention(self, stream_id: int, retention: Retention) -> None:
        with self._state.lock:
            self._state.stream_locked(stream_id).retention = retention

    def set_indexer(self, stream_id: int, indexer: Indexer | None) -> None:
        """What the stream's objects written from now on index of its
        batches (s3stream/header_index.py); None: nothing."""
        with self._state.lock:
            self._state.stream_locked(stream_id).indexer = indexer

    def header_candidates(self, stream_id: int, name: str, value: bytes) -> Candidates:
        """Where the stream's batches with header ``name`` = ``value`` may
        be, from its committed objects' header indexes; what they do not
        cover (older objects, other names, data not uploaded yet) is to be
        scanned (s3stream/lookup.py)."""
        with self._state.lock:
            start = self._state.stream_locked(stream_id).start_offset
            end = self._state.stream_locked(stream_id).end_offset
        return header_candidates(
            self.store, self.manifest.state, stream_id, start, end, name, value
        )

    # -- appending ----------------------------------------------------------

    def submit(
        self,
        stream_id: int,
        base_offset: int,
        last_offset: int,
        payload: bytes | memoryview,
        options: AppendOptions = LOCAL,
        *,
        payload_crc: int | None = None,
    ) -> Future[int]:
        """Queues an append of offsets ``[base_offset, last_offset]``; the future
        resolves to the stream's new end offset once the append is durable:
        in the WAL, and with ``options.remote`` (``REMOTE``) also in an
        object committed to the manifest. Once the store learns it is
        fenced, it fails instead. Once accepted, it waits while more than
        ``max_unuploaded_bytes`` is not uploaded; with ``Pacing.LATER`` it
        does not (``wait_for_room`` is then the caller's to call, outside
        its locks), and with ``Pacing.NEVER`` (``UNPACED``) it never waits
        and is refused (NoRoom) once the bound is passed by
        ``unpaced_headroom_bytes``.

        ``payload`` is stored without a copy (a memoryview of a bytes or
        bytearray as a read-only ByteSlice of the same bytes, which keeps a
        bytearray from being resized: native.untracked_view); it must not
        change.
        ``payload_crc``, its CRC32C if the caller has it (of checked record
        batches, ``native.crc32c_batches``), spares the WAL a read of it.
        """
        self._fetcher.pace.live()
        batch = untracked_record(StoredBatch, base_offset, last_offset + 1, payload, payload_crc)
        return self._appender.submit(stream_id, batch, options)

    @property
    def max_append_bytes(self) -> int:
        """The largest payload one append takes (one WAL record, less its
        framing): a larger one is refused (AppendTooLarge) and changes
        nothing. A writer of records it builds itself splits or bounds
        them by this."""
        return self._appender.max_append_bytes

    def past_unuploaded_bound(self) -> bool:
        """Whether more than ``max_unuploaded_bytes`` is not uploaded yet (the
        object store slow or down): read without the lock, a hint for a
        writer with no answer to delay (an acks=0 Produce) to wait for its
        appends."""
        unuploaded: int = self._state.cache.unuploaded_bytes
        return unuploaded > self.config.max_unuploaded_bytes

    def wait_for_room(self) -> None:
        """Waits while more than ``max_unuploaded_bytes`` is not uploaded yet
        (the object store slow or down): the back-pressure of a submit, for
        a caller that submitted with ``Pacing.LATER`` under its lock."""
        self._appender.wait_for_room()

    def append(
        self,
        stream_id: int,
        base_offset: int,
        last_offset: int,
        payload: bytes | memoryview,
        options: AppendOptions = LOCAL,
    ) -> int:
        """Appends and returns the stream's new end offset once durable."""
        return self.submit(stream_id, base_offset, last_offset, payload, options).result()

    async def append_async(
        self,
        stream_id: int,
        base_offset: int,
        last_offset: int,
        payload: bytes | memoryview,
        options: AppendOptions = LOCAL,
    ) -> int:
        """Like append, for asyncio; cancelling stops the wait, not the append."""
        return await self.submit_async(stream_id, base_offset, last_offset, payload, options)

    def submit_async(
        self,
        stream_id: int,
        base_offset: int,
        last_offset: int,
        payload: bytes | memoryview,
        options: AppendOptions = LOCAL,
        *,
        payload_crc: int | None = None,
    ) -> asyncio.Future[int]:
        """Queues an append from a running event loop now, and returns an
        asyncio future of the stream's new end offset once it is durable (as
        submit_then); cancelling it stops the wait, not the append."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        end = last_offset + 1

        def settle(error: BaseException | None) -> None:
            if done.cancelled():
                return
            if error is None:
                done.set_result(end)
            else:
                done.set_exception(error)

        self.submit_then(
            CallOnDurable(settle),
            stream_id,
            base_offset,
            last_offset,
            payload,
            options,
            payload_crc=payload_crc,
        )
        return done

    def submit_then(
        self,
        call: DurableCall,
        stream_id: int,
        base_offset: int,
        last_offset: int,
        payload: bytes | memoryview,
        options: AppendOptions = LOCAL,
        *,
        payload_crc: int | None = None,
    ) -> None:
        """submit from a running event loop, without a future: the caller's
        ``call.settle(None)`` is called on the running loop once the append
        is durable (as submit, after the wait for room ``options.pacing``
        asks for), ``call.settle(error)`` if it failed; never before this
        returns (Appender.submit_then). Refusals raise here, so a caller
        holding its own lock can assign offsets and submit in one step."""
        self._fetcher.pace.live()
        # Made in C, all four fields, without the NamedTuple's own __new__
        # (a Python call, once a Produce), and out of the cyclic collector's
        # way for as long as the log cache keeps it: a payload that is a
        # memoryview of the request's bytes held as a ByteSlice, which the
        # collector does not track, and the batch untracked (0154).
        batch = untracked_record(StoredBatch, base_offset, last_offset + 1, payload, payload_crc)
        self._appender.submit_then(call, stream_id, batch, options)

    def gathered(self) -> contextlib.AbstractContextManager[None]:
        """Appends made inside the block share one WAL group (and one sync):
        ``WriteAheadLog.gathered``."""
        return self.wal.gathered()

    def when_remote(self, stream_id: int, end: int) -> Future[int]:
        """A future resolved (to ``end``) once the stream's offsets below
        ``end`` are in objects committed to the manifest; waiting starts an
        upload soon (see ``remote_linger_s``). For an append already made,
        e.g. a producer's retry of a batch it sent before."""
        with self._state.lock:
            self._state.check_usable()
            self._state.stream_locked(stream_id)
            return self._uploader.wait_remote_locked(stream_id, end)

    def trace_uploads(self) -> UploadTrace:
        """Starts recording what remote acknowledgements wait on (each
        upload's window, seal, requests, commit and answer: ack_trace.py),
        for a benchmark or a test; it grows with every upload until the
        store is closed, so a serving store never turns it on. A request is
        held only until the upload that may claim it is recorded."""
        trace = UploadTrace(self.config.remote_linger_s)
        self.store.trace = trace.request
        self._uploader.trace = trace
        return trace

    def add_listener(self, listener: Callable[[set[int]], None]) -> None:
        """Calls ``listener`` with the ids of the streams whose end offset grew,
        once per WAL group commit, on the WAL's writer thread (so it must be
        quick: wake waiters, never block)."""
        self._appender.add_listener(listener)

    def add_start_listener(self, listener: Callable[[set[int]], None]) -> None:
        """Calls ``listener`` with the ids of the streams whose start offset
        retention moved (compaction.py), on the compaction thread (so it
        must be quick: wake waiters, never block). A trim asked for (trim)
        is its caller's to tell."""
        self._compactor.add_start_listener(listener)

    def trim(self, stream_id: int, start_offset: int) -> None:
        """Moves the stream's start to ``start_offset``; durable on return."""
        self._appender.trim(stream_id, start_offset)

    def _on_wal_commit(self, tags: list[object], outcomes: list[Outcome]) -> None:
        self._appender.on_wal_commit(tags, outcomes)

    # -- replacing ------------------------------------------------------------

    def replace_range(
        self, stream_id: int, start_offset: int, end_offset: int, batches: Sequence[StoredBatch]
    ) -> None:
        """Replaces the stream's committed data in ``[start_offset, end_offset)``
        with ``batches``, for a log cleaner: the offsets stay, records it
        removed leave gaps, and a read in a gap returns the next batch.

        ``start_offset`` must be the start and ``end_offset`` the end of ranges
        from ``committed_ranges`` (so only uploaded data is replaced, whole
        ranges at a time), not below the stream's start offset. ``batches``
        must be non-empty, in offset order, not overlapping, each within the
        range. They go to one new stream object, committed with the old
        ranges dropped in one manifest version; old objects nothing else
        lives in are then deleted by compaction after the grace period.

        Raises OffsetOutOfRange or ValueError for bad arguments, StreamNotFound,
        ObjectStoreError if the new object cannot be put, and RangeChanged
        (retryable) if compaction, retention or another replace changed those
        ranges meanwhile; nothing is replaced then.
        """
        self._state.check_usable()
        with self._state.lock:
            stream_start = self._state.stream_locked(stream_id).start_offset
            indexer = self._state.stream_locked(stream_id).indexer
        replace_range(
            self._manifest_writer,
            self.store,
            self._ids,
            self.config.block_bytes,
            stream_id,
            stream_start,
            start_offset,
            end_offset,
            batches,
            indexer,
        )
        with self._state.lock:
            if stream_id in self._state.streams:
                self._fetcher.note_replaced_locked(stream_id, end_offset)

    # -- reading ------------------------------------------------------------

    def fetch(self, stream_id: int, offset: int, max_bytes: int = 1 * MiB) -> FetchResult:
        """Stored batches from the one holding ``offset``: up to ``max_bytes``,
        but always at least one batch if there is data at ``offset``."""
        return self._fetcher.fetch(stream_id, offset, max_bytes)

    def fetch_bounded(self, stream_id: int, offset: int, max_bytes: int = 1 * MiB) -> FetchResult:
        """Like fetch, waiting for a read from objects at most
        ``remote_fetch_max_wait_ms`` (ReadPending past it, as fetch_async)."""
        return self._fetcher.fetch_bounded(stream_id, offset, max_bytes)

    def fetch_hot(
        self, stream_id: int, offset: int, max_bytes: int = 1 * MiB
    ) -> FetchResult | None:
        """fetch_async's answer if it needs no object read (the log cache's,
        or none at the end), made at once; None if it does."""
        return self._fetcher.fetch_hot(stream_id, offset, max_bytes)

    def fetch_async(
        self, stream_id: int, offset: int, max_bytes: int = 1 * MiB
    ) -> Coroutine[Any, Any, FetchResult]:
        """Like fetch, to await; tail reads answer at once, object reads run
        on the reader threads so the event loop never waits for object storage."""
        return self._fetcher.fetch_async(stream_id, offset, max_bytes)

    def fetch_cold(
        self, stream_id: int, offset: int, max_bytes: int = 1 * MiB
    ) -> Coroutine[Any, Any, FetchResult]:
        """fetch_async's object read, for a caller that fetch_hot has just
        answered None (Fetcher.fetch_cold)."""
        return self._fetcher.fetch_cold(stream_id, offset, max_bytes)

    # -- uploading and compaction ------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Uploads everything appended so far; True once it is all committed."""
        return self._uploader.flush(timeout)

    def compact(self) -> None:
        """Runs one pass of retention, merging and deletion now."""
        self._compactor.run_once()

    # -- state and lifecycle -----------------------------------------------------

    def _stream(self, stream_id: int) -> StreamState:
        with self._state.lock:
            return self._state.stream_locked(stream_id)

    def _fail(self, error: BaseException) -> None:
        with self._state.lock:
            if self._state.failure is None:
                self._state.failure = error
            self._state.changed.notify_all()
            waiters = self._uploader.take_waiters_locked()
            failure = self._state.failure_error()
        fail_all(waiters, failure)

    @property
    def fenced(self) -> bool:
        return self._state.fenced

    def log_cache_usage(self) -> LogCacheUsage:
        """The log cache's size and what of it is not uploaded yet."""
        with self._state.lock:
            cache = self._state.cache
            oldest = cache.oldest_unuploaded()
            size, unuploaded = cache.size, cache.unuploaded_bytes
        age = 0.0 if oldest is None else max(time.monotonic() - oldest, 0.0)
        return LogCacheUsage(size, unuploaded, age)

    def log_cache_reads(self) -> tuple[int, int]:
        """Reads the log cache answered, and reads that went to objects."""
        return self._fetcher.log_cache_hits, self._fetcher.log_cache_misses

    @property
    def read_errors(self) -> int:
        """Reads that failed for an object-store error (answered for the reader to retry)."""
        return self._fetcher.read_errors

    def pending_reads(self) -> PendingReads:
        """Async fetches' object reads: answered before they ended, started, under way."""
        return self._fetcher.pending_reads()

    def probe_object_store(self) -> None:
        """One small request to the object store (a HEAD of a key that need
        not exist); raises ObjectStoreError when the store cannot answer."""
        with contextlib.suppress(ObjectNotFound):
            self.store.head(PROBE_KEY)

    def close(self, *, flush: bool = True, timeout: float | None = 30.0) -> CloseReport:
        """Stops appends, uploads what is in the cache (unless ``flush`` is
        False or the store cannot be reached within ``timeout``; the WAL still
        holds it), and releases everything. Returns (and keeps in
        ``close_report``) what is still only in the WAL, and why. A close cut
        short (an exception, a KeyboardInterrupt) is finished by the next
        call: the steps done are not run again (wal/closing.py)."""
        closing = self._closing
        if closing.finished:
            return self.close_report or CloseReport()
        if not flush:
            # Kept: the close finishing this one does not upload either.
            self._close_reason = "closed without uploading"
        if not self._close_reason and self._state.failure is None:
            closing.step("upload", lambda: self._upload_at_close(timeout))
        closing.step("stop", self._stop_at_close, atomic=True)
        closing.step("appender", self._appender.close)
        closing.step("compactor wake", self._compactor.wake)
        closing.step("uploader", self._uploader.join)
        closing.step("compactor", self._compactor.join)
        closing.step("manifest cleanup", lambda: self.manifest.join_cleanup(CLEANUP_JOIN_S))
        closing.step("read pool", lambda: self._read_pool.shutdown(wait=True))
        closing.step("fetcher", self._fetcher.close)
        closing.step("wal", self.wal.close)
        closing.step("object store", self._close_store)
        reason = self._close_reason
        if isinstance(self._state.failure, Fenced):
            reason = (
                f"fenced: another writer owns the object store ({self._state.failure}); "
                "they will not be replayed"
            )
        elif self._state.failure is not None:
            reason = f"the store failed: {self._state.failure}"
        appends = self._state.cache.unuploaded_appends()
        self.close_report = CloseReport(
            self._state.cache.unuploaded_bytes if appends else 0, appends, reason if appends else ""
        )
        closing.finish()
        return self.close_report

    def _upload_at_close(self, timeout: float | None) -> None:
        try:
            if not self.flush(timeout):
                reason = f"the object store did not take it within {timeout} s"
                if self.stats.last_error:
                    reason += f" (last error: {self.stats.last_error})"
                self._close_reason = reason
        except (Fenced, StoreFailed):
            pass  # described by close, from the failure

    def _stop_at_close(self) -> None:
        """No appends from here on; whoever waits for an upload is answered."""
        with self._state.lock:
            self._state.closed = True
            self._state.stop.set()
            self._state.changed.notify_all()
            waiters = self._uploader.take_waiters_locked()
        fail_all(waiters, StoreClosed())

    def __enter__(self) -> StreamStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
