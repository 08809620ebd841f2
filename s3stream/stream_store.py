"""The stream store: many append-only streams on a local WAL and object storage.

An append is *locally durable* once its record is fsynced in the WAL, and
*remotely durable* once the object holding it is committed to the manifest;
both points are visible per stream (``end_offset`` and
``remote_end_offset``), and an append may ask to be answered at either
(``remote=True``: its upload starts after a short linger, shared by every
append asking meanwhile). Opening takes the data directory's lock, then
fences any previous writer, then replays the WAL entries the manifest does
not hold yet, and that this directory wrote while it owned the store, into
the log cache, from where they are uploaded again. Background threads: the
WAL's writer, the uploader (log cache -> objects -> manifest -> WAL trim;
when idle, a check that nobody has fenced us), the compactor (retention,
merges, deletions), and a pool of readers for object-storage reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple, cast

from s3stream.block_cache import BlockCache
from s3stream.compaction import (
    Retention,
    dead_objects,
    expired_garbage,
    inputs_unchanged,
    merge_objects,
    orphans,
    pick_compaction,
    pick_stream_merge,
    removal_ops,
    retention_trims,
)
from s3stream.errors import (
    Fenced,
    OffsetMismatch,
    OffsetOutOfRange,
    RangeChanged,
    StoreClosed,
    StoreFailed,
    StreamNotFound,
    StreamNotOpen,
)
from s3stream.log_cache import CacheBlock, LogCache
from s3stream.manifest import DEFAULT_CHECKPOINT_EVERY, DEFAULT_OPEN_TIMEOUT_S, Manifest
from s3stream.manifest_state import ManifestState, Op
from s3stream.objects import DEFAULT_BLOCK_BYTES, ObjectKind, StoredBatch
from s3stream.reader import ObjectReader
from s3stream.store import ObjectStore, ObjectStoreError, open_store
from s3stream.uploader import (
    OBJECT_PREFIX,
    ObjectIds,
    PreparedObject,
    Run,
    add_ops,
    epoch_of_key,
    now_ms,
    prepare_object,
    prepare_objects,
    put_objects,
)
from s3stream.wal_entries import (
    WAL_OWNED_DATA,
    WAL_OWNED_TRIM,
    Writer,
    encode_writer,
    is_trim,
    load_identity,
    split_entry,
)
from wal import Durability, Outcome, Position, WalError, WriteAheadLog

log = logging.getLogger("tidelog.s3stream")

MiB = 1024 * 1024


@dataclass(frozen=True)
class StreamStoreConfig:
    durability: Durability | str = Durability.FSYNC
    wal_segment_bytes: int = 64 * MiB
    upload_bytes: int = 32 * MiB
    """Seal and upload the log cache's active block once it holds this much."""
    upload_interval_s: float = 2.0
    """... or once its oldest append is this old."""
    log_cache_bytes: int = 256 * MiB
    """Uploaded data kept in memory for tail reads (never evicted before upload)."""
    max_unuploaded_bytes: int = 1024 * MiB
    """Appends wait when this much is not uploaded yet (the store is slow or down)."""
    block_bytes: int = DEFAULT_BLOCK_BYTES
    stream_object_bytes: int = 8 * MiB
    """A run of one stream at least this large goes to an object of its own."""
    block_cache_bytes: int = 256 * MiB
    readahead_bytes: int = 64 * MiB
    """How far ahead of a sequential reader blocks are fetched."""
    readahead_span_bytes: int = 16 * MiB
    """The most one read-ahead GET fetches (adjacent blocks go together)."""
    read_workers: int = 8
    compaction_interval_s: float = 60.0
    small_object_bytes: int = 16 * MiB
    """Objects smaller than this are merged with their neighbours."""
    force_split_after_s: float = 1800.0
    """A stream-set object this old is split into stream objects, whatever its size."""
    stream_object_max_bytes: int = 64 * MiB
    """The most a merge of one stream's small stream objects writes."""
    merge_max_objects: int = 64
    merge_max_bytes: int = 256 * MiB
    """The most one compaction pass reads (and so holds in memory)."""
    garbage_grace_s: float = 60.0
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S
    """How long opening waits out an object store that fails transiently
    (unreachable, throttling) before it refuses to open."""
    accept_data_loss: bool = False
    """Open a WAL whose acknowledged data is damaged by salvaging its readable
    records (each dropped range is logged), instead of refusing to open."""
    remote_linger_s: float = 0.002
    """How long an append waiting to be remotely durable lets others join
    its object before the upload starts."""


class FetchResult(NamedTuple):
    batches: list[StoredBatch]
    next_offset: int
    """Where the next sequential fetch starts."""
    start_offset: int
    end_offset: int
    """The stream's locally durable end (its high watermark)."""


@dataclass
class RecoverySummary:
    manifest_version: int = 0
    epoch: int = 0
    wal_records: int = 0
    replayed_appends: int = 0
    replayed_bytes: int = 0
    dropped_appends: int = 0
    """WAL appends that no longer follow their stream's committed end (another
    writer took over that stream since they were written)."""
    superseded_appends: int = 0
    """WAL appends this directory wrote under an ownership of the store that
    another writer has taken over since: never replayed."""
    superseded_bytes: int = 0
    orphans_deleted: int = 0
    manifest_conflicts: tuple[str, ...] = ()
    """Keys of manifest versions left out because they contradict the history
    before them (two writers on a store that ignores conditional writes)."""


@dataclass
class StoreStats:
    uploads: int = 0
    uploaded_bytes: int = 0
    upload_errors: int = 0
    compactions: int = 0
    objects_deleted: int = 0
    last_error: str = ""


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


@dataclass
class _Superseded:
    """WAL entries of one stream dropped on replay (see RecoverySummary)."""

    entries: int = 0
    bytes: int = 0
    records: int = 0
    epoch: int = 0
    """The newest epoch they were written under."""


@dataclass
class _Stream:
    stream_id: int
    epoch: int
    start_offset: int
    next_offset: int
    """The end of every append accepted so far, durable or not."""
    end_offset: int
    """The end of the durable prefix: what readers see."""
    opened: bool = False
    retention: Retention = field(default_factory=Retention)


_WalTag = tuple["_Stream | None", CacheBlock, int]
"""What the WAL's commit hook is given for each append: the stream (None for
a trim), the log cache block holding the append, and the stream's end after it."""


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
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._closed = False
        self._failure: BaseException | None = None
        self._commit_serial = threading.Lock()
        self._cache = LogCache(config.log_cache_bytes)
        self._streams: dict[int, _Stream] = {}
        self._listeners: list[Callable[[set[int]], None]] = []
        self._replaced_below: dict[int, int] = {}
        """Per stream, the end of the last replaced range: reads below it skip
        the log cache, which may still hold the bytes the replace removed."""
        self._remote_waiters: dict[int, list[tuple[int, Future[int]]]] = {}
        """Per stream, appends waiting to be remotely durable: (end, future)."""
        self._remote_wanted = 0.0
        """When (monotonic) the first append of the active block asked to be
        remotely durable; 0 if none did."""
        # The store's URL is checked first (no request is sent): a bad one
        # leaves nothing behind. Then the WAL takes the data directory's
        # lock: an open refused there (another process has the directory)
        # has touched nothing in the object store, so the running owner is
        # not fenced by it.
        if object_store is None:
            object_store = "file://" + os.path.abspath(os.path.join(data_dir, "objects"))
        self._owns_store = isinstance(object_store, str)
        self.store = open_store(object_store) if isinstance(object_store, str) else object_store
        try:
            self.wal = WriteAheadLog(
                os.path.join(data_dir, "wal"),
                segment_bytes=config.wal_segment_bytes,
                durability=config.durability,
                on_commit=self._on_wal_commit,
                accept_data_loss=config.accept_data_loss,
            )
            try:
                self.identity = load_identity(data_dir)
                self.manifest = Manifest.open(
                    self.store,
                    checkpoint_every=config.checkpoint_every,
                    stop=self._stop,
                    owner=self.identity,
                    timeout=config.open_timeout_s,
                )
                self._ids = ObjectIds(self.manifest.state.next_object_id)
                self._writer = encode_writer(self.identity, self.manifest.epoch)
                """Every WAL entry of this opening starts with it."""
                self.recovery = self._recover()
            except BaseException:
                self.wal.close()
                raise
        except BaseException:
            if self._owns_store:
                self.store.close()
            raise
        self._read_pool = ThreadPoolExecutor(config.read_workers, "s3stream-read")
        self._fetch_pool = ThreadPoolExecutor(config.read_workers, "s3stream-fetch")
        self.block_cache = BlockCache(config.block_cache_bytes)
        self.reader = ObjectReader(
            self.store,
            self.block_cache,
            self._read_pool,
            readahead_bytes=config.readahead_bytes,
            readahead_span_bytes=config.readahead_span_bytes,
        )
        # Daemon threads: an owner that never closes the store must not keep
        # the interpreter from exiting (the WAL holds what was appended).
        self._uploader = threading.Thread(
            target=self._upload_loop, name="s3stream-upload", daemon=True
        )
        self._compactor = threading.Thread(
            target=self._compact_loop, name="s3stream-compact", daemon=True
        )
        self._compact_now = threading.Event()
        self._uploader.start()
        self._compactor.start()

    # -- recovery -------------------------------------------------------------

    def _recover(self) -> RecoverySummary:
        state = self.manifest.state
        summary = RecoverySummary(state.seq, state.epoch)
        summary.manifest_conflicts = tuple(c.key for c in self.manifest.conflicts)
        for meta in state.streams.values():
            self._streams[meta.stream_id] = _Stream(
                meta.stream_id, meta.epoch, meta.start_offset, meta.end_offset, meta.end_offset
            )
        superseded: dict[int, _Superseded] = {}
        for entry in self.wal.replay():
            summary.wal_records += 1
            stream = self._streams.get(entry.stream_id)
            if stream is None:
                continue  # deleted since
            writer, payload = split_entry(entry.type, entry.payload)
            if writer is not None and not self._wrote_as_owner(writer, state):
                if not is_trim(entry.type) and not _uploaded_under(
                    state, entry.stream_id, entry.start_offset, writer.epoch
                ):
                    dropped = superseded.setdefault(entry.stream_id, _Superseded())
                    dropped.entries += 1
                    dropped.bytes += len(payload)
                    dropped.records += entry.end_offset - entry.start_offset
                    dropped.epoch = max(dropped.epoch, writer.epoch)
                continue
            if is_trim(entry.type):
                if entry.start_offset > stream.start_offset:
                    stream.start_offset = min(entry.start_offset, stream.end_offset)
                    self._cache.add_trim(stream.stream_id, stream.start_offset)
                self._cache.active.note_position(entry.position)
                continue
            if entry.end_offset <= stream.next_offset:
                continue  # already in a committed object
            if entry.start_offset != stream.next_offset:
                summary.dropped_appends += 1
                continue
            stored = bytes(payload)
            block = self._cache.add(
                stream.stream_id, StoredBatch(entry.start_offset, entry.end_offset, stored)
            )
            block.note_position(entry.position)
            stream.next_offset = stream.end_offset = entry.end_offset
            summary.replayed_appends += 1
            summary.replayed_bytes += len(stored)
        self._cache.seal()
        try:
            doomed = orphans(state, self.store.list(OBJECT_PREFIX))
            for key in doomed:
                self.store.delete(key)
            summary.orphans_deleted = len(doomed)
        except ObjectStoreError as error:
            log.warning("orphan cleanup skipped: %s", error)
        if summary.dropped_appends:
            # With damage salvaged, a stream that lost an append loses every
            # later one too: its offsets must stay dense.
            why = (
                "they follow appends lost to the write-ahead log damage dropped"
                if self.wal.recovery.dropped
                else "their streams moved on under a newer writer"
            )
            log.warning("%d WAL appends were dropped: %s", summary.dropped_appends, why)
        for stream_id, dropped in sorted(superseded.items()):
            summary.superseded_appends += dropped.entries
            summary.superseded_bytes += dropped.bytes
            log.error(
                "stream %d: %d WAL appends (%d bytes, %d records) written under epoch %d were "
                "dropped: another writer took over the object store after they were written "
                "(now epoch %d) and was never given them. They were acknowledged in `local` "
                "durability mode after the takeover and before this writer learned of it: "
                "the window `local` mode documents (docs/durability.md)",
                stream_id,
                dropped.entries,
                dropped.bytes,
                dropped.records,
                dropped.epoch,
                state.epoch,
            )
        log.info("recovered: %s", summary)
        return summary

    def _wrote_as_owner(self, writer: Writer, state: ManifestState) -> bool:
        """Whether this directory wrote the entry while it owned the store and
        nobody has fenced it since (its own restarts do not count)."""
        return writer.owner == self.identity == state.owner and writer.epoch >= state.owner_since

    # -- streams ----------------------------------------------------------------

    def create_stream(self) -> int:
        """Creates an empty stream and returns its id (committed to the manifest)."""
        return self.create_streams(1)[0]

    def create_streams(self, count: int) -> list[int]:
        """Creates ``count`` empty streams with one manifest commit; returns their ids."""
        if count < 1:
            raise ValueError(f"cannot create {count} streams")
        with self._commit_serial:
            first = self.manifest.state.next_stream_id
            created = now_ms()
            ids = list(range(first, first + count))
            self._commit([["create_stream", stream_id, created] for stream_id in ids])
        with self._lock:
            for stream_id in ids:
                self._streams[stream_id] = _Stream(stream_id, 0, 0, 0, 0)
        return ids

    def open_stream(self, stream_id: int, epoch: int) -> None:
        """Opens a stream for appends at ``epoch``; a lower epoch than the
        stream's raises Fenced, a higher one fences older openers."""
        self._check_usable()
        stream = self._stream(stream_id)
        if epoch < stream.epoch:
            raise Fenced(f"stream {stream_id}", epoch, stream.epoch)
        if epoch > stream.epoch:
            with self._commit_serial:
                self._commit([["open_stream", stream_id, epoch]])
        with self._lock:
            stream.epoch = epoch
            stream.opened = True

    def delete_stream(self, stream_id: int) -> None:
        """Deletes the stream; its objects go once nothing else lives in them."""
        self.delete_streams([stream_id])

    def delete_streams(self, stream_ids: Sequence[int]) -> None:
        """Deletes the streams with one manifest commit."""
        for stream_id in stream_ids:
            self._stream(stream_id)
        if not stream_ids:
            return
        with self._commit_serial:
            self._commit([["delete_stream", stream_id] for stream_id in stream_ids])
        with self._lock:
            orphaned = {}
            for stream_id in stream_ids:
                del self._streams[stream_id]
                self._cache.drop_stream(stream_id)
                self._replaced_below.pop(stream_id, None)
                orphaned[stream_id] = self._take_remote_waiters_locked(stream_id)
        for stream_id in stream_ids:
            _fail_all(orphaned[stream_id], StreamNotFound(stream_id))
            self.reader.forget_stream(stream_id)
        self._compact_now.set()

    def streams(self) -> list[int]:
        with self._lock:
            return sorted(self._streams)

    def start_offset(self, stream_id: int) -> int:
        return self._stream(stream_id).start_offset

    def end_offset(self, stream_id: int) -> int:
        """The end of the locally durable data: the next offset to be read."""
        return self._stream(stream_id).end_offset

    def next_offset(self, stream_id: int) -> int:
        """The offset the next append must start at."""
        return self._stream(stream_id).next_offset

    def remote_end_offset(self, stream_id: int) -> int:
        """The remote watermark: everything below it is in committed objects."""
        self._stream(stream_id)
        meta = self.manifest.state.streams.get(stream_id)
        return meta.end_offset if meta is not None else 0

    def committed_ranges(self, stream_id: int) -> list[tuple[int, int]]:
        """The stream's ranges in committed objects, ``[(start, end)]`` in
        offset order, but those wholly below its start offset: the boundaries
        ``replace_range`` accepts."""
        start = self._stream(stream_id).start_offset
        ranges = self.manifest.state.ranges.get(stream_id)
        if ranges is None:
            return []
        return [(s, e) for s, e, _ in ranges.entries if e > start]

    def set_retention(self, stream_id: int, retention: Retention) -> None:
        with self._lock:
            self._stream_locked(stream_id).retention = retention

    # -- appending ----------------------------------------------------------

    def submit(
        self,
        stream_id: int,
        base_offset: int,
        last_offset: int,
        payload: bytes | memoryview,
        remote: bool = False,
    ) -> Future[int]:
        """Queues an append of offsets ``[base_offset, last_offset]``; the future
        resolves to the stream's new end offset once the append is durable:
        in the WAL, and with ``remote`` also in an object committed to the
        manifest. Once the store learns it is fenced, it fails instead.

        ``payload`` is stored as given, without a copy; it must not change.
        """
        done: Future[int] = Future()
        done.set_running_or_notify_cancel()
        end = last_offset + 1
        with self._lock:
            stream, block = self._accept(stream_id, base_offset, last_offset, payload)
            future = self.wal.submit(
                payload,
                stream_id=stream_id,
                start_offset=base_offset,
                end_offset=end,
                record_type=WAL_OWNED_DATA,
                tag=(stream, block, end),
                prefix=self._writer,  # written before the payload, never joined to it
            )
            uploaded = self._wait_remote_locked(stream_id, end) if remote else None

        def durable(wal_future: Future[Position]) -> None:
            error = wal_future.exception()
            if error is not None:
                done.set_exception(StoreFailed(error))
            elif isinstance(self._failure, Fenced):
                done.set_exception(self._failure)  # a fenced writer acknowledges nothing
            elif uploaded is None:
                done.set_result(end)
            else:
                uploaded.add_done_callback(lambda f: _copy_outcome(f, done))

        future.add_done_callback(durable)
        self._wait_for_room()  # after accepting: the caller's offsets stay valid
        return done

    def append(
        self,
        stream_id: int,
        base_offset: int,
        last_offset: int,
        payload: bytes | memoryview,
        remote: bool = False,
    ) -> int:
        """Appends and returns the stream's new end offset once durable."""
        return self.submit(stream_id, base_offset, last_offset, payload, remote).result()

    async def append_async(
        self,
        stream_id: int,
        base_offset: int,
        last_offset: int,
        payload: bytes | memoryview,
        remote: bool = False,
    ) -> int:
        """Like append, for asyncio; cancelling stops the wait, not the append."""
        return await self.submit_async(stream_id, base_offset, last_offset, payload, remote)

    def submit_async(
        self,
        stream_id: int,
        base_offset: int,
        last_offset: int,
        payload: bytes | memoryview,
        remote: bool = False,
    ) -> Coroutine[Any, Any, int]:
        """Queues an append from a running event loop now, and returns what to
        await for the stream's new end offset once it is durable (as submit).

        The append is accepted (or refused) before this returns, so a caller
        holding its own lock can assign offsets and submit in one step.
        """
        end = last_offset + 1
        with self._lock:
            stream, block = self._accept(stream_id, base_offset, last_offset, payload)
            future = self.wal.submit_async(
                payload,
                stream_id=stream_id,
                start_offset=base_offset,
                end_offset=end,
                record_type=WAL_OWNED_DATA,
                tag=(stream, block, end),
                prefix=self._writer,  # written before the payload, never joined to it
            )
            uploaded = self._wait_remote_locked(stream_id, end) if remote else None
        return self._durable_async(future, end, uploaded)

    async def _durable_async(
        self, future: asyncio.Future[Position], end: int, uploaded: Future[int] | None
    ) -> int:
        try:
            await future
        except WalError as error:
            raise StoreFailed(error) from error
        if isinstance(self._failure, Fenced):
            raise self._failure  # a fenced writer acknowledges nothing
        if uploaded is not None:
            await asyncio.wrap_future(uploaded)
        if self._cache.unuploaded_bytes > self.config.max_unuploaded_bytes:
            # Back-pressure after accepting, so the caller's offsets stay valid.
            await asyncio.get_running_loop().run_in_executor(None, self._wait_for_room)
        return end

    def when_remote(self, stream_id: int, end: int) -> Future[int]:
        """A future resolved (to ``end``) once the stream's offsets below
        ``end`` are in objects committed to the manifest; waiting starts an
        upload soon (see ``remote_linger_s``). For an append already made,
        e.g. a producer's retry of a batch it sent before."""
        with self._lock:
            self._check_usable()
            self._stream_locked(stream_id)
            return self._wait_remote_locked(stream_id, end)

    def _wait_remote_locked(self, stream_id: int, end: int) -> Future[int]:
        waiter: Future[int] = Future()
        waiter.set_running_or_notify_cancel()
        meta = self.manifest.state.streams.get(stream_id)
        if meta is not None and meta.end_offset >= end:
            waiter.set_result(end)
            return waiter
        self._remote_waiters.setdefault(stream_id, []).append((end, waiter))
        if not self._remote_wanted:
            self._remote_wanted = time.monotonic()
            self._changed.notify_all()
        return waiter

    def _remote_reached_locked(self) -> list[tuple[Future[int], int]]:
        """Takes the remote waiters the manifest now covers (under the lock;
        the caller resolves them after releasing it)."""
        state = self.manifest.state
        reached: list[tuple[Future[int], int]] = []
        for stream_id in list(self._remote_waiters):
            meta = state.streams.get(stream_id)
            if meta is None:
                continue  # deleted meanwhile: failed by delete_stream
            waiting = self._remote_waiters[stream_id]
            reached += [(f, end) for end, f in waiting if end <= meta.end_offset]
            left = [(end, f) for end, f in waiting if end > meta.end_offset]
            if left:
                self._remote_waiters[stream_id] = left
            else:
                del self._remote_waiters[stream_id]
        return reached

    def _take_remote_waiters_locked(self, stream_id: int | None = None) -> list[Future[int]]:
        """Removes the remote waiters of one stream (or all) for failing them."""
        if stream_id is not None:
            return [f for _, f in self._remote_waiters.pop(stream_id, [])]
        taken = [f for waiting in self._remote_waiters.values() for _, f in waiting]
        self._remote_waiters.clear()
        return taken

    def _accept(
        self, stream_id: int, base_offset: int, last_offset: int, payload: bytes | memoryview
    ) -> tuple[_Stream, CacheBlock]:
        """Checks an append and adds it to the log cache (under the lock)."""
        self._check_usable()
        stream = self._stream_locked(stream_id)
        if not stream.opened:
            raise StreamNotOpen(stream_id)
        if base_offset != stream.next_offset:
            raise OffsetMismatch(stream_id, stream.next_offset, base_offset)
        if last_offset < base_offset:
            raise ValueError(f"last offset {last_offset} < base offset {base_offset}")
        was_empty = self._cache.active.empty
        block = self._cache.add(stream_id, StoredBatch(base_offset, last_offset + 1, payload))
        block.unconfirmed += 1
        if was_empty:
            self._changed.notify_all()  # starts the uploader's age clock
        stream.next_offset = last_offset + 1
        if self._cache.active.size >= self.config.upload_bytes:
            self._seal_locked()
        return stream, block

    def _on_wal_commit(self, tags: list[object], outcomes: list[Outcome]) -> None:
        """The WAL's commit hook: one group's appends and trims are durable
        (or failed). Runs on the WAL's writer thread before any of their
        callers wake, so a caller sees its own append in ``end_offset``."""
        grown: set[int] = set()
        failed: list[Future[int]] = []
        with self._lock:
            for tag, outcome in zip(tags, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    if self._failure is None:
                        self._failure = outcome
                    failed += self._take_remote_waiters_locked()
                    self._changed.notify_all()
                    continue
                stream, block, end = cast(_WalTag, tag)
                block.confirm(outcome)
                if stream is not None and end > stream.end_offset:
                    stream.end_offset = end
                    grown.add(stream.stream_id)
                if block.ready:
                    self._changed.notify_all()
        if failed:
            _fail_all(failed, StoreFailed(cast(BaseException, self._failure)))
        for listener in self._listeners if grown else ():
            try:
                listener(grown)
            except Exception:
                log.exception("a durable-append listener failed")

    def add_listener(self, listener: Callable[[set[int]], None]) -> None:
        """Calls ``listener`` with the ids of the streams whose end offset grew,
        once per WAL group commit, on the WAL's writer thread (so it must be
        quick: wake waiters, never block)."""
        self._listeners.append(listener)

    def _wait_for_room(self) -> None:
        with self._lock:
            while self._cache.unuploaded_bytes > self.config.max_unuploaded_bytes:
                self._check_usable()
                self._changed.wait(0.5)

    def trim(self, stream_id: int, start_offset: int) -> None:
        """Moves the stream's start to ``start_offset``; durable on return."""
        with self._lock:
            self._check_usable()
            stream = self._stream_locked(stream_id)
            if start_offset > stream.end_offset:
                raise OffsetOutOfRange(
                    stream_id, start_offset, stream.start_offset, stream.end_offset
                )
            if start_offset <= stream.start_offset:
                return
            stream.start_offset = start_offset
            block = self._cache.add_trim(stream_id, start_offset)
            block.unconfirmed += 1
            future = self.wal.submit(
                self._writer,
                stream_id=stream_id,
                start_offset=start_offset,
                record_type=WAL_OWNED_TRIM,
                tag=(None, block, 0),
            )
        try:
            future.result()
        except WalError as error:
            raise StoreFailed(error) from error

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
        self._check_usable()
        with self._lock:
            stream_start = self._stream_locked(stream_id).start_offset
        state = self.manifest.state
        replaced = _ranges_to_replace(state, stream_id, stream_start, start_offset, end_offset)
        _check_replacement(stream_id, start_offset, end_offset, batches)
        prepared = prepare_object(
            ObjectKind.STREAM,
            [(stream_id, Run(start_offset, end_offset, batches))],
            self.manifest.epoch,
            self._ids,
            # As for merges: the replaced data does not look newer to retention.
            max(state.objects[oid].created_ms for _, _, oid in replaced),
            self.config.block_bytes,
        )
        self.store.put(prepared.meta.key, prepared.data)
        with self._commit_serial:
            state = self.manifest.state
            ranges = state.ranges.get(stream_id)
            meta = state.streams.get(stream_id)
            if (
                ranges is None
                or meta is None
                or meta.start_offset > start_offset
                or _overlapping(ranges.entries, start_offset, end_offset) != replaced
            ):
                with contextlib.suppress(ObjectStoreError):  # else an orphan, deleted on open
                    self.store.delete(prepared.meta.key)
                if ranges is None:
                    raise StreamNotFound(stream_id)
                raise RangeChanged(stream_id, start_offset, end_offset)
            self._commit(
                add_ops([prepared])
                + [["drop_range", stream_id, start, oid] for start, _, oid in replaced]
            )
        with self._lock:
            if stream_id in self._streams:
                below = self._replaced_below.get(stream_id, 0)
                self._replaced_below[stream_id] = max(below, end_offset)
        log.info(
            "stream %d: replaced [%d, %d) (%d ranges) with object %d",
            stream_id,
            start_offset,
            end_offset,
            len(replaced),
            prepared.meta.object_id,
        )

    # -- reading ------------------------------------------------------------

    def fetch(self, stream_id: int, offset: int, max_bytes: int = 1 * MiB) -> FetchResult:
        """Stored batches from the one holding ``offset``: up to ``max_bytes``,
        but always at least one batch if there is data at ``offset``."""
        with self._lock:
            stream = self._stream_locked(stream_id)
            start, end = stream.start_offset, stream.end_offset
        if not start <= offset <= end:
            raise OffsetOutOfRange(stream_id, offset, start, end)
        batches: list[StoredBatch] = []
        budget = max_bytes
        while offset < end and (budget > 0 or not batches):
            with self._lock:
                cached = self._cached_locked(stream_id, offset)
                first = not batches
                found = self._cache.read(stream_id, offset, budget, end, first) if cached else []
            if not cached:
                state = self.manifest.state
                try:
                    found = self.reader.read(state, stream_id, offset, budget, end, first)
                except Exception:
                    if first:
                        raise
                    break  # return what was read; the next fetch reports the failure
            if not found:
                if not cached and first:
                    # A read in a gap at the end of a replaced range, with
                    # nothing after it in objects: go on past the gap.
                    past = self.reader.gap_end(state, stream_id, offset)
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

    def _cached_locked(self, stream_id: int, offset: int) -> bool:
        """Whether a read at ``offset`` is answered by the log cache (which
        holds everything from there to the end)."""
        return offset >= self._replaced_below.get(stream_id, 0) and self._cache.covers(
            stream_id, offset
        )

    async def fetch_async(
        self, stream_id: int, offset: int, max_bytes: int = 1 * MiB
    ) -> FetchResult:
        """Like fetch; tail reads answer at once, object reads run on the
        reader threads so the event loop never waits for object storage."""
        with self._lock:
            stream = self._stream_locked(stream_id)
            hot = self._cached_locked(stream_id, max(offset, stream.start_offset))
        if hot:
            return self.fetch(stream_id, offset, max_bytes)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._fetch_pool, self.fetch, stream_id, offset, max_bytes
        )

    # -- uploading -------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Uploads everything appended so far; True once it is all committed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._seal_locked()
            target = self._cache.active.block_id
            while True:
                block = self._cache.next_to_upload()
                if block is None or block.block_id >= target:
                    return True
                if self._failure is not None:
                    raise self._failure_error()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining if remaining is not None else 0.5)

    def _seal_locked(self) -> None:
        self._remote_wanted = 0.0  # whoever waited has its data in the sealed block
        if self._cache.seal() is not None:
            self._changed.notify_all()

    def _upload_loop(self) -> None:
        """Uploads sealed blocks in order; seals the active block once it is
        ``upload_interval_s`` old, or ``remote_linger_s`` after an append asked
        to be remotely durable; and, when a whole interval passes without a
        commit, checks that no other writer has fenced this one."""
        interval = self.config.upload_interval_s
        linger = self.config.remote_linger_s
        check_fence_at = time.monotonic() + interval
        while not self._stop.is_set():
            with self._lock:
                block = self._cache.next_to_upload()
                now = time.monotonic()
                if block is None:
                    active = self._cache.active
                    if active.empty:
                        self._remote_wanted = 0.0
                    age = now - active.created
                    wanted = self._remote_wanted
                    lingered = bool(wanted) and now >= wanted + linger
                    if not active.empty and (age >= interval or lingered):
                        self._seal_locked()
                        continue
                    if now < check_fence_at:
                        wait = check_fence_at - now
                        if not active.empty:
                            wait = min(wait, interval - age)
                        if wanted:
                            wait = min(wait, wanted + linger - now)
                        self._changed.wait(max(wait, 0.0))
                        continue
                elif not block.ready:
                    self._changed.wait(0.5)
                    continue
                live = {sid for sid in self._streams}
            try:
                if block is None:
                    self._check_fence()
                elif not self._upload(block, live):
                    return
                check_fence_at = time.monotonic() + interval  # a commit checks as well
            except Fenced:
                return
            except BaseException as error:  # a bug: stop the store rather than lose data
                log.exception("uploader stopped")
                self._fail(error)
                return

    def _check_fence(self) -> None:
        """One small request to the manifest: raises Fenced (and stops the
        store) if another writer has taken over since our last commit."""
        try:
            self.manifest.check_fenced()
        except Fenced as error:
            self._fail(error)
            raise
        except ObjectStoreError as error:
            # The next check, or the next commit, tries again.
            log.debug("fence check failed: %s", error)

    def _upload(self, block: CacheBlock, live: set[int]) -> bool:
        objects = prepare_objects(
            ((sid, b) for sid, b in block.batches.items() if sid in live),
            epoch=self.manifest.epoch,
            ids=self._ids,
            now_ms=now_ms(),
            block_bytes=self.config.block_bytes,
            stream_object_bytes=self.config.stream_object_bytes,
        )
        if not put_objects(self.store, objects, self._stop, self._note_error):
            return False
        ops = add_ops(objects)
        ops += [["trim", sid, start] for sid, start in block.trims.items() if sid in live]
        try:
            with self._commit_serial:
                self._commit(ops)
        except StoreClosed:
            return False
        self.stats.uploads += 1
        self.stats.uploaded_bytes += sum(o.meta.size for o in objects)
        with self._lock:
            self._cache.mark_uploaded(block)
            self._changed.notify_all()
            reached = self._remote_reached_locked() if self._remote_waiters else []
        for waiter, end in reached:
            waiter.set_result(end)
        if block.last_position is not None:
            try:
                self.wal.trim(block.last_position)
            except WalError as error:
                log.warning("WAL trim failed: %s", error)
        return True

    def _note_error(self, error: ObjectStoreError) -> None:
        self.stats.upload_errors += 1
        self.stats.last_error = str(error)
        log.warning("object store error (will retry): %s", error)

    def _commit(self, ops: list[Op]) -> ManifestState:
        """Commits to the manifest (caller holds _commit_serial); a Fenced
        result stops all further appends."""
        try:
            return self.manifest.commit(ops)
        except Fenced as error:
            self._fail(error)
            raise

    # -- compaction -----------------------------------------------------------

    def compact(self) -> None:
        """Runs one pass of retention, merging and deletion now."""
        self._compact_once()

    def _compact_loop(self) -> None:
        while not self._stop.is_set():
            self._compact_now.wait(self.config.compaction_interval_s)
            self._compact_now.clear()
            if self._stop.is_set():
                return
            try:
                self._compact_once()
            except (Fenced, StoreClosed):
                return
            except ObjectStoreError as error:
                self._note_error(error)
            except Exception:
                log.exception("compaction pass failed")

    def _compact_once(self) -> None:
        self._check_usable()
        now = now_ms()
        grace_ms = int(self.config.garbage_grace_s * 1000)
        with self._lock:
            retention = {s.stream_id: s.retention for s in self._streams.values()}
        with self._commit_serial:
            state = self.manifest.state
            trims = retention_trims(state, retention, now)
            if trims:
                state = self._commit([["trim", sid, start] for sid, start in trims.items()])
                with self._lock:
                    for sid, start in trims.items():
                        stream = self._streams.get(sid)
                        if stream is not None and start > stream.start_offset:
                            stream.start_offset = start
            dead = dead_objects(state)
            if dead:
                self._commit(removal_ops(dead, now + grace_ms))
        self._merge(now, grace_ms)
        self._collect_garbage(now)
        self.stats.compactions += 1

    def _merge(self, now: int, grace_ms: int) -> None:
        config = self.config
        state = self.manifest.state
        picked = pick_compaction(
            state,
            small_object_bytes=config.small_object_bytes,
            stream_object_bytes=config.stream_object_bytes,
            max_objects=config.merge_max_objects,
            max_bytes=config.merge_max_bytes,
            force_split_before_ms=now - int(config.force_split_after_s * 1000),
        ) or pick_stream_merge(
            state,
            small_object_bytes=config.small_object_bytes,
            max_bytes=config.stream_object_max_bytes,
        )
        if picked is None:
            return
        merged: list[PreparedObject] = merge_objects(
            self.store,
            state,
            picked.object_ids,
            ids=self._ids,
            now_ms=now,
            block_bytes=config.block_bytes,
            stream_object_bytes=picked.stream_object_bytes,
        )
        if not put_objects(self.store, merged, self._stop, self._note_error):
            return
        with self._commit_serial:
            if not inputs_unchanged(state, self.manifest.state, picked.object_ids):
                for prepared in merged:  # the inputs changed meanwhile; try again later
                    self.store.delete(prepared.meta.key)
                return
            self._commit(add_ops(merged) + removal_ops(picked.object_ids, now + grace_ms))
        log.info("merged %d objects into %d", len(picked.object_ids), len(merged))

    def _collect_garbage(self, now: int) -> None:
        expired = expired_garbage(self.manifest.state, now)
        for key in expired:
            self.store.delete(key)
            self.reader.forget(key)
        if expired:
            with self._commit_serial:
                self._commit([["forget_garbage", key] for key in expired])
            self.stats.objects_deleted += len(expired)

    # -- state and lifecycle -----------------------------------------------------

    def _stream(self, stream_id: int) -> _Stream:
        with self._lock:
            return self._stream_locked(stream_id)

    def _stream_locked(self, stream_id: int) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise StreamNotFound(stream_id)
        return stream

    def _check_usable(self) -> None:
        if self._closed:
            raise StoreClosed
        if self._failure is not None:
            raise self._failure_error()

    def _failure_error(self) -> BaseException:
        assert self._failure is not None
        return self._failure if isinstance(self._failure, Fenced) else StoreFailed(self._failure)

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            if self._failure is None:
                self._failure = error
            self._changed.notify_all()
            waiters = self._take_remote_waiters_locked()
            failure = self._failure_error()
        _fail_all(waiters, failure)

    @property
    def fenced(self) -> bool:
        return isinstance(self._failure, Fenced)

    def close(self, *, flush: bool = True, timeout: float | None = 30.0) -> CloseReport:
        """Stops appends, uploads what is in the cache (unless ``flush`` is
        False or the store cannot be reached within ``timeout``; the WAL still
        holds it), and releases everything. Returns (and keeps in
        ``close_report``) what is still only in the WAL, and why."""
        if self._closed:
            return self.close_report or CloseReport()
        reason = "" if flush else "closed without uploading"
        if flush and self._failure is None:
            try:
                if not self.flush(timeout):
                    reason = f"the object store did not take it within {timeout} s"
                    if self.stats.last_error:
                        reason += f" (last error: {self.stats.last_error})"
            except (Fenced, StoreFailed):
                pass  # described below, from the failure
        with self._lock:
            self._closed = True
            self._stop.set()
            self._changed.notify_all()
            waiters = self._take_remote_waiters_locked()
        _fail_all(waiters, StoreClosed())
        self._compact_now.set()
        self._uploader.join()
        self._compactor.join()
        self._read_pool.shutdown(wait=True)
        self._fetch_pool.shutdown(wait=True)
        self.wal.close()
        if self._owns_store:
            self.store.close()
        if isinstance(self._failure, Fenced):
            reason = (
                f"fenced: another writer owns the object store ({self._failure}); "
                "they will not be replayed"
            )
        elif self._failure is not None:
            reason = f"the store failed: {self._failure}"
        appends = self._cache.unuploaded_appends()
        self.close_report = CloseReport(
            self._cache.unuploaded_bytes if appends else 0, appends, reason if appends else ""
        )
        return self.close_report

    def __enter__(self) -> StreamStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _ranges_to_replace(
    state: ManifestState, stream_id: int, stream_start: int, start: int, end: int
) -> list[tuple[int, int, int]]:
    """The committed ranges ``(start, end, object_id)`` that a replace of
    ``[start, end)`` drops, after checking its bounds."""
    meta = state.streams.get(stream_id)
    remote_end = meta.end_offset if meta is not None else 0
    stream_start = max(stream_start, meta.start_offset if meta is not None else 0)
    if start >= end:
        raise ValueError(f"stream {stream_id}: empty range [{start}, {end})")
    if start < stream_start:
        raise OffsetOutOfRange(stream_id, start, stream_start, remote_end)
    if end > remote_end:
        raise OffsetOutOfRange(stream_id, end, stream_start, remote_end)
    ranges = state.ranges.get(stream_id)
    replaced = _overlapping(ranges.entries if ranges is not None else [], start, end)
    if not replaced or replaced[0][0] != start or replaced[-1][1] != end:
        raise ValueError(
            f"stream {stream_id}: [{start}, {end}) does not start and end at boundaries "
            f"of committed ranges (see committed_ranges); overlapping: "
            f"{[(s, e) for s, e, _ in replaced]}"
        )
    return replaced


def _overlapping(
    entries: Sequence[tuple[int, int, int]], start: int, end: int
) -> list[tuple[int, int, int]]:
    """The entries of a stream's ranges that overlap ``[start, end)``."""
    return [entry for entry in entries if entry[0] < end and entry[1] > start]


def _check_replacement(
    stream_id: int, start: int, end: int, batches: Sequence[StoredBatch]
) -> None:
    if not batches:
        raise ValueError(f"stream {stream_id}: no batches to replace [{start}, {end}) with")
    previous_end = start
    for batch in batches:
        if batch.base_offset < previous_end or batch.end_offset <= batch.base_offset:
            raise ValueError(
                f"stream {stream_id}: batch [{batch.base_offset}, {batch.end_offset}) is out "
                f"of order, overlapping or empty (previous end {previous_end})"
            )
        if batch.end_offset > end:
            raise ValueError(
                f"stream {stream_id}: batch [{batch.base_offset}, {batch.end_offset}) "
                f"ends past the replaced range [{start}, {end})"
            )
        previous_end = batch.end_offset


def _uploaded_under(state: ManifestState, stream_id: int, offset: int, epoch: int) -> bool:
    """Whether ``offset`` of the stream is in a committed object written at
    ``epoch`` (so the writer of that epoch had uploaded it before it was fenced)."""
    ranges = state.ranges.get(stream_id)
    found = ranges.find(offset) if ranges is not None else None
    if found is None or not found[0] <= offset < found[1]:
        return False
    meta = state.objects.get(found[2])
    return meta is not None and epoch_of_key(meta.key) == epoch


def _copy_outcome(source: Future[int], target: Future[int]) -> None:
    error = source.exception()
    if error is None:
        target.set_result(source.result())
    else:
        target.set_exception(error)


def _fail_all(waiters: Sequence[Future[int]], error: BaseException) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(error)
