"""A checkpoint's msgpack body, packed with the objects' packed forms of
the checkpoint before it.

A checkpoint holds every object of the manifest, and turning an object's
metadata into its wire lists (every range, every range's chain links) was
nine tenths of a checkpoint's CPU: 190 of 210 ms at 10,000 streams and
30,000 objects, under the GIL that the commits and the WAL's threads
wait for (docs/design/0140). Object metadata is immutable and most of it
outlives many checkpoints, so an object's packed bytes are kept from one
checkpoint to the next and spliced into the body as they are. The body
is the same bytes ``msgpack.packb(state.to_wire())`` makes: the format
(docs/object-format.md) does not change, and checkpoints written before
read as they did. From one checkpoint to the next, the states' own
records of what their operations touched (manifest_changes.py) name the
streams and objects to pack again, and the rest are joined as kept
without a step over each: at 10,000 streams a checkpoint walked and
rebuilt every stream's list and every object's entry (docs/design/0150).
An open keeps the streams and objects of the checkpoint it read as it
packed them, with the record of changes of the state as read
(checkpoint_reading.py), so the first checkpoint after it repacks only
what changed since as well (docs/design/0145, 0150).
"""

from __future__ import annotations

import msgpack

from s3stream.checkpoint_reading import KeptEntries
from s3stream.manifest_changes import Changes
from s3stream.manifest_entries import ObjectMeta
from s3stream.manifest_state import ManifestState


class CheckpointEncoder:
    """Packs checkpoint bodies, keeping each stream's and each object's
    packed bytes for the next one. What is kept is the last checkpoint's
    streams and objects only, never one removed since: some 2.3 times
    that checkpoint's objects' bytes (docs/design/0140), and the streams'
    bytes with a dict entry each (docs/design/0150). One checkpoint is
    encoded at a time (the manifest's cleaner thread, or its commit
    lock), so nothing here is locked."""

    def __init__(self) -> None:
        self._object_metas: dict[int, ObjectMeta] = {}
        self._object_bytes: dict[int, bytes] = {}
        self._stream_bytes: dict[int, bytes] = {}
        self._last: Changes | None = None
        """The record of the state the last checkpoint encoded: what
        changed since is repacked, the rest spliced in as kept."""
        self._unkept_streams: set[int] = set()
        self._unkept_objects: set[int] = set()
        """Entries of the checkpoint an open read whose bytes were not
        kept: the next checkpoint packs them, changed or not."""

    def prime(self, kept: KeptEntries | None) -> None:
        """Keeps ``kept`` (the streams and objects of the checkpoint an
        open read, as checkpoint_reading.py finds them, and the record of
        the state as read) for the next checkpoint, as if this encoder had
        written it: the first checkpoint after an open then packs only the
        streams and objects changed since, where it packed all 30,000
        objects (0145) and then all 10,000 streams (0150) at 10,000
        streams. None: nothing kept, as for a new encoder."""
        if kept is None:
            kept = KeptEntries(None, {}, {}, {}, set(), set())
        # Copies: an open that loses a race primes again from the same entries.
        self._object_metas = dict(kept.object_metas)
        self._object_bytes = dict(kept.object_bytes)
        self._stream_bytes = dict(kept.streams)
        self._unkept_streams = set(kept.repack_streams)
        self._unkept_objects = set(kept.repack_objects)
        self._last = kept.record

    @property
    def kept_objects(self) -> int:
        """How many objects' packed bytes are kept for the next checkpoint."""
        return len(self._object_bytes)

    def encode(self, state: ManifestState) -> bytes:
        """``msgpack.packb(state.to_wire(), use_bin_type=True)``, byte for byte."""
        packer = msgpack.Packer(use_bin_type=True)
        changed = state.changes_since(self._last)
        if changed is None:
            self._pack_all(packer, state)
        else:
            streams, objects = changed
            streams |= self._unkept_streams
            objects |= self._unkept_objects
            self._repack(packer, state, streams, objects)
        self._unkept_streams, self._unkept_objects = set(), set()
        self._last = state.seal_changes()
        wire = state.to_wire(entries=False)
        parts: list[bytes] = [packer.pack_map_header(len(wire))]
        for key, value in wire.items():
            parts.append(packer.pack(key))
            if key == "streams":
                parts.append(packer.pack_array_header(len(state.streams)))
                parts.append(b"".join(map(self._stream_bytes.__getitem__, state.streams)))
            elif key == "objects":
                parts.append(packer.pack_array_header(len(state.objects)))
                parts.append(b"".join(map(self._object_bytes.__getitem__, state.objects)))
            else:
                parts.append(packer.pack(value))
        return b"".join(parts)

    def _pack_all(self, packer: msgpack.Packer, state: ManifestState) -> None:
        """Every stream packed, and every object not kept with the same
        metadata (identity: it is immutable); what is kept afterwards is
        exactly the state's. A stream's metadata is copied on change, not
        replaced by a new value, so only a line of states says which
        streams changed: without one (the first checkpoint, after an
        open) every stream is packed."""
        self._stream_bytes = {
            stream_id: packer.pack(meta.to_wire()) for stream_id, meta in state.streams.items()
        }
        kept_metas, kept_bytes = self._object_metas, self._object_bytes
        metas: dict[int, ObjectMeta] = {}
        packed: dict[int, bytes] = {}
        for object_id, meta in state.objects.items():
            data = kept_bytes.get(object_id)
            if data is None or kept_metas.get(object_id) is not meta:
                data = packer.pack(meta.to_wire())
            metas[object_id] = meta
            packed[object_id] = data
        self._object_metas, self._object_bytes = metas, packed

    def _repack(
        self,
        packer: msgpack.Packer,
        state: ManifestState,
        streams: set[int],
        objects: set[int],
    ) -> None:
        """Only the streams and objects changed since the last checkpoint
        (or read without their bytes kept) packed again, or forgotten if
        gone; the rest are kept as they are, with no step taken over them."""
        stream_bytes = self._stream_bytes
        for stream_id in streams:
            stream = state.streams.get(stream_id)
            if stream is None:
                stream_bytes.pop(stream_id, None)
            else:
                stream_bytes[stream_id] = packer.pack(stream.to_wire())
        metas, object_bytes = self._object_metas, self._object_bytes
        for object_id in objects:
            meta = state.objects.get(object_id)
            if meta is None:
                metas.pop(object_id, None)
                object_bytes.pop(object_id, None)
            elif metas.get(object_id) is not meta:
                metas[object_id] = meta
                object_bytes[object_id] = packer.pack(meta.to_wire())
