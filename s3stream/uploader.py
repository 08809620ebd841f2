"""The uploader: turns sealed log-cache blocks into committed objects.

``Uploader`` owns the upload thread and the appends waiting to be remotely
durable; the functions below lay out and put objects (the compactor and
``replace_range`` use them too).

One block becomes one stream-set object holding every stream's data from
it, except streams with at least ``stream_object_bytes`` of data, which get
a stream object each. The objects are put first (as soon as the block is
sealed, while its last appends may still be on their way into the WAL),
then, once all of the block is durable in the WAL, committed to the
manifest in one version, and only then may the WAL be trimmed: at every
moment each acknowledged append is in the WAL, in a committed object, or
both. Blocks are committed strictly in order, so the WAL trim point only
moves forward.

Laying out and putting a block's objects (a hash chain and CRC32C over
every batch, megabytes written) is the store's heaviest background work.
While no append asks for remote durability nobody waits for it, and it
runs on a worker at the store's background priority
(wal/thread_priority.py), so that it takes the CPU time the event loop and
the WAL's threads leave. An upload that a remote acknowledgement may wait
for (one asked since an upload interval ago) runs on the upload thread
itself, which keeps the opener's priority, as does the put-ahead worker
below: a lowered thread could not raise its priority again.

While appends wait to be remotely durable, the cadence adapts to them. A
block is sealed once as many appends wait on it as waited in all at the
last commit (the batch: appenders that wait for each acknowledgement have
all asked again), or ``remote_linger_s`` after the first of them asked or
after the last commit ended, whichever is later (the batching window). A
block whose batch is complete while the previous commit is in flight is
sealed then, and its objects are put meanwhile (laid out against the state
that commit makes); one that is not waits for the appends that commit
answers, so that appenders share one upload rather than take turns. A
remote acknowledgement waits for at most the upload in flight when it
arrived, a batching window, then its own upload.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

from native.buffers import BytesLike
from s3stream import chain
from s3stream.ack_trace import UploadTrace
from s3stream.block_shares import evict_in_groups, read_block_ends, read_block_shares
from s3stream.chain import RangeLinks
from s3stream.chain_hash import CURRENT
from s3stream.chain_hash import extend as extend_chain
from s3stream.config import StreamStoreConfig
from s3stream.errors import Fenced, StoreClosed
from s3stream.header_index import Indexer, StreamKeys, encode_region, stream_keys
from s3stream.log_cache import CacheBlock
from s3stream.manifest_entries import ObjectMeta, RangeMeta
from s3stream.manifest_state import ManifestState, Op
from s3stream.manifest_writer import ManifestWriter
from s3stream.objects import (
    EMPTY_HEADER_INDEX,
    ChainLinks,
    EncodedObject,
    Locate,
    ObjectKind,
    StoredBatch,
    encode_object,
)
from s3stream.store import ObjectStore, ObjectStoreClosed, ObjectStoreError
from s3stream.store_state import StoreState, StoreStats
from s3stream.transient_retries import backoff_delay
from wal import Position, WalError
from wal.thread_priority import NORMAL, ThreadPriority

log = logging.getLogger("tidelog.s3stream")

OBJECT_PREFIX = "objects/"
_SUFFIX = {ObjectKind.STREAM_SET: "sso", ObjectKind.STREAM: "so"}


def object_key(epoch: int, object_id: int, kind: ObjectKind) -> str:
    """Keys carry the writer's epoch, so a fenced writer's leftovers are
    recognisable as orphans without asking anyone."""
    return f"{OBJECT_PREFIX}{epoch:010d}/{object_id:016d}.{_SUFFIX[kind]}"


def epoch_of_key(key: str) -> int | None:
    parts = key.split("/")
    if len(parts) != 3 or parts[0] + "/" != OBJECT_PREFIX or not parts[1].isdigit():
        return None
    return int(parts[1])


@dataclass
class PreparedObject:
    meta: ObjectMeta
    data: list[BytesLike]
    """The object's bytes, in parts (see EncodedObject)."""


class ObjectIds:
    """Allocates object ids; shared by the uploader and the compactor."""

    def __init__(self, first: int) -> None:
        self._next = itertools.count(first)
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            return next(self._next)


class Run(NamedTuple):
    """Offsets ``[start_offset, end_offset)`` of one stream that an object's
    range covers, and the batches it holds of them, in offset order. Usually
    the batches fill the range; a replaced range (``StreamStore.replace_range``)
    may have gaps: offsets whose records were removed."""

    start_offset: int
    end_offset: int
    batches: Sequence[StoredBatch]
    links: RangeLinks | None = None
    """The chain at the run's ends, kept with its range in the manifest."""


def runs_of(batches: Sequence[StoredBatch]) -> list[list[StoredBatch]]:
    """Splits batches in offset order into runs of consecutive offsets."""
    if len(batches) == 1:  # most streams' share of a block of many streams
        return [[batches[0]]]
    runs: list[list[StoredBatch]] = []
    for batch in batches:
        if runs and runs[-1][-1].end_offset == batch.base_offset:
            runs[-1].append(batch)
        else:
            runs.append([batch])
    return runs


def linked_runs(state: ManifestState, stream_id: int, batches: Sequence[StoredBatch]) -> list[Run]:
    """The batches (in offset order) as runs, each linked into the stream's
    hash chain: from the link at the end of the stream's last committed range
    if the run starts there, else from a genesis at the run's start."""
    head = state.chain_head(stream_id)
    runs: list[Run] = []
    for part in runs_of(batches):
        start = part[0].base_offset
        if head is not None and head[0] == start:
            before = head[1]
        else:
            before = chain.genesis(stream_id, start)
        after = extend_chain(CURRENT, before, part)
        runs.append(Run(start, part[-1].end_offset, part, RangeLinks(CURRENT, before, after)))
        head = (part[-1].end_offset, after)
    return runs


def prepare_objects(
    streams: Iterable[tuple[int, Sequence[StoredBatch]]],
    *,
    state: ManifestState,
    epoch: int,
    ids: ObjectIds,
    now_ms: int,
    block_bytes: int,
    stream_object_bytes: int,
    indexers: Mapping[int, Indexer] | None = None,
) -> list[PreparedObject]:
    """Lays out streams' runs of batches, linked into their chains after the
    manifest ``state``, as one stream-set object plus a stream object for
    each run of at least ``stream_object_bytes``; the streams in
    ``indexers`` get their header index entries."""
    return prepare_runs(
        ((stream_id, linked_runs(state, stream_id, batches)) for stream_id, batches in streams),
        epoch=epoch,
        ids=ids,
        now_ms=now_ms,
        block_bytes=block_bytes,
        stream_object_bytes=stream_object_bytes,
        index=indexed_by(indexers or {}),
    )


IndexRun = Callable[[int, Run], StreamKeys | None]
"""What an object's header index region holds for one run of a stream (None: nothing)."""


def indexed_by(indexers: Mapping[int, Indexer]) -> IndexRun:
    """Runs indexed by their stream's indexer, if it has one."""
    if not indexers:
        return _no_index

    def index(stream_id: int, run: Run) -> StreamKeys | None:
        indexer = indexers.get(stream_id)
        return None if indexer is None else stream_keys(stream_id, indexer, run.batches)

    return index


def _no_index(stream_id: int, run: Run) -> StreamKeys | None:
    return None


def prepare_runs(
    streams: Iterable[tuple[int, Sequence[Run]]],
    *,
    epoch: int,
    ids: ObjectIds,
    now_ms: int,
    block_bytes: int,
    stream_object_bytes: int,
    index: IndexRun = _no_index,
    copy_small: bool = True,
) -> list[PreparedObject]:
    """Lays out runs (non-empty, not overlapping) as one stream-set object
    plus a stream object for each run of at least ``stream_object_bytes``
    (``copy_small``: as encode_object takes it)."""
    shared: list[tuple[int, Run]] = []
    objects: list[PreparedObject] = []
    for stream_id, runs in streams:
        # Adjacent runs (kept apart only where the hash chain does not go
        # on, see compaction._joined) share one stream object.
        alone: list[tuple[int, Run]] = []
        for run in runs:
            size = sum(len(b.payload) for b in run.batches)
            if size < stream_object_bytes:
                shared.append((stream_id, run))
                continue
            if alone and alone[-1][1].end_offset != run.start_offset:
                objects.append(
                    prepare_object(
                        ObjectKind.STREAM, alone, epoch, ids, now_ms, block_bytes, index, copy_small
                    )
                )
                alone = []
            alone.append((stream_id, run))
        if alone:
            objects.append(
                prepare_object(
                    ObjectKind.STREAM, alone, epoch, ids, now_ms, block_bytes, index, copy_small
                )
            )
    if shared:
        objects.append(
            prepare_object(
                ObjectKind.STREAM_SET, shared, epoch, ids, now_ms, block_bytes, index, copy_small
            )
        )
    return objects


def prepare_object(
    kind: ObjectKind,
    runs: Sequence[tuple[int, Run]],
    epoch: int,
    ids: ObjectIds,
    now_ms: int,
    block_bytes: int,
    index: IndexRun = _no_index,
    copy_small: bool = True,
) -> PreparedObject:
    """One object holding ``runs``; each becomes one range of the object's
    metadata, spanning the run's offsets whatever gaps its batches leave.
    ``index`` gives each run's header index entries (computed here, on the
    store's thread, never on the produce path); ``copy_small``: as
    encode_object takes it."""
    ordered = sorted(runs, key=lambda r: (r[0], r[1].start_offset))
    indexed: dict[int, StreamKeys] = {}
    unindexed: set[int] = set()
    for stream_id, run in () if index is _no_index else ordered:
        keys = index(stream_id, run)
        held = indexed.get(stream_id)
        if keys is None:
            unindexed.add(stream_id)
        elif held is None:
            indexed[stream_id] = keys
        else:
            # The region's names hold for all of a stream's runs in the
            # object: only the names every run indexes are covered.
            names = tuple(n for n in held.names if n in keys.names)
            indexed[stream_id] = StreamKeys(stream_id, names, [*held.keys, *keys.keys])
    listed = [k for sid, k in indexed.items() if sid not in unindexed]
    # With nothing listed the region is its trailer alone, and the entries'
    # spans (a tuple and a dict entry each batch) are not made for it.
    region: bytes | Callable[[Locate], bytes] = (
        (lambda locate: encode_region(listed, locate)) if listed else EMPTY_HEADER_INDEX
    )
    encoded: EncodedObject = encode_object(
        kind,
        [(stream_id, part) for stream_id, run in ordered for part in runs_of(run.batches)],
        block_bytes,
        [
            ChainLinks(
                stream_id,
                run.start_offset,
                run.end_offset,
                run.links.algorithm,
                run.links.before,
                run.links.after,
                run.links.rewrite,
            )
            for stream_id, run in ordered
            if run.links is not None
        ],
        region,
        copy_small=copy_small,
    )
    # encode_object reports each stretch of consecutive batches; a run with
    # gaps is several of them, in the same (stream, offset) order.
    sizes = [0] * len(ordered)
    i = 0
    for part in encoded.ranges:
        while not (
            ordered[i][0] == part.stream_id
            and ordered[i][1].start_offset <= part.start_offset < ordered[i][1].end_offset
        ):
            i += 1
        sizes[i] += part.size
    object_id = ids.take()
    meta = ObjectMeta(
        object_id,
        object_key(epoch, object_id, kind),
        kind,
        encoded.size,
        now_ms,
        tuple(
            RangeMeta(stream_id, run.start_offset, run.end_offset, size, run.links)
            for (stream_id, run), size in zip(ordered, sizes, strict=True)
        ),
    )
    return PreparedObject(meta, encoded.parts)


def put_objects(
    store: ObjectStore,
    objects: Sequence[PreparedObject],
    stop: threading.Event,
    on_error: Callable[[ObjectStoreError], None],
) -> bool:
    """Puts every object, retrying with backoff until it works; False if
    stopped. ObjectStoreClosed is raised, not retried: the store's owner
    closed it, and no retry can get past that."""
    for prepared in objects:
        attempt = 0
        while True:
            try:
                store.put(prepared.meta.key, prepared.data)
                break
            except ObjectStoreClosed:
                raise
            except ObjectStoreError as error:
                on_error(error)
                if stop.wait(backoff_delay(attempt, first_s=0.05, doublings=7)):
                    return False
                attempt += 1
    return True


def add_ops(objects: Sequence[PreparedObject]) -> list[Op]:
    return [["add_object", o.meta.to_wire()] for o in objects]


def now_ms() -> int:
    return int(time.time() * 1000)


class _Ahead(NamedTuple):
    """A block whose objects were put while the previous commit ran."""

    block: CacheBlock
    objects: list[PreparedObject] | None
    """None: the store stopped before they were all put."""


class Uploader:
    """The upload thread: uploads sealed blocks in order; seals the active
    block once it is ``upload_interval_s`` old, or ``remote_linger_s`` after
    an append asked to be remotely durable, or as soon as as many appends
    wait on it as waited in all at the last commit; and, when a whole interval
    passes without a commit, checks that no other writer has fenced this one.

    Appends waiting to be remotely durable wait here, under the store's lock
    (``wait_remote_locked``), and are answered after each commit."""

    def __init__(
        self,
        state: StoreState,
        writer: ManifestWriter,
        store: ObjectStore,
        ids: ObjectIds,
        trim_wal: Callable[[Position], object],
        config: StreamStoreConfig,
        stats: StoreStats,
        fail: Callable[[BaseException], None],
        background: ThreadPriority = NORMAL,
    ) -> None:
        self._state = state
        self._writer = writer
        self._store = store
        self._ids = ids
        self._trim_wal = trim_wal
        self._config = config
        self._stats = stats
        self._fail = fail
        self._waiters: dict[int, list[tuple[int, Future[int]]]] = {}
        """Per stream, appends waiting to be remotely durable: (end, future)."""
        self._wanted = 0.0
        """When (monotonic) the first append of the active block asked to be
        remotely durable; 0 if none did."""
        self._asking = 0
        """Appends of the active block waiting to be remotely durable."""
        self._batch = 0
        """Appends waiting when the last commit was made, those it answered
        included: once that many wait on the active block, it is complete."""
        self._ahead: Future[_Ahead | None] | None = None
        """The next block and its objects, sealed and put while the previous
        block's commit runs (None: no PUT ahead; resolved to None: nothing
        was sealed before that commit ended)."""
        self._committing = False
        """Whether a commit of an upload is in flight (under the lock)."""
        self._remote_asked = -float("inf")
        """When (monotonic) an append last asked to be remotely durable."""
        self.trace: UploadTrace | None = None
        """Records each upload's times when set (s3stream/ack_trace.py)."""
        # Puts ahead only while appends wait to be remotely durable: at the
        # opener's priority, as the upload thread.
        self._ahead_pool = ThreadPoolExecutor(1, thread_name_prefix="s3stream-upload-ahead")
        self._background: ThreadPoolExecutor | None = (
            None if background.nice is None else background.pool(1, "s3stream-upload-background")
        )
        """Lays out and puts the objects of uploads no remote acknowledgement
        waits for, at the background priority (None: the upload thread does)."""
        # A daemon thread: an owner that never closes the store must not keep
        # the interpreter from exiting (the WAL holds what was appended).
        self._thread = threading.Thread(target=self._loop, name="s3stream-upload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        """Waits for the thread to end (after the store's stop event is set)."""
        self._thread.join()
        self._ahead_pool.shutdown(wait=True)
        if self._background is not None:
            self._background.shutdown(wait=True)

    # -- sealing and flushing (callers of *_locked hold the store's lock) -----

    def seal_locked(self) -> None:
        wanted, self._wanted = self._wanted, 0.0  # whoever waited is in the sealed block
        self._asking = 0
        sealed = self._state.cache.seal()
        if sealed is not None:
            if self.trace is not None:
                self.trace.sealed(sealed.block_id, wanted, time.monotonic())
            self._state.changed.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Uploads everything appended so far; True once it is all committed
        and the batches its uploads evicted are dropped."""
        state = self._state
        deadline = None if timeout is None else time.monotonic() + timeout
        with state.lock:
            self.seal_locked()
            target = state.cache.active.block_id
            while True:
                block = state.cache.next_to_upload()
                if (block is None or block.block_id >= target) and not state.cache.evicting:
                    return True
                if state.failure is not None:
                    raise state.failure_error()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                state.changed.wait(remaining if remaining is not None else 0.5)

    # -- remote durability ------------------------------------------------------

    def wait_remote_locked(self, stream_id: int, end: int) -> Future[int]:
        """A future resolved (to ``end``) once the stream's offsets below
        ``end`` are committed; asking starts an upload after the linger."""
        waiter: Future[int] = Future()
        waiter.set_running_or_notify_cancel()
        meta = self._writer.manifest.state.streams.get(stream_id)
        if meta is not None and meta.end_offset >= end:
            waiter.set_result(end)
            return waiter
        self._waiters.setdefault(stream_id, []).append((end, waiter))
        self._asking += 1
        self._remote_asked = time.monotonic()
        if not self._wanted:
            self._wanted = time.monotonic()
            if self.trace is not None and self._batch_complete_locked():
                # Its first ask completes the batch (one appender): due now.
                self.trace.complete(self._state.cache.active.block_id, self._wanted)
            self._state.changed.notify_all()
        elif self._batch_complete_locked():
            if self.trace is not None:
                self.trace.complete(self._state.cache.active.block_id, time.monotonic())
            self._state.changed.notify_all()
        return waiter

    def _batch_complete_locked(self) -> bool:
        """Whether as many appends wait on the active block as waited in all
        when the last commit was made: appenders that wait for each
        acknowledgement before their next append (a producer's in-flight
        limit) have all asked again, and the linger would only delay them.
        While some of them still wait on an earlier block, the linger holds,
        so that they can join the others as they did before."""
        return 0 < self._batch <= self._asking

    def take_waiters_locked(self, stream_id: int | None = None) -> list[Future[int]]:
        """Removes the remote waiters of one stream (or all) for failing them."""
        if stream_id is not None:
            return [f for _, f in self._waiters.pop(stream_id, [])]
        taken = [f for waiting in self._waiters.values() for _, f in waiting]
        self._waiters.clear()
        return taken

    def _reached_locked(self) -> list[tuple[Future[int], int]]:
        """Takes the remote waiters the manifest now covers (under the lock;
        the caller resolves them after releasing it)."""
        manifest_state = self._writer.manifest.state
        reached: list[tuple[Future[int], int]] = []
        for stream_id in list(self._waiters):
            meta = manifest_state.streams.get(stream_id)
            if meta is None:
                continue  # deleted meanwhile: failed by delete_stream
            waiting = self._waiters[stream_id]
            reached += [(f, end) for end, f in waiting if end <= meta.end_offset]
            left = [(end, f) for end, f in waiting if end > meta.end_offset]
            if left:
                self._waiters[stream_id] = left
            else:
                del self._waiters[stream_id]
        return reached

    # -- the loop ---------------------------------------------------------------

    def _loop(self) -> None:
        state = self._state
        interval = self._config.upload_interval_s
        linger = self._config.remote_linger_s
        check_fence_at = time.monotonic() + interval
        while not state.stop.is_set():
            with state.lock:
                # Looked at again under the lock: a close that set the flag
                # (and notified) since the look above must not be waited out.
                if state.stop.is_set():
                    return
                block = state.cache.next_to_upload()
                now = time.monotonic()
                if block is None:
                    active = state.cache.active
                    if active.empty:
                        self._wanted = 0.0
                        self._asking = 0
                    age = now - active.created
                    wanted = self._wanted
                    lingered = bool(wanted) and (
                        now >= wanted + linger or self._batch_complete_locked()
                    )
                    if not active.empty and (age >= interval or lingered):
                        self.seal_locked()
                        continue
                    if now < check_fence_at:
                        wait = check_fence_at - now
                        if not active.empty:
                            wait = min(wait, interval - age)
                        if wanted:
                            wait = min(wait, wanted + linger - now)
                        state.changed.wait(max(wait, 0.0))
                        continue
                live = set(state.streams)
            try:
                if block is None:
                    self._writer.check_fence()
                elif not self._upload(block, live):
                    return
                check_fence_at = time.monotonic() + interval  # a commit checks as well
            except Fenced:
                return
            except ObjectStoreClosed as error:
                # The owner closed the object store under this stream store:
                # its order, not a fault to retry. What is not uploaded stays
                # in the WAL for the next open to replay; the store fails so
                # that appends and remote waiters are told now, and close
                # waits for no upload that cannot come.
                log.warning("uploads stopped: the object store was closed (%s)", error)
                self._fail(error)
                return
            except BaseException as error:  # a bug: stop the store rather than lose data
                log.exception("uploader stopped")
                self._fail(error)
                return

    def _prepare(
        self, block: CacheBlock, live: set[int], state: ManifestState
    ) -> list[PreparedObject]:
        config = self._config
        # Under the lock, a bounded group of batches a hold: the block's
        # batches are read from its streams' lists, whose fronts an eviction
        # of an older block drops (0156, 0157).
        by_stream = read_block_shares(self._state.lock, self._state.cache, block)
        return prepare_objects(
            ((sid, b) for sid, b in by_stream.items() if sid in live),
            state=state,
            epoch=self._writer.manifest.epoch,
            ids=self._ids,
            now_ms=now_ms(),
            block_bytes=config.block_bytes,
            stream_object_bytes=config.stream_object_bytes,
            indexers=self._state.indexers(),
        )

    def _upload(self, block: CacheBlock, live: set[int]) -> bool:
        # Read once: tracing turned on while this upload runs must find it
        # recorded whole or not at all, never with its early times unset.
        trace = self.trace
        ahead, self._ahead = self._ahead, None
        put_ahead = None if ahead is None else ahead.result()  # put while the previous commit ran
        if put_ahead is not None and put_ahead.block is block:
            if put_ahead.objects is None:
                return False  # stopped
            objects = put_ahead.objects
        else:
            prepared = self._prepare_and_put(block, live, self._writer.manifest.state)
            if prepared is None:
                return False
            objects = prepared
        waited_from = 0.0 if trace is None else time.monotonic()
        if not self._wait_ready(block):
            return False
        if trace is not None:
            trace.wal_waited(block.block_id, waited_from, time.monotonic())
        ops = add_ops(objects)
        ops += [["trim", sid, start] for sid, start in block.trims.items() if sid in live]
        try:
            with self._writer.serial:
                self._put_ahead(block, ops)
                version = self._writer.commit(ops).seq
        except StoreClosed:
            return False
        finally:
            with self._state.lock:
                self._committing = False
                if self._wanted:
                    # The batching window of appends that waited during the
                    # commit opens now: those it answers may join them.
                    self._wanted = max(self._wanted, time.monotonic())
                self._state.changed.notify_all()
        committed = 0.0 if trace is None else time.monotonic()
        self._stats.uploads += 1
        self._stats.uploaded_bytes += sum(o.meta.size for o in objects)
        # Before mark_uploaded, which may evict the block itself; a group of
        # streams a hold (0157, amended).
        state = self._state
        ends = None if trace is None else read_block_ends(state.lock, state.cache, block)
        with state.lock:
            state.cache.mark_uploaded(block)
            state.changed.notify_all()
            reached = self._reached_locked() if self._waiters else []
            if reached:
                self._batch = len(reached) + sum(map(len, self._waiters.values()))
        if trace is not None and ends is not None:
            _traced(trace, block, ends, objects, version, committed)
        for waiter, end in reached:
            waiter.set_result(end)
        # The evicted blocks' batches dropped a bounded group a hold, each
        # group freed after its hold (0157, amended).
        evict_in_groups(state.lock, state.cache)
        with state.lock:
            state.changed.notify_all()  # a flush waits for the eviction too
        if block.last_position is not None:
            try:
                self._trim_wal(block.last_position)
            except WalError as error:
                log.warning("WAL trim failed: %s", error)
        return True

    def _prepare_and_put(
        self, block: CacheBlock, live: set[int], state: ManifestState
    ) -> list[PreparedObject] | None:
        """Lays out and puts ``block``'s objects (None if the store stopped
        first): on the background worker while nobody waits to be remotely
        durable, else on the calling (upload) thread."""

        def prepare_and_put() -> list[PreparedObject] | None:
            objects = self._prepare(block, live, state)
            stop, note = self._state.stop, self._stats.note_store_error
            return objects if put_objects(self._store, objects, stop, note) else None

        if self._background is None or self._remote_wanted():
            return prepare_and_put()
        try:
            lowered = self._background.submit(prepare_and_put)
        except RuntimeError:
            # The interpreter is exiting (its executors take no more work):
            # the upload that closes the store at exit runs here instead.
            return prepare_and_put()
        # The worker ends its put once the store's stop event is set.
        return lowered.result()

    def _remote_wanted(self) -> bool:
        """Whether an append waits, or asked within the last upload
        interval, to be remotely durable: then the next upload may be
        waited for, and runs at the upload thread's priority."""
        with self._state.lock:
            if self._waiters:
                return True
            return time.monotonic() - self._remote_asked < self._config.upload_interval_s

    def _put_ahead(self, block: CacheBlock, ops: list[Op]) -> None:
        """While appends wait to be remotely durable, starts sealing the
        block after ``block`` and putting its objects, laid out against the
        state ``ops`` will commit, so that its PUT overlaps this commit. The
        caller holds the manifest writer's serial lock, so nothing else
        commits in between."""
        state = self._state
        with state.lock:
            self._committing = True
            if not self._waiters or state.stop.is_set():
                return
            live = set(state.streams)
        # The commit of these same ops takes this state as its own.
        after = self._writer.manifest.state_after(ops)
        try:
            self._ahead = self._ahead_pool.submit(self._seal_and_put_ahead, block, live, after)
        except RuntimeError:
            return  # the interpreter is exiting: the next block is put after this commit

    def _seal_and_put_ahead(
        self, block: CacheBlock, live: set[int], after: ManifestState
    ) -> _Ahead | None:
        """Puts the objects of the block after ``block`` once it is sealed:
        sealed already, or sealed here while ``block``'s commit runs, once
        the appends waiting on it are a complete batch. None if ``block``'s
        commit ends first: the loop takes the next block from there, after
        a batching window in which the appends this commit answers may join
        those waiting (one upload for all of them, rather than uploads
        taking turns, each waiting out the other's commit)."""
        state = self._state
        with state.lock:
            while True:
                following = state.cache.sealed_after(block)
                if following is not None:
                    break
                if state.stop.is_set() or not self._committing:
                    return None
                wait = 0.5
                if self._wanted and not state.cache.active.empty:
                    if self._batch_complete_locked():
                        self.seal_locked()
                        continue
                    if not self._batch:  # no batch known yet: the linger alone
                        wait = self._wanted + self._config.remote_linger_s - time.monotonic()
                        if wait <= 0:
                            self.seal_locked()
                            continue
                state.changed.wait(wait)
        objects = self._prepare(following, live, after)
        if not put_objects(self._store, objects, state.stop, self._stats.note_store_error):
            return _Ahead(following, None)
        return _Ahead(following, objects)

    def _wait_ready(self, block: CacheBlock) -> bool:
        """Waits until all of ``block`` is durable in the WAL; False if the
        store stopped first. A block's objects are put while its last
        appends are still being written to the WAL (their PUT overlaps the
        fsync), but committed only once every append in them is durable:
        an append the WAL fails is never acknowledged, so it must never
        become readable. Objects put for a block that never commits are
        referenced by no manifest version."""
        state = self._state
        with state.lock:
            while not block.ready:
                if state.stop.is_set():
                    return False
                state.changed.wait(0.5)
        return True


def _traced(
    trace: UploadTrace,
    block: CacheBlock,
    ends: dict[int, int],
    objects: list[PreparedObject],
    version: int,
    committed: float,
) -> None:
    """Records ``block``'s upload in ``trace``, as its waiters are about to
    be answered; ``ends``: each of its streams' end offset in it."""
    now = time.monotonic()
    keys = [o.meta.key for o in objects]
    trace.uploaded(block.block_id, ends, keys, version, committed, now)
