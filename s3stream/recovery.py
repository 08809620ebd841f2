"""Recovery on open: the streams from the manifest, then the WAL entries
the manifest does not hold yet, and that this data directory wrote while
it owned the store, replayed into the log cache (from where the uploader
uploads them again); then the objects no manifest version names are deleted,
and what puts that can no longer finish left in the store.

Entries written under an ownership that another writer has taken over
since are never replayed: that writer was never given them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from native import untracked_record
from s3stream.compaction import orphans
from s3stream.log_cache import LogCache
from s3stream.manifest import Manifest
from s3stream.manifest_state import ManifestState
from s3stream.objects import StoredBatch
from s3stream.store import ObjectStore, ObjectStoreError
from s3stream.store_state import StreamState
from s3stream.uploader import OBJECT_PREFIX, epoch_of_key
from s3stream.wal_entries import Writer, is_trim, split_entry
from wal import WriteAheadLog

log = logging.getLogger("tidelog.s3stream")


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
    abandoned_writes_removed: int = 0
    """What crashed writers' puts left behind, removed (a local directory's
    temp files: ``ObjectStore.remove_abandoned_writes``)."""
    abandoned_writes_swept: bool = False
    """Whether that removal ran to its end (a failed one is logged and left
    to the next compaction pass)."""
    manifest_conflicts: tuple[str, ...] = ()
    """Keys of manifest versions left out because they contradict the history
    before them (two writers on a store that ignores conditional writes)."""


@dataclass
class _Superseded:
    """WAL entries of one stream dropped on replay (see RecoverySummary)."""

    entries: int = 0
    bytes: int = 0
    records: int = 0
    epoch: int = 0
    """The newest epoch they were written under."""


def recover(
    manifest: Manifest,
    wal: WriteAheadLog,
    store: ObjectStore,
    identity: str,
    cache: LogCache,
    streams: dict[int, StreamState],
) -> RecoverySummary:
    """Fills ``streams`` and ``cache`` from the manifest and the WAL, and
    deletes orphaned objects and abandoned writes; returns what it found."""
    state = manifest.state
    summary = RecoverySummary(state.seq, state.epoch)
    summary.manifest_conflicts = tuple(c.key for c in manifest.conflicts)
    for meta in state.streams.values():
        streams[meta.stream_id] = StreamState(
            meta.stream_id, meta.epoch, meta.start_offset, meta.end_offset, meta.end_offset
        )
    superseded: dict[int, _Superseded] = {}
    for entry in wal.replay():
        summary.wal_records += 1
        stream = streams.get(entry.stream_id)
        if stream is None:
            continue  # deleted since
        writer, payload = split_entry(entry.type, entry.payload)
        if writer is not None and not _wrote_as_owner(writer, identity, state):
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
                cache.add_trim(stream.stream_id, stream.start_offset)
            cache.active.note_position(entry.position)
            continue
        if entry.end_offset <= stream.next_offset:
            continue  # already in a committed object
        if entry.start_offset != stream.next_offset:
            summary.dropped_appends += 1
            continue
        stored = bytes(payload)
        # Untracked, as the produce path's (0154): a bytes payload and two
        # ints hold nothing the collector tracks, and a restart's batches
        # live in the cache as long as any request's (0156).
        block = cache.add(
            stream.stream_id,
            untracked_record(StoredBatch, entry.start_offset, entry.end_offset, stored, None),
        )
        block.note_position(entry.position)
        stream.next_offset = stream.end_offset = entry.end_offset
        summary.replayed_appends += 1
        summary.replayed_bytes += len(stored)
    cache.seal()
    try:
        doomed = orphans(state, store.list(OBJECT_PREFIX))
        for key in doomed:
            store.delete(key)
        summary.orphans_deleted = len(doomed)
    except ObjectStoreError as error:
        log.warning("orphan cleanup skipped: %s", error)
    try:
        summary.abandoned_writes_removed = store.remove_abandoned_writes()
        summary.abandoned_writes_swept = True
    except ObjectStoreError as error:
        log.warning("removal of abandoned writes skipped: %s", error)
    if summary.dropped_appends:
        # With damage salvaged, a stream that lost an append loses every
        # later one too: its offsets must stay dense.
        why = (
            "they follow appends lost to the write-ahead log damage dropped"
            if wal.recovery.dropped
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


def _wrote_as_owner(writer: Writer, identity: str, state: ManifestState) -> bool:
    """Whether this directory wrote the entry while it owned the store and
    nobody has fenced it since (its own restarts do not count)."""
    return writer.owner == identity == state.owner and writer.epoch >= state.owner_since


def _uploaded_under(state: ManifestState, stream_id: int, offset: int, epoch: int) -> bool:
    """Whether ``offset`` of the stream is in a committed object written at
    ``epoch`` (so the writer of that epoch had uploaded it before it was fenced)."""
    ranges = state.ranges.get(stream_id)
    found = ranges.find(offset) if ranges is not None else None
    if found is None or not found[0] <= offset < found[1]:
        return False
    meta = state.objects.get(found[2])
    return meta is not None and epoch_of_key(meta.key) == epoch
