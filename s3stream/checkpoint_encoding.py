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
read as they did. An open keeps the packed objects of the checkpoint
it read (``packed_objects``), so the first checkpoint after it packs
only what is new as well (docs/design/0145). From one checkpoint to the
next, the states' own records of what their operations touched
(manifest_changes.py) name the streams and objects to pack again, and
the rest are joined as kept without a step over each: at 10,000 streams
a checkpoint walked and rebuilt every stream's list and every object's
entry (docs/design/0150).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgpack

from s3stream.manifest_changes import Changes
from s3stream.manifest_entries import ObjectMeta
from s3stream.manifest_state import ManifestState


def packed_objects(
    payload: bytes | memoryview, wires: Sequence[list[Any]], state: ManifestState
) -> dict[int, tuple[ObjectMeta, bytes]]:
    """Each object's packed bytes as they lie in a checkpoint's msgpack
    ``payload``, keyed by object id with the object's metadata in
    ``state`` (the state read from that payload, whose decoded objects'
    list is ``wires``), for ``CheckpointEncoder.prime``. Only objects whose
    wire form is what ``to_wire`` gives back (``ObjectMeta.wire_is_current``)
    are kept: the rest, of ranges written before the chain's algorithm was
    stored, are packed again by the next checkpoint. Every checkpoint was
    packed by msgpack's own packer, whose bytes for a value are always the
    same, so the bytes found are those the current code packs."""
    unpacker = msgpack.Unpacker(max_buffer_size=len(payload))
    unpacker.feed(payload)
    spans: list[tuple[int, int]] = []
    for _ in range(unpacker.read_map_header()):
        if unpacker.unpack() != "objects":
            unpacker.skip()
            continue
        for _ in range(unpacker.read_array_header()):
            start = unpacker.tell()
            unpacker.skip()
            spans.append((start, unpacker.tell()))
    if len(spans) != len(wires):
        return {}  # not the body ``wires`` came from: prime nothing
    view = memoryview(payload)
    packed: dict[int, tuple[ObjectMeta, bytes]] = {}
    objects = state.objects
    for wire, (start, end) in zip(wires, spans, strict=True):
        meta = objects.get(wire[0])
        if meta is not None and ObjectMeta.wire_is_current(wire):
            packed[meta.object_id] = (meta, bytes(view[start:end]))
    return packed


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

    def prime(self, packed: Mapping[int, tuple[ObjectMeta, bytes]]) -> None:
        """Keeps ``packed`` (object id to the metadata and its packed bytes,
        as ``packed_objects`` finds them in the checkpoint an open read)
        for the next checkpoint, as if this encoder had written it: the
        first checkpoint after an open then packs only the objects new
        since, where it packed all 30,000 at 10,000 streams (0145)."""
        self._object_metas = {object_id: meta for object_id, (meta, _) in packed.items()}
        self._object_bytes = {object_id: data for object_id, (_, data) in packed.items()}
        self._stream_bytes = {}
        self._last = None

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
            self._repack(packer, state, *changed)
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
        packed again (or forgotten, if gone); the rest are kept as they
        are, with no step taken over them."""
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
