"""The questions a manifest state answers without changing: which stream's
blocks hold a shared range, who shares an object, whether an object or a
range can still be read, a range's metadata by stream, offset and object,
whether a key is an object's, and where a stream's chain ends.

Read by the writer's operations (a removal asks who else reads the object)
and by every reader of a version (the fetcher, compaction, forks, chain
checks); a base of ManifestState (s3stream/manifest_state.py), which owns
the fields these read and every change to them (docs/design/0150).
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from immutables import Map

    from s3stream.manifest_entries import ObjectMeta, RangeMeta, StreamMeta, StreamRanges


class ManifestQueries:
    """The read-side queries of a manifest state (ManifestState's fields)."""

    streams: Map[int, StreamMeta]
    objects: Map[int, ObjectMeta]
    shares: dict[int, dict[tuple[int, int], int]]
    ranges: Map[int, StreamRanges]

    def source_of(self, stream_id: int, start_offset: int, object_id: int) -> int:
        """The stream whose blocks of the object hold the stream's range
        starting at ``start_offset``: the stream itself, or for a shared
        range the stream that wrote it."""
        shares = self.shares.get(stream_id)
        if shares is None:
            return stream_id
        return shares.get((start_offset, object_id), stream_id)

    def sharers(self, object_id: int) -> list[tuple[int, int]]:
        """The ``(stream_id, start_offset)`` of every shared range of the object."""
        return [
            (stream_id, start)
            for stream_id, shares in self.shares.items()
            for start, oid in shares
            if oid == object_id
        ]

    def shared_object_ids(self) -> set[int]:
        """Objects some stream holds a shared range of (live or not): a merge
        leaves them as they are, so a fork's view never changes under it."""
        return {oid for shares in self.shares.values() for _, oid in shares}

    def _entry_live(self, stream_id: int, start_offset: int, object_id: int) -> bool:
        stream = self.streams.get(stream_id)
        if stream is None:
            return False
        ranges = self.ranges[stream_id]
        i = bisect.bisect_left(ranges.starts, start_offset)
        while i < len(ranges.entries) and ranges.entries[i][0] == start_offset:
            if ranges.entries[i][2] == object_id:
                return ranges.entries[i][1] > stream.start_offset
            i += 1
        return False

    def object_live(self, meta: ObjectMeta) -> bool:
        """Whether any stream can still read any of the object's ranges: its
        own (``range_live``) or one another stream shares. Objects are
        reference counted by the streams that hold their ranges."""
        if any(self.range_live(meta.object_id, r) for r in meta.ranges):
            return True
        return any(
            self._entry_live(stream_id, start, meta.object_id)
            for stream_id, start in self.sharers(meta.object_id)
        )

    def range_live(self, object_id: int, r: RangeMeta) -> bool:
        """Whether a range of an object can still be read: its stream exists,
        has not been trimmed past it, and still holds it (not dropped)."""
        stream = self.streams.get(r.stream_id)
        return (
            stream is not None
            and r.end_offset > stream.start_offset
            and self.ranges[r.stream_id].holds(r.start_offset, object_id)
        )

    def range_meta(
        self, stream_id: int, start_offset: int, object_id: int, *, source: bool = False
    ) -> RangeMeta | None:
        """The object's range of the stream that starts at ``start_offset``
        (a shared range's as its source wrote it; with ``source``, the
        range ``stream_id`` itself wrote)."""
        meta = self.objects.get(object_id)
        if meta is None:
            return None
        writer = stream_id if source else self.source_of(stream_id, start_offset, object_id)
        return meta.range_at(writer, start_offset)

    def names_key(self, key: str) -> bool:
        """Whether an object of this state has this key (one removed since
        is in ``garbage``, or forgotten)."""
        return any(meta.key == key for meta in self.objects.values())

    def chain_head(self, stream_id: int) -> tuple[int, bytes] | None:
        """The end offset of the stream's last committed range and the chain's
        link there, or None if that range has no links (or there is none)."""
        ranges = self.ranges.get(stream_id)
        if ranges is None or not ranges.entries:
            return None
        start, end, object_id = ranges.entries[-1]
        meta = self.range_meta(stream_id, start, object_id)
        if meta is None or meta.links is None:
            return None
        return end, meta.links.after
