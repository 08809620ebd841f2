"""Forking a stream: a new stream whose offsets below the fork point are the
source's own committed ranges, shared (``share_range``), not copied.

The fork and its source then go their own ways: appends to one never reach
the other, and the shared objects stay while either stream holds a range of
them (objects are reference counted by the streams holding their ranges;
compaction leaves shared objects as they are). The design is in
docs/design/0006-forks.md, the operation in docs/object-format.md.
"""

from __future__ import annotations

from s3stream.errors import ForkPointInsideRange, OffsetOutOfRange
from s3stream.manifest_state import Op
from s3stream.manifest_writer import ManifestWriter


def fork_ops(
    writer: ManifestWriter, source_stream_id: int, start_offset: int, at: int, created_ms: int
) -> tuple[int, list[Op]]:
    """The new stream's id and the operations creating it as a fork of the
    source at ``at`` (the caller holds ``writer.serial`` and commits them
    before anything else is committed). Everything below ``at`` must be
    uploaded already, and ``at`` must end a committed range (or be the
    source's start offset, with nothing shared).

    Raises OffsetOutOfRange if ``at`` is outside ``[start_offset, remote
    end]`` and ForkPointInsideRange if a committed range holds offsets on
    both sides of it.
    """
    state = writer.manifest.state
    meta = state.streams[source_stream_id]
    if not start_offset <= at <= meta.end_offset:
        raise OffsetOutOfRange(source_stream_id, at, start_offset, meta.end_offset)
    shared: list[Op] = []
    stream_id = state.next_stream_id
    for range_start, range_end, object_id in state.ranges[source_stream_id].entries:
        if range_end <= start_offset or range_start >= at:
            continue
        if range_end > at:
            raise ForkPointInsideRange(source_stream_id, at, range_start, range_end)
        source = state.source_of(source_stream_id, range_start, object_id)
        shared.append(["share_range", stream_id, source, range_start, object_id])
    ops: list[Op] = [["create_stream", stream_id, created_ms], *shared]
    if start_offset > 0:
        ops.append(["trim", stream_id, start_offset])
    return stream_id, ops
