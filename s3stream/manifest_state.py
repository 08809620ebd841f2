"""The manifest's state and the operations that change it (pure, no I/O).

The state says which objects exist, which offsets of which stream each one
holds, where every stream starts and ends, and who the writer is (its epoch,
and the identity of the data directory that fenced last).
Every change is an operation; a manifest version is the state after applying
a log of them in order, so writing a version means writing a short delta and
reading it back means replaying the same operations (docs/object-format.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from immutables import Map

from s3stream.manifest_changes import Changes, seal, since
from s3stream.manifest_entries import ObjectMeta, StreamMeta, StreamRanges
from s3stream.manifest_queries import ManifestQueries

Op = list[Any]
"""An operation: ``[name, *arguments]`` of msgpack-friendly values."""

KEPT_FENCES = 16


class InvalidOperation(ValueError):
    """An operation does not apply to the state (a bug, or a corrupt manifest)."""


@dataclass
class ManifestState(ManifestQueries):
    seq: int = 0
    epoch: int = 0
    owner: str = ""
    """The data directory that wrote the last fence ("" before owners were recorded)."""
    owner_since: int = 0
    """The epoch of the first fence in the owner's unbroken run of fences: WAL
    entries it wrote at this epoch or later were written while nobody else
    owned the store, so its restart replays them."""
    fence_versions: list[int] = field(default_factory=list)
    """The versions of the last KEPT_FENCES fences, which checkpoints never
    delete: the version after a fenced writer's last one is always a fence,
    so its next commit collides with it however long it has been away."""
    next_stream_id: int = 1
    next_object_id: int = 1
    streams: Map[int, StreamMeta] = field(default_factory=Map)
    objects: Map[int, ObjectMeta] = field(default_factory=Map)
    garbage: dict[str, int] = field(default_factory=dict)
    """Keys of removed objects and when (ms) they may be deleted."""
    dropped: set[tuple[int, int, int]] = field(default_factory=set)
    """Ranges ``(stream_id, start_offset, object_id)`` of objects still in the
    manifest that left their stream (replaced by ``drop_range``); a
    checkpoint keeps them, since it rebuilds the streams' ranges from the
    objects."""
    shares: dict[int, dict[tuple[int, int], int]] = field(default_factory=dict)
    """Per stream, the ranges it shares with the stream that wrote them
    (``share_range``): ``(start_offset, object_id) -> source_stream_id``.
    The ranges are in the stream's ``ranges`` too; this says which stream's
    blocks of the object hold them. Each dict is replaced, never changed in
    place, so versions can share it."""
    ranges: Map[int, StreamRanges] = field(default_factory=Map, repr=False, compare=False)
    _owned: set[int] | None = field(default=None, repr=False, compare=False)
    """Streams whose ``StreamMeta`` and ``StreamRanges`` this state may change
    in place (it made them, or copied them from the version it was copied
    from); None: all of them. The other entries are shared with older
    versions, which readers may still hold, so they are copied on first
    change (see ``copy``)."""
    _changes: Changes | None = field(default=None, repr=False, compare=False)
    """The streams and objects this state's operations touched, linked to
    the record of the state it was copied from (manifest_changes.py); its
    streams are ``_owned`` itself, which every change to a stream already
    goes through. None (and ``_owned`` None) for a state read from a
    checkpoint or made empty, until a copy or a checkpoint of it."""
    _recorded_streams: Map[int, StreamMeta] | None = field(default=None, repr=False, compare=False)
    _recorded_objects: Map[int, ObjectMeta] | None = field(default=None, repr=False, compare=False)
    """The ``streams`` and ``objects`` maps as the last operation (or the
    copy) left them: a map set on the state by anything but an operation
    (nothing in the code does; a test may) leaves them different, and
    ``_changes`` then says nothing of what changed."""

    # -- applying operations ---------------------------------------------

    def apply(self, op: Op) -> None:
        name, args = op[0], op[1:]
        handler = _HANDLERS.get(name)
        if handler is None:
            raise InvalidOperation(f"unknown manifest operation {name!r}")
        changes = self._changes
        if changes is not None and changes.sealed:
            self._record_anew()  # changed after a checkpoint encoded it
        handler(self, *args)

    def _record_anew(self) -> Changes:
        """A new record for this state, linked to its own (if it names all
        that changed the maps), with no stream owned: the next change to
        each stream copies it and so lands in the new record."""
        owned: set[int] = set()
        self._owned = owned
        self._changes = Changes(self._known_changes(), owned)
        self._recorded_streams = self.streams
        self._recorded_objects = self.objects
        return self._changes

    def _known_changes(self) -> Changes | None:
        """This state's record, if it names all that changed the maps: a
        map set on the state other than by an operation is in none."""
        if self._recorded_streams is not self.streams or self._recorded_objects is not self.objects:
            return None
        return self._changes

    def changes_since(self, last: Changes | None) -> tuple[set[int], set[int]] | None:
        """The streams and objects changed since the state whose record
        ``seal_changes`` returned as ``last``, or None if not known."""
        changes = self._known_changes()
        return None if changes is None else since(changes, last)

    def seal_changes(self) -> Changes:
        """This state's record, ended: its next operation starts another,
        so ``changes_since`` it names what came after."""
        changes = self._known_changes()
        if changes is None or changes.sealed:
            changes = self._record_anew()
        return seal(changes)

    def _fence(self, epoch: int, owner: str = "") -> None:
        if epoch <= self.epoch:
            raise InvalidOperation(f"fence to epoch {epoch} from epoch {self.epoch}")
        if not owner or owner != self.owner:
            self.owner_since = epoch
        self.epoch = epoch
        self.owner = owner
        # A delta applies to the version before it: its own version is seq + 1.
        self.fence_versions = [*self.fence_versions, self.seq + 1][-KEPT_FENCES:]

    def _create_stream(self, stream_id: int, created_ms: int) -> None:
        if stream_id in self.streams or stream_id < self.next_stream_id:
            raise InvalidOperation(f"stream {stream_id} was already created")
        self.streams = self.streams.set(stream_id, StreamMeta(stream_id, created_ms=created_ms))
        self.ranges = self.ranges.set(stream_id, StreamRanges())
        if self._owned is not None:
            self._owned.add(stream_id)
            self._recorded_streams = self.streams
        self.next_stream_id = stream_id + 1

    def _open_stream(self, stream_id: int, epoch: int) -> None:
        stream = self._stream(stream_id)
        stream = self._own(stream_id)
        if epoch < stream.epoch:
            raise InvalidOperation(f"stream {stream_id} epoch {epoch} < {stream.epoch}")
        stream.epoch = epoch

    def _delete_stream(self, stream_id: int) -> None:
        self._stream(stream_id)
        self.streams = self.streams.delete(stream_id)
        if self._owned is not None:  # gone from the map, and named in the record
            self._owned.add(stream_id)
            self._recorded_streams = self.streams
        self.ranges = self.ranges.delete(stream_id)
        self.shares.pop(stream_id, None)
        if self.dropped:
            self.dropped = {d for d in self.dropped if d[0] != stream_id}

    def _trim(self, stream_id: int, start_offset: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None and start_offset > stream.start_offset:
            stream = self._own(stream_id)
            stream.start_offset = start_offset
            stream.end_offset = max(stream.end_offset, start_offset)

    def _add_object(self, raw: list[Any]) -> None:
        meta = ObjectMeta.from_wire(raw)
        if meta.object_id in self.objects:
            raise InvalidOperation(f"object {meta.object_id} was already added")
        self.objects = self.objects.set(meta.object_id, meta)
        self._touched_object(meta.object_id)
        self.next_object_id = max(self.next_object_id, meta.object_id + 1)
        for r in meta.ranges:
            stream = self.streams.get(r.stream_id)
            if stream is None:  # deleted while its data was uploading
                continue
            stream = self._own(r.stream_id)
            self.ranges[r.stream_id].add(r.start_offset, r.end_offset, meta.object_id)
            stream.end_offset = max(stream.end_offset, r.end_offset)

    def _remove_object(self, object_id: int, delete_after_ms: int) -> None:
        meta = self.objects.get(object_id)
        if meta is None:
            raise InvalidOperation(f"object {object_id} is not in the manifest")
        for stream_id, start in self.sharers(object_id):
            if self._entry_live(stream_id, start, object_id):
                raise InvalidOperation(
                    f"object {object_id} is shared by stream {stream_id} from offset {start}"
                )
            self._own(stream_id)
            self.ranges[stream_id].remove(start, object_id)
            self._unshare(stream_id, start, object_id)
        self.objects = self.objects.delete(object_id)
        self._touched_object(object_id)
        for r in meta.ranges:
            if r.stream_id in self.ranges:
                self._own(r.stream_id)
                self.ranges[r.stream_id].remove(r.start_offset, object_id)
            self.dropped.discard((r.stream_id, r.start_offset, object_id))
        self.garbage[meta.key] = delete_after_ms

    def _drop_range(self, stream_id: int, start_offset: int, object_id: int) -> None:
        """The object's range of the stream starting at ``start_offset`` leaves
        the stream (another object now holds those offsets); the object stays,
        since other ranges of it may still be live."""
        self._stream(stream_id)
        if object_id not in self.objects:
            raise InvalidOperation(f"object {object_id} is not in the manifest")
        if not self.ranges[stream_id].holds(start_offset, object_id):
            raise InvalidOperation(
                f"stream {stream_id} has no range at {start_offset} in object {object_id}"
            )
        self._own(stream_id)
        self.ranges[stream_id].remove(start_offset, object_id)
        if (start_offset, object_id) in self.shares.get(stream_id, {}):
            # A shared range leaves only the stream that shared it: the
            # checkpoint lists shares itself, so nothing joins ``dropped``.
            self._unshare(stream_id, start_offset, object_id)
        else:
            self.dropped.add((stream_id, start_offset, object_id))

    def _share_range(
        self, stream_id: int, source_stream_id: int, start_offset: int, object_id: int
    ) -> None:
        """The object's range of ``source_stream_id`` starting at
        ``start_offset`` joins ``stream_id`` too, which reads those offsets
        from the same bytes (a fork's history below its fork point). The
        object then stays while either stream holds the range."""
        self._stream(stream_id)
        meta = self.range_meta(source_stream_id, start_offset, object_id, source=True)
        if meta is None:
            raise InvalidOperation(
                f"object {object_id} has no range of stream {source_stream_id} at {start_offset}"
            )
        found = self.ranges[stream_id].find(start_offset)
        if found is not None and found[0] < meta.end_offset:
            raise InvalidOperation(
                f"stream {stream_id} already holds offsets in [{start_offset}, {meta.end_offset})"
            )
        stream = self._own(stream_id)
        self.ranges[stream_id].add(start_offset, meta.end_offset, object_id)
        self.shares[stream_id] = {
            **self.shares.get(stream_id, {}),
            (start_offset, object_id): source_stream_id,
        }
        stream.end_offset = max(stream.end_offset, meta.end_offset)

    def _unshare(self, stream_id: int, start_offset: int, object_id: int) -> None:
        left = dict(self.shares[stream_id])
        del left[(start_offset, object_id)]
        if left:
            self.shares[stream_id] = left
        else:
            del self.shares[stream_id]

    def _forget_garbage(self, key: str) -> None:
        self.garbage.pop(key, None)

    def _own(self, stream_id: int) -> StreamMeta:
        """The stream's entries, copied first if an older version shares
        them; every change to a stream's metadata takes them here, and
        ``_owned`` is the streams of this state's record of changes."""
        stream = self.streams[stream_id]
        if self._owned is None or stream_id in self._owned:
            return stream
        stream = stream.copy()
        ranges = self.ranges[stream_id]
        self.streams = self.streams.set(stream_id, stream)
        self.ranges = self.ranges.set(
            stream_id, StreamRanges(list(ranges.starts), list(ranges.entries))
        )
        self._owned.add(stream_id)
        self._recorded_streams = self.streams
        return stream

    def _touched_object(self, object_id: int) -> None:
        if self._changes is not None:  # None: building from a checkpoint
            self._changes.objects.add(object_id)
            self._recorded_objects = self.objects

    def _stream(self, stream_id: int) -> StreamMeta:
        stream = self.streams.get(stream_id)
        if stream is None:
            raise InvalidOperation(f"stream {stream_id} does not exist")
        return stream

    # -- snapshots ----------------------------------------------------------

    def copy(self) -> ManifestState:
        """A copy to change, sharing every entry with this state: the
        streams', their ranges' and the objects' maps are persistent (a
        change makes a new map that shares all but a path of trie nodes
        with the old), so they are not copied at all, and a stream's
        entries are copied only when the copy first changes them: a
        commit costs what its operations touch, where copying the maps
        was 3.7 M instructions at 10,000 streams (docs/design/0145). The
        small maps (garbage, dropped ranges, shares) are still copied.
        Object metadata is immutable and always shared. This state is
        never changed again through the copy, so readers holding it need
        no lock."""
        owned: set[int] = set()
        return ManifestState(
            seq=self.seq,
            epoch=self.epoch,
            owner=self.owner,
            owner_since=self.owner_since,
            fence_versions=self.fence_versions,
            next_stream_id=self.next_stream_id,
            next_object_id=self.next_object_id,
            streams=self.streams,
            objects=self.objects,
            garbage=dict(self.garbage),
            dropped=set(self.dropped),
            shares=dict(self.shares),
            ranges=self.ranges,
            _owned=owned,
            _changes=Changes(self._known_changes(), owned),
            _recorded_streams=self.streams,
            _recorded_objects=self.objects,
        )

    def to_wire(self, *, entries: bool = True) -> dict[str, Any]:
        """The checkpoint's body; without ``entries``, its streams' and
        objects' lists are left empty for a caller that packs them itself
        (checkpoint_encoding.py)."""
        return {
            "seq": self.seq,
            "epoch": self.epoch,
            "owner": self.owner,
            "owner_since": self.owner_since,
            "fence_versions": self.fence_versions,
            "next_stream_id": self.next_stream_id,
            "next_object_id": self.next_object_id,
            "streams": [s.to_wire() for s in self.streams.values()] if entries else [],
            "objects": [o.to_wire() for o in self.objects.values()] if entries else [],
            "garbage": [[k, v] for k, v in self.garbage.items()],
            "dropped": [list(d) for d in sorted(self.dropped)],
            "shared": [
                [stream_id, source, start, object_id]
                for stream_id, shares in sorted(self.shares.items())
                for (start, object_id), source in sorted(shares.items())
            ],
        }

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> ManifestState:
        return cls.from_entries(
            raw,
            map(StreamMeta.from_wire, raw["streams"]),
            map(ObjectMeta.from_wire, raw["objects"]),
        )

    @classmethod
    def from_entries(
        cls, raw: dict[str, Any], streams: Iterable[StreamMeta], objects: Iterable[ObjectMeta]
    ) -> ManifestState:
        """The state of a checkpoint's body ``raw`` whose streams and
        objects, in the body's order, are ``streams`` and ``objects``
        (each made from its entry as it is read: checkpoint_reading.py)."""
        state = cls(
            seq=raw["seq"],
            epoch=raw["epoch"],
            # A checkpoint written before owners were recorded has neither.
            owner=raw.get("owner", ""),
            owner_since=raw.get("owner_since", raw["epoch"]),
            fence_versions=list(raw.get("fence_versions", ())),
            next_stream_id=raw["next_stream_id"],
            next_object_id=raw["next_object_id"],
        )
        # Built as dicts, then made maps at once: a set each would make a
        # path of trie nodes per entry, only to drop it at the next.
        by_id: dict[int, StreamMeta] = {}
        ranges: dict[int, StreamRanges] = {}
        by_object_id: dict[int, ObjectMeta] = {}
        for stream in streams:
            by_id[stream.stream_id] = stream
            ranges[stream.stream_id] = StreamRanges()
        # A checkpoint written before drop_range existed has no "dropped".
        state.dropped = {(s, start, o) for s, start, o in raw.get("dropped", ())}
        dropped = state.dropped
        for meta in objects:
            object_id = meta.object_id
            by_object_id[object_id] = meta
            for r in meta.ranges:
                stream_ranges = ranges.get(r.stream_id)
                if stream_ranges is not None and not (
                    dropped and (r.stream_id, r.start_offset, object_id) in dropped
                ):
                    stream_ranges.add(r.start_offset, r.end_offset, object_id)
        state.streams, state.ranges = Map(by_id), Map(ranges)
        state.objects = Map(by_object_id)
        state.garbage = {k: v for k, v in raw["garbage"]}
        # A checkpoint written before share_range existed has no "shared".
        for stream_id, source, start, object_id in raw.get("shared", ()):
            state._share_range(stream_id, source, start, object_id)
        return state


_HANDLERS: dict[str, Any] = {
    "fence": ManifestState._fence,
    "create_stream": ManifestState._create_stream,
    "open_stream": ManifestState._open_stream,
    "delete_stream": ManifestState._delete_stream,
    "trim": ManifestState._trim,
    "add_object": ManifestState._add_object,
    "remove_object": ManifestState._remove_object,
    "drop_range": ManifestState._drop_range,
    "share_range": ManifestState._share_range,
    "forget_garbage": ManifestState._forget_garbage,
}
