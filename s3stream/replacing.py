"""Replacing a stream's committed range with new batches, for a log
cleaner: the checks of the range and the batches, the new stream object,
and the one manifest commit that swaps it in (or RangeChanged)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

from s3stream import chain
from s3stream.chain import RangeLinks, Rewrite
from s3stream.chain_hash import CURRENT
from s3stream.errors import OffsetOutOfRange, RangeChanged, StreamNotFound
from s3stream.header_index import Indexer
from s3stream.manifest_state import ManifestState
from s3stream.manifest_writer import ManifestWriter
from s3stream.objects import ObjectKind, StoredBatch
from s3stream.store import ObjectStore, ObjectStoreError
from s3stream.uploader import ObjectIds, Run, add_ops, indexed_by, prepare_object

log = logging.getLogger("tidelog.s3stream")


def replace_range(
    writer: ManifestWriter,
    store: ObjectStore,
    ids: ObjectIds,
    block_bytes: int,
    stream_id: int,
    stream_start: int,
    start_offset: int,
    end_offset: int,
    batches: Sequence[StoredBatch],
    indexer: Indexer | None = None,
) -> None:
    """See ``StreamStore.replace_range``; ``stream_start`` is the stream's
    start offset as the store knows it (it may be ahead of the manifest's);
    ``indexer`` the stream's header indexer, for the new object's region."""
    state = writer.manifest.state
    replaced = _ranges_to_replace(state, stream_id, stream_start, start_offset, end_offset)
    _check_replacement(stream_id, start_offset, end_offset, batches)
    links = _rewrite_links(state, stream_id, start_offset, end_offset, replaced, batches)
    prepared = prepare_object(
        ObjectKind.STREAM,
        [(stream_id, Run(start_offset, end_offset, batches, links))],
        writer.manifest.epoch,
        ids,
        # As for merges: the replaced data does not look newer to retention.
        max(state.objects[oid].created_ms for _, _, oid in replaced),
        block_bytes,
        indexed_by({stream_id: indexer} if indexer is not None else {}),
    )
    store.put(prepared.meta.key, prepared.data)
    with writer.serial:
        state = writer.manifest.state
        ranges = state.ranges.get(stream_id)
        meta = state.streams.get(stream_id)
        if (
            ranges is None
            or meta is None
            or meta.start_offset > start_offset
            or _overlapping(ranges.entries, start_offset, end_offset) != replaced
        ):
            with contextlib.suppress(ObjectStoreError):  # else an orphan, deleted on open
                store.delete(prepared.meta.key)
            if ranges is None:
                raise StreamNotFound(stream_id)
            raise RangeChanged(stream_id, start_offset, end_offset)
        writer.commit(
            add_ops([prepared])
            + [["drop_range", stream_id, start, oid] for start, _, oid in replaced]
        )
    log.info(
        "stream %d: replaced [%d, %d) (%d ranges) with object %d",
        stream_id,
        start_offset,
        end_offset,
        len(replaced),
        prepared.meta.object_id,
    )


def _rewrite_links(
    state: ManifestState,
    stream_id: int,
    start: int,
    end: int,
    replaced: Sequence[tuple[int, int, int]],
    batches: Sequence[StoredBatch],
) -> RangeLinks | None:
    """The new range's chain: it starts at a genesis that commits to the
    links at both ends of what it replaces, and both are kept with it, so a
    verifier sees that, and where, the cleaner rewrote the stream. None if
    the replaced ranges were written before the chain existed."""
    first = state.range_meta(stream_id, replaced[0][0], replaced[0][2])
    last = state.range_meta(stream_id, replaced[-1][0], replaced[-1][2])
    if first is None or last is None or first.links is None or last.links is None:
        return None
    # The old links are those of the chain the neighbours were linked to:
    # a range already rewritten gives the links it replaced in its turn,
    # and the range that follows says which link it went on from.
    rewritten = first.links.rewrite
    old_before = rewritten.old_before if rewritten is not None else first.links.before
    old_after = last.links.after
    following = state.ranges[stream_id].find(end)
    if following is not None and following[0] == end:
        after = state.range_meta(stream_id, following[0], following[2])
        if after is not None and after.links is not None:
            went_on = after.links.rewrite
            old_after = went_on.old_before if went_on is not None else after.links.before
    old = Rewrite(old_before, old_after)
    before = chain.rewrite_genesis(stream_id, start, end, old.old_before, old.old_after)
    return RangeLinks(CURRENT, before, chain.extend(CURRENT, before, batches), old)


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
