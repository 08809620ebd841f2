"""Forking a stream: a new stream whose offsets below the fork point are the
source's own committed ranges, shared (``share_range``), not copied.

The range holding the fork point, if the point is inside one, is the one
thing copied: its batches below the point go to a stream object of the
fork's own (one range, so bounded by the object holding it).

The fork and its source then go their own ways: appends to one never reach
the other, and the shared objects stay while either stream holds a range of
them (objects are reference counted by the streams holding their ranges;
compaction leaves shared objects as they are). The design is in
docs/design/0007-forks.md, the operation in docs/object-format.md.
"""

from __future__ import annotations

from s3stream import chain
from s3stream.chain import RangeLinks
from s3stream.errors import ForkPointInsideRange, OffsetOutOfRange
from s3stream.manifest_state import ManifestState, Op
from s3stream.manifest_writer import ManifestWriter
from s3stream.objects import ObjectKind, StoredBatch, parse_object
from s3stream.store import ObjectStore
from s3stream.uploader import ObjectIds, PreparedObject, Run, add_ops, prepare_object


def fork_ops(
    writer: ManifestWriter,
    store: ObjectStore,
    ids: ObjectIds,
    block_bytes: int,
    source_stream_id: int,
    start_offset: int,
    at: int,
    created_ms: int,
) -> tuple[int, list[Op], PreparedObject | None]:
    """The new stream's id, the operations creating it as a fork of the
    source at ``at``, and the object of its own holding the part below
    ``at`` of the range that holds ``at`` (already put; None if ``at`` ends
    a range). The caller holds ``writer.serial`` and commits the operations
    before anything else is committed, or deletes the object. Everything
    below ``at`` must be uploaded already.

    Raises OffsetOutOfRange if ``at`` is outside ``[start_offset, remote
    end]`` and ForkPointInsideRange if a batch holds offsets on both sides
    of it, or a log cleaner rewrote the range holding it.
    """
    state = writer.manifest.state
    meta = state.streams[source_stream_id]
    if not start_offset <= at <= meta.end_offset:
        raise OffsetOutOfRange(source_stream_id, at, start_offset, meta.end_offset)
    stream_id = state.next_stream_id
    ops: list[Op] = [["create_stream", stream_id, created_ms]]
    copied: PreparedObject | None = None
    for range_start, range_end, object_id in state.ranges[source_stream_id].entries:
        if range_end <= start_offset or range_start >= at:
            continue
        source = state.source_of(source_stream_id, range_start, object_id)
        if range_end <= at:
            ops.append(["share_range", stream_id, source, range_start, object_id])
            continue
        run = _run_below(store, state, source, range_start, range_end, object_id, at)
        copied = prepare_object(
            ObjectKind.STREAM,
            [(stream_id, run)],
            writer.manifest.epoch,
            ids,
            state.objects[object_id].created_ms,  # as old as the data, to retention
            block_bytes,
        )
        store.put(copied.meta.key, copied.data)
        ops += add_ops([copied])
    if start_offset > 0:
        ops.append(["trim", stream_id, start_offset])
    return stream_id, ops, copied


def _run_below(
    store: ObjectStore,
    state: ManifestState,
    source: int,
    range_start: int,
    range_end: int,
    object_id: int,
    at: int,
) -> Run:
    """The source range's batches below ``at``, with the chain's links at
    their ends: the range's own link before, and the link after them."""
    ranged = state.range_meta(source, range_start, object_id, source=True)
    assert ranged is not None
    links = ranged.links
    if links is not None and links.rewrite is not None:
        # A cleaner's rewrite is proven over the whole range it replaced.
        raise ForkPointInsideRange(source, at, range_start, range_end)
    meta = state.objects[object_id]
    index, blocks = parse_object(meta.key, store.get(meta.key))
    kept: list[StoredBatch] = []
    for info, batches in zip(index.blocks, blocks, strict=True):
        if info.stream_id != source:
            continue
        for batch in batches:
            if range_start <= batch.base_offset < at:
                if batch.end_offset > at:
                    raise ForkPointInsideRange(source, at, batch.base_offset, batch.end_offset)
                kept.append(batch)
    if links is not None:
        # No ``rewrite`` to keep: a cleaned range was refused above (tests/s3stream/test_forks.py).
        links = RangeLinks(
            links.algorithm, links.before, chain.extend(links.algorithm, links.before, kept)
        )
    return Run(range_start, at, kept, links)
