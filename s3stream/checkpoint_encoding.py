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
only what is new as well (docs/design/0145).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgpack

from s3stream.manifest_state import ManifestState, ObjectMeta


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
    """Packs checkpoint bodies, keeping each object's packed bytes for the
    next one. The bytes kept are those of the last checkpoint's objects
    only, never an object removed since: some 2.3 times that checkpoint's
    bytes, with each object's tuple and map entry (docs/design/0140).
    One checkpoint is encoded at a time (the manifest's cleaner
    thread, or its commit lock), so nothing here is locked."""

    def __init__(self) -> None:
        self._packed: dict[int, tuple[ObjectMeta, bytes]] = {}

    def prime(self, packed: Mapping[int, tuple[ObjectMeta, bytes]]) -> None:
        """Keeps ``packed`` (object id to the metadata and its packed bytes,
        as ``packed_objects`` finds them in the checkpoint an open read)
        for the next checkpoint, as if this encoder had written it: the
        first checkpoint after an open then packs only the objects new
        since, where it packed all 30,000 at 10,000 streams (0145)."""
        self._packed = dict(packed)

    @property
    def kept_objects(self) -> int:
        """How many objects' packed bytes are kept for the next checkpoint."""
        return len(self._packed)

    def encode(self, state: ManifestState) -> bytes:
        """``msgpack.packb(state.to_wire(), use_bin_type=True)``, byte for byte."""
        packer = msgpack.Packer(use_bin_type=True)
        wire = state.to_wire(objects=False)
        parts: list[bytes] = [packer.pack_map_header(len(wire))]
        for key, value in wire.items():
            parts.append(packer.pack(key))
            if key == "objects":
                parts.append(packer.pack_array_header(len(state.objects)))
                parts += self._objects(packer, state)
            else:
                parts.append(packer.pack(value))
        return b"".join(parts)

    def _objects(self, packer: msgpack.Packer, state: ManifestState) -> list[bytes]:
        """Each object's packed bytes, in the state's order: the kept ones
        of the same metadata (identity: it is immutable), the rest packed
        now; what is kept afterwards is exactly these."""
        kept = self._packed
        fresh: dict[int, tuple[ObjectMeta, bytes]] = {}
        for object_id, meta in state.objects.items():
            entry = kept.get(object_id)
            if entry is None or entry[0] is not meta:
                entry = (meta, packer.pack(meta.to_wire()))
            fresh[object_id] = entry
        self._packed = fresh
        return [packed for _, packed in fresh.values()]
