"""Compaction and retention: what to merge, split, trim and delete.

The functions here decide from a manifest state and return what to do;
``Compactor`` owns the thread that runs a pass now and then, does the I/O
and commits the result. Objects
leave the manifest first and are deleted only after a grace period, so a
read that looked an object up just before it left still finds it.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Callable, Mapping, Sequence, Set
from typing import NamedTuple

from s3stream import chain
from s3stream.chain import RangeLinks
from s3stream.config import StreamStoreConfig
from s3stream.errors import CorruptObject, Fenced, StoreClosed, StoreFailed
from s3stream.header_index import Indexer, StreamKeys, parse_region, region_end, stream_keys
from s3stream.manifest_entries import ObjectMeta
from s3stream.manifest_state import ManifestState, Op
from s3stream.manifest_writer import ManifestWriter
from s3stream.objects import ObjectKind, StoredBatch, parse_object
from s3stream.store import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreClosed,
    ObjectStoreError,
)
from s3stream.store.abandoned import SweepCadence
from s3stream.store_state import Retention, StoreState, StoreStats
from s3stream.uploader import (
    ObjectIds,
    PreparedObject,
    Run,
    add_ops,
    epoch_of_key,
    now_ms,
    prepare_runs,
    put_objects,
)
from wal.thread_priority import NORMAL, ThreadPriority

log = logging.getLogger("tidelog.s3stream")


def retention_trims(
    state: ManifestState, retention: dict[int, Retention], now_ms: int
) -> dict[int, int]:
    """New start offsets for streams whose oldest objects are past their limits.

    Only whole committed ranges are dropped, oldest first, as Kafka drops
    whole segments; time is the object's upload time, bytes the stored size.
    """
    trims: dict[int, int] = {}
    for stream_id, limits in retention.items():
        stream = state.streams.get(stream_id)
        ranges = state.ranges.get(stream_id)
        if stream is None or ranges is None:
            continue
        live = [
            (start, end, state.objects[oid])
            for start, end, oid in ranges.entries
            if end > stream.start_offset
        ]
        sizes = [
            range_size(meta, state.source_of(stream_id, start, meta.object_id), start)
            for start, _, meta in live
        ]
        total = sum(sizes)
        new_start = stream.start_offset
        for (_, end, meta), size in zip(live, sizes, strict=True):
            too_old = limits.ms is not None and meta.created_ms < now_ms - limits.ms
            too_big = limits.bytes is not None and total - size >= limits.bytes
            if not (too_old or too_big):
                break
            new_start = end
            total -= size
        if new_start > stream.start_offset:
            trims[stream_id] = new_start
    return trims


def range_size(meta: ObjectMeta, stream_id: int, start: int) -> int:
    """The stored bytes of the stream's range from ``start`` in the object."""
    for r in meta.ranges:
        if r.stream_id == stream_id and r.start_offset == start:
            return r.size
    return 0


def dead_objects(state: ManifestState) -> list[int]:
    """Objects none of whose ranges can be read any more by any stream: the
    streams holding them (the writer's, and every stream sharing one) were
    deleted, trimmed past them, or dropped them (``drop_range``)."""
    return [meta.object_id for meta in state.objects.values() if not state.object_live(meta)]


def inputs_unchanged(
    before: ManifestState, after: ManifestState, object_ids: Sequence[int]
) -> bool:
    """Whether a merge of ``object_ids`` read on ``before`` may commit on
    ``after``: every input is still there and none lost a range to
    ``drop_range`` since (the merge would bring the replaced data back), and
    no stream shares one (``share_range``) since: removing it would take
    the shared range's bytes from under that stream."""
    inputs = set(object_ids)
    if not all(oid in after.objects for oid in inputs) or inputs & after.shared_object_ids():
        return False
    return not any(oid in inputs for _, _, oid in after.dropped - before.dropped)


def removal_ops(object_ids: Sequence[int], delete_after_ms: int) -> list[Op]:
    return [["remove_object", oid, delete_after_ms] for oid in object_ids]


def expired_garbage(state: ManifestState, now_ms: int) -> list[str]:
    return [key for key, after in state.garbage.items() if after <= now_ms]


def orphans(state: ManifestState, listing: Sequence[ObjectInfo]) -> list[str]:
    """Object keys written by an older writer that never made it into the manifest.

    An older writer is fenced, so its uncommitted objects can never be
    committed; objects of the current epoch may still be on their way.
    """
    known = {meta.key for meta in state.objects.values()} | set(state.garbage)
    found = []
    for info in listing:
        epoch = epoch_of_key(info.key)
        if epoch is not None and epoch < state.epoch and info.key not in known:
            found.append(info.key)
    return found


class Compaction(NamedTuple):
    """Objects to rewrite together, and how."""

    object_ids: list[int]
    stream_object_bytes: int
    """Runs of one stream at least this large go to stream objects (0: all)."""


def pick_compaction(
    state: ManifestState,
    *,
    small_object_bytes: int,
    stream_object_bytes: int,
    max_objects: int,
    max_bytes: int,
    force_split_before_ms: int,
    unreadable: Set[int] = frozenset(),
) -> Compaction | None:
    """The oldest stream-set objects, if rewriting them gains something.

    It does if two or more of them are small (merging saves GETs and
    objects), or if one stream has at least ``stream_object_bytes`` across
    them: that stream then moves into a stream object of its own, so a
    reader catching up on it reads a few large objects instead of a slice of
    every stream-set object. Once the oldest was created at or before
    ``force_split_before_ms``, every stream moves out: no stream-set object
    lives for ever, and what is left of them is merged into larger stream
    objects by ``pick_stream_merge``. Objects a stream shares a range of
    are never picked: they stay as they are while the share lives; nor are
    ``unreadable`` ones (a merge met them damaged or gone).
    """
    picked: list[int] = []
    total = 0
    left_alone = state.shared_object_ids() | unreadable
    for object_id in sorted(state.objects):
        meta = state.objects[object_id]
        if meta.kind is not ObjectKind.STREAM_SET or object_id in left_alone:
            continue
        if picked and (len(picked) >= max_objects or total + meta.size > max_bytes):
            break
        picked.append(object_id)
        total += meta.size
    if not picked:
        return None
    if state.objects[picked[0]].created_ms <= force_split_before_ms:
        return Compaction(picked, 0)
    small = sum(1 for oid in picked if state.objects[oid].size < small_object_bytes)
    per_stream: dict[int, int] = {}
    for oid in picked:
        for r in state.objects[oid].ranges:
            if state.range_live(oid, r):
                per_stream[r.stream_id] = per_stream.get(r.stream_id, 0) + r.size
    splits = any(size >= stream_object_bytes for size in per_stream.values())
    return Compaction(picked, stream_object_bytes) if small >= 2 or splits else None


def pick_stream_merge(
    state: ManifestState,
    *,
    small_object_bytes: int,
    max_bytes: int,
    unreadable: Set[int] = frozenset(),
) -> Compaction | None:
    """Two or more adjacent small stream objects of one stream (at most
    ``max_bytes`` together), to be rewritten as one stream object: a reader
    catching up then needs fewer GETs, and the bucket holds fewer objects.
    Shared and ``unreadable`` objects are left as they are."""
    left_alone = state.shared_object_ids() | unreadable
    for stream_id in sorted(state.ranges):
        run: list[int] = []
        total = 0
        previous_end = -1
        for start, end, object_id in state.ranges[stream_id].entries:
            if run and run[-1] == object_id:  # several ranges of one object
                previous_end = end
                continue
            meta = state.objects[object_id]
            small = (
                meta.kind is ObjectKind.STREAM
                and meta.size < small_object_bytes
                and object_id not in left_alone
            )
            if small and run and start == previous_end and total + meta.size <= max_bytes:
                run.append(object_id)
                total += meta.size
            elif len(run) >= 2:
                return Compaction(run, 0)
            else:
                run, total = ([object_id], meta.size) if small else ([], 0)
            previous_end = end
        if len(run) >= 2:
            return Compaction(run, 0)
    return None


def merge_objects(
    store: ObjectStore,
    state: ManifestState,
    object_ids: Sequence[int],
    *,
    ids: ObjectIds,
    now_ms: int,
    block_bytes: int,
    stream_object_bytes: int,
    indexers: Mapping[int, Indexer] | None = None,
) -> list[PreparedObject]:
    """Reads the objects and lays out their live data again: runs of one
    stream of at least ``stream_object_bytes`` in stream objects of their
    own, the rest together in one stream-set object.

    Only ranges their stream still holds are copied (a dropped range was
    replaced by another object), and of those the batches every reader has
    been trimmed past are left out. Adjacent ranges of one stream join into
    one; a range keeps its bounds even where its batches leave gaps, so the
    stream's ranges still cover its offsets without holes.

    A stream in ``indexers`` gets its header index entries computed again
    from its batches; any other keeps the entries its inputs' regions held
    for the batches copied, for the names all of its inputs covered."""
    per_stream: dict[int, list[Run]] = {}
    carried = _Carried()
    for object_id in object_ids:
        meta = state.objects[object_id]
        live = [r for r in meta.ranges if state.range_live(object_id, r)]
        if not live:
            continue  # nothing to copy: no need to read it
        data = store.get(meta.key)
        index, blocks = parse_object(meta.key, data)
        carried.add(meta.key, data, {r.stream_id for r in live})
        held: dict[int, list[StoredBatch]] = {}
        for info, batches in zip(index.blocks, blocks, strict=True):
            held.setdefault(info.stream_id, []).extend(batches)
        for r in live:
            batches = held.get(r.stream_id, [])
            bases = [b.base_offset for b in batches]
            in_range = batches[
                bisect.bisect_left(bases, r.start_offset) : bisect.bisect_left(bases, r.end_offset)
            ]
            stream_start = state.streams[r.stream_id].start_offset
            kept = [b for b in in_range if b.end_offset > stream_start]
            if kept:
                start = max(r.start_offset, min(kept[0].base_offset, stream_start))
                links = r.links
                if links is not None and len(kept) < len(in_range):
                    # The chain goes on from the link after the batches left
                    # out: the truncation point a verifier starts from. The
                    # link at the end is the manifest's, never recomputed, so
                    # a merge cannot make changed bytes look linked.
                    skipped = in_range[: len(in_range) - len(kept)]
                    links = links._replace(
                        before=chain.extend(links.algorithm, links.before, skipped)
                    )
                per_stream.setdefault(r.stream_id, []).append(Run(start, r.end_offset, kept, links))
    # Each merged object's creation time is that of its newest input, so a
    # merge never makes data look older to time-based retention.
    created = max(state.objects[oid].created_ms for oid in object_ids)
    return prepare_runs(
        ((sid, _joined(runs)) for sid, runs in per_stream.items()),
        epoch=state.epoch,
        ids=ids,
        now_ms=min(now_ms, created),
        block_bytes=block_bytes,
        stream_object_bytes=stream_object_bytes,
        index=carried.index(indexers or {}),
        # The batches are views of the objects read above, held until the
        # merged objects are put: a copy of the small ones would hold them
        # twice, past merge_max_bytes (docs/server.md).
        copy_small=False,
    )


class _Carried:
    """The header index entries of a merge's inputs, per stream."""

    def __init__(self) -> None:
        self.names: dict[int, set[int]] = {}
        self.keys: dict[int, dict[int, list[int]]] = {}
        """Per stream: base offset -> key hashes of that batch."""

    def add(self, key: str, data: bytes, streams: set[int]) -> None:
        end = region_end(key, data, len(data))
        found = {s.stream_id: s for s in parse_region(key, data, end)} if end is not None else {}
        for stream_id in streams:
            keys = found.get(stream_id)
            names = set(keys.names) if keys is not None else set()
            held = self.names.get(stream_id)
            self.names[stream_id] = names if held is None else held & names
            per_batch = self.keys.setdefault(stream_id, {})
            for hashed, offset in keys.keys if keys is not None else ():
                per_batch.setdefault(offset, []).append(hashed)

    def index(self, indexers: Mapping[int, Indexer]) -> Callable[[int, Run], StreamKeys | None]:
        def index(stream_id: int, run: Run) -> StreamKeys | None:
            indexer = indexers.get(stream_id)
            if indexer is not None:
                return stream_keys(stream_id, indexer, run.batches)
            names = self.names.get(stream_id)
            if not names:
                return None
            per_batch = self.keys.get(stream_id, {})
            keys = [
                (k, b.base_offset) for b in run.batches for k in per_batch.get(b.base_offset, ())
            ]
            return StreamKeys(stream_id, tuple(sorted(names)), keys)

        return index


def _joined(runs: list[Run]) -> list[Run]:
    """Runs in offset order, each adjacent pair whose chains follow on
    joined into one. Where the chain does not (a cleaner's rewrite starts or
    ends there, or only one side is linked) the runs stay apart, so each
    range's links still describe one stretch of one chain."""
    out: list[Run] = []
    for run in sorted(runs, key=lambda r: r.start_offset):
        if out and out[-1].end_offset == run.start_offset and _follows(out[-1], run):
            last = out[-1]
            links = None
            if last.links is not None and run.links is not None:
                links = RangeLinks(
                    last.links.algorithm, last.links.before, run.links.after, last.links.rewrite
                )
            out[-1] = Run(last.start_offset, run.end_offset, [*last.batches, *run.batches], links)
        else:
            out.append(run)
    return out


def _follows(first: Run, second: Run) -> bool:
    if first.links is None or second.links is None:
        return first.links is None and second.links is None
    return (
        second.links.rewrite is None
        and first.links.after == second.links.before
        # a range's links are made with one algorithm: a chain that goes on
        # with another (an upgrade's first upload) stays two ranges
        and first.links.algorithm == second.links.algorithm
    )


class Compactor:
    """The compaction thread: every ``compaction_interval_s`` (or when woken,
    e.g. after a stream is deleted) one pass of retention, merging, deletion
    of expired garbage and, when its cadence says so, removal of abandoned
    writes (temp files a crashed writer left in a local directory store)."""

    def __init__(
        self,
        state: StoreState,
        writer: ManifestWriter,
        store: ObjectStore,
        ids: ObjectIds,
        forget_object: Callable[[str], None],
        config: StreamStoreConfig,
        stats: StoreStats,
        priority: ThreadPriority = NORMAL,
        *,
        swept_on_open: bool = True,
    ) -> None:
        """``swept_on_open``: whether the store's abandoned writes were
        removed on open (recovery.py); if not, the first pass sweeps."""
        self._state = state
        self._writer = writer
        self._store = store
        self._ids = ids
        self._forget_object = forget_object
        """Drops a deleted object's cached blocks and open reads."""
        self._config = config
        self._stats = stats
        self._sweeps = SweepCadence(config.abandoned_writes_sweep_interval_s, swept_on_open)
        self._unreadable: set[int] = set()
        """Objects a merge found damaged or gone: left as they are from then
        on, so that one object's damage does not stop every later pass
        before its merges and deletions (readers meeting it are refused,
        naming it)."""
        self._start_listeners: list[Callable[[set[int]], None]] = []
        self._wake = threading.Event()
        # A daemon thread, as the uploader's, at a lower priority: nothing
        # acknowledged waits for a pass (wal/thread_priority.py).
        self._thread = priority.thread(self._loop, "s3stream-compact")

    def start(self) -> None:
        self._thread.start()

    def add_start_listener(self, listener: Callable[[set[int]], None]) -> None:
        """Calls ``listener`` with the ids of the streams whose start offset
        retention moved, once per pass that moved some, on the compaction
        thread, once the move is committed and readers see it (so that a
        reader waiting at an offset now below the start looks again)."""
        self._start_listeners.append(listener)

    def wake(self) -> None:
        """Runs a pass soon (or, once the store's stop event is set, ends the loop)."""
        self._wake.set()

    def join(self) -> None:
        self._thread.join()

    def _loop(self) -> None:
        stop = self._state.stop
        while not stop.is_set():
            self._wake.wait(self._config.compaction_interval_s)
            self._wake.clear()
            if stop.is_set():
                return
            try:
                self.run_once()
            except (Fenced, StoreClosed, StoreFailed):
                # A failed store (the uploader's closed object store, the
                # WAL's error) never recovers: every later pass would fail
                # its first check and log the same traceback.
                return
            except ObjectStoreClosed as error:
                # The owner closed the object store under this stream store:
                # no later pass can reach it, and each would note an error.
                log.warning("compaction stopped: the object store was closed (%s)", error)
                return
            except ObjectStoreError as error:
                self._stats.note_store_error(error)
            except Exception:
                log.exception("compaction pass failed")

    def run_once(self) -> None:
        """One pass of retention, merging, deletion and, when due, removal of
        abandoned writes."""
        state = self._state
        with state.lock:
            state.check_usable()
            retention = {s.stream_id: s.retention for s in state.streams.values()}
        now = now_ms()
        grace_ms = int(self._config.garbage_grace_s * 1000)
        writer = self._writer
        moved: set[int] = set()
        with writer.serial:
            manifest_state = writer.manifest.state
            trims = retention_trims(manifest_state, retention, now)
            if trims:
                manifest_state = writer.commit(
                    [["trim", sid, start] for sid, start in trims.items()]
                )
                with state.lock:
                    for sid, start in trims.items():
                        stream = state.streams.get(sid)
                        if stream is not None and start > stream.start_offset:
                            stream.start_offset = start
                            moved.add(sid)
            dead = dead_objects(manifest_state)
            if dead:
                writer.commit(removal_ops(dead, now + grace_ms))
        for listener in self._start_listeners if moved else ():
            try:
                listener(moved)
            except Exception:
                log.exception("a start-offset listener failed")
        self._merge(now, grace_ms)
        self._collect_garbage(now)
        if self._sweeps.due():
            self._stats.abandoned_writes_removed += self._store.remove_abandoned_writes()
            self._sweeps.swept()
        self._stats.compactions += 1

    def _merge(self, now: int, grace_ms: int) -> None:
        config = self._config
        writer = self._writer
        state = writer.manifest.state
        while True:  # ends: each turn round leaves one more object alone
            picked = pick_compaction(
                state,
                small_object_bytes=config.small_object_bytes,
                stream_object_bytes=config.stream_object_bytes,
                max_objects=config.merge_max_objects,
                max_bytes=config.merge_max_bytes,
                force_split_before_ms=now - int(config.force_split_after_s * 1000),
                unreadable=self._unreadable,
            ) or pick_stream_merge(
                state,
                small_object_bytes=config.small_object_bytes,
                max_bytes=config.stream_object_max_bytes,
                unreadable=self._unreadable,
            )
            if picked is None:
                return
            try:
                merged = merge_objects(
                    self._store,
                    state,
                    picked.object_ids,
                    ids=self._ids,
                    now_ms=now,
                    block_bytes=config.block_bytes,
                    stream_object_bytes=picked.stream_object_bytes,
                    indexers=self._state.indexers(),
                )
                break
            except (CorruptObject, ObjectNotFound) as error:
                if isinstance(error, ObjectNotFound):
                    # Another writer that took the bucket over may have
                    # merged and deleted it: then this one is fenced, and
                    # the object is not damaged (a check that fails leaves
                    # the pass to the next, rather than call it damage).
                    self._writer.check_fence(certain=True)
                self._leave_unreadable(state, picked.object_ids, error)
        if not put_objects(self._store, merged, self._state.stop, self._stats.note_store_error):
            return
        with writer.serial:
            if not inputs_unchanged(state, writer.manifest.state, picked.object_ids):
                for prepared in merged:  # the inputs changed meanwhile; try again later
                    self._store.delete(prepared.meta.key)
                return
            writer.commit(add_ops(merged) + removal_ops(picked.object_ids, now + grace_ms))
        log.info("merged %d objects into %d", len(picked.object_ids), len(merged))

    def _leave_unreadable(
        self, state: ManifestState, object_ids: Sequence[int], error: CorruptObject | ObjectNotFound
    ) -> None:
        """Notes the merge input ``error`` names as one to leave alone: its
        bytes cannot be copied, and its ranges must stay where readers are
        told of the damage rather than leave the log with the merge."""
        found = [oid for oid in object_ids if state.objects[oid].key == error.key]
        if not found:
            raise error  # not an input's: nothing to leave alone
        self._unreadable.update(found)
        log.error(
            "object %s cannot be merged and is left as it is (reads of what it holds "
            "fail until it is repaired or retention drops it): %s",
            error.key,
            error,
        )

    def _collect_garbage(self, now: int) -> None:
        expired = expired_garbage(self._writer.manifest.state, now)
        # One request for them all (S3's DeleteObjects), not a burst of
        # DELETEs beside the uploads that remote acknowledgements wait for.
        self._store.delete_many(expired)
        for key in expired:
            self._forget_object(key)
        if expired:
            with self._writer.serial:
                self._writer.commit([["forget_garbage", key] for key in expired])
            self._stats.objects_deleted += len(expired)
